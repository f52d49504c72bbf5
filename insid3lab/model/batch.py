"""Many targets in batched backbone passes, with one error policy: stop and keep, or skip and record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from insid3lab.model.encoding import SegmentManyError, describe

__all__ = ["segment_batches"]


def segment_batches(
    targets: list,
    batch_size: int,
    *,
    prepare: Callable[[Any, int], tuple],
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[..., Any],
    on_error: str = "raise",
    progress: bool = True,
) -> tuple[list, list[tuple[int, str]]]:
    """Run ``prepare`` per target, ``encode`` per batch and ``decode`` per target, in order.

    Args:
        targets: the targets as given.
        batch_size: targets per ``encode`` call.
        prepare: ``(target, index) -> (x (1, 3, S, S), (H, W))``.
        encode: ``(B, 3, S, S) -> (B, C, h, w)`` features.
        decode: ``(x, (H, W), features (C, h, w), target) -> result``.
        on_error: ``"raise"``: a :class:`SegmentManyError` naming the target and carrying the results
            so far; ``"skip"``: None for that target and the error in the returned list.
        progress: show a progress bar.

    Returns:
        (one result or None per target, [(index, message) per skipped target]).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}: allowed 'raise', 'skip'")
    from tqdm.auto import tqdm

    results: list = []
    errors: list[tuple[int, str]] = []

    def fail(i: int, target, err: Exception) -> None:
        msg = f"target {i} ({describe(target)}) failed: {type(err).__name__}: {err}"
        if on_error == "raise":
            raise SegmentManyError(
                msg + f" ({len(results)} mask(s) computed before it are in .masks)", i, target, list(results)
            ) from err
        errors.append((i, msg))

    bar = tqdm(total=len(targets), desc="segment", unit="img", disable=not progress)
    try:
        for start in range(0, len(targets), batch_size):
            prepared = []
            for i, t in enumerate(targets[start : start + batch_size], start):
                try:
                    prepared.append((i, t, *prepare(t, i)))
                except Exception as e:  # noqa: BLE001 - reported with the target's name
                    fail(i, t, e)
                    prepared.append((i, t, None, None))
            ok = [p for p in prepared if p[2] is not None]
            feats = iter(encode(torch.cat([p[2] for p in ok]))) if ok else iter(())
            for i, t, x, orig in prepared:
                result = None
                if x is not None:
                    try:
                        result = decode(x, orig, next(feats), t)
                    except Exception as e:  # noqa: BLE001
                        fail(i, t, e)
                results.append(result)
                bar.update(1)
    finally:
        bar.close()
    return results, errors
