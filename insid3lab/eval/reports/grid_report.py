"""The report of a grid run, laid out as the paper's ablations: a curve per axis and a heat map per pair of axes.

For a run of ``insid3lab eval --grid`` (or the folder of a ``--fold all`` grid run, whose numbers
are the mean over folds):

* a curve per axis: the metric against the axis' values, the other axes at their default (the
  base setting's values; where the grid does not hold those, at the best setting's), the 95%
  intervals as a band;
* a heat map per pair of axes, the other axes fixed the same way;
* the best setting with its interval, and its paired bootstrap against the default setting (the
  episodes resampled jointly for both, as :func:`~insid3lab.eval.reports.compare.compare_runs`);
* every setting, best first.

A setting chosen as the best on the evaluation episodes is an optimistic estimate of how it does
on new ones: the report says so.

>>> from insid3lab.eval.reports.grid_report import grid_report
>>> markdown, figures = grid_report("runs/ablation")   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import math
import os
from numbers import Real
from pathlib import Path

import numpy as np

from insid3lab.core.files import write_atomic
from insid3lab.eval.metrics.stats import bootstrap_weights, percentile_bounds
from insid3lab.eval.reports.compare import resampled_metric
from insid3lab.eval.reports.report import mean_interval
from insid3lab.eval.reports.runs import NotARunError, load_grid, setting_run

__all__ = ["OPTIMISM", "grid_report", "grid_report_files", "grid_results", "is_grid_run", "plot_grid_curves",
           "plot_grid_heatmaps", "write_grid_report"]  # fmt: skip

#: The reminder printed with the best setting.
OPTIMISM = ("The best setting was chosen on the evaluation episodes, so its score is optimistic: confirm it on other "
            "episodes (another seed or fold) before reporting it.")  # fmt: skip


def _fold_folders(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if (p / "summary.json").is_file():
        return [p]
    f = p / "folds.json"
    if f.is_file():
        try:
            return [p / name for name in json.loads(f.read_text())["per_fold"]]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise NotARunError(f"{str(f)!r} is not a folds summary of insid3lab eval --fold all") from None
    raise NotARunError(f"{str(p)!r} is not an evaluation run (no summary.json, no folds.json)")


def is_grid_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a grid run (or a ``--fold all`` folder of grid runs)."""
    try:
        return all((f / "grid.json").is_file() for f in _fold_folders(path))
    except NotARunError:
        return False


def _value(config: dict) -> float:
    v = 100.0 * config["ap"] if config["task"] == "instances" else config["miou"]
    return float("nan") if v is None else float(v)


