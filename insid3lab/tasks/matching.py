"""Keypoint correspondence over one model: encode both images, debias, match.

The matching itself is the pure stage :func:`insid3lab.stages.correspondence.match_keypoints`
(a keypoint's descriptor, its similarity map over the target, a Gaussian window around the
peak and a soft arg-max). :class:`KeypointMatcher` only prepares its inputs with the model's
public parts: the encoding at the model's image size, and the debiasing with r components for
this call only (the paper uses r = 20 for correspondence with ViT-B, whatever the
segmentation setting); the model's settings and shots are not changed. ``model.match``
(:mod:`insid3lab.tasks.shortcuts`) is the short form of :meth:`KeypointMatcher.match`.
"""

from __future__ import annotations

from insid3lab.core.preprocess import preprocess_points
from insid3lab.stages.correspondence import match_keypoints

__all__ = ["KeypointMatcher"]


class KeypointMatcher:
    """Where do a reference's keypoints land in a target, with the features of ``model``.

    Args:
        model: an :class:`~insid3lab.INSID3` (its encoder, image size and positional basis are used).

    Example:
        >>> KeypointMatcher(model).match([[120, 80]], "target.jpg", "reference.jpg")  # (1, 2) (x, y)
    """

    def __init__(self, model):
        self.model = model

    def match(
        self,
        ref_points,
        target=None,
        reference_image=None,
        debiased: bool = True,
        *,
        svd_components: int | None = None,
        return_maps: bool = False,
    ):
        """Keypoint correspondence: where do the reference keypoints land in the target?

        Args:
            ref_points: (N, 2) (x, y) keypoints in original reference pixels (tensor, array or list).
            target: the target image (path, PIL image, array or normalised tensor); default the one
                from ``model.set_target`` (after which the model's shots are forgotten, as ``segment()``).
            reference_image: the reference; default the model's first shot (at the current size).
            debiased: match debiased features (the paper's choice) or the normalised ones.
            svd_components: r for this call (default the model's).
            return_maps: also return the (N, h, w) similarity maps.

        Returns:
            (N, 2) float (x, y) in original target pixels; ``(matches, maps)`` with ``return_maps``.
        """
        model = self.model
        with model.shots.target_of("match", target) as image:
            ref = self._reference(reference_image)
            tgt = model.encode(image, what="target image")
            pts = preprocess_points(ref_points, ref.orig_size, what="reference keypoints").to(model.device)
            fr, ft = ref.features_norm, tgt.features_norm
            if debiased:
                fr = model.positional.debias(fr, components=svd_components)
                ft = model.positional.debias(ft, components=svd_components)
            matches, maps = match_keypoints(fr, ft, pts, ref.orig_size, tgt.orig_size)
        return (matches, maps) if return_maps else matches

    def _reference(self, image):
        """The reference encoded: ``image`` when given, else the model's first shot at the current size."""
        if image is not None:
            return self.model.encode(image, what="reference image")
        refs = self.model.shots.at_current_size()
        if not refs:
            raise RuntimeError("match() needs a reference: pass reference_image= or call set_reference(image) first")
        return refs[0]
