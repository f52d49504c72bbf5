"""Every fold of a benchmark in one call: the number the papers report is the mean over folds."""

from __future__ import annotations

import math
import os
from pathlib import Path

from insid3lab.core.warn import warn
from insid3lab.eval.datasets import BENCHMARKS, build_dataset
from insid3lab.eval.run.files import write_json
from insid3lab.eval.run.runner import run_evaluation

__all__ = ["run_all_folds"]


def run_all_folds(
    model,
    dataset: str,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    shots: int = 1,
    dataset_kwargs: dict | None = None,
    **run_kwargs,
) -> dict:
    """Run :func:`run_evaluation` on every fold of ``dataset`` into ``out_dir/fold<k>/`` (each resumable).

    ``run_kwargs`` go to every fold's run (``episodes``, ``seed``, ``resume``, ``protocol``, ...).
    Writes ``out_dir/folds.json``: per fold the mIoU and FB-IoU (PCK for correspondence) and its
    count of evaluated episodes, and their mean over the folds; returns it. A fold without any
    evaluated episode (every one bad under ``skip_bad``) has no score (``None``, null in the
    file), is listed in ``"without_episodes"`` and left out of the mean, with a warning.
    """
    key = str(dataset).lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"dataset={dataset!r} is not known; allowed: {', '.join(BENCHMARKS)}")
    folds = BENCHMARKS[key].folds
    if folds is None:
        with_folds = [n for n, c in BENCHMARKS.items() if c.folds is not None]
        raise ValueError(f"fold='all': {dataset!r} has no folds; benchmarks with folds: {', '.join(with_folds)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_fold = {}
    for k in folds:
        ds = build_dataset(key, data_root, fold=k, shots=shots, **(dataset_kwargs or {}))
        s = run_evaluation(model, ds, out / f"fold{k}", **run_kwargs)
        scores = {"miou": s["miou"], "fb_iou": s["fb_iou"]} if s["task"] == "segmentation" else {
            "pck@0.10": s["pck"]["pck@0.10"]}  # fmt: skip
        evaluated = s["episodes"]["evaluated"]
        per_fold[f"fold{k}"] = {**(scores if evaluated else dict.fromkeys(scores)), "episodes": evaluated}
    empty = [name for name, v in per_fold.items() if not v["episodes"]]
    scored = [v for v in per_fold.values() if v["episodes"]]
    if empty:
        warn(f"{out}: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no evaluated episode and "
             f"{'is' if len(empty) == 1 else 'are'} left out of the mean over folds; the run is incomplete")  # fmt: skip
    metrics = [m for m in next(iter(per_fold.values())) if m != "episodes"]
    mean = {m: math.fsum(v[m] for v in scored) / len(scored) if scored else None for m in metrics}
    result = {
        "dataset": key,
        "shots": shots,
        "folds": list(folds),
        "per_fold": per_fold,
        "mean": mean,
        "without_episodes": empty,
    }
    write_json(out / "folds.json", result)
    return result
