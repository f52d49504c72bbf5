"""Reading finished runs back: one run folder, or the folder of a ``--fold all`` run."""

from __future__ import annotations

import json
import os
from pathlib import Path

from insid3lab.core.warn import warn
from insid3lab.eval.run.files import read_records, run_files

__all__ = ["NotARunError", "load_fold_runs", "load_run", "run_inputs"]


class NotARunError(ValueError):
    """A folder that holds no finished evaluation run."""


def load_run(path: str | os.PathLike) -> dict:
    """``{"path", "summary", "records"}`` of a finished run folder (``summary.json`` and ``results.jsonl``).

    Raises:
        NotARunError: the folder has no ``summary.json`` (or it is not a run's summary).
    """
    p = Path(path)
    f = p / "summary.json"
    if not f.is_file():
        raise NotARunError(f"{str(p)!r} is not a finished evaluation run (no summary.json)")
    try:
        summary = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NotARunError(f"{str(f)!r} is not a run summary (not JSON: {e})") from None
    if not isinstance(summary, dict) or "task" not in summary or "settings" not in summary:
        raise NotARunError(f"{str(f)!r} is not a run summary (no 'task' and 'settings')")
    problems: list[str] = []
    records = {i: r for i, r in read_records(p, problems=problems).items() if "bad" not in r}
    if problems:
        warn(f"{p}: {len(problems)} line(s) of its records cannot be trusted and are left out: {'; '.join(problems)}")
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
    """The files of a run folder, or of a ``--fold all`` folder and its folds: what a report reads (never written)."""
    p = Path(path)
    files = run_files(p)
    for sub in sorted(p.glob("fold*")):
        if sub.is_dir():
            files += run_files(sub)
    return files
