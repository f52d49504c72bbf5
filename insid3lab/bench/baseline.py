"""The authors' procedure, for ``insid3lab bench`` to measure against and for tests to compare with.

The reference shots pass through the backbone again with every target and everything is
recomputed per target, in the authors' call order (their ``models/insid3.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .timing import Stages as _Stages
from .timing import encoder_device as _encoder_device
from .timing import sync as _sync

__all__ = ["baseline_basis", "baseline_segment"]


@torch.no_grad()
def baseline_basis(encoder, image_size: int, svd_components: int) -> Tensor:
    """The positional basis as the authors build it when their model is created: (C, r).

    Features of the normalised black image (at the encoder's own precision, as the
    pipeline computes its basis in every mode), L2-normalised, centred over positions;
    the first ``svd_components`` left singular vectors (at most min(C, h*w) exist).
    """
    from ..preprocess import black_image
    from ..stages.features import extract_features

    device = _encoder_device(encoder)
    f = F.normalize(extract_features(encoder, black_image(image_size, device=device)), p=2, dim=1)
    E = f.permute(1, 0, 2, 3).reshape(f.shape[1], -1)
    E = E - E.mean(dim=1, keepdim=True)
    U = torch.linalg.svd(E, full_matrices=False)[0]
    return U[:, :svd_components].contiguous()


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
    """One target segmented by the authors' procedure (nothing is cached between targets).

    The reference shots go through the backbone again together with the target; every
    image is debiased; each shot's mask is brought to the grid and the prototype rebuilt;
    the whole (hr*wr) x (h*w) similarity of every shot is formed; the target is clustered
    by scikit-learn on the CPU; cluster prototypes and mean similarities are computed one
    cluster at a time.

    Args:
        encoder: the backbone (Meta's ``get_intermediate_layers`` contract).
        basis: (C, r) positional basis from :func:`baseline_basis`.
        reference_images: (k, 3, S, S) normalised reference images on the encoder's device.
        reference_masks: (k, S, S) bool reference masks.
        target: the target image (path, PIL image, array or normalised tensor).
        image_size: S.
        tau, merge_threshold: as in :class:`~insid3lab.INSID3`.
        autocast_dtype: run the backbone under autocast in this dtype.
        resize_to_orig_size: return the mask at the target's original size.
        timings: a dict to fill with seconds per stage (:data:`BASELINE_STAGES`).

    Returns:
        (H, W) bool mask (S x S with ``resize_to_orig_size=False``).
    """
    from sklearn.cluster import AgglomerativeClustering

    from ..preprocess import preprocess_image
    from ..stages.features import extract_features
    from ..stages.prototype import downsample_mask
    from ..stages.upsampling import upsample_mask

    device = reference_images.device
    stage = _Stages(device, timings)
    k = reference_images.shape[0]
    with stage("preprocess"):
        x, orig = preprocess_image(target, image_size, device=device, what="target image")
    with stage("features"):
        feats = extract_features(encoder, torch.cat([reference_images, x]), autocast_dtype=autocast_dtype)
        feats = F.normalize(feats, p=2, dim=1)  # (k+1, C, h, w)
    n, C, h, w = feats.shape
    with stage("debias"):
        P = torch.eye(C, device=device, dtype=feats.dtype) - basis @ basis.T
        deb = F.normalize(torch.matmul(P.unsqueeze(0), feats.reshape(n, C, h * w)).reshape(n, C, h, w), p=2, dim=1)
    tgt, tgt_deb = feats[k], deb[k]
    with stage("prototype"):
        masks_low = [downsample_mask(reference_masks[s], h, w) for s in range(k)]
        per_shot = [deb[s][:, masks_low[s]].mean(dim=1) for s in range(k)]
        p = F.normalize(torch.stack(per_shot).mean(dim=0), p=2, dim=0)
    with stage("forward"):
        sim = torch.einsum("bchw,cd->bhw", tgt_deb.unsqueeze(0), p.unsqueeze(1))[0]
        fwd = sim > 0
        if int(fwd.sum()) == 0:
            fwd = sim > float(torch.quantile(sim.flatten(), 0.9))
    with stage("backward"):
        votes = torch.zeros(h, w, dtype=torch.int32, device=device)
        for s in range(k):
            full = torch.einsum("bchw,bcxy->bhwxy", deb[s].unsqueeze(0), tgt_deb.unsqueeze(0))[0]  # (h, w, h, w)
            best = full.permute(2, 3, 0, 1).reshape(h, w, h * w).argmax(dim=2)
            votes += masks_low[s].reshape(-1)[best].to(torch.int32)
        cand = fwd & (votes >= math.ceil(k / 2))
    if int(cand.sum()) == 0:
        low = cand
    else:
        with stage("clustering"):
            X = tgt.reshape(C, -1).T
            D = (1.0 - (X @ X.T).clamp(-1, 1)).cpu().numpy()
            model = AgglomerativeClustering(
                n_clusters=None, metric="precomputed", linkage="average", distance_threshold=float(1.0 - tau)
            )
            labels = torch.from_numpy(model.fit_predict(D).astype(np.int64)).to(device).reshape(h, w)
            K = int(labels.max()) + 1
        with stage("aggregation"):
            flat = labels.reshape(-1)
            X_deb = tgt_deb.reshape(C, -1).T

            def prototypes(feat: Tensor) -> Tensor:
                rows = []
                for c in range(K):
                    members = flat == c
                    rows.append(F.normalize(feat[members].mean(dim=0), p=2, dim=0))
                return torch.stack(rows)

            P_deb = prototypes(X_deb)
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
    with stage("upsampling"):
        up = upsample_mask(low, image_size, image_size)
        out = upsample_mask(up, *orig) if resize_to_orig_size else up
    _sync(device)
    return out
