"""Content digests of tensors and modules: every byte counts.

A digest of a module covers every parameter and buffer of its ``state_dict`` in order,
with each name, shape and dtype, and the bytes of every element. It is recomputed on
every call: PyTorch gives no reliable signal that a weight changed (``param.data.copy_``
does not even bump the tensor's version counter), and hashing is cheap next to loading
the weights (about half a second per GB of float32 weights on one core). Tensors are
hashed in parallel threads (``hashlib`` releases the GIL on large buffers).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

__all__ = ["module_digest", "tensor_bytes", "tensors_digest"]

_PARALLEL_MIN_BYTES = 16 << 20  # below this many bytes in all, hash in the calling thread


def tensor_bytes(t: Tensor) -> memoryview:
    """The raw bytes of ``t`` (any dtype, any device; copied to the CPU when needed), C order."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.view(torch.uint8).numpy())


def _one(t: Tensor) -> bytes:
    return hashlib.sha1(tensor_bytes(t)).digest()


def tensors_digest(items: Iterable[tuple[str, Tensor]], *, salt: str = "", digest_size: int = 16) -> str:
    """A hex digest of named tensors: names, shapes, dtypes and every element's bytes, in the order given."""
    items = [(str(k), v) for k, v in items]
    total = sum(v.numel() * v.element_size() for _, v in items)
    workers = min(8, os.cpu_count() or 1)
    if total >= _PARALLEL_MIN_BYTES and workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            parts = list(ex.map(_one, (v for _, v in items)))
    else:
        parts = [_one(v) for _, v in items]
    h = hashlib.blake2b(digest_size=digest_size)
    h.update(salt.encode())
    for (name, v), part in zip(items, parts):
        h.update(f"\0{name}:{tuple(v.shape)}:{v.dtype}\0".encode())
        h.update(part)
    return h.hexdigest()


def module_digest(module: nn.Module, extra: Mapping[str, Tensor] | None = None, *, digest_size: int = 12) -> str:
    """A hex digest of a module's full content: its class name, every state_dict tensor, and ``extra`` tensors.

    ``extra`` holds tensors that shape the output without being in the state dict (e.g. RoPE periods).
    """
    with torch.no_grad():
        items = list(module.state_dict(keep_vars=False).items())
        items += [(f"extra:{k}", torch.as_tensor(v)) for k, v in (extra or {}).items()]
        return tensors_digest(items, salt=type(module).__qualname__, digest_size=digest_size)
