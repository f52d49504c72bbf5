"""The run's figure: one bar per class."""

from __future__ import annotations

import math

__all__ = ["plot_per_class", "plot_run"]


def plot_per_class(
    names: list[str],
    values: list[float],
    *,
    title: str,
    ylabel: str,
    mean: float | None = None,
    mean_label: str = "mean",
):
    """Bar chart of one score per class; returns the matplotlib Figure (Agg canvas, never shown)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(names)
    fig = Figure(figsize=(max(6.0, 0.28 * n + 2.0), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    vals = [0.0 if _missing(v) else v for v in values]
    ax.bar(range(n), vals, color="#4878a8")
    if not _missing(mean):
        ax.axhline(mean, color="#c44e52", lw=1.2, ls="--", label=f"{mean_label} {mean:.1f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(n))
    ax.set_xticklabels(names, rotation=90 if n > 8 else 0, fontsize=7 if n > 30 else 8)
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return fig


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _percent(v):
    return None if _missing(v) else 100.0 * v


def plot_run(summary: dict, dataset):
    """The run's per-class figure from its summary: IoU (segmentation), AP (instances) or PCK@0.10."""
    shots = f"{dataset.shots}-shot" + (f" {summary['ways']}-way" if summary.get("ways", 1) > 1 else "")
    n = summary["episodes"]["evaluated"]
    if summary["task"] == "segmentation":
        per = summary["per_class_iou"]
        fold = "" if dataset.fold is None else f" fold {dataset.fold}"
        title = f"{dataset.title}{fold}, {shots}, {n} episodes"
        return plot_per_class(list(per), list(per.values()), title=title, ylabel="IoU (%)", mean=summary["miou"],
                              mean_label="mIoU")  # fmt: skip
    if summary["task"] == "instances":
        per = summary["per_class_ap"]
        return plot_per_class(list(per), [_percent(v) for v in per.values()], title=f"{dataset.title}, {shots}, {n} "
                              "episodes", ylabel="mask AP (%)", mean=_percent(summary["ap"]),
                              mean_label="AP")  # fmt: skip
    per = summary["per_class_pck"]
    return plot_per_class(
        list(per),
        [v["pck@0.10"] for v in per.values()],
        title=f"{dataset.title}, {n} pairs",
        ylabel="PCK@0.10 (%)",
        mean=summary["pck"]["pck@0.10"],
        mean_label="PCK@0.10",
    )
