"""The inputs of ``insid3lab bench``: synthetic scenes drawn from a seed, or the user's files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from insid3lab.synthetic.scenes import object_scene

__all__ = ["SYNTHETIC_TARGETS", "load_inputs", "save_inputs", "synthetic_inputs"]

#: Synthetic targets timed when no count and no target image is given.
SYNTHETIC_TARGETS = 8


def synthetic_inputs(shots: int, targets: int, *, seed: int = 0, size: tuple[int, int] = (480, 640)):
    """Reference shots and targets showing one object of a shared colour among distractors.

    Args:
        shots: number k of reference (image, mask) pairs.
        targets: number of target images.
        seed: everything is a function of the seed.
        size: (H, W) of the reference images; targets vary around it (0.75x to 1.25x per side).

    Returns:
        ``refs``: list of (PIL image, PIL "L" mask with 255 on the object), ``targets``: list of PIL images.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    colour = rng.uniform(0, 225, 3)
    refs = []
    for _ in range(shots):
        img, obj = object_scene(rng, size[0], size[1], colour)
        refs.append((Image.fromarray(img), Image.fromarray(obj.astype(np.uint8) * 255)))
    tgts = []
    for _ in range(targets):
        h = int(size[0] * rng.uniform(0.75, 1.25))
        w = int(size[1] * rng.uniform(0.75, 1.25))
        tgts.append(Image.fromarray(object_scene(rng, h, w, colour)[0]))
    return refs, tgts


def load_inputs(
    shots: int,
    targets: int | None,
    *,
    seed: int = 0,
    ref_images: Sequence[str] | None = None,
    ref_masks: Sequence[str] | None = None,
    target_images: Sequence[str] | None = None,
):
    """The benchmark's (refs, targets): the given files where given, synthetic ones otherwise.

    ``targets``: how many targets are timed (None: each given target once, else
    :data:`SYNTHETIC_TARGETS` synthetic ones); given target images are repeated in turn to that count.

    Raises:
        ValueError: a reference image without its mask.
    """
    from insid3lab.core.imageio import open_image

    n = targets if targets is not None else (len(target_images) if target_images else SYNTHETIC_TARGETS)
    synth_refs, synth_targets = synthetic_inputs(0 if ref_images else shots, 0 if target_images else n, seed=seed)
    if ref_images:
        if not ref_masks or len(ref_masks) != len(ref_images):
            raise ValueError(
                f"{len(ref_images)} reference image(s) but {len(ref_masks or [])} mask(s): give one mask per image"
            )
        refs = [(open_image(r, what="reference image"), open_image(m, what="reference mask"))
                for r, m in zip(ref_images, ref_masks)]  # fmt: skip
    else:
        refs = synth_refs
    if target_images:
        given = [open_image(t, what="target image") for t in target_images]
        tgts = [given[i % len(given)] for i in range(n)]
    else:
        tgts = synth_targets
    return refs, tgts


def save_inputs(folder: Path, refs, targets) -> tuple[list[str], list[str], list[str]]:
    """Write refs and targets as PNG files in ``folder``; returns their paths (images, masks, targets)."""
    paths_r, paths_m, paths_t = [], [], []
    for i, (img, m) in enumerate(refs):
        paths_r.append(str(folder / f"ref{i}.png"))
        paths_m.append(str(folder / f"ref{i}_mask.png"))
        img.save(paths_r[-1])
        m.save(paths_m[-1])
    for i, t in enumerate(targets):
        paths_t.append(str(folder / f"target{i}.png"))
        t.save(paths_t[-1])
    return paths_r, paths_m, paths_t
