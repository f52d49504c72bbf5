"""The files insid3lab writes: whole or not at all, with the permissions the umask gives, strict JSON.

:func:`write_atomic` writes every file (masks, overlays, figures, JSON, run files, cache entries)
through a temporary file in the same folder that is renamed over the destination once complete:
an interrupted or failed write (a full disk) leaves the destination as it was and no temporary
file behind. The temporary file is created like any new file (mode 0o666 less the umask), so
outputs get the permissions the user's umask gives; a failed write raises ``OSError`` naming the
destination.

:func:`json_text` is the one JSON writer: strict JSON (RFC 8259), where a value that is not a
number (NaN, which the metrics use for "undefined": no episode, no ground truth) is written as
``null`` and infinities are refused.
"""

from __future__ import annotations

import errno as _errno
import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["finite", "json_text", "naming", "write_atomic"]


def _temporary(path: Path) -> tuple[Path, int]:
    """A new hidden file beside ``path`` with its extension (writers that choose the format by it work),
    created exclusively with mode 0o666 (the umask applies); its path and an open descriptor."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(_errno.EEXIST, "no free temporary name", str(path))  # pragma: no cover


def write_atomic(path: str | os.PathLike, content: bytes | str | Callable[[Path], None]) -> Path:
    """Write ``path`` whole or not at all; returns it.

    Args:
        path: the destination (its folder is created).
        content: the bytes or text (UTF-8) to write, or a function ``content(tmp)`` that writes
            the file ``tmp`` (a hidden name beside ``path`` with the same extension).

    Raises:
        OSError: naming ``path`` (not the temporary file) when the write fails, e.g. a full disk;
            the destination is then unchanged and the temporary file removed. Errors of
            ``content(tmp)`` other than ``OSError`` are raised as they are, after the same cleanup.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _temporary(path)
    except OSError as e:
        _reraise(e, path)
    try:
        if callable(content):
            os.close(fd)
            fd = -1
            content(tmp)
            fd = os.open(tmp, os.O_RDONLY)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException as e:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            _reraise(e, path)
        raise
    return path


def naming(e: OSError, path: str | os.PathLike) -> OSError:
    """``e`` as an OSError of the same errno naming ``path`` (the file the caller asked for); ``e`` itself
    when it already does."""
    if e.errno is None:
        return e if str(path) in str(e) else OSError(f"cannot write {path}: {e}")
    if e.filename == str(path):
        return e
    return type(e)(e.errno, e.strerror or os.strerror(e.errno), str(path))


def _reraise(e: OSError, path: Path):
    named = naming(e, path)
    if named is e:
        raise e
    raise named from e


def finite(obj):
    """``obj`` with every float NaN replaced by None (JSON null), through dicts, lists and tuples.

    Raises:
        ValueError: an infinite value (it has no JSON form; it is a bug, not a missing number).
    """
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            raise ValueError(f"{obj} has no JSON form")
        return obj
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj, *, indent: int | None = 2, sort_keys: bool = False, **kw) -> str:
    """Strict JSON of ``obj`` (NaN written as ``null``, see :func:`finite`), ending in a newline when indented."""
    text = json.dumps(finite(obj), indent=indent, sort_keys=sort_keys, allow_nan=False, **kw)
    return text + "\n" if indent is not None else text
