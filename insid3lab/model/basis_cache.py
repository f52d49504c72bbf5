"""On-disk cache of positional bases (one SVD per weights, image size and basis images).

Entries live in ``cache_dir() / "basis"`` as ``<fingerprint>-s<size>-v<format>.pt`` for the
black image and ``<fingerprint>-s<size>-noise<count>s<seed>-v<format>.pt`` for noise images
(:func:`basis_tag`). The
fingerprint is a digest of the encoder's full content (every byte of every parameter and
buffer, see :mod:`insid3lab.core.digest`), so two models share an entry only when their weights
are identical. Each entry stores a checksum of its tensors; on load the checksum, shapes
(``U`` (C, m), ``S`` (m,), ``mean`` (C,)), dtype (float32) and finiteness are verified. A bad
entry is reported once with a warning, removed, and recomputed; in a read-only cache folder
it is skipped (the basis is recomputed in memory) with one warning.

Entries are written whole or not at all (:func:`insid3lab.core.files.write_atomic`), with the
permissions the umask gives. The checksum detects damage (a torn write, flipped bits), not
tampering: anyone who can write to the cache folder can replace an entry by another basis with a
matching checksum, and every model of those weights would then debias with it. Entries are
loaded with ``torch.load(weights_only=True)``, which builds tensors and plain containers only, so
a crafted file cannot run code; the cache trusts the folder as it trusts the weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from insid3lab.core.digest import module_digest, tensors_digest
from insid3lab.core.files import write_atomic
from insid3lab.core.warn import warn as _warn

__all__ = [
    "basis_cache_path",
    "basis_tag",
    "cache_dir",
    "cache_entries",
    "cache_info",
    "clear_cache",
    "load_basis",
    "save_basis",
    "weights_fingerprint",
]

# 3: full-content fingerprints; entries carry a checksum and are validated on load.
_FORMAT = 3
# The names this cache writes: entries of any format version, and its temporary files (those of
# insid3lab.core.files.write_atomic, and of earlier versions).
_NAME = r"[0-9a-f]+-s\d+(?:-noise\d+s\d+)?-v\d+\.pt"
_ENTRY = re.compile(_NAME)
_TEMP = re.compile(rf"\.{_NAME}\.[0-9a-f]+\.tmp\.pt|{_NAME}\.[A-Za-z0-9_]+\.tmp")
_TAG = re.compile(r"black|noise\d+s\d+")
# Damaged entries already reported (one warning each per process).
_reported: set[Path] = set()


def cache_dir() -> Path:
    """The cache folder: ``$INSID3LAB_CACHE_DIR`` if set, else the user cache dir (e.g. ``~/.cache/insid3lab``)."""
    env = os.environ.get("INSID3LAB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("insid3lab"))


def weights_fingerprint(encoder) -> str | None:
    """A hex digest of an encoder's full content, or None when it has nothing to identify it by.

    For a ``nn.Module``: its class name, every state_dict tensor's name, shape, dtype and bytes,
    and its ``rope_periods`` when it has them (``DinoV3Backbone``: equal to its ``fingerprint()``).
    Recomputed on each call, so in-place changes of the weights give a new fingerprint.
    Other objects: their own ``fingerprint()`` when they have one, else None.
    """
    if isinstance(encoder, nn.Module):
        if not encoder.state_dict():
            return None
        periods = getattr(encoder, "rope_periods", None)
        extra = {"rope_periods": periods} if isinstance(periods, Tensor) else None
        return module_digest(encoder, extra)
    fp = getattr(encoder, "fingerprint", None)
    return str(fp()) if callable(fp) else None


def basis_tag(image: str = "black", count: int = 0, seed: int = 0) -> str:
    """What a basis was estimated from, as it appears in the cache key: ``"black"`` for the black image
    (``count`` and ``seed`` play no part), ``"noise<count>s<seed>"`` for ``count`` noise images of ``seed``."""
    if image == "black":
        return "black"
    if image == "noise":
        return f"noise{int(count)}s{int(seed)}"
    raise ValueError(f"basis image {image!r}: allowed 'black', 'noise'")


def basis_cache_path(fingerprint: str, image_size: int, tag: str = "black") -> Path:
    """Where the basis of these weights at this input side, estimated from ``tag`` (:func:`basis_tag`), is stored."""
    if not _TAG.fullmatch(tag):
        raise ValueError(f"basis tag {tag!r}: must come from basis_tag() ('black' or 'noise<count>s<seed>')")
    extra = "" if tag == "black" else f"-{tag}"
    return cache_dir() / "basis" / f"{fingerprint}-s{image_size}{extra}-v{_FORMAT}.pt"


def _checksum(U: Tensor, S: Tensor, mean: Tensor) -> str:
    return tensors_digest([("U", U), ("S", S), ("mean", mean)], salt=f"basis-v{_FORMAT}")


def _problem(data, fingerprint: str, image_size: int, tag: str, channels: int | None) -> str | None:
    """Why a loaded entry cannot be used, or None when it is sound."""
    if not isinstance(data, dict):
        return f"it holds a {type(data).__name__}, not a basis"
    missing = [k for k in ("U", "S", "mean", "checksum", "format") if k not in data]
    if missing:
        return f"it lacks {missing}"
    U, S, mean = data["U"], data["S"], data["mean"]
    if not all(isinstance(t, Tensor) for t in (U, S, mean)):
        return "U, S and mean must be tensors"
    if data["format"] != _FORMAT:
        return f"format {data['format']!r} is not {_FORMAT}"
    if data.get("fingerprint") != fingerprint or data.get("image_size") != image_size:
        return "it belongs to other weights or another image size"
    if data.get("basis_tag", "black") != tag:  # entries written before the tag existed are black-image bases
        return f"it was estimated from {data.get('basis_tag')!r}, not {tag!r}"
    if U.ndim != 2 or S.shape != (U.shape[1],) or mean.shape != (U.shape[0],):
        return f"shapes U {tuple(U.shape)}, S {tuple(S.shape)}, mean {tuple(mean.shape)} are not (C, m), (m,), (C,)"
    if channels is not None and U.shape[0] != channels:
        return f"it has {U.shape[0]} channels, the encoder {channels}"
    if any(t.dtype != torch.float32 for t in (U, S, mean)):
        return f"dtypes {U.dtype}, {S.dtype}, {mean.dtype} are not float32"
    if not all(bool(torch.isfinite(t).all()) for t in (U, S, mean)):
        return "it holds NaN or infinite values"
    if data["checksum"] != _checksum(U, S, mean):
        return "its checksum does not match its contents"
    return None


def load_basis(fingerprint: str, image_size: int, *, tag: str = "black", channels: int | None = None) -> dict | None:
    """The cached SVD (``U`` (C, m), ``S`` (m,), ``mean`` (C,), float32 CPU) or None.

    ``tag``: what the basis was estimated from (:func:`basis_tag`). ``channels``: the encoder's C,
    checked when given. A damaged or mismatched entry gives one
    warning and None (the caller recomputes); it is deleted unless the folder is read-only.
    """
    path = basis_cache_path(fingerprint, image_size, tag)
    if not path.is_file():
        return None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
        reason = _problem(data, fingerprint, image_size, tag, channels)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a damaged entry
        reason = f"it cannot be read ({type(e).__name__})"
    if reason is None:
        return {k: data[k] for k in ("U", "S", "mean")}
    try:
        path.unlink(missing_ok=True)
        action = "deleted it; recomputing the basis"
    except OSError:
        action = "the cache folder is read-only, so it is skipped and the basis is recomputed in memory"
    if path not in _reported:
        _reported.add(path)
        _warn(f"cached positional basis {path} is unusable ({reason}): {action}")
    return None


def save_basis(fingerprint: str, image_size: int, U, S, mean, *, tag: str = "black") -> Path | None:
    """Store an SVD estimated from ``tag`` (:func:`basis_tag`) whole or not at all, with its checksum.

    Returns the entry's path; None when a damaged entry at that path was already reported
    (its folder is read-only) and the write failed again. Other write failures raise ``OSError``
    naming the entry, whatever the writer raised (``torch.save`` reports a full disk as a
    ``RuntimeError``); nothing is left behind.
    """
    path = basis_cache_path(fingerprint, image_size, tag)
    U, S, mean = (t.detach().to("cpu", torch.float32).contiguous() for t in (U, S, mean))
    entry = {
        "format": _FORMAT,
        "fingerprint": fingerprint,
        "image_size": int(image_size),
        "basis_tag": tag,
        "U": U,
        "S": S,
        "mean": mean,
        "checksum": _checksum(U, S, mean),
    }

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            try:
                torch.save(entry, f)
            except OSError:
                raise
            except Exception as e:  # noqa: BLE001 - torch reports write failures as RuntimeError
                raise OSError(f"cannot write {path}: {_one_line(e)}") from e

    try:
        write_atomic(path, save)
    except OSError:
        if path in _reported:
            return None
        raise
    return path


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (torch's carry C++ frames on the lines after the first)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def cache_entries() -> list[Path]:
    """The files this cache wrote (entries of every format version and leftover temporary files), sorted."""
    d = cache_dir() / "basis"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and (_ENTRY.fullmatch(p.name) or _TEMP.fullmatch(p.name)))


def cache_info() -> dict:
    """``{"folder": Path, "entries": n, "bytes": total, "stale": entries of older formats}`` of the basis cache."""
    files = [p for p in cache_entries() if _ENTRY.fullmatch(p.name)]
    size = 0
    for p in files:
        try:
            size += p.stat().st_size
        except OSError:
            pass
    stale = sum(1 for p in files if not p.name.endswith(f"-v{_FORMAT}.pt"))
    return {"folder": cache_dir() / "basis", "entries": len(files), "bytes": size, "stale": stale}


def clear_cache() -> int:
    """Delete the cache's own files (nothing else in its folder); returns how many entries were removed."""
    n = 0
    for p in cache_entries():
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        n += bool(_ENTRY.fullmatch(p.name))
    d = cache_dir() / "basis"
    try:
        d.rmdir()  # only when nothing else is left in it
    except OSError:
        pass
    return n
