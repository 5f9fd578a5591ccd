"""Host-side image decoding: bytes -> uint8 (H, W, C), channel conversion, resize and random crops.

Only what must happen before batching lives here (decode, fixed-size resize, per-view crops);
flips, colour and blur run batched on the device (`image_ops`).
"""

import io
import math

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MODE = {1: "L", 3: "RGB"}
_CROP_TRIES = 10  # as torchvision's RandomResizedCrop


def open_image(encoded, where, channels=3, size=None):
  """Decodes JPEG/PNG bytes to a PIL image with `channels` (1: L, 3: RGB); ValueError names `where`.

  With `size`, large JPEGs are decoded at a reduced scale that still covers size x size (fast).
  """
  if channels not in _MODE:
    raise ValueError(f"channels={channels}: accepted 1 (grayscale) or 3 (RGB)")
  try:
    im = Image.open(io.BytesIO(encoded))
    if size and im.format == "JPEG":
      im.draft(_MODE[channels], (size, size))
    im.load()
    if im.mode != _MODE[channels]:
      im = (
          im.convert("RGBA").convert(_MODE[channels])
          if im.mode == "P"
          else im.convert(_MODE[channels])
      )
  except Exception as e:  # PIL raises several types for corrupt data
    raise ValueError(
        f"{where}: cannot decode image ({type(e).__name__}: {e}); expected a JPEG or " "PNG file"
    ) from None
  return im


def to_array(im):
  array = np.asarray(im, dtype=np.uint8)
  return array[..., None] if array.ndim == 2 else array


def encode_png(array):
  """uint8 (H, W, C) -> PNG bytes (lossless)."""
  buffer = io.BytesIO()
  Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
  return buffer.getvalue()


def decode_image(encoded, where, channels=3, size=None):
  """Bytes -> uint8 (H, W, C); with `size`, shorter side resized to `size` and centre-cropped
  square."""
  im = open_image(encoded, where, channels, size)
  return to_array(center_crop(im, size) if size else im)


def center_crop(im, size):
  """Largest centred square, resized to size x size in one resampling step."""
  w, h = im.size
  if (w, h) == (size, size):
    return im
  side = min(w, h)
  box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
  return im.resize((size, size), Image.BILINEAR, box=box)


def random_resized_crop(im, rng, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """Inception-style crop (area fraction in `scale`, aspect in `ratio`), resized to size x size."""
  w, h = im.size
  area = w * h
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(_CROP_TRIES):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
      return im.resize((size, size), Image.BILINEAR, box=(x, y, x + cw, y + ch))
  return center_crop(im, size)  # fallback, as torchvision: the whole centred square


def check_file(path):
  """Cheap scan-time check: None if `path` has a JPEG/PNG header and end marker, else the reason.

  Reads the header and the last bytes only (a full decode of every file would take minutes on
  ImageNet); damage in the middle of a file is reported when it is decoded.
  """
  try:
    with Image.open(path) as im:
      kind = im.format
  except Exception as e:  # PIL raises several types for non-images
    return f"not a readable image ({type(e).__name__}: {e})"
  if kind not in ("JPEG", "PNG"):
    return f"format {kind}; accepted: JPEG, PNG"
  with open(path, "rb") as f:
    f.seek(0, 2)
    f.seek(max(0, f.tell() - 64))
    tail = f.read().rstrip(b"\x00")  # some writers pad after the end marker
  complete = b"IEND" in tail[-12:] if kind == "PNG" else tail.endswith(b"\xff\xd9")
  return None if complete else f"truncated {kind} (no end marker)"
