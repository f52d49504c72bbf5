"""The refinement in ``insid3lab bench --refine NAME``: the baseline refined like the pipeline, its own memory.

The authors refine in ``_finalize_mask`` (``models/insid3.py``): the mask upsampled to S x S is
refined with the target image, then resized to the original size. :func:`baseline_refined` does
the same after :func:`insid3lab.authors.baseline_segment`, so that both paths of the benchmark
run the same refiner and their masks stay comparable. :func:`refinement_memory` measures the
peak memory of one refinement on its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from insid3lab.authors import baseline_segment, load_image
from insid3lab.bench.timing import Stages, sync
from insid3lab.core.preprocess import denormalize
from insid3lab.stages.refine import bilinear, get_refiner
from insid3lab.stages.upsampling import upsample_mask

__all__ = ["REFINEMENT_STAGE", "baseline_refined", "refinement_memory", "refines", "reset_peak_rss", "rss_bytes"]

#: Name of the refinement's stage in the timings (the pipeline's and the baseline's).
REFINEMENT_STAGE = "refinement"


def refines(refine) -> bool:
    """Whether ``refine`` (a registered name or a callable) changes the upsampled mask at all."""
    return get_refiner(refine) is not bilinear


@torch.no_grad()
def baseline_refined(
    encoder,
    basis: Tensor,
    reference_images: Tensor,
    reference_masks: Tensor,
    target,
    *,
    refine,
    image_size: int,
    timings: dict[str, float] | None = None,
    **kw: Any,
) -> Tensor:
    """:func:`~insid3lab.authors.baseline_segment` followed by the refiner, as the authors' ``_finalize_mask``.

    Args:
        encoder, basis, reference_images, reference_masks, target, image_size: as in ``baseline_segment``.
        refine: a registered refiner name or a callable ``fn(mask (S, S) bool, image (3, S, S) in [0, 1])``.
        timings: a dict to fill with seconds per stage; the refiner's own under :data:`REFINEMENT_STAGE`.
        kw: the other keyword arguments of ``baseline_segment`` (``tau``, ``merge_threshold``, ``autocast_dtype``).

    Returns:
        (H, W) bool mask at the target's original size.
    """
    if not refines(refine):
        return baseline_segment(
            encoder, basis, reference_images, reference_masks, target, image_size=image_size, timings=timings, **kw
        )
    refiner = get_refiner(refine)
    device = reference_images.device
    clock = Stages(device, timings)
    with clock("preprocess"):  # the target read once: its normalised S x S tensor goes on unchanged
        x, orig = load_image(target, image_size, device)
    up = baseline_segment(
        encoder, basis, reference_images, reference_masks, x, image_size=image_size, resize_to_orig_size=False,
        timings=timings, **kw,
    )  # fmt: skip
    with clock(REFINEMENT_STAGE):
        up = refiner(up, denormalize(x[0]).to(up.device)).to(torch.bool)
    with clock("upsampling"):
        return upsample_mask(up, *orig)


def rss_bytes() -> tuple[int, int] | None:
    """(resident, peak resident) bytes of this process from ``/proc/self/status``; None where unreadable."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    found[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        return None
    return (found["VmRSS"], found["VmHWM"]) if len(found) == 2 else None


def reset_peak_rss() -> bool:
    """Set this process's peak resident size back to its current size (Linux ``clear_refs`` 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def refinement_memory(refine, mask: Tensor, image: Tensor) -> dict[str, Any]:
    """Peak memory of one refinement on its own, above what was allocated before it.

    Args:
        refine: a registered refiner name or a callable.
        mask: (S, S) bool, the upsampled mask (``Trace.mask_upsampled``).
        image: (3, S, S) float in [0, 1], on the mask's device.

    Returns:
        ``kind`` (``cuda_max_allocated`` or ``peak_rss_growth``) and ``bytes``: on CUDA the growth of
        the maximum allocated memory; on the CPU the growth of this process's peak resident size
        (reset just before, Linux only: torch's CPU allocator is invisible to ``tracemalloc``), None
        where it cannot be measured, with a ``note``.
    """
    refiner = get_refiner(refine)
    dev = mask.device
    if dev.type == "cuda":
        sync(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        refiner(mask, image)
        sync(dev)
        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated(dev) - before)}
    start = rss_bytes()
    if start is None or not reset_peak_rss():
        return {
            "kind": "peak_rss_growth",
            "bytes": None,
            "note": "the peak resident size cannot be reset on this system (Linux /proc/self/clear_refs); "
            "benchmarks/bench_crf.py measures the CRF's memory in a fresh process",
        }
    refiner(mask, image)
    end = rss_bytes()
    return {
        "kind": "peak_rss_growth",
        "bytes": max(0, end[1] - start[0]),
        "note": "growth of this process's peak resident size during one refinement",
    }
