"""A grid of settings against one setting on the same episodes, in the same run (``insid3lab bench --grid``).

An episode is what the evaluation does per episode: the reference shot given to the model (one
encoding), the target predicted and every prediction scored against the target's mask (the
evaluation's :func:`~insid3lab.eval.metrics.segmentation.intersection_union`). *One setting*
predicts with ``segment``; *the grid* with :func:`insid3lab.segment_grid` (one encoding of the
target, every setting decoded from it). Per episode the cases run in turn (a busy machine slows
both alike) and the fastest of ``repeats`` rounds counts; the target's encoding alone is timed the
same way, so that the cost of each extra setting can be given as a fraction of it.

Goals: the whole grid within :data:`GOAL` times one setting (for 48 settings: 4 τ × 3 merge
thresholds × 4 component counts at S = 512 with ViT-S/16 on the CPU), each extra setting within
:data:`GOAL_PER_SETTING` of one target's encoding.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from insid3lab.bench.concepts import time_interleaved
from insid3lab.bench.timing import ratio

__all__ = ["GOAL", "GOAL_PER_SETTING", "grid_episodes", "measure_grid"]

#: The goal for the grid against one setting, per episode.
GOAL = 1.5
#: The goal for each extra setting, as a fraction of one target's encoding.
GOAL_PER_SETTING = 0.05


def grid_episodes(count: int, size: int, *, seed: int = 0) -> list[tuple]:
    """``count`` synthetic episodes ``(reference image, reference mask, target image, target mask)`` of side ``size``
    (:func:`insid3lab.synthetic.sample_scene`: the same object in every image)."""
    from insid3lab.synthetic import sample_scene

    out = []
    for i in range(count):
        ref, ref_mask = sample_scene(seed + 2 * i, (size, size))
        tgt, tgt_mask = sample_scene(seed + 2 * i + 1, (size, size))
        out.append((ref, ref_mask, tgt, tgt_mask))
    return out


def _score(masks: Sequence, truth) -> None:
    """The evaluation's counts of each distinct prediction (settings with one mask share it)."""
    from insid3lab.eval.metrics.segmentation import intersection_union, match_size

    seen: set[int] = set()
    for m in masks:
        if id(m) not in seen:
            seen.add(id(m))
            pred = m.detach().cpu()
            intersection_union(pred, match_size(truth, tuple(pred.shape)))


def measure_grid(
    make_model: Callable[[], Any],
    episodes: Sequence[tuple],
    grid,
    *,
    repeats: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-episode time of every setting of ``grid`` against one setting (the model's own), in one run.

    Args:
        make_model: returns the :class:`~insid3lab.INSID3` at the one setting (the grid's base).
        episodes: ``(reference image, reference mask, target image, target mask or None)`` each.
        grid: anything :func:`insid3lab.segment_grid` takes (axes, a list of settings, a ``SettingsGrid``).
        repeats: timed rounds per episode (the fastest run of each case counts).
        log: receives status lines.

    Returns:
        a JSON-ready dict: ``settings`` (count), ``encodings`` (per image), ``episodes``, ``repeats``,
        ``per_episode_s`` (mean over episodes of ``one``, ``grid`` and ``encoding``, the target's encoding
        alone), ``ratio`` (grid / one), ``per_extra_setting_s`` ((grid - one) / (settings - 1)),
        ``per_extra_setting_of_encoding`` (that over the encoding); the same from the times after the target's
        encoding (the reference set, the target encoded; less exposed to a busy machine): ``after_encoding_s``
        (``one``, ``grid``), ``ratio_from_decode`` ((one - its decode + the grid's decode) / one),
        ``per_extra_setting_from_decode_s``, ``per_extra_setting_from_decode_of_encoding``; ``goal``,
        ``goal_per_setting``.
    """
    from insid3lab import SettingsGrid, segment_grid

    say = log or (lambda msg: None)
    model = make_model()
    g = SettingsGrid.from_spec(grid, model.params)
    device = model.device

    def one(ep) -> None:
        model.clear_reference()
        model.set_reference(ep[0], ep[1])
        _score([model.segment(ep[2])], _truth(ep))

    def every(ep) -> None:
        model.clear_reference()
        model.set_reference(ep[0], ep[1])
        _score(segment_grid(model, ep[2], g), _truth(ep))

    times: dict[str, list[float]] = {"one": [], "grid": [], "encoding": []}
    after: dict[str, list[float]] = {"one": [], "grid": []}
    for i, ep in enumerate(episodes):
        say(f"{len(g)} settings against one: episode {i + 1}/{len(episodes)}")
        cases = {"one": lambda t, ep=ep: one(ep), "grid": lambda t, ep=ep: every(ep),
                 "encoding": lambda t, ep=ep: model.encode(ep[2])}  # fmt: skip
        for name, (s, _) in time_interleaved(cases, repeats, device, warmup=i == 0).items():
            times[name].append(s)
        # the same after the target's encoding (the reference set): shorter runs, less exposed to a busy machine
        enc = model.encode(ep[2])
        truth = _truth(ep)
        decode = {"one": lambda t, e=enc, y=truth: _score([model.decode(e)], y),
                  "grid": lambda t, e=enc, y=truth: _score(segment_grid(model, e, g), y)}  # fmt: skip
        for name, (s, _) in time_interleaved(decode, repeats, device, warmup=i == 0).items():
            after[name].append(s)
    per = {k: statistics.fmean(v) for k, v in times.items()}
    dec = {k: statistics.fmean(v) for k, v in after.items()}
    extra = (per["grid"] - per["one"]) / max(len(g) - 1, 1)
    extra_decode = (dec["grid"] - dec["one"]) / max(len(g) - 1, 1)
    return {
        "settings": len(g),
        "axes": {n: [str(v) for v in vs] for n, vs in g.axes.items()},
        "encodings": g.encodings(),
        "episodes": len(episodes),
        "repeats": repeats,
        "per_episode_s": per,
        "ratio": ratio(per["grid"], per["one"]),
        "per_extra_setting_s": extra,
        "per_extra_setting_of_encoding": ratio(extra, per["encoding"]),
        "after_encoding_s": dec,
        "ratio_from_decode": ratio(per["one"] - dec["one"] + dec["grid"], per["one"]),
        "per_extra_setting_from_decode_s": extra_decode,
        "per_extra_setting_from_decode_of_encoding": ratio(extra_decode, per["encoding"]),
        "goal": GOAL,
        "goal_per_setting": GOAL_PER_SETTING,
    }


def _truth(ep: tuple):
    mask = ep[3] if len(ep) > 3 and ep[3] is not None else np.zeros(np.asarray(ep[2]).shape[:2], dtype=bool)
    return torch.from_numpy(np.asarray(mask, dtype=bool))
