"""The stages a benchmark times and what it reports of each path's timing: per-stage means, the decode's
share, and the baseline against the pipeline (time and mask agreement).

Everything after ``features`` (the target's encoding) is the decode.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from insid3lab.bench.refinement import REFINEMENT_STAGE, refines
from insid3lab.bench.timing import ratio, stage_means, summary
from insid3lab.method.params import Params

__all__ = [
    "BASELINE_STAGES",
    "DECODE_STAGES",
    "PIPELINE_STAGES",
    "baseline_report",
    "decode_seconds",
    "decode_times",
    "decode_vs_encoding",
    "mask_iou",
    "stage_names",
    "stage_report",
]

#: Stages timed for the pipeline; everything after ``features`` is the decode.
PIPELINE_STAGES = (
    "preprocess",
    "features",
    "references",
    "debias",
    "forward",
    "backward",
    "clustering",
    "aggregation",
    "upsampling",
)
#: Stages timed for the baseline; everything after ``features`` is the decode.
BASELINE_STAGES = (
    "preprocess",
    "features",
    "debias",
    "prototype",
    "forward",
    "backward",
    "clustering",
    "aggregation",
    "upsampling",
)
#: The pipeline's decode stages (what follows the target's encoding).
DECODE_STAGES = PIPELINE_STAGES[2:]
_NOT_DECODE = ("preprocess", "features")


def stage_names(refine=Params.refine, *, baseline: bool = False) -> tuple[str, ...]:
    """The stages timed for the pipeline (or the baseline): :data:`PIPELINE_STAGES` (:data:`BASELINE_STAGES`),
    and ``"refinement"`` last when ``refine`` changes the mask (a name from ``REFINERS`` or a callable)."""
    names = BASELINE_STAGES if baseline else PIPELINE_STAGES
    return (*names, REFINEMENT_STAGE) if refines(refine) else names


def decode_seconds(stages: dict[str, float]) -> float:
    """The decode's seconds in one timing (stage name -> seconds): the sum of every stage after ``features``."""
    return sum(v for k, v in stages.items() if k not in _NOT_DECODE)


def decode_times(runs: list[dict[str, float]]) -> list[float]:
    """:func:`decode_seconds` of each timing."""
    return [decode_seconds(r) for r in runs]


def decode_vs_encoding(stages: dict[str, float]) -> dict[str, Any]:
    """Each decode stage, and the whole decode, as a fraction of the target's encoding (``features``) time."""
    enc = stages.get("features") or 0.0
    per_stage = {k: ratio(v, enc) for k, v in stages.items() if k not in _NOT_DECODE}
    return {
        "encoding_s": enc,
        "decode": ratio(decode_seconds(stages), enc),
        "stages": per_stage,
    }


def stage_report(
    wall: Sequence[float], cpu: Sequence[float], runs: list[dict[str, float]], names: Sequence[str]
) -> dict[str, Any]:
    """One path's timing of every target: ``per_target`` wall seconds (and CPU seconds), the mean
    seconds of each stage in ``names``, and the ``decode`` seconds (runs: stage name -> seconds)."""
    return {
        "per_target": {**summary(wall), "cpu_s": cpu, "cpu_mean_s": statistics.fmean(cpu)},
        "stages": stage_means(runs, names),
        "decode": summary(decode_times(runs)),
    }


def mask_iou(a: Tensor, b: Tensor) -> float:
    """Intersection over union of two bool masks of one shape; 1.0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool().cpu(), b.bool().cpu()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def baseline_report(m: dict[str, list], refine) -> dict[str, Any]:
    """The baseline's timing of every target and how its masks agree with the pipeline's (``m``: the
    timed masks, wall/CPU seconds and stage timings of both paths, as ``run_benchmark`` collects them)."""
    identical = sum(bool(torch.equal(a.cpu(), b.cpu())) for a, b in zip(m["masks"], m["b_masks"]))
    return {
        "procedure": "backbone over [reference shots, target] for every target; prototype rebuilt; full similarity "
        "matrices; scikit-learn clustering on the CPU; per-cluster loops",
        **stage_report(m["b_wall"], m["b_cpu"], m["b_stages"], stage_names(refine, baseline=True)),
        "masks_identical": identical == len(m["masks"]),
        "identical": identical,
        "mean_iou": statistics.fmean(mask_iou(a, b) for a, b in zip(m["masks"], m["b_masks"])),
    }
