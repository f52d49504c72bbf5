"""Images and masks in, tensors out.

Accepted images: a file path, a PIL image, a numpy array (HWC uint8 RGB/RGBA, HW
grayscale, uint16, or float in [0, 1]) or a torch tensor (C, H, W) / (1, C, H, W)
that is *already normalised*: float, ``(pixel / 255 - mean) / std`` with the ImageNet
mean and std (values about -2.1 .. 2.6). Integer tensors are refused (pass raw pixels
as a numpy uint8 (H, W, 3) array or a PIL image); float tensors whose values exceed 10
in magnitude (raw 0..255 pixels) are refused, and those outside the normalised range
or entirely within [0, 1] (pixels not yet normalised) give a warning.
NaN or infinite values in an image, a mask or keypoints are refused.

Everything that is not a tensor is read by :func:`insid3lab.core.imageio.read_image` (the
package's one reader: bit depths, EXIF, pixel limit) as an 8-bit RGB PIL image, resized to
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

Masks: foreground is ``> 0`` (or ``== mask_value``). A mask read from a lossy format
(JPEG, WebP) is thresholded at ``>= 128`` instead, since compression noise makes
background pixels near the edges slightly non-zero.

Keypoints: (x, y) in pixels of the original image, x the column and y the row, with the
pixel (row i, column j) covering [j, j+1) x [i, i+1); a point must lie in the image:
0 <= x < W and 0 <= y < H.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from insid3lab.core.imageio import LOSSY_FORMATS, open_image, read_image
from insid3lab.core.warn import warn as _warn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "black_image",
    "check_image_tensor",
    "denormalize",
    "mask_to_numpy",
    "noise_images",
    "normalize",
    "preprocess_image",
    "preprocess_mask",
    "preprocess_points",
    "to_display_array",
    "to_pil_rgb",
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


def noise_images(count: int, size: int, seed: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``count`` Gaussian noise RGB images of side ``size``, normalised: (count, 3, size, size).

    Each pixel of channel c is drawn from N(mean_c, std_c²) with the ImageNet mean and std (so the
    images have the statistics the encoder was normalised for), clamped to [0, 1] so that each is an
    image that could be saved and read back, then normalised as every input is. Drawn on the CPU
    from ``torch.Generator().manual_seed(seed)``, so the images depend only on (count, size, seed),
    not on the device. The paper estimates the positional basis from noise images without saying
    which noise or how many; this distribution is a choice.
    """
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(count, 3, size, size, generator=g, dtype=torch.float32)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = (mean + std * z).clamp_(0.0, 1.0)
    return normalize(pixels).to(device=device, dtype=dtype)


# The package's one image reader, under the name the rest of the package knows it by.
to_pil_rgb = read_image


