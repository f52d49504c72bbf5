"""The package's one image reader: files, PIL images and numpy arrays in, 8-bit RGB out.

Every image insid3lab reads (the API, the command line, the evaluation datasets) goes
through :func:`read_image`, so one file gives the same pixels everywhere.

High bit depths (PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I``; numpy integer arrays wider
than 8 bits) are scaled to 8 bits by one rule: with ``M`` the image's maximum, the scale
is the smallest ``2**b - 1 >= M`` for ``b`` in 8, 10, 12, 14, 16 (so 12-bit data stored in
16 bits is scaled by 4095, full-range 16-bit data by 65535, and data whose values all fit
in 8 bits is taken as 8-bit); above 65535 the scale is ``M`` itself. Negative values are
clipped to 0. ``pixel = round(value * 255 / scale)``. Float numpy images must hold finite
values in [0, 1]; PIL ``F`` images must be finite and are divided by their maximum when it exceeds 1.

Very large images: PIL refuses images above ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (about
179 MP; a guard against decompression bombs). insid3lab turns that into one ``ValueError``
naming the file. To read such an image knowingly, set the environment variable
``INSID3LAB_MAX_IMAGE_PIXELS`` to a larger number of pixels (``0`` or ``none``: no limit)
or raise ``PIL.Image.MAX_IMAGE_PIXELS``.

EXIF orientation is applied by default (``exif_transpose=True``): see :mod:`insid3lab.core.preprocess`.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "LOSSY_FORMATS",
    "MAX_PIXELS_ENV",
    "open_image",
    "pixel_limit",
    "read_image",
    "read_rgb_array",
    "to_uint8",
]

MAX_PIXELS_ENV = "INSID3LAB_MAX_IMAGE_PIXELS"
# Formats whose compression changes pixel values (a mask read from them is thresholded at 128).
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "WEBP"})
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_BITS = (8, 10, 12, 14, 16)
_PIL_LIMIT_LOCK = threading.Lock()


def pixel_limit() -> int | None:
    """The largest image (in pixels) that will be read: ``$INSID3LAB_MAX_IMAGE_PIXELS``, else PIL's limit."""
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not env:
        lim = Image.MAX_IMAGE_PIXELS
        return int(lim) if lim else None
    if env.lower() in ("0", "none"):
        return None
    try:
        value = int(float(env))
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={env!r}: expected a number of pixels (or 0 / none for no limit)") from None
    if value < 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={env!r}: expected a number of pixels (or 0 / none for no limit)")
    return value or None


def _too_large(what: str, name: str, n: int | None, limit: int) -> ValueError:
    size = f" has {n} pixels, which" if n is not None else ""
    return ValueError(
        f"{what} {name}{size} exceeds PIL's pixel limit of {limit} pixels; set {MAX_PIXELS_ENV} "
        "(or PIL.Image.MAX_IMAGE_PIXELS) to raise it knowingly"
    )


def _check_pixels(img: Image.Image, what: str, name: str) -> None:
    limit = pixel_limit()
    n = img.width * img.height
    if limit is not None and n > limit:
        raise _too_large(what, name, n, limit)


def open_image(path: str | os.PathLike, *, what: str = "image") -> Image.Image:
    """Open and decode an image file as PIL gives it (any mode), with one-line errors naming the file.

    Raises:
        FileNotFoundError / IsADirectoryError: no such file / a folder.
        ValueError: not an image, or larger than :func:`pixel_limit`.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {str(p)!r} is a folder; give an image file")
    limit = pixel_limit()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if os.environ.get(MAX_PIXELS_ENV, "").strip():
                # The user's own limit replaces PIL's while this file's header is read.
                with _PIL_LIMIT_LOCK:
                    saved = Image.MAX_IMAGE_PIXELS
                    Image.MAX_IMAGE_PIXELS = None
                    try:
                        img = Image.open(p)
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
            else:
                img = Image.open(p)
            _check_pixels(img, what, repr(str(p)))
            img.load()
    except Image.DecompressionBombError:
        raise _too_large(what, repr(str(p)), None, limit or 0) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{what} {str(p)!r} cannot be read as an image ({type(e).__name__}: {e})") from None
    return img


def to_uint8(arr: np.ndarray, *, what: str = "image") -> np.ndarray:
    """An integer, bool or float array as uint8 by the module's rule (see the module docstring)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not np.isfinite(arr).all():
            raise ValueError(f"{what}: the image holds NaN or infinite values")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{what}: float images must hold values in [0, 1]; got [{arr.min():.3g}, {arr.max():.3g}]")
        return np.round(arr * 255).astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: unsupported array dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    a = np.clip(arr.astype(np.float64), 0, None)
    top = float(a.max(initial=0))
    scale = next((2.0**b - 1 for b in _BITS if top <= 2**b - 1), top)
    return np.clip(np.round(a * (255.0 / scale)), 0, 255).astype(np.uint8)


def _from_array(arr: np.ndarray, what: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"{what}: a numpy image must be HxW, HxWx3 or HxWx4; got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(to_uint8(arr, what=what)))


def read_image(image, *, exif_transpose: bool = True, what: str = "image") -> Image.Image:
    """A file path, PIL image or numpy array as an 8-bit ``"RGB"`` PIL image.

    Grayscale, RGBA (alpha dropped), palette (``P``), CMYK, high bit depth (scaled by the
    module's rule) and float (``F``) images are converted.

    Raises:
        FileNotFoundError, IsADirectoryError, TypeError, ValueError: one line naming ``what``.
    """
    if isinstance(image, (str, os.PathLike)):
        img = open_image(image, what=what)
    elif isinstance(image, Image.Image):
        img = image
        _check_pixels(img, what, "(PIL image)")
    elif isinstance(image, np.ndarray):
        img = _from_array(image, what)
    else:
        raise TypeError(f"{what}: expected a file path, PIL image or numpy array; got {type(image).__name__}")
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    if img.mode in _HIGH_DEPTH_MODES:
        img = Image.fromarray(to_uint8(np.asarray(img), what=what))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and not np.isfinite(arr).all():
            raise ValueError(f"{what}: the image holds NaN or infinite values")
        top = arr.max() if arr.size and arr.max() > 1 else 1.0
        img = Image.fromarray(np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def read_rgb_array(image, *, exif_transpose: bool = True, what: str = "image") -> np.ndarray:
    """:func:`read_image` as an (H, W, 3) uint8 numpy array."""
    return np.asarray(read_image(image, exif_transpose=exif_transpose, what=what))
