"""The files of a run folder: the writer's lock, atomic writes, the per-episode records and their repair.

One run folder has one writer: :class:`RunLock` takes an exclusive ``fcntl.flock`` on
``RUN_DIR/.lock`` for the life of the run and writes its process id into it; a second
run into the same folder fails at once with "run folder RUN_DIR is in use by process N".
The file is removed when the run ends; the operating system releases the lock when the
process ends, however it ends, so the file a killed run leaves behind locks nothing.

Every record carries the digest of the run's settings (``run`` field, see
:func:`settings_digest`); a resumed run refuses records of other settings. Every record
also carries the digest of its own content (``digest`` field, :func:`record_digest`):
a line that is not a record, a record whose content does not match its digest (edited or
damaged), a line that repeats another and two different records of one episode are set
aside by :func:`read_records`, which names each such line, and their episodes are
evaluated again. The digest detects damage and edits by hand, not a forger: it is a
checksum, not a signature.

Every file is written whole or not at all (:func:`insid3lab.core.files.write_atomic`) and
every JSON file is strict JSON: a value that does not exist (a score without an evaluated
episode) is ``null``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from insid3lab.core import files as _files
from insid3lab.core.files import json_text

__all__ = [
    "RESULTS",
    "RUN_FILES",
    "RecordFile",
    "RunExistsError",
    "RunFolderBusyError",
    "RunLock",
    "dist_info",
    "json_line",
    "now",
    "package_version",
    "plain",
    "read_records",
    "read_run_file",
    "record_digest",
    "repair_tail",
    "run_files",
    "settings_digest",
    "write_atomic",
    "write_json",
]

RESULTS = "results.jsonl"
LOCK = ".lock"
#: The files a run writes in its folder (with the per-process ``results.rank<R>.jsonl`` while it runs) and the
#: mean over folds of a ``--fold all`` folder.
RUN_FILES = ("run.json", "episodes.json", RESULTS, "summary.json", "per_class.png", "folds.json")


def run_files(folder: str | os.PathLike) -> list[Path]:
    """The run's own files that exist in ``folder`` (:data:`RUN_FILES` and per-process records)."""
    folder = Path(folder)
    found = [folder / n for n in RUN_FILES if (folder / n).is_file()]
    return found + sorted(folder.glob("results.rank*.jsonl"))


class RunFolderBusyError(RuntimeError):
    """Another process holds the run folder's lock."""


class RunExistsError(FileExistsError):
    """The run folder already holds a run and resuming was not asked for; ``folder`` names it."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = str(folder)
        super().__init__(
            f"{self.folder} already holds an evaluation run; pass resume=True to continue it, or choose another "
            "output folder"
        )


class RunLock:
    """Exclusive lock on ``out_dir/.lock`` (``fcntl.flock``), held until :meth:`release` or the process ends."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunFolderBusyError(
                    f"run folder {str(self.path.parent)!r} is in use by process {self._holder()}; "
                    "wait for it to finish or choose another output folder"
                ) from None
            # the file a finishing run removed may be the one locked here: lock the file the folder holds
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
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
        """Remove the lock file (while still holding the lock) and release the lock."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def settings_digest(identity: dict) -> str:
    """16 hex digits identifying a run's settings (everything a record's numbers depend on)."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_digest(rec: dict) -> str:
    """16 hex digits of a record's content (every field but ``digest``, as strict JSON with sorted keys)."""
    body = {k: v for k, v in rec.items() if k != "digest"}
    return hashlib.sha1(json_text(body, indent=None, sort_keys=True).encode()).hexdigest()[:16]


def json_line(rec: dict) -> str:
    """One line of ``results.jsonl``: the record (NaN as null) with the digest of its content."""
    rec = _files.finite(rec)
    return json_text({**rec, "digest": record_digest(rec)}, indent=None, sort_keys=True) + "\n"


class RecordFile:
    """``results.jsonl`` (or a process's own records file) open for appending: one line per finished
    record, flushed at once; a failed write (a full disk) raises ``OSError`` naming the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = None

    def __enter__(self) -> RecordFile:
        self._fh = open(self.path, "a")  # noqa: SIM115 - closed by __exit__
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._fh.close()
        except OSError:
            if exc[0] is None:
                raise

    def write(self, rec: dict) -> None:
        try:
            self._fh.write(json_line(rec))
            self._fh.flush()
        except OSError as e:
            raise _files.naming(e, self.path) from e


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`insid3lab.core.files.write_atomic`)."""
    _files.write_atomic(path, text)


def write_json(path: Path, obj) -> None:
    """``obj`` as strict JSON (NaN as null) in ``path``, written whole or not at all."""
    _files.write_atomic(path, json_text(obj))


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


def _check(line: bytes) -> tuple[dict | None, str | None]:
    """(record, None) for a sound line; (None, why) for one that cannot be trusted."""
    rec = _parse(line)
    if rec is None:
        return None, "not a record (corrupt or truncated)"
    if "digest" not in rec:
        return None, "has no digest of its content"
    if rec["digest"] != record_digest(rec):
        return None, "its digest does not match its content (edited or damaged)"
    return rec, None


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


def read_records(out_dir: str | os.PathLike, *, problems: list[str] | None = None) -> dict[int, dict]:
    """All per-episode records found in ``out_dir`` (``results.jsonl`` and per-rank files), by episode index.

    Lines that cannot be trusted are set aside: a line that is not a record, a record whose
    digest does not match its content, a line that repeats an earlier one (the earlier is kept),
    and two different records of one episode (both). An unterminated last line (an interrupted
    write, repaired by :func:`repair_tail` before a run reads it) is passed over. For an episode
    first recorded as bad and then evaluated again, the later record counts.

    Args:
        problems: when given, receives one line per line set aside: ``"FILE line N: why"``.
    """
    out: dict[int, dict] = {}
    where: dict[int, tuple[Path, int]] = {}
    conflicted: set[int] = set()
    said = [] if problems is None else problems

    def at(f: Path, ref: tuple[Path, int]) -> str:
        return f"line {ref[1]}" if ref[0] == f else f"{ref[0]} line {ref[1]}"

    for f in sorted(Path(out_dir).glob("results*.jsonl")):
        with open(f, "rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.endswith(b"\n"):
                    continue
                rec, why = _check(line)
                if rec is None:
                    said.append(f"{f} line {n}: {why}")
                    continue
                idx = int(rec["index"])
                if idx in conflicted:
                    said.append(f"{f} line {n}: episode {idx} has records that differ; all are set aside")
                    continue
                if idx not in out:
                    out[idx], where[idx] = rec, (f, n)
                elif rec == out[idx]:
                    said.append(f"{f} line {n}: repeats {at(f, where[idx])}")
                elif "bad" in out[idx]:
                    out[idx], where[idx] = rec, (f, n)  # a bad episode evaluated again
                else:
                    first = where[idx]
                    said.append(f"{f} line {n}: episode {idx} has a different record on {at(f, first)}; "
                                "both are set aside")  # fmt: skip
                    conflicted.add(idx)
                    del out[idx], where[idx]
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
