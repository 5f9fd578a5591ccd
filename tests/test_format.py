"""Every Python file is clean under the one formatter (pyink, pyproject.toml) and at most 100
columns wide: `pyink .` formats the tree; comments, strings and docstrings it does not split are
wrapped by hand."""

import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LIMIT = 100


def _tracked_python_files():
  listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
  if listed.returncode:  # not a git checkout (an sdist, say): walk the folders instead
    return [
        os.path.relpath(os.path.join(d, f), ROOT)
        for top in ("ssl_jax", "tests", "experiments", "configs", "launch")
        for d, _, files in os.walk(os.path.join(ROOT, top))
        for f in files
        if f.endswith(".py")
    ]
  return listed.stdout.split()


def test_every_file_is_formatted():
  files = _tracked_python_files()
  checked = subprocess.run(
      [sys.executable, "-m", "pyink", "--check", "--quiet", *files],
      cwd=ROOT,
      capture_output=True,
      text=True,
  )
  assert checked.returncode == 0, f"run `pyink .` from the repository root:\n{checked.stderr}"


def test_no_line_over_the_limit():
  long = [
      f"{path}:{number}"
      for path in _tracked_python_files()
      for number, line in enumerate(open(os.path.join(ROOT, path), encoding="utf-8"), 1)
      if len(line.rstrip("\n")) > LIMIT
  ]
  assert not long, f"lines over {LIMIT} columns: {long}"
