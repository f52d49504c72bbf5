"""``run_benchmark``: the pipeline and the authors' procedure timed on the same inputs, in one process.

The steps, each a function below: load the weights; get ready (positional basis, reference
shots); an untimed warm-up; peak memory of one target (CUDA); every target timed stage by
stage, pipeline then baseline; images per second with batched passes; the fast mode's
agreement with float32; cold-start processes. Everything after ``features`` in a timing
is the decode.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from insid3lab.authors import baseline_basis
from insid3lab.bench.coldstart import cold_starts
from insid3lab.bench.concepts import measure_concepts
from insid3lab.bench.inputs import load_inputs
from insid3lab.bench.refinement import REFINEMENT_STAGE, baseline_refined, refinement_memory, refines
from insid3lab.bench.stages import (
    BASELINE_STAGES,
    DECODE_STAGES,
    PIPELINE_STAGES,
    baseline_report,
    decode_seconds,
    decode_vs_encoding,
    mask_iou,
    stage_names,
    stage_report,
)
from insid3lab.bench.timing import encoder_device, peak_rss_bytes, ratio, summary, sync
from insid3lab.bench.tracking import measure_tracking, sequence_inputs
from insid3lab.core.preprocess import denormalize
from insid3lab.method.params import Params, check_param

__all__ = ["BASELINE_STAGES", "DECODE_STAGES", "PIPELINE_STAGES", "mask_iou", "run_benchmark", "stage_names"]


def _dtype_name(d) -> str:
    return str(d).replace("torch.", "")


@dataclass
class _Run:
    """What the steps of one benchmark share: settings, the model, the inputs and the measurements."""

    settings: dict[str, Any]
    say: Callable[[str], None]
    autocast: torch.dtype | None
    refs: list
    targets: list
    backbone: Any = None
    pipe: Any = None
    device: torch.device | None = None
    baseline_inputs: tuple | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device is not None and self.device.type == "cuda"

    def pipeline(self, **changes):
        from insid3lab.model.insid3 import INSID3

        s = self.settings
        keys = ("image_size", "svd_components", "tau", "merge_threshold", "clustering", "refine")
        kw = {k: s[k] for k in keys} | {"basis_cache": False, "autocast_dtype": self.autocast, "progress": False}
        kw.update(changes)
        return INSID3(self.backbone, **kw)

    def baseline(self, target, times=None) -> Tensor:
        s = self.settings
        basis, ref_x, ref_m = self.baseline_inputs
        return baseline_refined(
            self.backbone,
            basis,
            ref_x,
            ref_m,
            target,
            refine=s["refine"],
            image_size=s["image_size"],
            tau=s["tau"],
            merge_threshold=s["merge_threshold"],
            autocast_dtype=self.autocast,
            timings=times,
        )


def _timed(run: _Run, fn):
    sync(run.device)
    t0 = time.perf_counter()
    out = fn()
    sync(run.device)
    return out, time.perf_counter() - t0


def _load(run: _Run, load: Callable) -> None:
    """Weights, then the pipeline object (nothing computed yet)."""
    s = run.settings
    run.say(f"loading the weights: {s['model']}")
    t0 = time.perf_counter()
    run.backbone = load(
        s["model"], device=s["device"], dtype=s["weights_dtype"], arch=s["arch"], rope_periods=s["rope_periods"]
    )
    run.device = encoder_device(run.backbone)
    sync(run.device)
    run.results["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.pipe = run.pipeline()
    run.results["init_s"] = time.perf_counter() - t0
    if run.cuda:
        torch.cuda.reset_peak_memory_stats(run.device)


def _get_ready(run: _Run, with_baseline: bool) -> None:
    """The positional basis and the reference shots (and the baseline's basis and stacked shots)."""
    from insid3lab.core.preprocess import preprocess_image, preprocess_mask

    s = run.settings
    run.say("computing the positional basis")
    _, run.results["basis_s"] = _timed(run, run.pipe.positional.svd)
    run.say(f"encoding {len(run.refs)} reference shot(s)")

    def encode_refs():
        for img, m in run.refs:
            run.pipe.set_reference(img, m)
        run.pipe.shots.state()

    _, run.results["reference_encoding_s"] = _timed(run, encode_refs)
    run.results["baseline_basis_s"] = None
    if with_baseline:
        S = s["image_size"]
        ref_x = torch.cat([preprocess_image(img, S, device=run.device)[0] for img, _ in run.refs])
        ref_m = torch.cat([preprocess_mask(m, S, device=run.device) for _, m in run.refs])
        basis, run.results["baseline_basis_s"] = _timed(
            run, lambda: baseline_basis(run.backbone, S, s["svd_components"])
        )
        run.baseline_inputs = (basis, ref_x, ref_m)


def _warm_up(run: _Run, n: int, with_baseline: bool) -> None:
    import sklearn.cluster  # noqa: F401 - imported before timing: the first target would otherwise pay for it

    if n:
        run.say(f"warm-up: {n} untimed target(s) through every path")
    for i in range(n):
        t = run.targets[i % len(run.targets)]
        run.pipe.segment(t)
        if with_baseline:
            run.baseline(t)
        sync(run.device)


def _cuda_memory(run: _Run, with_baseline: bool) -> dict[str, Any]:
    """Peak CUDA memory of one target (on the CPU this comes from the cold-start processes)."""
    memory: dict[str, Any] = {"kind": "cuda_max_allocated" if run.cuda else "peak_rss"}
    if not run.cuda:
        return memory
    dev, t = run.device, run.targets[0]
    memory["resident_before_target_bytes"] = int(torch.cuda.memory_allocated(dev))
    torch.cuda.reset_peak_memory_stats(dev)
    _timed(run, lambda: run.pipe.segment(t))
    memory["pipeline_one_target_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    if with_baseline:
        torch.cuda.reset_peak_memory_stats(dev)
        _timed(run, lambda: run.baseline(t))
        memory["baseline_one_target_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    return memory


def _clock(run: _Run, fn) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    sync(run.device)
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    sync(run.device)
    return out, time.perf_counter() - t0, time.process_time() - c0


def _time_targets(run: _Run, with_baseline: bool) -> dict[str, list]:
    """Every target, pipeline then baseline, so that any drift of the machine hits both."""
    m: dict[str, list] = {k: [] for k in ("masks", "wall", "cpu", "stages", "b_masks", "b_wall", "b_cpu", "b_stages")}
    for i, t in enumerate(run.targets):
        run.say(f"target {i + 1}/{len(run.targets)}")
        times: dict[str, float] = {}
        if run.cuda:  # the headline time without per-stage synchronisation, then the breakdown
            mask, wall, cpu = _clock(run, lambda t=t: run.pipe.segment(t))
            run.pipe.segment(t, timings=times)
        else:
            mask, wall, cpu = _clock(run, lambda t=t, times=times: run.pipe.segment(t, timings=times))
        m["masks"].append(mask)
        m["wall"].append(wall)
        m["cpu"].append(cpu)
        m["stages"].append(times)
        if with_baseline:
            btimes: dict[str, float] = {}
            bmask, wall, cpu = _clock(run, lambda t=t, btimes=btimes: run.baseline(t, btimes))
            m["b_masks"].append(bmask)
            m["b_wall"].append(wall)
            m["b_cpu"].append(cpu)
            m["b_stages"].append(btimes)
    return m


def _throughput(run: _Run, batch_size: int, masks: list, wall: list[float]) -> dict[str, Any]:
    run.say(f"throughput: segment_many, batch size {batch_size}")
    n = len(run.targets)
    if batch_size > 1 or run.cuda:
        many, seconds = _timed(run, lambda: run.pipe.segment_many(run.targets, batch_size=batch_size))
        same = sum(bool(torch.equal(a, b)) for a, b in zip(many, masks))
        return {
            "batch_size": batch_size,
            "source": "segment_many",
            "seconds": seconds,
            "images_per_s": n / seconds,
            "masks_identical_to_segment": same,
        }
    total = sum(wall)
    return {
        "batch_size": 1,
        "source": "per-target pass (segment_many with batch size 1 does the same work)",
        "seconds": total,
        "images_per_s": n / total,
        "masks_identical_to_segment": n,
    }


def _fast_mode_agreement(run: _Run, masks: list) -> dict[str, Any]:
    """IoU of the fast mode's masks with float32 masks of the same inputs."""
    run.say("float32 masks of the same inputs for the fast mode's agreement")
    exact = run.pipeline(autocast_dtype=None)
    for img, m in run.refs:
        exact.set_reference(img, m)
    ious, same, nonempty = [], 0, 0
    for t, m in zip(run.targets, masks):
        m32 = exact.segment(t)
        ious.append(mask_iou(m, m32))
        same += bool(torch.equal(m.cpu(), m32.cpu()))
        nonempty += bool(m32.any())
    return {
        "dtype": _dtype_name(run.autocast),
        "mean_iou_vs_float32": statistics.fmean(ious),
        "min_iou_vs_float32": min(ious),
        "ious": ious,
        "identical": same,
        "nonempty_float32": nonempty,
        "targets": len(ious),
    }


def _refinement(run: _Run, stages: dict[str, float], runs: list[dict[str, float]]) -> dict[str, Any]:
    """The refinement's own time (per target, and as a fraction of the decode) and peak memory on one target."""
    run.say("peak memory of one refinement")
    _, trace = run.pipe.segment(run.targets[0], return_trace=True)
    image = denormalize(trace.target_image).to(trace.mask_upsampled.device)
    memory = refinement_memory(run.settings["refine"], trace.mask_upsampled, image)
    decode = decode_seconds(stages)
    return {
        "name": run.settings["refine"] if isinstance(run.settings["refine"], str) else "callable",
        "time": summary([r.get(REFINEMENT_STAGE, 0.0) for r in runs]),
        "fraction_of_decode": ratio(stages[REFINEMENT_STAGE], decode),
        "memory": memory,
        "band_pixels": None if trace.refine_band is None else int(trace.refine_band.sum()),
    }


def _cold_starts(run: _Run, mode: str, with_baseline: bool, loader: str, timeout: float) -> dict[str, Any]:
    """Fresh processes to their first mask: empty basis cache, warm basis cache, and the baseline."""
    spec = {k: v for k, v in run.settings.items() if k != "seed"}
    spec.update(
        device=str(run.device), loader=loader, autocast=None if run.autocast is None else _dtype_name(run.autocast)
    )
    modes = ("pipeline", "pipeline", "baseline") if mode == "all" and with_baseline else ("pipeline", "pipeline")
    return cold_starts(spec, run.refs, run.targets[0], modes, timeout=timeout, say=run.say)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()


def _config(run: _Run, batch_size: int, warmup: int, synthetic: bool) -> dict[str, Any]:
    s, pipe, cuda = run.settings, run.pipe, run.cuda
    return {
        "model": s["model"],
        "device": str(run.device),
        "device_name": _device_name(run.device),
        "mode": "exact" if run.autocast is None else "fast",
        "dtype": "float32" if run.autocast is None else _dtype_name(run.autocast),
        "weights_dtype": str(s["weights_dtype"]),
        "image_size": s["image_size"],
        "grid": list(pipe.grid),
        "embed_dim": pipe.embed_dim,
        "shots": len(run.refs),
        "targets": len(run.targets),
        "svd_components": s["svd_components"],
        "effective_components": pipe.positional.effective_components(),
        "tau": s["tau"],
        "merge_threshold": s["merge_threshold"],
        "clustering": s["clustering"],
        "refine": s["refine"] if isinstance(s["refine"], str) else getattr(s["refine"], "__name__", repr(s["refine"])),
        "batch_size": batch_size,
        "warmup": warmup,
        "inputs": f"synthetic (seed {s['seed']})" if synthetic else "files",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
    }


def _autocast_of(dtype: str | torch.dtype | None) -> torch.dtype | None:
    from insid3lab.backbone.loading import resolve_dtype

    d = resolve_dtype(dtype)
    return None if d == torch.float32 else d


def run_benchmark(
    model: str = "random:vits16",
    *,
    image_size: int = 1024,
    targets: int | None = None,
    shots: int = 1,
    device: str = "auto",
    autocast: str | None = None,
    weights_dtype: str | None = None,
    arch: str | None = None,
    rope_periods: str = "auto",
    svd_components: int = 500,
    tau: float = 0.6,
    merge_threshold: float = 0.2,
    clustering: str = "auto",
    refine=Params.refine,
    batch_size: int | None = None,
    warmup: int | None = None,
    baseline: bool = True,
    cold_start: str = "all",
    seed: int = 0,
    ref_images: Sequence[str] | None = None,
    ref_masks: Sequence[str] | None = None,
    target_images: Sequence[str] | None = None,
    child_timeout: float = 900.0,
    concepts: int | None = None,
    frames: int | None = None,
    load: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the pipeline and the baseline on the same inputs; returns a JSON-ready dict.

    Args:
        model: the model source given to ``load``.
        image_size: S.
        targets: number of targets timed; None: each of ``target_images`` once, else 8 synthetic ones. Given
            target images are repeated in turn to this count.
        shots: number k of synthetic reference shots (ignored when ``ref_images`` are given).
        device: ``auto``, ``cpu``, ``cuda``...
        autocast: compute dtype: ``None``/``float32`` (the exact mode) or ``bfloat16``/``float16`` (the fast
            mode: the backbone under autocast in that dtype, the decode in float32).
        weights_dtype: dtype the weights are stored in (None: float32).
        svd_components, tau, merge_threshold, clustering: as in :class:`~insid3lab.INSID3`.
        refine: the refiner after upsampling, as in :class:`~insid3lab.INSID3`; when it is not
            ``"bilinear"`` the baseline applies it too (as the authors' ``_finalize_mask``), both
            report its time as the stage ``"refinement"`` and ``refinement`` holds its own time
            and peak memory.
        batch_size: targets per backbone pass for the throughput (default 8 on CUDA, 1 elsewhere).
        warmup: untimed targets (through both paths) before timing; default 1.
        baseline: also run the baseline.
        cold_start: ``"all"`` (pipeline with an empty and a warm basis cache, and the baseline),
            ``"pipeline"``, or ``"none"``.
        seed: seed of the synthetic inputs.
        ref_images, ref_masks, target_images: real inputs instead of synthetic ones.
        child_timeout: seconds a cold-start process may take.
        concepts: N: also time N concepts against one per target (``concepts``, see
            :func:`~insid3lab.bench.concepts.measure_concepts`).
        frames: N: also time ``track`` (memory 4) against ``segment`` per frame on a synthetic
            sequence of N frames (``tracking``, see :func:`~insid3lab.bench.tracking.measure_tracking`).
        load: a module-level function ``load(source, *, device, dtype, arch, rope_periods)`` returning the
            backbone (default :func:`insid3lab.backbone.load_backbone`); cold-start processes import it by name.
        log: a callable receiving status lines (default: none).
    """
    if cold_start not in ("all", "pipeline", "none"):
        raise ValueError(f"cold_start={cold_start!r}: allowed 'all', 'pipeline', 'none'")
    if (
        (targets is not None and targets < 1)
        or shots < 1
        or (concepts is not None and concepts < 1)
        or (frames is not None and frames < 2)
    ):
        raise ValueError(
            f"targets={targets}, shots={shots}, concepts={concepts}, frames={frames}: targets, shots "
            "and concepts must be at least 1, frames at least 2"
        )
    refine = check_param("refine", refine)
    if cold_start != "none" and not isinstance(refine, str):
        raise ValueError(f"refine={refine!r}: cold-start processes take a registered name; pass cold_start='none'")
    if load is None:
        from insid3lab.backbone import load_backbone as load
    loader = f"{load.__module__}:{load.__qualname__}"
    refs, tgts = load_inputs(
        shots, targets, seed=seed, ref_images=ref_images, ref_masks=ref_masks, target_images=target_images
    )
    settings = {
        "model": model,
        "device": device,
        "weights_dtype": weights_dtype,
        "arch": arch,
        "rope_periods": rope_periods,
        "image_size": image_size,
        "svd_components": svd_components,
        "tau": tau,
        "merge_threshold": merge_threshold,
        "clustering": clustering,
        "refine": refine,
        "seed": seed,
    }
    run = _Run(settings, log or (lambda msg: None), _autocast_of(autocast), refs, tgts)

    _load(run, load)
    bs = batch_size or (8 if run.cuda else 1)
    n_warm = 1 if warmup is None else warmup
    _get_ready(run, baseline)
    _warm_up(run, n_warm, baseline)
    memory = _cuda_memory(run, baseline)
    m = _time_targets(run, baseline)
    throughput = _throughput(run, bs, m["masks"], m["wall"])
    fast = _fast_mode_agreement(run, m["masks"]) if run.autocast is not None else None

    timing = stage_report(m["wall"], m["cpu"], m["stages"], stage_names(refine))
    stages = timing["stages"]
    peak_rss = peak_rss_bytes()  # the refinement's memory resets this process's peak on the CPU
    refinement = _refinement(run, stages, m["stages"]) if refines(refine) else None
    res: dict[str, Any] = {
        "config": _config(run, bs, n_warm, synthetic=not target_images),
        **{k: run.results[k] for k in ("load_s", "init_s", "basis_s", "reference_encoding_s")},
        **timing,
        "decode_vs_encoding": decode_vs_encoding(stages),
        "throughput": throughput,
        "images_per_s": throughput["images_per_s"],
        "memory": memory,
        "mask_pixels": [int(x.sum()) for x in m["masks"]],
        "fast_mode": fast,
        "refinement": refinement,
        "baseline": None,
        "ratios": None,
    }
    if baseline:
        b = res["baseline"] = {"basis_s": run.results["baseline_basis_s"], **baseline_report(m, refine)}
        res["ratios"] = {
            "per_target": ratio(res["per_target"]["mean_s"], b["per_target"]["mean_s"]),
            "per_target_cpu_time": ratio(res["per_target"]["cpu_mean_s"], b["per_target"]["cpu_mean_s"]),
            "decode": ratio(res["decode"]["mean_s"], b["decode"]["mean_s"]),
        }
    cold = None
    if cold_start != "none":
        cold = _cold_starts(run, cold_start, baseline, loader, child_timeout)
        if not run.cuda:
            memory["pipeline_one_target_bytes"] = cold["pipeline_warm_cache"].get("peak_rss_bytes")
            if "baseline" in cold:
                memory["baseline_one_target_bytes"] = cold["baseline"].get("peak_rss_bytes")
            memory["note"] = "peak resident set size of a fresh process that loads the model and segments one target"
    res["cold_start"] = cold
    res["concepts"] = concepts and measure_concepts(run.pipeline, *run.refs[0], run.targets, concepts, log=run.say)
    res["tracking"] = frames and measure_tracking(run.pipeline(), *sequence_inputs(frames, seed=seed), log=run.say)
    now = peak_rss_bytes()
    memory["this_process_peak_rss_bytes"] = None if now is None else max(now, peak_rss or 0)
    return res
