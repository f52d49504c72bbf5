"""Many concepts against one on the same targets, in the same run (``insid3lab bench --concepts N``).

One target encoding and one clustering serve every concept; only the matching, the seed, the
scores and the upsampling are per concept. Goal: N = 5 concepts cost at most :data:`GOAL` times
one concept per target.

The concepts come from the reference shot: concept 1 is its mask, concepts 2..N are vertical
strips of the rest of the image (:func:`concept_label_map`), all read from one label map (one
encoding of the reference, as ``set_reference(image, label_map, labels=...)``). Optionally N
reference images give the N concepts from N encodings. Per target, every case runs in turn
(so that a busy machine slows every case alike) and the fastest of ``repeats`` rounds counts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from insid3lab.bench.timing import ratio, sync

__all__ = ["GOAL", "concept_label_map", "measure_concepts", "time_interleaved"]

#: The goal for five concepts against one, on the same target in the same run.
GOAL = 1.3


def concept_label_map(mask, n: int) -> np.ndarray:
    """(H, W) uint8 label map of ``n`` concepts: 1 = ``mask``, 2..n = n - 1 vertical strips of the rest.

    Raises:
        ValueError: ``n`` < 1, an empty mask, or a strip the mask covers entirely.
    """
    m = np.asarray(mask)
    m = (m[..., 0] if m.ndim == 3 else m) > 0
    if n < 1:
        raise ValueError(f"concepts={n}: must be at least 1")
    if not m.any():
        raise ValueError("the reference mask is empty: concept 1 needs a non-empty mask")
    H, W = m.shape
    lm = np.where(m, 1, 0).astype(np.uint8)
    if n > 1:
        strip = (np.arange(W) * (n - 1)) // W  # column -> strip 0..n-2
        lm = np.where(m, 1, strip[None, :].repeat(H, 0) + 2).astype(np.uint8)
    missing = [v for v in range(1, n + 1) if not (lm == v).any()]
    if missing:
        raise ValueError(f"concept {missing[0]} of {n} has no pixel: the reference mask covers a whole strip")
    return lm


def time_interleaved(cases: dict[str, Callable], repeats: int, device, *, warmup: bool = True):
    """Run every case once untimed (``warmup``), then ``repeats`` rounds in turn; per case the fastest run.

    Args:
        cases: ``{name: fn(timings: dict)}``; each call adds its stage times to ``timings``.

    Returns:
        ``{name: (seconds, stage timings of that run)}``.
    """
    if warmup:
        for fn in cases.values():
            fn({})
    best: dict[str, tuple[float, dict]] = {}
    for _ in range(repeats):
        for name, fn in cases.items():
            timings: dict = {}
            sync(device)
            t0 = time.perf_counter()
            fn(timings)
            sync(device)
            seconds = time.perf_counter() - t0
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, timings)
    return best


def measure_concepts(
    make_model: Callable[[], Any],
    image,
    mask,
    targets: Sequence,
    n: int,
    *,
    repeats: int = 1,
    images: Sequence | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-target time of N concepts against one concept (and against ``segment``), in one run.

    Args:
        make_model: returns a fresh :class:`~insid3lab.INSID3` at the settings to measure (the
            models may share a backbone).
        image, mask: the reference shot; ``mask`` (H, W) foreground > 0 (array or PIL image).
        targets: the target images.
        n: N, the number of concepts.
        repeats: timed rounds per target (the fastest run of each case counts).
        images: N reference images for an extra case with N concepts from N encodings (concept v
            uses ``images[v - 1]`` with the label map's region v); None skips it.
        log: receives status lines.

    Returns:
        a JSON-ready dict: ``per_target_s`` (mean over targets of each case: ``segment``,
        ``one_concept``, ``concepts``, and ``concepts_images`` when ``images`` are given),
        ``after_encoding_s`` (the same after the target's encoding: ``one_concept``, ``concepts``),
        ``ratio`` (N concepts / one concept), ``ratio_images``, ``ratio_segment`` (one concept
        through ``segment_labels`` / ``segment``), ``ratio_from_decode`` (the target's encoding
        time plus N concepts' decode, over one concept: less sensitive to a busy machine), ``goal``.
    """
    from insid3lab.tasks.concepts import ConceptSegmenter

    say = log or (lambda msg: None)
    lm = concept_label_map(mask, n)
    names = {v: f"c{v}" for v in range(1, n + 1)}
    one, many = make_model(), make_model()
    one.set_reference(image, lm, labels={1: names[1]})
    many.set_reference(image, lm, labels=names)
    device = one.device
    cases: dict[str, Callable] = {
        "segment": lambda t, x: one.segment(x, timings=t),
        "one_concept": lambda t, x: one.segment_labels(x, timings=t),
        "concepts": lambda t, x: many.segment_labels(x, timings=t),
    }
    if images is not None:
        if len(images) != n:
            raise ValueError(f"images: {len(images)} reference image(s) for {n} concepts; give one per concept")
        by_image = make_model()
        for v in range(1, n + 1):
            by_image.set_reference(images[v - 1], lm == v, label=names[v])
        cases["concepts_images"] = lambda t, x: by_image.segment_labels(x, timings=t)
    times: dict[str, list[float]] = {k: [] for k in cases}
    after: dict[str, list[float]] = {"one_concept": [], "concepts": []}
    for i, x in enumerate(targets):
        say(f"{n} concepts against one: target {i + 1}/{len(targets)}")
        for name, (s, _) in time_interleaved({k: (lambda t, f=f, x=x: f(t, x)) for k, f in cases.items()}, repeats,
                                             device, warmup=i == 0).items():  # fmt: skip
            times[name].append(s)
        enc = one.encode(x)
        decode = {"one_concept": lambda t, e=enc: ConceptSegmenter(one).decode(e, timings=t),
                  "concepts": lambda t, e=enc: ConceptSegmenter(many).decode(e, timings=t)}  # fmt: skip
        for name, (s, _) in time_interleaved(decode, repeats, device, warmup=i == 0).items():
            after[name].append(s)
    per = {k: statistics.fmean(v) for k, v in times.items()}
    dec = {k: statistics.fmean(v) for k, v in after.items()}
    encoding = per["one_concept"] - dec["one_concept"]
    return {
        "concepts": n,
        "targets": len(targets),
        "repeats": repeats,
        "per_target_s": per,
        "after_encoding_s": dec,
        "ratio": ratio(per["concepts"], per["one_concept"]),
        "ratio_images": ratio(per["concepts_images"], per["one_concept"]) if images is not None else None,
        "ratio_segment": ratio(per["one_concept"], per["segment"]),
        "ratio_from_decode": ratio(encoding + dec["concepts"], per["one_concept"]),
        "goal": GOAL,
    }
