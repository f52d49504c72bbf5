"""A table of runs laid out as the paper's tables: runs as rows, folds and their mean as columns.

Each cell holds the run's mIoU (PCK@0.10 for keypoint runs) with its 95% bootstrap interval
beside it. A row is a single run (one column, or its fold's column) or a ``--fold all``
folder (one column per fold and the mean over folds). The interval of the mean over folds
resamples each fold's episodes independently (the same seeds as each fold's own interval)
and averages the folds' resampled numbers.

>>> from insid3lab.eval.reports.report import report
>>> markdown, fig = report(["runs/coco_all", "runs/coco_all_noise"])   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from insid3lab.core.files import write_atomic
from insid3lab.eval.metrics.stats import bootstrap_weights, percentile_bounds, segmentation_resamples
from insid3lab.eval.reports.runs import load_fold_runs

__all__ = ["plot_report", "report", "report_files", "report_rows", "write_report"]


def _missing(v) -> bool:
    """A number that does not exist: null in a run's JSON (NaN in memory)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _value(summary: dict) -> float | None:
    """The run's headline number, or None when it has none (no evaluated episode)."""
    if summary["task"] == "instances":
        return None if _missing(summary["ap"]) else 100.0 * summary["ap"]
    v = summary["miou"] if summary["task"] == "segmentation" else summary["pck"]["pck@0.10"]
    return None if _missing(v) else v


def _interval(summary: dict):
    iv = summary.get("interval") or {}  # instance runs have none
    bounds = iv.get("miou" if summary["task"] == "segmentation" else "pck@0.10")
    return None if not bounds or any(_missing(b) for b in bounds) else bounds


def _fold_name(name: str, run: dict) -> str:
    if name:
        return name
    fold = run["summary"]["settings"].get("fold")
    return "all" if fold is None else f"fold{fold}"


def _mean_interval(runs: list[dict], resamples: int, seed: int, level: float):
    """Interval of the mean over folds: each fold resampled on its own, the folds' numbers averaged."""
    per = []
    for k, run in enumerate(runs):
        if run["summary"]["task"] != "segmentation" or not run["records"]:
            return None
        recs = [run["records"][i] for i in sorted(run["records"])]
        eps = [(r["index"], r.get("ways", r["class_index"]), r["intersection"], r["union"]) for r in recs]
        miou, _ = segmentation_resamples(eps, len(run["summary"]["per_class_iou"]),
                                         bootstrap_weights(len(eps), resamples, seed + k))  # fmt: skip
        per.append(miou)
    return percentile_bounds(np.mean(per, axis=0), level)


def report_rows(paths, *, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """One row per path: ``{"run", "dataset", "shots", "ways", "protocol", "metric", "cells": {column: (value,
    [lo, hi])}}``.

    Raises:
        NotARunError: a path is not a run nor a ``--fold all`` folder.
    """
    rows = []
    for path in paths:
        runs = load_fold_runs(path)
        first = next(iter(runs.values()))["summary"]
        cells = {_fold_name(n, r): (_value(r["summary"]), _interval(r["summary"])) for n, r in runs.items()}
        if len(runs) > 1:  # the mean over the folds that have a score (as insid3lab eval --fold all reports it)
            scored = [v for v, _ in cells.values() if v is not None]
            mean = math.fsum(scored) / len(scored) if scored else None
            scored_runs = [r for r in runs.values() if r["records"]]
            cells["mean"] = (mean, _mean_interval(scored_runs, resamples, seed, level) if scored_runs else None)
        rows.append({
            "run": Path(path).name or str(path),
            "dataset": first["settings"].get("dataset"),
            "shots": first["settings"].get("shots"),
            "ways": first.get("ways", 1),
            "protocol": first.get("protocol", first["settings"].get("protocol")),
            "metric": {"segmentation": "mIoU", "instances": "mask AP"}.get(first["task"], "PCK@0.10"),
            "cells": cells,
        })  # fmt: skip
    return rows


def _columns(rows: list[dict]) -> list[str]:
    cols = sorted(
        {c for r in rows for c in r["cells"] if c != "mean"}, key=lambda c: (not c.startswith("fold"), len(c), c)
    )
    return cols + (["mean"] if any("mean" in r["cells"] for r in rows) else [])


def _cell(cell) -> str:
    if cell is None:
        return "–"
    v, iv = cell
    if _missing(v):
        return "n/a"
    return f"{v:.1f}" if not iv else f"{v:.1f} [{iv[0]:.1f}, {iv[1]:.1f}]"


def report(paths, *, resamples: int = 1000, seed: int = 0, level: float = 0.95):
    """(Markdown table, matplotlib Figure) of the runs in ``paths`` (see the module docstring)."""
    rows = report_rows(paths, resamples=resamples, seed=seed, level=level)
    cols = _columns(rows)
    head = ["run", "dataset", "shots", "ways", "protocol", "metric", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([":--"] * 5 + [":-:"] * (len(cols) + 1)) + "|"]
    for r in rows:
        vals = [r["run"], str(r["dataset"]), str(r["shots"]), str(r["ways"]), str(r["protocol"]), r["metric"]]
        lines.append("| " + " | ".join(vals + [_cell(r["cells"].get(c)) for c in cols]) + " |")
    note = f"\nIntervals: {int(level * 100)}% bootstrap over episodes (percentile)."
    return "\n".join(lines) + "\n" + note + "\n", plot_report(rows, cols)


def plot_report(rows: list[dict], cols: list[str]):
    """Grouped bars: one group per column (fold / mean), one bar per run, intervals as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * len(cols) * max(1, len(rows)) * 0.5), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(rows))
    for k, r in enumerate(rows):
        xs, ys, err = [], [], [[], []]
        for j, c in enumerate(cols):
            cell = r["cells"].get(c)
            if cell is None or _missing(cell[0]):
                continue
            v, iv = cell
            xs.append(j + (k - (len(rows) - 1) / 2) * width)
            ys.append(v)
            err[0].append(v - iv[0] if iv else 0.0)
            err[1].append(iv[1] - v if iv else 0.0)
        ax.bar(xs, ys, width=width, yerr=err, capsize=3, label=r["run"])
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols)
    ax.set_ylabel(rows[0]["metric"] if rows else "")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    return fig


def report_files(out: str | os.PathLike) -> tuple[Path, Path]:
    """The files :func:`write_report` writes for ``out``: the table and the figure beside it (``.png``)."""
    out = Path(out)
    return out, out.with_suffix(".png")


def write_report(paths, out: str | os.PathLike, **kw) -> tuple[Path, Path]:
    """Write ``out`` (Markdown) and the figure beside it (same name, ``.png``), each whole or not at all;
    returns both paths."""
    md, fig = report(paths, **kw)
    table, png = report_files(out)
    write_atomic(table, md)
    write_atomic(png, lambda tmp: fig.savefig(tmp, dpi=110))
    return table, png
