"""Paired comparison of two runs on identical episodes: the mIoU difference and its paired-bootstrap interval.

Both runs must have scored the same episodes of the same benchmark (dataset, fold, shots, ways,
protocol, seed, episode count and the episodes' digest agree; the refusal names the first that
differs); the episodes are resampled jointly (the same
resample for both runs, seeded), so the interval of the difference accounts for the
episodes both runs share. For keypoint runs the compared number is PCK@0.10.

>>> from insid3lab.eval.reports.compare import compare_runs
>>> c = compare_runs("runs/a", "runs/b", resamples=1000, seed=0)   # doctest: +SKIP
>>> c["difference"], c["interval"]                                  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os

import numpy as np

from insid3lab.eval.metrics.stats import bootstrap_weights, percentile_bounds, segmentation_resamples
from insid3lab.eval.reports.runs import load_run

__all__ = ["RunsDifferError", "compare_runs", "plot_comparison"]

#: What two runs must share, in the order they are checked, each said in the user's terms when they differ.
_SAME = ("task", "dataset", "fold", "shots", "ways", "protocol", "seed", "episodes", "episodes_digest")


class RunsDifferError(ValueError):
    """Two runs that did not score the same episodes."""


def _fact(summary: dict, key: str):
    s = summary["settings"]
    if key == "protocol":
        return summary.get("protocol", s.get("protocol"))
    if key == "ways":
        return summary.get("ways", s.get("ways", 1))  # 1-way runs leave ways out of their settings
    return s.get(key)


def _difference(key: str, va, vb) -> str:
    """What differs between two runs, as the user set it."""
    if key == "ways":
        return f"ways: a {va}-way and a {vb}-way run"
    if key == "seed":
        return f"episodes: drawn with seed {va} and seed {vb}"
    if key == "episodes":
        return f"episodes: {va} and {vb} episodes"
    if key == "episodes_digest":
        return ("episodes: the same seed and count, but other targets or references (episodes given as a file or "
                "list, or other data)")  # fmt: skip
    return f"{key}: {va!r} vs {vb!r}"


def _check_pairable(a: dict, b: dict) -> None:
    for key in _SAME:
        va, vb = _fact(a["summary"], key), _fact(b["summary"], key)
        if va != vb:
            raise RunsDifferError(
                f"cannot compare {a['path']!r} and {b['path']!r}: different {_difference(key, va, vb)}"
            )
    ia, ib = set(a["records"]), set(b["records"])
    if ia != ib:
        raise RunsDifferError(f"cannot compare {a['path']!r} and {b['path']!r}: different evaluated episodes "
                              f"({len(ia ^ ib)} evaluated in one run only)")  # fmt: skip
    for i in ia:
        if a["records"][i]["episode"] != b["records"][i]["episode"]:
            raise RunsDifferError(f"cannot compare {a['path']!r} and {b['path']!r}: different episodes at index {i}")


def _metric(run: dict, order: list[int], weights: np.ndarray) -> np.ndarray:
    """(B,) the run's headline number (mIoU or PCK@0.10, percent) for each resample of its episodes."""
    recs = [run["records"][i] for i in order]
    if run["summary"]["task"] == "segmentation":
        per = [(r["index"], r.get("ways", r["class_index"]), r["intersection"], r["union"]) for r in recs]
        miou, _ = segmentation_resamples(per, len(run["summary"]["per_class_iou"]), weights)
        return miou
    k = run["summary"]["alphas"].index(0.1)
    frac = np.array([r["hits"][k] / r["n_points"] for r in recs], dtype=np.float64)
    return (weights @ frac) / len(recs) * 100.0


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict:  # fmt: skip
    """Compare run B against run A on their shared episodes.

    Returns:
        ``{"run_a", "run_b", "metric", "a", "b", "difference" (b - a), "interval" [lo, hi] of b - a,
        "bootstrap": {"resamples", "seed", "level", "method"}, "episodes", "per_class": {name: {"a", "b",
        "difference", "episodes"}}}``.

    Raises:
        RunsDifferError: the runs differ in dataset, fold, shots, ways, protocol or episodes (the message says which).
        NotARunError: a folder is not a finished run.
    """
    a, b = load_run(run_a), load_run(run_b)
    _check_pairable(a, b)
    if a["summary"]["task"] == "instances":
        raise RunsDifferError(f"cannot compare {a['path']!r} and {b['path']!r}: instance (AP) runs have no "
                              "per-episode score to pair; compare their summary.json AP")  # fmt: skip
    order = sorted(a["records"])
    if not order:
        raise RunsDifferError(f"cannot compare {a['path']!r} and {b['path']!r}: no evaluated episode")
    seg = a["summary"]["task"] == "segmentation"
    full = np.ones((1, len(order)), dtype=np.int64)
    va, vb = float(_metric(a, order, full)[0]), float(_metric(b, order, full)[0])
    w = bootstrap_weights(len(order), resamples, seed)
    diff = _metric(b, order, w) - _metric(a, order, w)
    if seg:
        pa, pb = a["summary"]["per_class_iou"], b["summary"]["per_class_iou"]
        counts = a["summary"]["per_class_episodes"]
    else:
        pa = {k: v["pck@0.10"] for k, v in a["summary"]["per_class_pck"].items()}
        pb = {k: v["pck@0.10"] for k, v in b["summary"]["per_class_pck"].items()}
        counts = {k: v.get("pairs") for k, v in a["summary"]["per_class_pck"].items()}
    per_class = {n: {"a": pa[n], "b": pb[n], "difference": pb[n] - pa[n], "episodes": counts.get(n)} for n in pa}
    return {
        "run_a": a["path"],
        "run_b": b["path"],
        "metric": "miou" if seg else "pck@0.10",
        "a": va,
        "b": vb,
        "difference": vb - va,
        "interval": percentile_bounds(diff, level),
        "bootstrap": {
            "resamples": int(resamples),
            "seed": int(seed),
            "level": level,
            "method": "percentile, episodes resampled jointly for both runs",
        },
        "episodes": len(order),
        "per_class": per_class,
    }


def plot_comparison(result: dict):
    """Per-class differences (B - A) as bars, with the overall difference and its interval; a matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(result["per_class"])
    vals = [result["per_class"][n]["difference"] for n in names]
    vals = [0.0 if v is None or math.isnan(v) else v for v in vals]
    fig = Figure(figsize=(max(6.0, 0.28 * len(names) + 2.5), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(names)), vals, color=["#4878a8" if v >= 0 else "#c44e52" for v in vals])
    lo, hi = result["interval"]
    ax.axhspan(lo, hi, color="#888888", alpha=0.25, label=f"{result['metric']} difference {result['difference']:+.2f} "
               f"[{lo:+.2f}, {hi:+.2f}]")  # fmt: skip
    ax.axhline(result["difference"], color="#333333", lw=1.2)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 8 else 0, fontsize=7 if len(names) > 30 else 8)
    ax.set_ylabel("B - A (points)")
    ax.set_title(f"B: {os.path.basename(result['run_b'])}  vs  A: {os.path.basename(result['run_a'])}, "
                 f"{result['episodes']} paired episodes", fontsize=10)  # fmt: skip
    ax.legend(loc="upper right", fontsize=8)
    return fig
