"""The record of every intermediate of one INSID3 prediction, and the recorder that fills it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

__all__ = ["NO_RECORD", "ConceptsTrace", "Recorder", "Trace"]


@dataclass
class Trace:
    """Every intermediate of one prediction, under the names of the method's description.

    Shapes: k shots, C channels, (h, w) feature grid, S input side, (H, W) target size,
    K clusters, r kept SVD components. Tensors stay on the device they were computed on;
    :meth:`cpu` returns a copy with everything on the CPU.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    grid: tuple[int, int] | None = None  # (h, w)
    # inputs
    reference_images: Tensor | None = None  # (k, 3, S, S) normalised
    reference_masks: Tensor | None = None  # (k, S, S) bool
    reference_masks_low: Tensor | None = None  # (k, h, w) bool
    reference_sizes: list[tuple[int, int]] = field(default_factory=list)  # original (H, W) per shot
    target_image: Tensor | None = None  # (3, S, S) normalised
    target_size: tuple[int, int] | None = None  # original (H, W)
    # features
    reference_features: Tensor | None = None  # (k, C, h, w) raw backbone output
    reference_features_norm: Tensor | None = None  # (k, C, h, w) L2-normalised
    reference_features_deb: Tensor | None = None  # (k, C, h, w) debiased
    target_features: Tensor | None = None  # (C, h, w)
    target_features_norm: Tensor | None = None  # (C, h, w)
    target_features_deb: Tensor | None = None  # (C, h, w)
    # positional subspace
    basis: Tensor | None = None  # (C, r)
    singular_values: Tensor | None = None  # (min(C, h*w),)
    # matching
    prototype: Tensor | None = None  # (C,)
    shot_prototypes: Tensor | None = None  # (k, C)
    forward_similarity: Tensor | None = None  # (h, w) s(x)
    forward_mask: Tensor | None = None  # (h, w) bool
    votes: Tensor | None = None  # (h, w) int32
    backward_mask: Tensor | None = None  # (h, w) bool
    candidates: Tensor | None = None  # (h, w) bool
    # clustering and aggregation
    cluster_labels: Tensor | None = None  # (h, w) long
    num_clusters: int | None = None
    cluster_prototypes_deb: Tensor | None = None  # (K, C)
    cluster_prototypes_orig: Tensor | None = None  # (K, C)
    cluster_overlap: Tensor | None = None  # (K,) bool
    cluster_seed_similarity: Tensor | None = None  # (K,) <p, P_deb[k]>
    cluster_cross: Tensor | None = None  # (K,)
    cluster_intra: Tensor | None = None  # (K,)
    cluster_area: Tensor | None = None  # (K,)
    cluster_score: Tensor | None = None  # (K,)
    seed: int | None = None
    # masks
    mask_low: Tensor | None = None  # (h, w) bool
    mask_upsampled: Tensor | None = None  # (S, S) bool, bilinear, before refinement
    refine_band: Tensor | None = None  # (S, S) bool, the pixels the refiner may change (when it has a band)
    mask_refined: Tensor | None = None  # (S, S) bool, after refinement (None without a refiner)
    mask: Tensor | None = None  # (H, W) bool, the prediction
    # seconds per stage
    timings: dict[str, float] = field(default_factory=dict)

    def cpu(self) -> Trace:
        """A copy with every tensor moved to the CPU."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.detach().cpu() if isinstance(v, torch.Tensor) else v
        return Trace(**kw)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dictionary (tensors as they are)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def shots(self) -> int:
        return 0 if self.reference_masks is None else int(self.reference_masks.shape[0])

    def summary(self) -> str:
        """A short text report: settings, counts and the time of each stage."""
        lines = [f"INSID3 trace: {self.shots} shot(s), grid {self.grid}, target {self.target_size}"]
        if self.settings:
            lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        if self.candidates is not None:
            lines.append(
                f"candidates: {int(self.candidates.sum())} cells; clusters: {self.num_clusters}; seed: {self.seed}"
            )
        if self.mask is not None:
            lines.append(f"mask: {int(self.mask.sum())} foreground pixels of {self.mask.numel()}")
        if self.timings:
            total = sum(self.timings.values())
            lines.append(
                "stage times (ms): "
                + ", ".join(f"{k} {1000 * v:.1f}" for k, v in self.timings.items())
                + f"; total {1000 * total:.1f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        present = [
            f.name for f in fields(self) if getattr(self, f.name) is not None and f.name not in ("settings", "timings")
        ]
        return f"Trace(shots={self.shots}, grid={self.grid}, fields=[{', '.join(present)}])"


class Recorder:
    """What :func:`insid3lab.method.pipeline.decode` reports while it runs: intermediates and stage times.

    ``record(**fields)`` stores intermediates in ``trace`` (when there is one) under the
    :class:`Trace` field names; ``stage(name)`` times a block when ``timings`` is given,
    synchronising CUDA around it. A recorder with neither (:data:`NO_RECORD`) does nothing,
    so asking for a trace never changes what is computed, only what is kept.

    Args:
        trace: the :class:`Trace` to fill, or None.
        timings: a dict to add seconds per stage to, or None.
        device: the device the stages run on (CUDA is synchronised around each timed stage).
    """

    def __init__(self, trace: Trace | None = None, *, timings: dict[str, float] | None = None, device=None):
        self.trace = trace
        self.timings = timings
        self.device = torch.device("cpu") if device is None else torch.device(device)

    @property
    def keeps(self) -> bool:
        """Whether intermediates are kept (a caller may skip work done only for the trace)."""
        return self.trace is not None

    def record(self, **values: Any) -> None:
        """Keep intermediates in the trace (unknown names are an error: a misspelt field is a bug)."""
        if self.trace is None:
            return
        for name, value in values.items():
            if not hasattr(self.trace, name):
                raise AttributeError(f"Trace has no field {name!r}")
            setattr(self.trace, name, value)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as ``name`` (seconds added up over repeated names)."""
        if self.timings is None:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


