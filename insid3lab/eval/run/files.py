"""The files of a run folder: the writer's lock, atomic writes, the per-episode records and their repair.

One run folder has one writer: :class:`RunLock` takes an exclusive ``fcntl.flock`` on
``RUN_DIR/.lock`` for the life of the run and writes its process id into it; a second
run into the same folder fails at once with "run folder RUN_DIR is in use by process N".
The operating system releases the lock when the process ends, however it ends, so a
killed run never leaves a stale lock behind.

Every record carries the digest of the run's settings (``run`` field, see
:func:`settings_digest`); a resumed run refuses records of other settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

__all__ = [
    "RESULTS",
    "RunFolderBusyError",
    "RunLock",
    "dist_info",
    "json_line",
    "now",
    "package_version",
    "plain",
    "read_records",
    "read_run_file",
    "repair_tail",
    "settings_digest",
    "write_atomic",
    "write_json",
]

RESULTS = "results.jsonl"
LOCK = ".lock"


class RunFolderBusyError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Exclusive lock on ``out_dir/.lock`` (``fcntl.flock``), held until :meth:`release` or the process ends."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunFolderBusyError(
                f"run folder {str(self.path.parent)!r} is in use by process {self._holder()}; "
                "wait for it to finish or choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _holder(self) -> str:
        # the holder writes its pid right after locking: give it a moment
        for _ in range(20):
            try:
                text = self.path.read_text().strip()
            except OSError:
                text = ""
            if text.isdigit():
                return text
            time.sleep(0.05)
        return "(unknown)"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def settings_digest(identity: dict) -> str:
    """16 hex digits identifying a run's settings (everything a record's numbers depend on)."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def json_line(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True, allow_nan=True) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file in the same folder, then rename."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as fh:
        tmp = fh.name
        try:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        except BaseException:
            fh.close()
            os.unlink(tmp)
            raise
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True))


def read_run_file(path: Path) -> dict:
    """The content of ``run.json``; a file that is not one raises a ValueError naming it."""
    try:
        doc = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{str(path)!r} is not a run description (invalid JSON: {e}); remove the folder or "
            "choose another output folder"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("identity", {}), dict):
        raise ValueError(f"{str(path)!r} is not a run description (expected an object with 'identity')")  # noqa: TRY004
    return doc


def _parse(line: bytes) -> dict | None:
    try:
        rec = json.loads(line)
        int(rec["index"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def repair_tail(path: Path) -> None:
    """Make the last line of a records file whole: a complete record lacking only its newline gets it
    (NUL padding after it dropped); a torn or NUL-padded tail is cut. Appends then start on a fresh line."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        tail = data[cut:].rstrip(b"\0")
        f.seek(cut)
        f.truncate()
        if tail and _parse(tail) is not None:
            f.write(tail + b"\n")


def read_records(out_dir: str | os.PathLike) -> dict[int, dict]:
    """All per-episode records found in ``out_dir`` (``results.jsonl`` and per-rank files), by episode index.

    Lines that do not parse (an interrupted write) are skipped; for an episode recorded
    twice (a bad episode retried on resume) the later record counts.
    """
    out: dict[int, dict] = {}
    for f in sorted(Path(out_dir).glob("results*.jsonl")):
        with open(f, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    continue  # an unterminated tail: repaired (kept or cut) before a run reads it
                rec = _parse(line)
                if rec is None:
                    continue
                idx = int(rec["index"])
                if idx not in out or "bad" in out[idx]:
                    out[idx] = rec
    return out


def dist_info():
    """``(torch.distributed or None, rank, world size)`` of the running process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size()
    return None, 0, 1


def now() -> str:
    """The current UTC time, ISO 8601 to the second (for run files)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def plain(v):
    """A numpy scalar, torch dtype or device as a JSON-serialisable value (anything else unchanged)."""
    import numpy as np
    import torch

    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, (torch.dtype, torch.device)):
        return str(v).replace("torch.", "")
    return v


def package_version() -> str:
    """insid3lab's version, recorded in run summaries."""
    from insid3lab import __version__

    return __version__
