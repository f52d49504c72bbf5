"""Images and masks in, tensors out.

Accepted images: a file path, a PIL image, a numpy array (HWC uint8 RGB/RGBA, HW
grayscale, uint16, or float in [0, 1]) or a torch tensor (C, H, W) / (1, C, H, W)
that is *already normalised* with the ImageNet mean and std.

Everything that is not a tensor is turned into an 8-bit RGB PIL image, resized to
(S, S) with PIL's bilinear filter, scaled to [0, 1] and normalised — the same
arithmetic as torchvision's ``Resize`` + ``ToTensor`` + ``Normalize`` on a PIL image.
Tensors are resized with ``F.interpolate(mode="bilinear", align_corners=False)``.

EXIF orientation: JPEG files from cameras and phones often store the pixels
sideways plus an EXIF tag saying how to rotate them for display. A mask drawn in
an image viewer is aligned with the *displayed* image, so insid3lab applies the
EXIF orientation by default (``exif_transpose=True``) before anything else; the
original (H, W) reported and used for the output mask is that of the displayed
image. Pass ``exif_transpose=False`` to use the stored pixel order, as the
authors' reference code does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ._warn import warn as _warn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "to_pil_rgb",
    "to_display_array",
    "preprocess_image",
    "preprocess_mask",
    "mask_to_numpy",
    "normalize",
    "denormalize",
    "black_image",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a (..., 3, H, W) float tensor in [0, 1]: ``(x - mean) / std``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize`: (..., 3, H, W) normalised -> values in [0, 1] (not clamped)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return x * std + mean


def black_image(size: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """A black (all-zero) RGB image of side ``size``, normalised: (1, 3, size, size)."""
    return normalize(torch.zeros(1, 3, size, size, dtype=dtype, device=device))


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {str(p)!r} is a folder; give an image file")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{what} {str(p)!r} cannot be read as an image ({type(e).__name__}: {e})") from e
    return img


def _sixteen_to_eight(arr: np.ndarray) -> np.ndarray:
    """Scale a 16-bit (or 32-bit integer) grayscale array to uint8 by its dtype's range."""
    if arr.dtype == np.uint16 or arr.max(initial=0) > 255:
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
        return np.clip(np.round(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    return arr.astype(np.uint8)


def to_pil_rgb(image, *, exif_transpose: bool = True, what: str = "image") -> Image.Image:
    """Any supported non-tensor image as an 8-bit RGB PIL image.

    Grayscale, RGBA (alpha dropped), palette (``P``), CMYK and 16-bit images are converted.
    """
    if isinstance(image, (str, os.PathLike)):
        img = _open(image, what)
    elif isinstance(image, Image.Image):
        img = image
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise ValueError(f"{what}: a numpy image must be HxW, HxWx3 or HxWx4; got shape {arr.shape}")
        if np.issubdtype(arr.dtype, np.floating):
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise ValueError(f"{what}: float numpy images must hold values in [0, 1]; got [{arr.min():.3g}, {arr.max():.3g}]")
            arr = np.round(arr * 255).astype(np.uint8)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            arr = _sixteen_to_eight(arr)
        img = Image.fromarray(np.ascontiguousarray(arr))
    else:
        raise TypeError(
            f"{what}: expected a file path, PIL image, numpy array or torch tensor; got {type(image).__name__}"
        )
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        img = Image.fromarray(_sixteen_to_eight(np.asarray(img)))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 1 else 1.0
        img = Image.fromarray(np.clip(np.round(arr / top * 255), 0, 255).astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def to_display_array(image, *, exif_transpose: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 view of any supported image, for figures. Tensors are de-normalised."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4:
            t = t[0]
        t = denormalize(t).clamp(0, 1)
        return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.asarray(to_pil_rgb(image, exif_transpose=exif_transpose))


def preprocess_image(
    image, size: int, *, device=None, exif_transpose: bool = True, what: str = "image"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """An image as the network input.

    Args:
        image: path, PIL image, numpy array, or a normalised tensor (C, H, W) / (1, C, H, W).
        size: the side S of the square network input.

    Returns:
        x: (1, 3, S, S) float32 normalised tensor on ``device``.
        orig_size: (H, W) of the image as given (after EXIF orientation).
    """
    if isinstance(image, torch.Tensor):
        if image.ndim not in (3, 4) or (image.ndim == 4 and image.shape[0] != 1):
            raise ValueError(f"{what}: a tensor image must have shape (C, H, W) or (1, C, H, W); got {tuple(image.shape)}")
        t = image.reshape(1, *image.shape[-3:])
        if t.shape[1] != 3:
            raise ValueError(f"{what}: a tensor image must have 3 channels (normalised RGB); got {t.shape[1]}")
        orig = (int(t.shape[-2]), int(t.shape[-1]))
        t = F.interpolate(t.float(), size=(size, size), mode="bilinear", align_corners=False)
        return t.to(device) if device is not None else t, orig
    pil = to_pil_rgb(image, exif_transpose=exif_transpose, what=what)
    orig = (pil.height, pil.width)
    resized = pil.resize((size, size), Image.BILINEAR)
    t = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    t = t.to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    t = t.sub(mean).div(std).unsqueeze(0)
    return (t.to(device) if device is not None else t), orig


def mask_to_numpy(mask, *, mask_value: int | None = None, exif_transpose: bool = True, what: str = "mask") -> np.ndarray:
    """Any supported mask as an (H, W) bool numpy array: foreground is ``> 0``, or ``== mask_value``.

    Colour masks count a pixel as foreground when any channel is non-zero
    (or, with ``mask_value``, when the first channel equals it).
    """
    if isinstance(mask, torch.Tensor):
        arr = mask.detach().cpu().numpy()
    elif isinstance(mask, (str, os.PathLike)):
        img = _open(mask, what)
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        arr = np.asarray(img)
    elif isinstance(mask, Image.Image):
        arr = np.asarray(ImageOps.exif_transpose(mask) if exif_transpose else mask)
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise TypeError(f"{what}: expected a file path, PIL image, numpy array or torch tensor; got {type(mask).__name__}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if mask_value is not None:
            arr = arr[..., 0]
        else:
            arr = (arr[..., :3] if arr.shape[2] >= 3 else arr).max(axis=2) if arr.shape[2] != 1 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{what}: a mask must be HxW (or 1xHxW, HxWx3); got shape {arr.shape}")
    if mask_value is not None:
        return arr == mask_value
    return arr > 0


def preprocess_mask(
    mask, size: int, *, mask_value: int | None = None, device=None, exif_transpose: bool = True,
    image_size_hw: tuple[int, int] | None = None, what: str = "mask",
) -> torch.Tensor:
    """A mask as a (1, S, S) bool tensor (nearest-neighbour resize of ``> 0`` / ``== mask_value``).

    ``image_size_hw``: the (H, W) of the image the mask belongs to; a warning is issued
    when the mask's aspect ratio differs from it by more than 1 %.
    """
    arr = mask_to_numpy(mask, mask_value=mask_value, exif_transpose=exif_transpose, what=what)
    if image_size_hw is not None:
        ih, iw = image_size_hw
        mh, mw = arr.shape
        if abs((mh / mw) / (ih / iw) - 1.0) > 0.01:
            _warn(f"{what} is {mh}x{mw} but its image is {ih}x{iw}: the aspect ratios differ, so the mask "
                  "will be stretched differently from the image")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.bool)
    if device is not None:
        t = t.to(device)
    t = F.interpolate(t[None, None].float(), size=(size, size), mode="nearest")[0] > 0.5
    return t