#: The recorder that keeps nothing and times nothing.
NO_RECORD = Recorder()


@dataclass
class ConceptsTrace:
    """The record of one many-concept prediction (:meth:`~insid3lab.INSID3.segment_labels`).

    One target encoding and one clustering serve every concept; ``concepts`` holds one
    :class:`Trace` per concept with its own intermediates (prototype, forward similarity,
    votes, candidates, cluster scores, seed) and the masks it was given after the
    competition (``mask_low``, ``mask``). N concepts, K clusters, (h, w) grid, (H, W) output.
    """

    names: list[str] = field(default_factory=list)  # the concepts, in label order (label i = names[i - 1])
    settings: dict[str, Any] = field(default_factory=dict)
    concepts: list[Trace] = field(default_factory=list)  # per concept (empty without return_trace)
    target_image: Tensor | None = None  # (3, S, S) normalised
    target_size: tuple[int, int] | None = None  # original (H, W)
    cluster_labels: Tensor | None = None  # (h, w) long; None when no concept had a candidate
    num_clusters: int | None = None
    similarity: Tensor | None = None  # (N, h, w) forward similarity s_c(x) of every concept
    has_candidates: Tensor | None = None  # (N,) bool
    cluster_scores: Tensor | None = None  # (N, K) aggregation scores (0 for a concept without candidates)
    claims: Tensor | None = None  # (N, K) bool: concept c claims cluster k (score > merge threshold)
    owner: Tensor | None = None  # (K,) long: the concept index that takes cluster k, -1 for none
    label_map_low: Tensor | None = None  # (h, w) long, 0 = background, i = names[i - 1]
    label_map: Tensor | None = None  # (H, W) long, the prediction
    scores: dict[str, float] = field(default_factory=dict)  # per concept: mean score of the cells it took
    timings: dict[str, float] = field(default_factory=dict)

    def cpu(self) -> ConceptsTrace:
        """A copy with every tensor (and every per-concept trace) on the CPU."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.detach().cpu() if isinstance(v, torch.Tensor) else v
        kw["concepts"] = [t.cpu() for t in self.concepts]
        return ConceptsTrace(**kw)

    def summary(self) -> str:
        """A short text report: the concepts, their cells and scores, the stage times."""
        lines = [f"INSID3 concepts trace: {len(self.names)} concept(s), clusters: {self.num_clusters}"]
        for i, name in enumerate(self.names, start=1):
            cells = 0 if self.label_map_low is None else int((self.label_map_low == i).sum())
            lines.append(f"  {i} {name}: {cells} cells, score {self.scores.get(name, 0.0):.3f}")
        if self.timings:
            lines.append("stage times (ms): " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in self.timings.items()))
        return "\n".join(lines)
