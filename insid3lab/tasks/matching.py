"""Keypoint correspondence with a model: encode both images, debias, match (what ``INSID3.match`` runs).

The matching itself is the pure stage :func:`insid3lab.stages.correspondence.match_keypoints`
(a keypoint's descriptor, its similarity map over the target, a Gaussian window around the
peak and a soft arg-max). This function only prepares its inputs with the model's public
methods: the encoding at the model's image size, and the debiasing with r components for
this call only (the paper uses r = 20 for correspondence with ViT-B, whatever the
segmentation setting); the model's settings and shots are not changed.
"""

from __future__ import annotations

from torch import Tensor

from insid3lab.core.preprocess import preprocess_points
from insid3lab.stages.correspondence import match_keypoints

__all__ = ["match_points"]


def match_points(
    model,
    ref_points,
    target,
    reference_image=None,
    *,
    debiased: bool = True,
    svd_components: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Where the reference keypoints land in the target.

    Args:
        model: an :class:`~insid3lab.INSID3`.
        ref_points: (N, 2) (x, y) keypoints in original reference pixels (tensor, array or list).
        target: the target image (path, PIL image, array or normalised tensor).
        reference_image: the reference; default the model's first shot (at the current size).
        debiased: match debiased features (the paper's choice) or the normalised ones.
        svd_components: r for this call (default the model's).

    Returns:
        matches (N, 2) float (x, y) in original target pixels, and the (N, h, w) similarity maps.
    """
    if reference_image is not None:
        ref = model.encode(reference_image, what="reference image")
    else:
        refs = model.references_at_current_size()
        if not refs:
            raise RuntimeError("match() needs a reference: pass reference_image= or call set_reference(image) first")
        ref = refs[0]
    tgt = model.encode(target, what="target image")
    pts = preprocess_points(ref_points, ref.orig_size, what="reference keypoints").to(model.device)
    fr, ft = ref.features_norm, tgt.features_norm
    if debiased:
        fr = model.debias_features(fr, components=svd_components)
        ft = model.debias_features(ft, components=svd_components)
    return match_keypoints(fr, ft, pts, ref.orig_size, tgt.orig_size)
