"""Reading finished runs back: one run folder, one setting of a grid run, or the folder of a ``--fold all`` run.

A grid run (``insid3lab eval --grid``) is read as the run of its primary setting (the one its
``summary.json`` holds), or of any of its settings named after a colon: ``RUN:tau=0.5,merge_threshold=0.2``
(axes left out take the base setting's values; see :meth:`insid3lab.SettingsGrid.find`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import insid3lab
from insid3lab.core.warn import warn
from insid3lab.eval.run.files import GRID_FILE, read_records, run_files
from insid3lab.eval.run.grid import setting_record

__all__ = ["NotARunError", "load_fold_runs", "load_grid", "load_run", "run_inputs", "setting_run", "split_setting"]


class NotARunError(ValueError):
    """A folder that holds no finished evaluation run."""


def split_setting(text: str | os.PathLike) -> tuple[str, str | None]:
    """``"runs/a:tau=0.5"`` -> ``("runs/a", "tau=0.5")``; a path without a setting -> ``(path, None)``."""
    text = str(text)
    head, sep, tail = text.rpartition(":")
    if not sep or "=" not in tail or Path(text).exists():
        return text, None
    return head, tail


def _records(p: Path) -> dict[int, dict]:
    """The run's good records; lines that cannot be trusted are left out with one warning."""
    problems: list[str] = []
    records = {i: r for i, r in read_records(p, problems=problems).items() if "bad" not in r}
    if problems:
        warn(f"{p}: {len(problems)} line(s) of its records cannot be trusted and are left out: {'; '.join(problems)}")
    return records


def _read_json(f: Path, what: str) -> dict:
    try:
        doc = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NotARunError(f"{str(f)!r} is not {what} (not JSON: {e})") from None
    if not isinstance(doc, dict):
        raise NotARunError(f"{str(f)!r} is not {what}")
    return doc


def load_grid(path: str | os.PathLike) -> dict:
    """``{"path", "doc" (grid.json), "grid" (a SettingsGrid), "records" (raw, by index)}`` of a finished grid run.

    Raises:
        NotARunError: no ``grid.json`` (not a grid run) or a damaged one.
    """
    p = Path(path)
    f = p / GRID_FILE
    if not f.is_file():
        raise NotARunError(f"{str(p)!r} is not a grid run (no {GRID_FILE}): name the run folder alone")
    doc = _read_json(f, "a grid run's grid.json")
    try:
        configs = doc["configs"]
        base = insid3lab.Params(**doc["base"])
        grid = insid3lab.SettingsGrid.from_settings([c["params"] for c in configs], base)
    except (KeyError, TypeError, ValueError) as e:
        raise NotARunError(f"{str(f)!r} is not a grid run's grid.json ({e})") from None
    return {"path": str(p), "doc": doc, "grid": grid, "records": _records(p)}


def setting_run(g: dict, j: int) -> dict:
    """The run of setting ``j`` of a grid run read by :func:`load_grid`: ``{"path", "summary", "records", "setting"}``."""
    summary = g["doc"]["configs"][j]
    records = {i: setting_record(r, j) for i, r in g["records"].items()}
    return {"path": f"{g['path']}:{g['grid'].label(j)}", "summary": summary, "records": records, "setting": j}


def load_run(path: str | os.PathLike, setting: str | None = None) -> dict:
    """``{"path", "summary", "records"}`` of a finished run folder (``summary.json`` and ``results.jsonl``).

    ``path`` may name a setting of a grid run (``RUN:tau=0.5``), or ``setting`` may; a grid run without
    one is read as its primary setting (the one of its ``summary.json``).

    Raises:
        NotARunError: the folder has no ``summary.json`` (or it is not a run's summary); a setting of a run
            that is not a grid run.
        ValueError: a setting the grid run does not hold (its axes and values are listed).
    """
    if setting is None:
        path, setting = split_setting(path)
    p = Path(path)
    f = p / "summary.json"
    if not f.is_file():
        raise NotARunError(f"{str(p)!r} is not a finished evaluation run (no summary.json)")
    summary = _read_json(f, "a run summary")
    if "task" not in summary or "settings" not in summary:
        raise NotARunError(f"{str(f)!r} is not a run summary (no 'task' and 'settings')")
    if setting is not None or "grid" in summary:
        g = load_grid(p)
        if setting is None:
            return {**setting_run(g, int(g["doc"].get("primary", 0))), "path": str(p), "summary": summary}
        try:
            j = g["grid"].find(setting)
        except ValueError as e:
            raise ValueError(f"{str(p)!r}: {e}") from None
        return setting_run(g, j)
    records = _records(p)
    return {"path": str(p), "summary": summary, "records": records}


def load_fold_runs(path: str | os.PathLike) -> dict[str, dict]:
    """The runs of one folder: ``{"": run}`` for a run folder, ``{"fold0": run, ...}`` for a ``--fold all`` folder.

    Raises:
        NotARunError: neither a run nor a folder of fold runs (``folds.json``).
    """
    p = Path(path)
    if (p / "summary.json").is_file():
        return {"": load_run(p)}
    f = p / "folds.json"
    if f.is_file():
        try:
            folds = json.loads(f.read_text())["per_fold"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise NotARunError(f"{str(f)!r} is not a folds summary of insid3lab eval --fold all") from None
        return {name: load_run(p / name) for name in folds}
    raise NotARunError(f"{str(p)!r} is not an evaluation run (no summary.json, no folds.json)")


def run_inputs(path: str | os.PathLike) -> list[Path]:
    """The files of a run folder (a grid run's setting: ``RUN:SETTING``), or of a ``--fold all`` folder and its folds:
    what a report reads (never written)."""
    p = Path(split_setting(path)[0])
    files = run_files(p)
    for sub in sorted(p.glob("fold*")):
        if sub.is_dir():
            files += run_files(sub)
    return files