def to_display_array(image, *, exif_transpose: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 view of any supported image, for figures. Tensors are de-normalised."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4:
            t = t[0]
        t = denormalize(t).clamp(0, 1)
        return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.asarray(to_pil_rgb(image, exif_transpose=exif_transpose))


_NORMALISED_LO = (0.0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD)  # about -2.12
_NORMALISED_HI = (1.0 - min(IMAGENET_MEAN)) / min(IMAGENET_STD)  # about 2.64
_RAW_PIXELS = 10.0  # |value| above this: raw 0..255 pixels, not a normalised image
_HOW = (
    "a normalised image tensor is float (C, H, W) / (1, C, H, W) holding (pixel / 255 - mean) / std with the "
    "ImageNet mean and std; pass raw pixels as a numpy uint8 (H, W, 3) array or a PIL image instead"
)


def check_image_tensor(image: torch.Tensor, *, what: str = "image") -> None:
    """Refuse a tensor that is not a normalised RGB image; warn when its values look un-normalised.

    Accepted: float (3, H, W) or (1, 3, H, W), finite, values within +-10 (the normalised range
    is about [-2.12, 2.64]). Values beyond that range, or all within [0, 1], give a warning.
    """
    if image.ndim not in (3, 4) or (image.ndim == 4 and image.shape[0] != 1):
        raise ValueError(f"{what}: a tensor image must have shape (C, H, W) or (1, C, H, W); got {tuple(image.shape)}")
    if image.shape[-3] != 3:
        raise ValueError(f"{what}: a tensor image must have 3 channels (normalised RGB); got {image.shape[-3]}")
    if not torch.is_floating_point(image):
        raise ValueError(f"{what}: a {image.dtype} tensor is not a normalised image; {_HOW}")
    if image.numel() == 0:
        raise ValueError(f"{what}: the tensor image is empty ({tuple(image.shape)})")
    t = image.detach()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what}: the tensor image holds NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if max(abs(lo), abs(hi)) > _RAW_PIXELS:
        raise ValueError(f"{what}: the tensor's values span [{lo:.3g}, {hi:.3g}], like raw 0..255 pixels; {_HOW}")
    if lo < _NORMALISED_LO - 0.5 or hi > _NORMALISED_HI + 0.5:
        _warn(
            f"{what}: the tensor's values span [{lo:.3g}, {hi:.3g}], beyond the normalised range "
            f"[{_NORMALISED_LO:.2f}, {_NORMALISED_HI:.2f}]; {_HOW}"
        )
    elif lo >= 0.0 and hi <= 1.0:
        _warn(f"{what}: the tensor's values all lie in [0, 1], like pixels that are not normalised yet; {_HOW}")


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

    Raises:
        ValueError: an integer or non-finite tensor, one holding raw 0..255 values, a non-finite
            or out-of-range float array, an unreadable or too large file (the message names ``what``).
    """
    if isinstance(image, torch.Tensor):
        check_image_tensor(image, what=what)
        t = image.reshape(1, *image.shape[-3:])
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


def mask_to_numpy(
    mask, *, mask_value: int | None = None, exif_transpose: bool = True, what: str = "mask"
) -> np.ndarray:
    """Any supported mask as an (H, W) bool numpy array: foreground is ``> 0``, or ``== mask_value``.

    A mask read from a lossy file (JPEG, WebP; also such a PIL image straight from ``Image.open``)
    is thresholded at ``>= 128`` instead of ``> 0``. NaN or infinite values are refused.

    Colour masks count a pixel as foreground when any channel is non-zero
    (or, with ``mask_value``, when the first channel equals it).
    """
    lossy = False
    if isinstance(mask, torch.Tensor):
        arr = mask.detach().cpu()
        arr = (arr.float() if arr.dtype in (torch.bfloat16, torch.float16) else arr).numpy()
    elif isinstance(mask, (str, os.PathLike)):
        img = open_image(mask, what=what)
        lossy = img.format in LOSSY_FORMATS
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        arr = np.asarray(img)
    elif isinstance(mask, Image.Image):
        lossy = getattr(mask, "format", None) in LOSSY_FORMATS
        arr = np.asarray(ImageOps.exif_transpose(mask) if exif_transpose else mask)
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise TypeError(
            f"{what}: expected a file path, PIL image, numpy array or torch tensor; got {type(mask).__name__}"
        )
    if np.issubdtype(arr.dtype, np.inexact) and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{what}: the mask holds NaN or infinite values")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if mask_value is not None:
            arr = arr[..., 0]
        else:
            arr = (arr[..., :3] if arr.shape[2] >= 3 else arr).max(axis=2) if arr.shape[2] != 1 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{what}: a mask must be HxW (or 1xHxW, HxWx3); got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what}: the mask is {arr.shape[0]}x{arr.shape[1]} (H x W); a mask needs at least one pixel")
    if mask_value is not None:
        return arr == mask_value
    return arr >= 128 if lossy else arr > 0


def preprocess_mask(
    mask,
    size: int,
    *,
    mask_value: int | None = None,
    device=None,
    exif_transpose: bool = True,
    image_size_hw: tuple[int, int] | None = None,
    what: str = "mask",
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
            _warn(
                f"{what} is {mh}x{mw} but its image is {ih}x{iw}: the aspect ratios differ, so the mask "
                "will be stretched differently from the image"
            )
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.bool)
    if device is not None:
        t = t.to(device)
    t = F.interpolate(t[None, None].float(), size=(size, size), mode="nearest")[0] > 0.5
    return t


def preprocess_points(
    points, image_hw: tuple[int, int], *, what: str = "keypoints", image: str = "image"
) -> torch.Tensor:
    """Keypoints as an (N, 2) float32 tensor of (x, y) in pixels of the original image.

    Args:
        points: an (N, 2) tensor, array or nested list of (x, y); x is the column, y the row.
        image_hw: (H, W) of the image the points belong to.
        what, image: the points and their image in messages.

    A point must lie in the image: ``0 <= x < W`` and ``0 <= y < H`` (the pixel at row i,
    column j covers [j, j+1) x [i, i+1)). Arrays of any other shape ((2, N), flat lists,
    (N, 3)...) are refused rather than reshaped, as are NaN or infinite values.
    """
    H, W = (int(v) for v in image_hw)
    try:
        if isinstance(points, torch.Tensor):
            arr = points.detach().cpu().to(torch.float64).numpy()
        else:
            arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected an (N, 2) array of [x, y] numbers ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{what}: expected an (N, 2) array of [x, y] with N >= 1 (one point: [[x, y]]); got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{what}: point {bad} is {arr[bad].tolist()}, which holds NaN or infinite values")
    outside = (arr[:, 0] < 0) | (arr[:, 0] >= W) | (arr[:, 1] < 0) | (arr[:, 1] >= H)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{what}: point {bad} (x, y) = ({arr[bad, 0]:g}, {arr[bad, 1]:g}) lies outside the {W}x{H} {image} "
            f"(allowed 0 <= x < {W}, 0 <= y < {H}); {int(outside.sum())} of {len(arr)} points are outside"
        )
    return torch.from_numpy(arr.astype(np.float32))
