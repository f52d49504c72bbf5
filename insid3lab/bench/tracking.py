"""Per-frame time of ``INSID3.track`` with a memory against one ``segment(target)``, in the same run.

``insid3lab bench --frames N`` (and ``benchmarks/bench_track.py``). The baseline is
``set_reference(first frame, first mask)`` then ``segment(frame)`` for every later frame; the
tracked time of a frame is the time :meth:`insid3lab.Tracker.track` takes to yield it (its one
encoding, its debiasing and the decode against 1 + memory shots). Frames 1..T-1 are timed in
both (the first frame is the reference in both), the two paths back to back per frame, which
one goes first alternating, so that both see the same load of the machine. The ratio is the
median over frames and rounds of (track time / segment time) of a frame. Goal: at most
:data:`GOAL` with memory 4.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from insid3lab.bench.timing import sync

__all__ = ["GOAL", "MEMORY", "measure_tracking", "paired_times", "sequence_inputs"]

#: The goal for the per-frame time of ``track`` over ``segment``.
GOAL = 1.15
#: The memory the goal is stated for.
MEMORY = 4


def sequence_inputs(frames: int, *, seed: int = 0, size: tuple[int, int] = (480, 640)):
    """A synthetic sequence (:func:`insid3lab.synthetic.video.moving_object_sequence`): (list of T frames, first mask)."""
    from insid3lab.synthetic.video import moving_object_sequence

    video, maps = moving_object_sequence(frames, size, seed=seed)
    return list(video), maps[0] == 1


def paired_times(model, frames, first_mask, memory: int, min_confidence: float) -> tuple[list, list, int]:
    """Seconds of ``segment`` and of ``track`` for every later frame, timed back to back per frame.

    ``model``'s references are replaced by the first frame. Returns (segment seconds, track
    seconds, shots used for the last frame).
    """
    from insid3lab.tasks.tracking import Tracker

    def timed(fn) -> float:
        sync(model.device)
        t0 = time.perf_counter()
        fn()
        sync(model.device)
        return time.perf_counter() - t0

    model.clear_reference()
    model.set_reference(frames[0], first_mask)  # the baseline's reference: the first frame
    tracker = Tracker(model, memory=memory, min_confidence=min_confidence)
    gen = tracker.track(frames, first_mask, progress=False)
    next(gen)  # the first frame: its encoding is the reference, as set_reference in the baseline
    seg, trk = [], []
    for t, frame in enumerate(frames[1:]):
        pair = [("segment", lambda f=frame: model.segment(f)), ("track", lambda: next(gen))]
        for name, fn in pair if t % 2 == 0 else pair[::-1]:
            (seg if name == "segment" else trk).append(timed(fn))
    return seg, trk, tracker.records[-1].shots[1]


def measure_tracking(model, frames, first_mask, *, memory: int = MEMORY, min_confidence: float = -1.0,
                     rounds: int = 1, warmup: bool = True, log=None) -> dict[str, Any]:  # fmt: skip
    """``track`` (with ``memory``) against ``segment`` per frame on one sequence.

    Args:
        model: an :class:`~insid3lab.INSID3` (its references are replaced).
        frames: a list of T >= 2 frames (arrays, paths, PIL images); first_mask: the first frame's mask.
        min_confidence: the memory's rule (default -1: every frame is remembered, the most work).
        rounds: passes over the sequence; warmup: one untimed pass over the first three frames first.

    Returns:
        a JSON-ready dict: ``segment_s_per_frame`` and ``track_s_per_frame`` (medians), ``ratio``
        (median of the per-frame ratios), ``pairs``, ``shots_last_frame``, ``memory``, ``goal``.
    """
    if len(frames) < 2:
        raise ValueError(f"frames: {len(frames)} frame(s); tracking needs at least 2")
    say = log or (lambda msg: None)
    if warmup:
        say("tracking: warm-up of both paths")
        paired_times(model, frames[:3], first_mask, memory, min_confidence)
    seg, trk, shots = [], [], 0
    for r in range(rounds):
        say(f"tracking {len(frames)} frames against segment, round {r + 1}/{rounds}")
        a, b, shots = paired_times(model, frames, first_mask, memory, min_confidence)
        seg += a
        trk += b
    return {
        "frames": len(frames),
        "memory": memory,
        "rounds": rounds,
        "pairs": len(seg),
        "shots_last_frame": shots,
        "segment_s_per_frame": statistics.median(seg),
        "track_s_per_frame": statistics.median(trk),
        "ratio": statistics.median(b / a for a, b in zip(seg, trk)),
        "goal": GOAL,
    }