def grid_results(path: str | os.PathLike, *, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Every setting's number (mean over folds for a ``--fold all`` folder) with its interval, the best and
    the default setting, and the paired bootstrap of the best against the default.

    Returns:
        ``{"run", "task", "metric", "axes", "base", "labels", "params", "values", "intervals", "best", "default",
        "paired", "folds", "episodes", "dataset", "shots", "protocol"}``; ``default`` is None when the grid does not
        hold the base setting, ``paired`` None then (or when best is the default, or for instance runs).

    Raises:
        NotARunError: not a grid run; ValueError: folds whose grids differ.
    """
    folds = [load_grid(f) for f in _fold_folders(path)]
    grid = folds[0]["grid"]
    for g in folds[1:]:
        if g["doc"]["axes"] != folds[0]["doc"]["axes"] or len(g["grid"]) != len(grid):
            raise ValueError(f"{str(path)!r}: the folds' grids differ ({g['path']} against {folds[0]['path']})")
    n = len(grid)
    runs = [[setting_run(g, j) for g in folds] for j in range(n)]
    first = folds[0]["doc"]["configs"][0]
    task = first["task"]
    values = [math.fsum(_value(r["summary"]) for r in rs) / len(rs) for rs in runs]
    if task == "instances":
        intervals = [None] * n
    elif len(folds) == 1:
        intervals = [(r[0]["summary"].get("interval") or {}).get("miou") for r in runs]
    else:
        intervals = [mean_interval(rs, resamples, seed, level) for rs in runs]
    finite = [j for j in range(n) if not math.isnan(values[j])]
    best = max(finite, key=lambda j: values[j]) if finite else 0
    default = grid.base_index
    paired = None
    if task != "instances" and default is not None and best != default:
        diff = 0.0
        for k, g in enumerate(folds):
            order = sorted(g["records"])
            if not order:
                break
            w = bootstrap_weights(len(order), resamples, seed + k)
            diff = diff + resampled_metric(runs[best][k], order, w) - resampled_metric(runs[default][k], order, w)
        else:
            paired = {"difference": values[best] - values[default],
                      "interval": percentile_bounds(diff / len(folds), level),
                      "resamples": int(resamples), "seed": int(seed), "level": level,
                      "method": "percentile, episodes resampled jointly for both settings"}  # fmt: skip
    s = first["settings"]
    return {
        "run": Path(path).name or str(path),
        "task": task,
        "metric": "mask AP" if task == "instances" else "mIoU",
        "axes": {name: list(v) for name, v in grid.axes.items()},
        "base": grid.base_values(),
        "labels": [grid.label(j) for j in range(n)],
        "params": [grid.values(j) for j in range(n)],
        "values": values,
        "intervals": intervals,
        "best": best,
        "default": default,
        "paired": paired,
        "folds": len(folds),
        "episodes": sum(len(g["records"]) for g in folds),
        "dataset": s.get("dataset"),
        "shots": s.get("shots"),
        "protocol": first.get("protocol"),
    }


# ───────────────────────── slices of the grid ─────────────────────────


def _fixed(res: dict, free: tuple[str, ...]) -> tuple[dict, str]:
    """The values the other axes are held at: the default's when the grid holds them all, else the best's."""
    others = [a for a in res["axes"] if a not in free]
    base = {a: res["base"][a] for a in others}
    if all(base[a] in res["axes"][a] for a in others):
        return base, "default"
    return {a: res["params"][res["best"]][a] for a in others}, "best"


def _slice(res: dict, free: tuple[str, ...]) -> tuple[dict, str, dict]:
    """``(fixed values, "default"|"best", {free values tuple: setting index})``."""
    fixed, by = _fixed(res, free)
    cells = {}
    for j, p in enumerate(res["params"]):
        if all(p[a] == v for a, v in fixed.items()):
            cells[tuple(p[a] for a in free)] = j
    return fixed, by, cells


def _numeric(values: list) -> bool:
    return all(isinstance(v, Real) and not isinstance(v, bool) for v in values)


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _iv(iv) -> str:
    return "" if not iv else f"[{_fmt(iv[0])}, {_fmt(iv[1])}]"


def _text(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _at(fixed: dict, by: str) -> str:
    if not fixed:
        return ""
    return f" (others at the {by} setting: " + ", ".join(f"{a}={_text(v)}" for a, v in fixed.items()) + ")"


# ───────────────────────── the report ─────────────────────────


def _markdown(res: dict, image_names: list[str]) -> str:
    m, n = res["metric"], len(res["values"])
    where = f"mean over {res['folds']} folds, " if res["folds"] > 1 else ""
    lines = [f"# Grid: {res['run']}", "",
             f"{res['dataset']}, {res['shots']}-shot, protocol {res['protocol']}: {n} settings on {res['episodes']} "
             f"episodes ({where}{m} in percent; intervals: 95% bootstrap over episodes).", ""]  # fmt: skip
    b = res["best"]
    lines.append(f"**Best setting:** `{res['labels'][b]}`: {m} {_fmt(res['values'][b])} {_iv(res['intervals'][b])}")
    d = res["default"]
    if d is None:
        lines.append("The grid does not hold the default setting: no paired comparison.")
    elif d == b:
        lines.append("The best setting is the default setting.")
    elif res["paired"] is not None:
        lo, hi = res["paired"]["interval"]
        lines.append(f"**Against the default** `{res['labels'][d]}` ({_fmt(res['values'][d])} {_iv(res['intervals'][d])}): "
                     f"{res['paired']['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}] (paired bootstrap, the same episodes, "
                     f"{res['paired']['resamples']} resamples)")  # fmt: skip
    lines += ["", f"> {OPTIMISM}", ""]
    lines += [f"![{name}]({name})" for name in image_names] + [""]
    for axis in res["axes"]:
        fixed, by, cells = _slice(res, (axis,))
        lines += [f"## {axis}{_at(fixed, by)}", "", f"| {axis} | {m} | 95% interval |", "|--:|--:|:-:|"]
        for v in res["axes"][axis]:
            j = cells.get((v,))
            lines.append(f"| {_text(v)} | {_fmt(None if j is None else res['values'][j])} | "
                         f"{'' if j is None else _iv(res['intervals'][j])} |")  # fmt: skip
        lines.append("")
    for a, c in itertools.combinations(res["axes"], 2):
        fixed, by, cells = _slice(res, (a, c))
        cols = res["axes"][c]
        lines += [f"## {a} × {c}{_at(fixed, by)}", "", f"| {a} \\ {c} | " + " | ".join(map(_text, cols)) + " |",
                  "|--:|" + "--:|" * len(cols)]  # fmt: skip
        for v in res["axes"][a]:
            row = [_fmt(res["values"][cells[(v, w)]]) if (v, w) in cells else "–" for w in cols]
            lines.append(f"| {_text(v)} | " + " | ".join(row) + " |")
        lines.append("")
    order = sorted(range(n), key=lambda j: (math.isnan(res["values"][j]), -res["values"][j] if not
                                            math.isnan(res["values"][j]) else 0))  # fmt: skip
    lines += ["## Every setting, best first", "", f"| # | setting | {m} | 95% interval |", "|--:|:--|--:|:-:|"]
    for rank, j in enumerate(order, 1):
        mark = " (default)" if j == res["default"] else ""
        lines.append(f"| {rank} | `{res['labels'][j]}`{mark} | {_fmt(res['values'][j])} | {_iv(res['intervals'][j])} |")
    return "\n".join(lines) + "\n"


def _figure(panels: int, size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, cols, k + 1) for k in range(panels)]


def plot_grid_curves(res: dict):
    """One panel per axis: the metric against the axis' values (others fixed, see the module docstring), the
    intervals as a band, the default value marked; a matplotlib Figure."""
    fig, axes = _figure(len(res["axes"]), (4.2, 3.4))
    for ax, axis in zip(axes, res["axes"]):
        fixed, by, cells = _slice(res, (axis,))
        vals = res["axes"][axis]
        xs = vals if _numeric(vals) else list(range(len(vals)))
        pts = [(x, cells.get((v,))) for x, v in zip(xs, vals)]
        pts = [(x, j) for x, j in pts if j is not None]
        x = [p for p, _ in pts]
        y = [res["values"][j] for _, j in pts]
        ax.plot(x, y, "o-", color="#4878a8")
        ivs = [res["intervals"][j] for _, j in pts]
        if ivs and all(iv for iv in ivs):
            ax.fill_between(x, [iv[0] for iv in ivs], [iv[1] for iv in ivs], color="#4878a8", alpha=0.2, lw=0)
        if res["base"][axis] in vals:
            bx = xs[vals.index(res["base"][axis])]
            ax.axvline(bx, color="#888888", ls=":", lw=1, label="default")
            ax.legend(fontsize=7, loc="best")
        if not _numeric(vals):
            ax.set_xticks(xs)
            ax.set_xticklabels([_text(v) for v in vals])
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{res['metric']} (%)")
        ax.set_title(_at(fixed, by).strip(" ()") or res["run"], fontsize=7)
    return fig


def plot_grid_heatmaps(res: dict):
    """One heat map per pair of axes (others fixed), each cell's number written in it; a matplotlib Figure, or
    None for a grid of one axis."""
    pairs = list(itertools.combinations(res["axes"], 2))
    if not pairs:
        return None
    fig, axes = _figure(len(pairs), (4.4, 3.8))
    finite = [v for v in res["values"] if not math.isnan(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    for ax, (a, c) in zip(axes, pairs):
        fixed, by, cells = _slice(res, (a, c))
        rows, cols = res["axes"][a], res["axes"][c]
        grid = np.full((len(rows), len(cols)), np.nan)
        for (v, w), j in cells.items():
            grid[rows.index(v), cols.index(w)] = res["values"][j]
        im = ax.imshow(grid, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect="auto")
        for r, c_ in itertools.product(range(len(rows)), range(len(cols))):
            if not np.isnan(grid[r, c_]):
                ax.text(c_, r, f"{grid[r, c_]:.1f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([_text(v) for v in cols], fontsize=7)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([_text(v) for v in rows], fontsize=7)
        ax.set_xlabel(c)
        ax.set_ylabel(a)
        ax.set_title(_at(fixed, by).strip(" ()") or res["run"], fontsize=7)
        fig.colorbar(im, ax=ax, label=f"{res['metric']} (%)")
    return fig


def grid_report(path: str | os.PathLike, *, resamples: int = 1000, seed: int = 0, level: float = 0.95,
                image_names: tuple[str, ...] = ()):  # fmt: skip
    """(Markdown, [curves Figure, heat-map Figure or None]) of the grid run at ``path`` (see the module docstring);
    ``image_names``: the figures' file names, linked from the Markdown."""
    res = grid_results(path, resamples=resamples, seed=seed, level=level)
    return _markdown(res, list(image_names)), [plot_grid_curves(res), plot_grid_heatmaps(res)]


def grid_report_files(out: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The files :func:`write_grid_report` writes for ``out``: the Markdown, the curves (``.png``) and the heat
    maps (``-heatmaps.png``, with two axes or more)."""
    out = Path(out)
    return out, out.with_suffix(".png"), out.with_name(f"{out.stem}-heatmaps.png")


def write_grid_report(path: str | os.PathLike, out: str | os.PathLike, *, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> list[Path]:  # fmt: skip
    """Write the files of :func:`grid_report_files`, each whole or not at all; returns the paths written."""
    md_path, curves, heat = grid_report_files(out)
    res = grid_results(path, resamples=resamples, seed=seed, level=level)
    figs = {f: fig for f, fig in ((curves, plot_grid_curves(res)), (heat, plot_grid_heatmaps(res))) if fig is not None}
    md_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(md_path, _markdown(res, [f.name for f in figs]))
    for f, fig in figs.items():
        write_atomic(f, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110))
    return [md_path, *figs]
