"""Every setting of a grid with one model: the target encoded once per image size, the rest shared.

:func:`segment_grid` is :meth:`~insid3lab.INSID3.segment` for many settings at once: the
references and the target are encoded once per image size (``image_size`` is the only field
that changes an encoding), the debiased features once per debiasing (r and the basis images),
and the rest is :func:`insid3lab.method.grid_decode.decode_shared`. Each mask equals the mask
``segment`` gives with that setting. :func:`encodings` and :func:`debiasings` are the two loops,
shared with the many-concept grid of :mod:`insid3lab.tasks.grid`.

While a grid runs, the model's ``params`` are set to each setting in turn (that is how the
shots follow the image size and the debiasing); they are restored at the end.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor

from insid3lab.core.preprocess import denormalize
from insid3lab.method.grid import SettingsGrid
from insid3lab.method.grid_decode import ClusterCuts, Upsampled, decode_shared, group_by
from insid3lab.method.params import Params
from insid3lab.model.basis import basis_tag
from insid3lab.model.encoding import Encoded

__all__ = ["check_grid", "debiasings", "encodings", "grid_settings", "restored_params", "segment_grid", "shared_work"]


def grid_settings(model, grid) -> list[Params]:
    """The settings of ``grid``: a :class:`~insid3lab.method.grid.SettingsGrid`, a list of :class:`Params`,
    or what :meth:`SettingsGrid.from_spec` reads (based on ``model.params``)."""
    if isinstance(grid, Sequence) and grid and all(isinstance(p, Params) for p in grid):
        return list(grid)
    return SettingsGrid.from_spec(grid, model.params).settings


def check_grid(model, settings: Sequence[Params]) -> None:
    """A ValueError (one line) for a setting the model cannot run (an image size off its patch grid)."""
    bad = sorted({p.image_size for p in settings if p.image_size % model.patch_size})
    if bad:
        raise ValueError(f"grid: image_size={bad[0]}: must be a positive multiple of the patch size "
                         f"{model.patch_size} (e.g. 512, 768, 1024)")  # fmt: skip


@contextmanager
def restored_params(model):
    """Restore ``model.params`` when the block ends (the grid's loops set them to each setting in turn)."""
    saved = model.params
    try:
        yield
    finally:
        model.params = saved


def encodings(model, target, settings: Sequence[Params]) -> Iterator[tuple[Encoded, list[int]]]:
    """Per image size: ``(the target encoded at it, the indices of its settings)``.

    ``model.params`` is the first of those settings while the caller works on them (so the shots are
    encoded at that size on first use). ``target`` may be an :class:`~insid3lab.model.encoding.Encoded` from
    ``model.encode``: used as it is at its own size.
    """
    for idxs in group_by(range(len(settings)), lambda i: settings[i].image_size).values():
        model.params = settings[idxs[0]]
        if isinstance(target, Encoded):
            # an encoding at this size serves as it is; at another size, the image it came from is encoded again
            yield (
                (target if target.size == model.image_size else model.encode(target.source, what="target image")),
                idxs,
            )
        else:
            yield model.encode(target, what="target image"), idxs


def _debiasing(model, p: Params) -> tuple:
    r = model.positional.effective_components(p.svd_components) if p.debias else 0
    return (r, basis_tag(p) if r else None)


def debiasings(model, settings: Sequence[Params], idxs: Sequence[int]) -> Iterator[list[int]]:
    """The indices ``idxs`` grouped by debiasing (r in use and basis images), one group at a time;
    ``model.params`` is the group's first setting while the caller works on it."""
    for group in group_by(idxs, lambda i: _debiasing(model, settings[i])).values():
        model.params = settings[group[0]]
        yield group


def shared_work(model, enc: Encoded) -> tuple[ClusterCuts, Upsampled]:
    """The target's :class:`~insid3lab.method.grid_decode.ClusterCuts` and
    :class:`~insid3lab.method.grid_decode.Upsampled` for one encoding."""
    out_size = enc.orig_size if model.resize_to_orig_size else None
    return ClusterCuts(enc.features_norm), Upsampled(denormalize(enc.image[0]), out_size)


def segment_grid(model, target, grid) -> list[Tensor]:
    """The mask of ``model``'s concept in ``target`` for every setting of ``grid``.

    Args:
        model: an :class:`~insid3lab.INSID3` with its reference shots set (one concept).
        target: the target image (path, PIL image, array or normalised tensor), or its encoding from
            ``model.encode`` (used as it is for the settings of its image size).
        grid: a :class:`~insid3lab.method.grid.SettingsGrid`, a list of :class:`Params`, ``{name: [values]}``
            axes or a list of ``{name: value}`` settings (these two based on ``model.params``).

    Returns:
        one (H, W) bool mask per setting, in order, as :meth:`~insid3lab.INSID3.segment` gives it with that
        setting; settings with the same mask share one tensor.

    Example:
        >>> masks = segment_grid(model, "target.jpg", {"tau": [0.5, 0.6], "merge_threshold": [0.1, 0.2]})
    """
    settings = grid_settings(model, grid)
    check_grid(model, settings)
    if not model.references:
        raise RuntimeError("no reference yet: call set_reference(image, mask) before segment_grid()")
    out: list = [None] * len(settings)
    with restored_params(model):
        for enc, idxs in encodings(model, target, settings):
            cuts, upsampled = shared_work(model, enc)
            taus = len({settings[i].tau for i in idxs})
            for group in debiasings(model, settings, idxs):
                ref = model.shots.state()
                target_deb = model.positional.debias(enc.features_norm)
                masks = decode_shared(ref["features_deb"], ref["masks_low"], ref["prototype"], enc.features_norm,
                                      target_deb, [settings[i] for i in group], cuts, upsampled, taus=taus)  # fmt: skip
                for i, m in zip(group, masks):
                    out[i] = m
    return out
