"""Pretext tasks, selected by `config.task`: module `ssl_jax.tasks.<name>` defines `Task`."""
import importlib
import inspect
import pkgutil


def available():
  return sorted(m.name for m in pkgutil.iter_modules(__path__))


def build(name, **kwargs):
  if name not in available():
    raise ValueError(f"unknown config.task {name!r}; accepted: {available()}")
  cls = importlib.import_module(f"ssl_jax.tasks.{name}").Task
  accepted = set(inspect.signature(cls).parameters)
  unknown = sorted(set(kwargs) - accepted)
  if unknown:
    raise KeyError(f"config.task_kwargs has keys {unknown} that task {name!r} does not take; "
                   f"accepted: {sorted(accepted)}")
  return cls(**kwargs)
