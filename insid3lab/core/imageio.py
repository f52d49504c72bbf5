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

Very large images: an image with more pixels than :func:`pixel_limit` is refused with an
:class:`ImageTooLargeError` (a ``ValueError`` naming the file) before it is decoded, a guard
against decompression bombs. The limit is, first found: the one set for a block with
:func:`pixel_limit_set` (the command line's ``--max-image-pixels``), the environment variable
``INSID3LAB_MAX_IMAGE_PIXELS`` (``0`` or ``none``: no limit), ``PIL.Image.MAX_IMAGE_PIXELS``
(89,478,485 unless changed). There is one rule: above the limit is refused (PIL itself only
warns between one and two times its limit). :func:`image_size` reads a header under the same rule.

EXIF orientation is applied by default (``exif_transpose=True``): see :mod:`insid3lab.core.preprocess`.
"""

from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "LOSSY_FORMATS",
    "MAX_PIXELS_ENV",
    "ImageTooLargeError",
    "image_size",
    "open_image",
    "pixel_limit",
    "pixel_limit_set",
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


_UNSET = object()
_override: object = _UNSET  # the limit of pixel_limit_set while its block runs


def pixel_limit() -> int | None:
    """The largest image (in pixels) that will be read, None for no limit: the limit of :func:`pixel_limit_set`,
    else ``$INSID3LAB_MAX_IMAGE_PIXELS``, else ``PIL.Image.MAX_IMAGE_PIXELS``."""
    if _override is not _UNSET:
        return _override  # type: ignore[return-value]
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


@contextmanager
def pixel_limit_set(limit: int | None):
    """Within the block, :func:`pixel_limit` is ``limit`` (0 or None: no limit), whatever the environment says."""
    global _override
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"pixel limit {limit!r}: expected a number of pixels >= 0 (0: no limit)")
    saved, _override = _override, (limit or None)
    try:
        yield
    finally:
        _override = saved


class ImageTooLargeError(ValueError):
    """An image with more pixels than :func:`pixel_limit` (a guard against decompression bombs).

    Attributes:
        path: the file (or a description of an in-memory image); pixels: its pixel count; limit: the limit.
    """

    def __init__(self, what: str, path: str, pixels: int, limit: int):
        self.path, self.pixels, self.limit = path, int(pixels), int(limit)
        name = repr(path) if what else path
        super().__init__(
            f"{what + ' ' if what else ''}{name} has {pixels} pixels, which exceeds PIL's pixel limit of {limit} "
            f"pixels; set {MAX_PIXELS_ENV} (or PIL.Image.MAX_IMAGE_PIXELS) to raise it knowingly"
        )


def _check_pixels(img: Image.Image, what: str, path: str, limit: int | None = _UNSET) -> None:  # type: ignore[assignment]
    limit = pixel_limit() if limit is _UNSET else limit
    n = img.width * img.height
    if limit is not None and n > limit:
        raise ImageTooLargeError(what, path, n, limit)


def _reason(err: BaseException, path: Path) -> str:
    """``TypeName: message`` of a reader's error, without the file name the caller already gives."""
    text = str(err)
    for name in (repr(str(path)), str(path)):
        text = text.replace(f" {name}", "").replace(name, "")
    return f"{type(err).__name__}: {text.strip()}" if text.strip() else type(err).__name__


def _open_header(p: Path, what: str) -> Image.Image:
    """``p`` opened (header read, pixels not decoded), checked against :func:`pixel_limit`."""
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {str(p)!r} is a folder; give an image file")
    limit = pixel_limit()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _PIL_LIMIT_LOCK:  # the one rule below replaces PIL's own while the header is read
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    img = Image.open(p)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{what} {str(p)!r} cannot be read as an image ({_reason(e, p)})") from None
    try:
        _check_pixels(img, what, str(p), limit)
    except ImageTooLargeError:
        img.close()
        raise
    return img


def image_size(path: str | os.PathLike, *, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file from its header, stored order (no EXIF rotation); the errors of
    :func:`open_image` (an image over :func:`pixel_limit` is an :class:`ImageTooLargeError`)."""
    with _open_header(Path(path).expanduser(), what) as img:
        return img.size


def open_image(path: str | os.PathLike, *, what: str = "image") -> Image.Image:
    """Open and decode an image file as PIL gives it (any mode), with one-line errors naming the file.

    Raises:
        FileNotFoundError / IsADirectoryError: no such file / a folder.
        ImageTooLargeError: more pixels than :func:`pixel_limit` (a ValueError).
        ValueError: not an image.
    """
    p = Path(path).expanduser()
    img = _open_header(p, what)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        img.close()
        raise ValueError(f"{what} {str(p)!r} cannot be read as an image ({_reason(e, p)})") from None
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
        _check_pixels(img, "", f"{what} (PIL image)")
    elif isinstance(image, np.ndarray):
        img = _from_array(image, what)
    else:
        raise TypeError(f"{what}: expected a file path, PIL image or numpy array; got {type(image).__name__}")
    if img.width == 0 or img.height == 0:
        raise ValueError(f"{what}: the image is {img.height}x{img.width} (H x W); an image needs at least one pixel")
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
