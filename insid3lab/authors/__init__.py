"""The authors' procedure, written once and independently of :mod:`insid3lab.stages`.

This is INSID3 as the authors' ``models/insid3.py`` runs it, in their call order: the
positional basis from a black image when the model is built (``_build_positional_basis``);
then for every target the reference shots go through the backbone again together with the
target (``predict_mask`` / ``_extract_features``), every image is debiased
(``_debias_features``), each shot's mask is brought to the grid and the prototype rebuilt,
the whole (hr*wr) x (h*w) similarity of every shot is formed (``_locate_candidates``), the
target is clustered by scikit-learn on the CPU (``utils/clustering.agglomerative_clustering``)
and the cluster statistics are computed one cluster at a time (``_seed_and_aggregate``,
``compute_cluster_prototypes``), then the mask is upsampled (``_finalize_mask`` with
``mask_refiner="bilinear"``).

It uses only torch, PIL and scikit-learn: it shares no code with the library's stages, so
equality of masks between it and :class:`~insid3lab.INSID3` is evidence, and it is the
re-encoding baseline that ``insid3lab bench`` measures against.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = ["baseline_basis", "baseline_segment", "load_image", "load_mask", "segment"]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _normalise(x: Tensor) -> Tensor:
    mean = torch.tensor(_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def load_image(image, image_size: int, device=None) -> tuple[Tensor, tuple[int, int]]:
    """(1, 3, S, S) normalised input and the original (H, W), as the authors' ``utils/data.load_image``.

    A path, PIL image or (H, W[, 3]) uint8 array is converted to RGB, resized with PIL's bilinear
    filter (what torchvision's ``Resize`` does on a PIL image), scaled to [0, 1] and normalised;
    a (C, H, W) or (1, C, H, W) tensor is taken as normalised and resized bilinearly.
    """
    if isinstance(image, Tensor):
        x = image.reshape(-1, *image.shape[-3:]).float()
        orig = (int(x.shape[-2]), int(x.shape[-1]))
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return x.to(device), orig
    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    orig = (image.height, image.width)
    arr = np.array(image.resize((image_size, image_size), Image.BILINEAR), np.uint8)
    x = torch.from_numpy(arr).permute(2, 0, 1).float().div(255)
    return _normalise(x).unsqueeze(0).to(device), orig


def load_mask(mask, image_size: int, device=None) -> Tensor:
    """(S, S) bool mask, foreground ``> 0``, nearest-neighbour resize (the authors' ``utils/data.load_mask``)."""
    if isinstance(mask, (str, os.PathLike)):
        mask = Image.open(mask)
    m = mask > 0 if isinstance(mask, Tensor) else torch.from_numpy(np.array(mask) > 0)
    m = m.reshape(1, 1, *m.shape[-2:]).float()
    return (F.interpolate(m, size=(image_size, image_size), mode="nearest")[0, 0] > 0.5).to(device)


def _device(encoder) -> torch.device:
    dev = getattr(encoder, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(encoder.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _features(encoder, x: Tensor, autocast_dtype=None) -> Tensor:
    """(B, 3, S, S) -> (B, C, h, w) float32 last-block patch features (Meta's contract)."""
    if autocast_dtype is None:
        return encoder.get_intermediate_layers(x, n=1, reshape=True)[0].float()
    with torch.autocast(device_type=x.device.type, dtype=autocast_dtype, cache_enabled=False):
        return encoder.get_intermediate_layers(x, n=1, reshape=True)[0].float()


@torch.no_grad()
def baseline_basis(encoder, image_size: int, svd_components: int) -> Tensor:
    """The positional basis as the authors build it with their model (``_build_positional_basis``): (C, r).

    Features of the normalised black image (at the encoder's own precision), L2-normalised,
    centred over positions; the first ``svd_components`` left singular vectors (at most
    min(C, h*w) exist).
    """
    black = _normalise(torch.zeros(3, image_size, image_size)).unsqueeze(0).to(_device(encoder))
    f = F.normalize(_features(encoder, black), p=2, dim=1)
    E = f.permute(1, 0, 2, 3).reshape(f.shape[1], -1)
    E = E - E.mean(dim=1, keepdim=True)
    U = torch.linalg.svd(E, full_matrices=False)[0]
    return U[:, :svd_components].contiguous()


def _mask_to_grid(mask: Tensor, h: int, w: int) -> Tensor:
    """(S, S) bool -> (h, w) bool, never empty (the authors' ``utils/data.downsample_mask``)."""
    m = mask[None, None].float()
    down = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0] > 0.5
    if down.sum() == 0:
        down = F.interpolate(m, size=(h, w), mode="nearest")[0, 0] > 0.5
        if down.sum() == 0:
            centre = torch.argwhere(mask > 0).float().mean(dim=0)
            cy, cx = (centre / (mask.shape[-1] // w)).int()
            down[cy, cx] = True
    return down


def _resize(mask: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of a bool mask, ``> 0.5`` (the authors' ``utils/refinement.upsample_mask``)."""
    return (
        F.interpolate(mask[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0] > 0.5
    )


class _Clock:
    """Seconds per named stage into ``times`` (CUDA synchronised around each); nothing when ``times`` is None."""

    def __init__(self, device: torch.device, times: dict[str, float] | None):
        self.device, self.times = device, times

    @contextmanager
    def __call__(self, name: str):
        if self.times is None:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


@torch.no_grad()
def baseline_segment(
    encoder,
    basis: Tensor,
    reference_images: Tensor,
    reference_masks: Tensor,
    target,
    *,
    image_size: int,
    tau: float = 0.6,
    merge_threshold: float = 0.2,
    autocast_dtype: torch.dtype | None = None,
    resize_to_orig_size: bool = True,
    timings: dict[str, float] | None = None,
) -> Tensor:
    """One target segmented by the authors' procedure (``predict_mask``; nothing is cached between targets).

    Args:
        encoder: the backbone (Meta's ``get_intermediate_layers`` contract).
        basis: (C, r) positional basis from :func:`baseline_basis`.
        reference_images: (k, 3, S, S) normalised reference images on the encoder's device.
        reference_masks: (k, S, S) bool reference masks.
        target: the target image (path, PIL image, uint8 array or normalised tensor; see :func:`load_image`).
        image_size: S.
        tau, merge_threshold: τ and the merge threshold.
        autocast_dtype: run the backbone under autocast in this dtype.
        resize_to_orig_size: return the mask at the target's original size.
        timings: a dict to fill with seconds per stage (preprocess, features, debias, prototype,
            forward, backward, clustering, aggregation, upsampling).

    Returns:
        (H, W) bool mask (S x S with ``resize_to_orig_size=False``).
    """
    from sklearn.cluster import AgglomerativeClustering

    device = reference_images.device
    clock = _Clock(device, timings)
    k = reference_images.shape[0]
    with clock("preprocess"):
        x, orig = load_image(target, image_size, device)
    # predict_mask: the shots and the target through the backbone together
    with clock("features"):
        feats = F.normalize(_features(encoder, torch.cat([reference_images, x]), autocast_dtype), p=2, dim=1)
    n, C, h, w = feats.shape
    # _debias_features: projection onto the complement of the positional subspace
    with clock("debias"):
        P = torch.eye(C, device=device, dtype=feats.dtype) - basis @ basis.T
        deb = F.normalize(torch.matmul(P.unsqueeze(0), feats.reshape(n, C, h * w)).reshape(n, C, h, w), p=2, dim=1)
    tgt, tgt_deb = feats[k], deb[k]
    # predict_mask: the reference prototype, averaged over the shots
    with clock("prototype"):
        masks_low = [_mask_to_grid(reference_masks[s], h, w) for s in range(k)]
        per_shot = [deb[s][:, masks_low[s]].mean(dim=1) for s in range(k)]
        p = F.normalize(torch.stack(per_shot).mean(dim=0), p=2, dim=0)
    # _locate_candidates, forward: positive similarity to the prototype (else its 0.9 quantile)
    with clock("forward"):
        sim = torch.einsum("bchw,cd->bhw", tgt_deb.unsqueeze(0), p.unsqueeze(1))[0]
        fwd = sim > 0
        if int(fwd.sum()) == 0:
            fwd = sim > float(torch.quantile(sim.flatten(), 0.9))
    # _locate_candidates, backward: each shot's whole similarity, a vote per target cell whose
    # nearest reference cell is in that shot's mask; majority of the shots
    with clock("backward"):
        votes = torch.zeros(h, w, dtype=torch.int32, device=device)
        for s in range(k):
            full = torch.einsum("bchw,bcxy->bhwxy", deb[s].unsqueeze(0), tgt_deb.unsqueeze(0))[0]  # (hr, wr, h, w)
            best = full.permute(2, 3, 0, 1).reshape(h, w, h * w).argmax(dim=2)
            votes += masks_low[s].reshape(-1)[best].to(torch.int32)
        cand = fwd & (votes >= math.ceil(k / 2))
    if int(cand.sum()) == 0:
        low = cand
    else:
        # utils/clustering.agglomerative_clustering: scikit-learn on the cosine distances, on the CPU
        with clock("clustering"):
            X = tgt.reshape(C, -1).T
            D = (1.0 - (X @ X.T).clamp(-1, 1)).cpu().numpy()
            model = AgglomerativeClustering(
                n_clusters=None, metric="precomputed", linkage="average", distance_threshold=float(1.0 - tau)
            )
            labels = torch.from_numpy(model.fit_predict(D).astype(np.int64)).to(device).reshape(h, w)
            K = int(labels.max()) + 1
        # _seed_and_aggregate with compute_cluster_prototypes: one cluster at a time
        with clock("aggregation"):
            flat = labels.reshape(-1)

            def prototypes(feat: Tensor) -> Tensor:
                return torch.stack([F.normalize(feat[flat == c].mean(dim=0), p=2, dim=0) for c in range(K)])

            P_deb = prototypes(tgt_deb.reshape(C, -1).T)
            ids, hits = labels[cand].unique(return_counts=True)
            sizes = labels.unique(return_counts=True)[1]
            area = torch.zeros(K, device=device)
            area[ids] = hits.float()
            area = area / sizes
            seed = int(ids[int((P_deb[ids] @ p).argmax())])
            P_orig = prototypes(X)
            intra = P_orig @ P_orig[seed]
            cross = torch.empty(K, device=device, dtype=sim.dtype)
            for c in range(K):
                cross[c] = sim[labels == c].mean()
            area[seed] = 1.0
            low = (cross * intra * area)[labels] > merge_threshold
    # _finalize_mask: bilinear to S x S, then to the original size
    with clock("upsampling"):
        up = _resize(low, image_size, image_size)
        out = _resize(up, *orig) if resize_to_orig_size else up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out


def segment(
    encoder,
    references,
    target,
    *,
    image_size: int,
    svd_components: int,
    tau: float = 0.6,
    merge_threshold: float = 0.2,
    resize_to_orig_size: bool = True,
) -> Tensor:
    """The authors' whole sequence for one target: build the basis, load the shots, segment.

    Args:
        encoder: the backbone.
        references: list of (image, mask) shots (anything :func:`load_image` / :func:`load_mask` read).
        target: the target image.
        image_size, svd_components, tau, merge_threshold, resize_to_orig_size: the settings.

    Returns:
        (H, W) bool mask.
    """
    device = _device(encoder)
    basis = baseline_basis(encoder, image_size, svd_components)
    images = torch.cat([load_image(img, image_size, device)[0] for img, _ in references])
    masks = torch.stack([load_mask(m, image_size, device) for _, m in references])
    return baseline_segment(
        encoder,
        basis,
        images,
        masks,
        target,
        image_size=image_size,
        tau=tau,
        merge_threshold=merge_threshold,
        resize_to_orig_size=resize_to_orig_size,
    )
