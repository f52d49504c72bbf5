"""On-disk cache of positional bases (one SVD per weights and image size)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import torch
from torch import nn

__all__ = ["cache_dir", "weights_fingerprint", "basis_cache_path", "load_basis", "save_basis", "clear_cache"]

_FORMAT = 2  # 2: bases are always computed in float32 (fast mode no longer writes bf16 bases)


def cache_dir() -> Path:
    """The cache folder: ``$INSID3LAB_CACHE_DIR`` if set, else the user cache dir (e.g. ``~/.cache/insid3lab``)."""
    env = os.environ.get("INSID3LAB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("insid3lab"))


def weights_fingerprint(encoder: nn.Module) -> str | None:
    """A short digest of an encoder's weights, or None when it has no tensors to identify it by.

    Uses the encoder's own ``fingerprint()`` when it has one (``DinoV3Backbone`` does).
    """
    fp = getattr(encoder, "fingerprint", None)
    if callable(fp):
        return str(fp())
    if not isinstance(encoder, nn.Module):
        return None
    state = encoder.state_dict()
    if not state:
        return None
    h = hashlib.blake2b(digest_size=12)
    h.update(type(encoder).__qualname__.encode())
    with torch.no_grad():
        for name, t in sorted(state.items()):
            flat = t.detach().reshape(-1)
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            stride = max(1, flat.numel() // 4096)
            h.update(flat[::stride].float().cpu().numpy().tobytes())
            h.update(repr(float(flat.double().sum())).encode())
    return h.hexdigest()


def basis_cache_path(fingerprint: str, image_size: int) -> Path:
    """Where the basis of these weights at this input side is stored."""
    return cache_dir() / "basis" / f"{fingerprint}-s{image_size}-v{_FORMAT}.pt"


def load_basis(fingerprint: str, image_size: int) -> dict | None:
    """The cached SVD (``U``, ``S``, ``mean``) or None; a corrupt file is removed and ignored."""
    path = basis_cache_path(fingerprint, image_size)
    if not path.is_file():
        return None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
        if not {"U", "S", "mean"} <= set(data):
            raise ValueError("incomplete")
        return data
    except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
        path.unlink(missing_ok=True)
        return None


def save_basis(fingerprint: str, image_size: int, U, S, mean) -> Path:
    """Store an SVD atomically (write to a temporary file, then rename)."""
    path = basis_cache_path(fingerprint, image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"U": U.detach().cpu(), "S": S.detach().cpu(), "mean": mean.detach().cpu()}, str(tmp))
    os.replace(tmp, path)
    return path


def clear_cache() -> int:
    """Delete every cached basis; returns how many files were removed."""
    d = cache_dir() / "basis"
    if not d.is_dir():
        return 0
    n = sum(1 for p in d.iterdir() if p.is_file())
    shutil.rmtree(d)
    return n
