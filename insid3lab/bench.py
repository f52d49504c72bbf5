"""Speed and memory of INSID3, stage by stage, against re-encoding the reference for every target.

``insid3lab bench`` (and ``benchmarks/bench_insid3.py``) measures, in one run:

- the cost of getting ready: loading the weights, the positional basis, encoding the
  reference shots;
- every target segmented against the cached reference, with the time of each stage
  (``preprocess``, ``features`` = the backbone, then the decode stages ``references``,
  ``debias``, ``forward``, ``backward``, ``clustering``, ``aggregation``, ``upsampling``);
- the same targets segmented by the *baseline*: the authors' procedure, which passes the
  reference shots and the target through the backbone together for every target, builds
  the prototype again, clusters with scikit-learn on the CPU and computes per-cluster
  statistics one cluster at a time. Its masks are compared with the pipeline's;
- images per second with batched backbone passes (:meth:`INSID3.segment_many`);
- peak memory: CUDA's maximum allocated bytes around one target, or on the CPU the peak
  resident set size of a fresh process that segments one target;
- cold start: a new Python process from its start to its first mask, with an empty and
  with a warm positional-basis cache, and the same for the baseline;
- in the fast mode (``--dtype bfloat16`` or ``float16``: the backbone under autocast, the
  decode in float32), the IoU of its masks with the float32 masks of the same inputs.

Inputs are synthetic scenes drawn from a seed (or images given with ``--ref``/``--target``),
so random weights (``--model random:vitl16``) measure the real amount of work without a
download; their masks mean nothing, but they must still agree between the paths.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .authors import baseline_basis, baseline_segment

__all__ = [
    "PIPELINE_STAGES",
    "BASELINE_STAGES",
    "synthetic_inputs",
    "baseline_basis",
    "baseline_segment",
    "mask_iou",
    "run_benchmark",
    "format_summary",
    "add_bench_arguments",
    "add_bench_parser",
    "benchmark_from_args",
    "cmd_bench",
    "cold_start_child",
    "main",
]

#: Stages timed for the pipeline; everything after ``features`` is the decode.
PIPELINE_STAGES = ("preprocess", "features", "references", "debias", "forward", "backward",
                   "clustering", "aggregation", "upsampling")
#: Stages timed for the baseline; everything after ``features`` is the decode.
BASELINE_STAGES = ("preprocess", "features", "debias", "prototype", "forward", "backward",
                   "clustering", "aggregation", "upsampling")
_NOT_DECODE = ("preprocess", "features")
_CHILD_MARK = "INSID3LAB-BENCH-CHILD "
_CHILD_CODE = (
    "import time; _t = time.time(); import sys; "
    "from insid3lab.bench import cold_start_child; cold_start_child(_t, sys.argv[1])"
)


# --------------------------------------------------------------------------- inputs
def _scene(rng: np.random.Generator, height: int, width: int, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 scene: a textured background, distractor shapes and one object of ``colour``."""
    yy, xx = np.mgrid[:height, :width]
    img = np.empty((height, width, 3), np.float32)
    img[:] = rng.uniform(0, 255, 3)
    img += 25 * np.sin(xx[..., None] / rng.uniform(8, 40) + rng.uniform(0, 6, 3))
    side = min(height, width)
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.integers(side // 12, side // 4, size=2)
        box = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
        img[box] = rng.uniform(0, 255, 3)
    cy, cx = rng.integers(side // 4, height - side // 4), rng.integers(side // 4, width - side // 4)
    r = rng.integers(side // 8, side // 4)
    obj = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    img[obj] = colour + 30 * np.sin(yy[obj] / 6.0)[:, None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), obj


def synthetic_inputs(shots: int, targets: int, *, seed: int = 0, size: tuple[int, int] = (480, 640)):
    """Reference shots and targets showing one object of a shared colour among distractors.

    Args:
        shots: number k of reference (image, mask) pairs.
        targets: number of target images.
        seed: everything is a function of the seed.
        size: (H, W) of the reference images; targets vary around it (0.75x to 1.25x per side).

    Returns:
        ``refs``: list of (PIL image, PIL "L" mask with 255 on the object), ``targets``: list of PIL images.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    colour = rng.uniform(0, 225, 3)
    refs = []
    for _ in range(shots):
        img, obj = _scene(rng, size[0], size[1], colour)
        refs.append((Image.fromarray(img), Image.fromarray(obj.astype(np.uint8) * 255)))
    tgts = []
    for _ in range(targets):
        h = int(size[0] * rng.uniform(0.75, 1.25))
        w = int(size[1] * rng.uniform(0.75, 1.25))
        tgts.append(Image.fromarray(_scene(rng, h, w, colour)[0]))
    return refs, tgts


# --------------------------------------------------------------------------- timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Stages:
    """Wall-clock seconds per named stage, CUDA synchronised around each."""

    def __init__(self, device: torch.device, times: dict[str, float] | None):
        self.device = device
        self.times = times

    @contextmanager
    def __call__(self, name: str):
        if self.times is None:
            yield
            return
        _sync(self.device)
        t0 = time.perf_counter()
        yield
        _sync(self.device)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def mask_iou(a: Tensor, b: Tensor) -> float:
    """Intersection over union of two bool masks of one shape; 1.0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool().cpu(), b.bool().cpu()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _peak_rss_bytes() -> int | None:
    """Peak resident set size of this process so far, in bytes (None where it cannot be read).

    On Linux the high-water mark of the process's own address space (``VmHWM``): unlike
    ``getrusage``'s ``ru_maxrss``, it does not inherit the peak of the parent that started it.
    Elsewhere ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --------------------------------------------------------------------------- the baseline
def _encoder_device(encoder) -> torch.device:
    dev = getattr(encoder, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(encoder.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


# --------------------------------------------------------------------------- statistics
def _summary(values: Sequence[float]) -> dict[str, Any]:
    v = [float(x) for x in values]
    if not v:
        return {"mean_s": None, "median_s": None, "min_s": None, "max_s": None, "times_s": []}
    return {"mean_s": statistics.fmean(v), "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "times_s": v}


def _stage_means(runs: list[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Mean seconds per stage over runs (a stage a run skipped counts 0)."""
    out = {}
    for name in names:
        out[name] = statistics.fmean([r.get(name, 0.0) for r in runs]) if runs else 0.0
    return out


def _decode_times(runs: list[dict[str, float]]) -> list[float]:
    return [sum(v for k, v in r.items() if k not in _NOT_DECODE) for r in runs]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


# --------------------------------------------------------------------------- cold start
def _child_env(cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if cache_dir is not None:
        env["INSID3LAB_CACHE_DIR"] = cache_dir
    return env


def _run_child(spec: dict[str, Any], cache_dir: str | None, timeout: float) -> dict[str, Any]:
    """Start a fresh interpreter that segments one target; its timings relative to the start."""
    t_spawn = time.time()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD_CODE, json.dumps(spec)], capture_output=True, text=True,
                              env=_child_env(cache_dir), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no mask after {timeout:.0f} s"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(_CHILD_MARK)), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}
    rep = json.loads(line[len(_CHILD_MARK):])
    marks = rep.pop("marks")
    out = {
        "total_s": marks["mask"] - t_spawn,
        "interpreter_s": marks["start"] - t_spawn,
        "import_s": marks["imported"] - marks["start"],
        "weights_s": marks["weights"] - marks["imported"],
        "init_s": marks["init"] - marks["weights"],
        "reference_s": marks["reference"] - marks["init"],
        "first_target_s": marks["mask"] - marks["reference"],
    }
    out["total_minus_weights_s"] = out["total_s"] - out["weights_s"]
    out["after_imports_minus_weights_s"] = out["total_minus_weights_s"] - out["interpreter_s"] - out["import_s"]
    out.update(rep)
    return out


def cold_start_child(t_start: float, spec_json: str) -> None:
    """Body of a cold-start process: load, get ready, segment one target, print timestamps.

    ``spec_json`` describes the model and the inputs (file paths). ``mode`` ``"pipeline"`` uses
    :class:`~insid3lab.INSID3` with the on-disk basis cache (``$INSID3LAB_CACHE_DIR``);
    ``"baseline"`` builds the basis at start-up and runs :func:`baseline_segment`. One line
    ``INSID3LAB-BENCH-CHILD {json}`` is printed with wall-clock timestamps (``time.time()``)
    and peak memory.
    """
    from . import cache as _cache
    from .cli import load_model_source
    from .preprocess import preprocess_image, preprocess_mask

    spec = json.loads(spec_json)
    marks = {"start": t_start, "imported": time.time()}
    autocast = None if spec["autocast"] is None else getattr(torch, spec["autocast"])
    backbone = load_model_source(spec["model"], device=spec["device"], dtype=spec["weights_dtype"],
                                 arch=spec.get("arch"), rope_periods=spec.get("rope_periods", "auto"))
    device = _encoder_device(backbone)
    _sync(device)
    marks["weights"] = time.time()
    S = spec["image_size"]
    extra: dict[str, Any] = {}
    if spec["mode"] == "pipeline":
        from .pipeline import INSID3

        model = INSID3(backbone, image_size=S, svd_components=spec["svd_components"], tau=spec["tau"],
                       merge_threshold=spec["merge_threshold"], clustering=spec["clustering"], basis_cache=True,
                       autocast_dtype=autocast, progress=False)
        fp = _cache.weights_fingerprint(backbone)
        extra["basis_cache_hit"] = bool(fp) and _cache.basis_cache_path(fp, S).is_file()
        marks["init"] = time.time()
        for img, m in zip(spec["refs"], spec["ref_masks"]):
            model.set_reference(img, m)
        _sync(device)
        marks["reference"] = time.time()
        mask = model.segment(spec["target"])
    else:
        basis = baseline_basis(backbone, S, spec["svd_components"])
        marks["init"] = time.time()
        xs = torch.cat([preprocess_image(img, S, device=device)[0] for img in spec["refs"]])
        ms = torch.cat([preprocess_mask(m, S, device=device) for m in spec["ref_masks"]])
        _sync(device)
        marks["reference"] = time.time()
        mask = baseline_segment(backbone, basis, xs, ms, spec["target"], image_size=S, tau=spec["tau"],
                                merge_threshold=spec["merge_threshold"], autocast_dtype=autocast)
    _sync(device)
    marks["mask"] = time.time()
    rep = {"marks": marks, "mode": spec["mode"], "mask_pixels": int(mask.sum()), "peak_rss_bytes": _peak_rss_bytes(), **extra}
    if device.type == "cuda":
        rep["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
    print(_CHILD_MARK + json.dumps(rep), flush=True)


# --------------------------------------------------------------------------- the benchmark
def _autocast_of(dtype: str | torch.dtype | None) -> torch.dtype | None:
    from .backbone.loading import resolve_dtype

    d = resolve_dtype(dtype)
    return None if d == torch.float32 else d


def _save_inputs(folder: Path, refs, targets) -> tuple[list[str], list[str], list[str]]:
    paths_r, paths_m, paths_t = [], [], []
    for i, (img, m) in enumerate(refs):
        paths_r.append(str(folder / f"ref{i}.png"))
        paths_m.append(str(folder / f"ref{i}_mask.png"))
        img.save(paths_r[-1])
        m.save(paths_m[-1])
    for i, t in enumerate(targets):
        paths_t.append(str(folder / f"target{i}.png"))
        t.save(paths_t[-1])
    return paths_r, paths_m, paths_t


def run_benchmark(
    model: str = "random:vits16",
    *,
    image_size: int = 1024,
    targets: int = 8,
    shots: int = 1,
    device: str = "auto",
    dtype: str = "float32",
    weights_dtype: str = "float32",
    arch: str | None = None,
    rope_periods: str = "auto",
    svd_components: int = 500,
    tau: float = 0.6,
    merge_threshold: float = 0.2,
    clustering: str = "auto",
    batch_size: int | None = None,
    warmup: int | None = None,
    baseline: bool = True,
    cold_start: str = "all",
    seed: int = 0,
    ref_images: Sequence[str] | None = None,
    ref_masks: Sequence[str] | None = None,
    target_images: Sequence[str] | None = None,
    child_timeout: float = 900.0,
    log=None,
) -> dict[str, Any]:
    """Measure the pipeline and the baseline on the same inputs; returns a JSON-ready dict.

    Args:
        model: weights (hub id, folder, file) or ``random:ARCH`` (see :func:`insid3lab.cli.load_model_source`).
        image_size: S.
        targets: number of synthetic targets (ignored when ``target_images`` are given).
        shots: number k of synthetic reference shots (ignored when ``ref_images`` are given).
        device: ``auto``, ``cpu``, ``cuda``...
        dtype: ``float32`` (the exact mode) or ``bfloat16``/``float16`` (the fast mode: the backbone
            under autocast in that dtype, the decode in float32).
        weights_dtype: dtype the weights are stored in.
        svd_components, tau, merge_threshold, clustering: as in :class:`~insid3lab.INSID3`.
        batch_size: targets per backbone pass for the throughput (default 8 on CUDA, 1 elsewhere).
        warmup: untimed targets (through both paths) before timing; default 1.
        baseline: also run the baseline.
        cold_start: ``"all"`` (pipeline with an empty and a warm basis cache, and the baseline),
            ``"pipeline"``, or ``"none"``.
        seed: seed of the synthetic inputs.
        ref_images, ref_masks, target_images: real inputs instead of synthetic ones.
        child_timeout: seconds a cold-start process may take.
        log: a callable receiving progress lines (default: none).
    """
    from PIL import Image

    from .cli import load_model_source
    from .pipeline import INSID3
    from .preprocess import preprocess_image, preprocess_mask

    say = log or (lambda msg: None)
    if cold_start not in ("all", "pipeline", "none"):
        raise ValueError(f"cold_start={cold_start!r}: allowed 'all', 'pipeline', 'none'")
    if targets < 1 or shots < 1:
        raise ValueError(f"targets={targets}, shots={shots}: both must be at least 1")
    autocast = _autocast_of(dtype)

    synth_refs, synth_targets = synthetic_inputs(0 if ref_images else shots, 0 if target_images else targets, seed=seed)
    if ref_images:
        if not ref_masks or len(ref_masks) != len(ref_images):
            raise ValueError(f"{len(ref_images)} reference image(s) but {len(ref_masks or [])} mask(s): give one mask per image")
        refs = [(Image.open(r), Image.open(m)) for r, m in zip(ref_images, ref_masks)]
    else:
        refs = synth_refs
    tgts = [Image.open(t) for t in target_images] if target_images else synth_targets

    say(f"loading {model}")
    t0 = time.perf_counter()
    backbone = load_model_source(model, device=device, dtype=weights_dtype, arch=arch, rope_periods=rope_periods)
    dev = _encoder_device(backbone)
    _sync(dev)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe = INSID3(backbone, image_size=image_size, svd_components=svd_components, tau=tau,
                  merge_threshold=merge_threshold, clustering=clustering, basis_cache=False,
                  autocast_dtype=autocast, progress=False)
    init_s = time.perf_counter() - t0
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    bs = batch_size or (8 if cuda else 1)
    n_warm = 1 if warmup is None else warmup

    say("positional basis")
    t0 = time.perf_counter()
    pipe.positional_svd()
    _sync(dev)
    basis_s = time.perf_counter() - t0

    say(f"encoding {len(refs)} reference shot(s)")
    t0 = time.perf_counter()
    for img, m in refs:
        pipe.set_reference(img, m)
    pipe._reference_state()
    _sync(dev)
    reference_s = time.perf_counter() - t0

    ref_x = torch.cat([preprocess_image(img, image_size, device=dev)[0] for img, _ in refs])
    ref_m = torch.cat([preprocess_mask(m, image_size, device=dev) for _, m in refs])
    U = None
    baseline_basis_s = None
    if baseline:
        t0 = time.perf_counter()
        U = baseline_basis(backbone, image_size, svd_components)
        _sync(dev)
        baseline_basis_s = time.perf_counter() - t0

    def run_baseline(t, times=None):
        return baseline_segment(backbone, U, ref_x, ref_m, t, image_size=image_size, tau=tau,
                                merge_threshold=merge_threshold, autocast_dtype=autocast, timings=times)

    import sklearn.cluster  # noqa: F401 - imported before timing: the first target would otherwise pay for it

    for i in range(n_warm):
        pipe.segment(tgts[i % len(tgts)])
        if baseline:
            run_baseline(tgts[i % len(tgts)])
        _sync(dev)

    memory: dict[str, Any] = {"kind": "cuda_max_allocated" if cuda else "peak_rss"}
    if cuda:
        memory["resident_before_target_bytes"] = int(torch.cuda.memory_allocated(dev))
        torch.cuda.reset_peak_memory_stats(dev)
        pipe.segment(tgts[0])
        _sync(dev)
        memory["pipeline_one_target_bytes"] = int(torch.cuda.max_memory_allocated(dev))
        if baseline:
            torch.cuda.reset_peak_memory_stats(dev)
            run_baseline(tgts[0])
            _sync(dev)
            memory["baseline_one_target_bytes"] = int(torch.cuda.max_memory_allocated(dev))

    # Per target, pipeline then baseline, so that any drift of the machine hits both.
    masks, ours_wall, ours_cpu, ours_stages = [], [], [], []
    base_masks, base_wall, base_cpu, base_stages = [], [], [], []
    for i, t in enumerate(tgts):
        say(f"target {i + 1}/{len(tgts)}")
        if cuda:  # the headline time without per-stage synchronisation, then the breakdown
            _sync(dev)
            c0, t0 = time.process_time(), time.perf_counter()
            mask = pipe.segment(t)
            _sync(dev)
            ours_wall.append(time.perf_counter() - t0)
            ours_cpu.append(time.process_time() - c0)
            times: dict[str, float] = {}
            pipe.segment(t, timings=times)
        else:
            times = {}
            c0, t0 = time.process_time(), time.perf_counter()
            mask = pipe.segment(t, timings=times)
            ours_wall.append(time.perf_counter() - t0)
            ours_cpu.append(time.process_time() - c0)
        masks.append(mask)
        ours_stages.append(times)
        if baseline:
            times = {}
            _sync(dev)
            c0, t0 = time.process_time(), time.perf_counter()
            base_masks.append(run_baseline(t, times))
            base_wall.append(time.perf_counter() - t0)
            base_cpu.append(time.process_time() - c0)
            base_stages.append(times)

    say(f"throughput: segment_many, batch size {bs}")
    if bs > 1 or cuda:
        _sync(dev)
        t0 = time.perf_counter()
        many = pipe.segment_many(tgts, batch_size=bs)
        _sync(dev)
        many_s = time.perf_counter() - t0
        throughput = {"batch_size": bs, "source": "segment_many", "seconds": many_s, "images_per_s": len(tgts) / many_s,
                      "masks_identical_to_segment": sum(bool(torch.equal(a, b)) for a, b in zip(many, masks))}
    else:
        total = sum(ours_wall)
        throughput = {"batch_size": 1, "source": "per-target pass (segment_many with batch size 1 does the same work)",
                      "seconds": total, "images_per_s": len(tgts) / total, "masks_identical_to_segment": len(tgts)}

    fast = None
    if autocast is not None:
        say("float32 masks of the same inputs for the fast mode's agreement")
        exact = INSID3(backbone, image_size=image_size, svd_components=svd_components, tau=tau,
                       merge_threshold=merge_threshold, clustering=clustering, basis_cache=False, progress=False)
        for img, m in refs:
            exact.set_reference(img, m)
        ious = []
        same = nonempty = 0
        for t, m in zip(tgts, masks):
            m32 = exact.segment(t)
            ious.append(mask_iou(m, m32))
            same += bool(torch.equal(m.cpu(), m32.cpu()))
            nonempty += bool(m32.any())
        fast = {"dtype": str(autocast).replace("torch.", ""), "mean_iou_vs_float32": statistics.fmean(ious),
                "min_iou_vs_float32": min(ious), "ious": ious, "identical": same, "nonempty_float32": nonempty,
                "targets": len(ious)}
        del exact

    ours_dec = _decode_times(ours_stages)
    res: dict[str, Any] = {
        "config": {
            "model": model, "device": str(dev), "device_name": _device_name(dev), "mode": "exact" if autocast is None else "fast",
            "dtype": "float32" if autocast is None else str(autocast).replace("torch.", ""), "weights_dtype": str(weights_dtype),
            "image_size": image_size, "grid": list(pipe.grid), "embed_dim": pipe.embed_dim, "shots": len(refs),
            "targets": len(tgts), "svd_components": svd_components, "effective_components": pipe.effective_components(),
            "tau": tau, "merge_threshold": merge_threshold, "clustering": clustering, "batch_size": bs, "warmup": n_warm,
            "inputs": "files" if target_images else f"synthetic (seed {seed})",
            "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
            "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) if cuda else None,
        },
        "load_s": load_s,
        "init_s": init_s,
        "basis_s": basis_s,
        "reference_encoding_s": reference_s,
        "per_target": {**_summary(ours_wall), "cpu_s": ours_cpu, "cpu_mean_s": statistics.fmean(ours_cpu)},
        "stages": _stage_means(ours_stages, PIPELINE_STAGES),
        "decode": _summary(ours_dec),
        "throughput": throughput,
        "images_per_s": throughput["images_per_s"],
        "memory": memory,
        "mask_pixels": [int(m.sum()) for m in masks],
        "fast_mode": fast,
    }
    if baseline:
        base_dec = _decode_times(base_stages)
        identical = sum(bool(torch.equal(a.cpu(), b.cpu())) for a, b in zip(masks, base_masks))
        res["baseline"] = {
            "procedure": "backbone over [reference shots, target] for every target; prototype rebuilt; full similarity "
                         "matrices; scikit-learn clustering on the CPU; per-cluster loops",
            "basis_s": baseline_basis_s,
            "per_target": {**_summary(base_wall), "cpu_s": base_cpu, "cpu_mean_s": statistics.fmean(base_cpu)},
            "stages": _stage_means(base_stages, BASELINE_STAGES),
            "decode": _summary(base_dec),
            "masks_identical": identical == len(masks),
            "identical": identical,
            "mean_iou": statistics.fmean(mask_iou(a, b) for a, b in zip(masks, base_masks)),
        }
        res["ratios"] = {
            "per_target": _ratio(res["per_target"]["mean_s"], res["baseline"]["per_target"]["mean_s"]),
            "per_target_cpu_time": _ratio(res["per_target"]["cpu_mean_s"], res["baseline"]["per_target"]["cpu_mean_s"]),
            "decode": _ratio(res["decode"]["mean_s"], res["baseline"]["decode"]["mean_s"]),
        }
    else:
        res["baseline"] = None
        res["ratios"] = None

    cold = None
    if cold_start != "none":
        with tempfile.TemporaryDirectory(prefix="insid3lab-bench-") as tmp:
            folder = Path(tmp)
            pr, pm, pt = _save_inputs(folder, refs, tgts[:1])
            spec = {"model": model, "device": str(dev), "weights_dtype": str(weights_dtype), "arch": arch,
                    "rope_periods": rope_periods, "autocast": None if autocast is None else str(autocast).replace("torch.", ""),
                    "image_size": image_size, "svd_components": svd_components, "tau": tau,
                    "merge_threshold": merge_threshold, "clustering": clustering, "refs": pr, "ref_masks": pm, "target": pt[0]}
            cache_dir = str(folder / "cache")
            cold = {}
            say("cold start: empty basis cache")
            cold["pipeline_cold_cache"] = _run_child({**spec, "mode": "pipeline"}, cache_dir, child_timeout)
            say("cold start: warm basis cache")
            cold["pipeline_warm_cache"] = _run_child({**spec, "mode": "pipeline"}, cache_dir, child_timeout)
            if cold_start == "all" and baseline:
                say("cold start: baseline")
                cold["baseline"] = _run_child({**spec, "mode": "baseline"}, None, child_timeout)
        if not cuda:
            memory["pipeline_one_target_bytes"] = cold["pipeline_warm_cache"].get("peak_rss_bytes")
            if "baseline" in cold:
                memory["baseline_one_target_bytes"] = cold["baseline"].get("peak_rss_bytes")
            memory["note"] = "peak resident set size of a fresh process that loads the model and segments one target"
    res["cold_start"] = cold
    memory["this_process_peak_rss_bytes"] = _peak_rss_bytes()
    return res


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- report
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f} ms" if x < 1 else f"{x:.2f} s"


def _gb(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e9:.2f} GB"


def format_summary(res: dict[str, Any]) -> str:
    """A compact text report of :func:`run_benchmark`'s result."""
    c = res["config"]
    lines = [
        f"insid3lab bench: {c['model']} on {c['device']} ({c['device_name']}), {c['dtype']} ({c['mode']} mode), "
        f"S={c['image_size']} ({c['grid'][0]}x{c['grid'][1]} cells), {c['shots']} shot(s), {c['targets']} target(s)",
        f"  ready: weights {_ms(res['load_s'])} | basis {_ms(res['basis_s'])} | reference encoding {_ms(res['reference_encoding_s'])}",
    ]
    b = res.get("baseline")
    pt, dec = res["per_target"], res["decode"]
    if b:
        r = res["ratios"]
        lines.append(f"  per target: {_ms(pt['mean_s'])} (median {_ms(pt['median_s'])}) vs baseline {_ms(b['per_target']['mean_s'])}"
                     f"  -> ratio {r['per_target']:.3f} (CPU-time ratio {r['per_target_cpu_time']:.3f})")
        lines.append(f"  decode:     {_ms(dec['mean_s'])} vs baseline {_ms(b['decode']['mean_s'])}  -> ratio {r['decode']:.3f}")
        lines.append(f"  masks identical to the baseline: {b['identical']}/{c['targets']} (mean IoU {b['mean_iou']:.4f})")
    else:
        lines.append(f"  per target: {_ms(pt['mean_s'])} (median {_ms(pt['median_s'])}); decode {_ms(dec['mean_s'])}")
    lines.append("  stages:   " + ", ".join(f"{k} {_ms(v)}" for k, v in res["stages"].items()))
    if b:
        lines.append("  baseline: " + ", ".join(f"{k} {_ms(v)}" for k, v in b["stages"].items()))
    tp = res["throughput"]
    lines.append(f"  throughput: {tp['images_per_s']:.3f} images/s (batch {tp['batch_size']}, {tp['source']}); "
                 f"masks equal to segment(): {tp['masks_identical_to_segment']}/{c['targets']}")
    mem = res["memory"]
    what = "CUDA max allocated" if mem["kind"] == "cuda_max_allocated" else "peak RSS of a fresh process"
    lines.append(f"  peak memory ({what}), one target: {_gb(mem.get('pipeline_one_target_bytes'))}"
                 f" vs baseline {_gb(mem.get('baseline_one_target_bytes'))}")
    cold = res.get("cold_start")
    if cold:
        parts = []
        for key, label in (("pipeline_cold_cache", "empty basis cache"), ("pipeline_warm_cache", "warm basis cache"), ("baseline", "baseline")):
            if key in cold:
                v = cold[key]
                parts.append(f"{label} {v['error']}" if "error" in v else
                             f"{label} {_ms(v['total_s'])} (weights {_ms(v['weights_s'])}, imports {_ms(v['import_s'])})")
        lines.append("  cold start to first mask: " + "; ".join(parts))
    f = res.get("fast_mode")
    if f:
        lines.append(f"  fast mode ({f['dtype']}) vs float32: mean IoU {f['mean_iou_vs_float32']:.4f} (min {f['min_iou_vs_float32']:.4f}), "
                     f"{f['identical']}/{f['targets']} identical, {f['nonempty_float32']} non-empty float32 masks")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``insid3lab bench`` (shared with ``benchmarks/bench_insid3.py``)."""
    p.add_argument("--model", default=os.environ.get("INSID3LAB_WEIGHTS", "random:vitl16"),
                   help="DINOv3 weights (hub id, folder, file) or random:ARCH (random:tiny, random:vits16, random:vitb16, "
                        "random:vitl16) for random weights without a download (default: $INSID3LAB_WEIGHTS or %(default)s)")
    p.add_argument("--arch", default=None, help="architecture override for Meta files")
    p.add_argument("--rope-periods", default="auto", choices=["auto", "checkpoint", "bf16", "fp32"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="float32: the exact mode; bfloat16/float16: the fast mode (backbone under autocast, decode in "
                        "float32), whose masks are compared with float32 masks (default %(default)s)")
    p.add_argument("--weights-dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="dtype the weights are stored in (default %(default)s)")
    p.add_argument("--image-size", type=int, default=1024, help="input side S (default %(default)s)")
    p.add_argument("--targets", type=int, default=8, help="number of synthetic targets (default %(default)s)")
    p.add_argument("--shots", type=int, default=1, help="number of synthetic reference shots (default %(default)s)")
    p.add_argument("--svd-components", type=int, default=500)
    p.add_argument("--tau", type=float, default=0.6)
    p.add_argument("--merge-threshold", type=float, default=0.2)
    p.add_argument("--clustering", default="auto", choices=["auto", "sklearn", "scipy", "torch"])
    p.add_argument("--batch-size", type=int, default=None, help="targets per backbone pass for images/s (default 8 on CUDA, 1 else)")
    p.add_argument("--warmup", type=int, default=1, help="untimed targets through both paths first (default %(default)s)")
    p.add_argument("--no-baseline", action="store_true", help="skip the re-encoding baseline")
    p.add_argument("--cold-start", default="all", choices=["all", "pipeline", "none"],
                   help="cold-start processes to run (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--ref", action="append", default=None, metavar="IMG", help="a reference image instead of synthetic ones")
    p.add_argument("--ref-mask", action="append", default=None, metavar="MASK", help="its mask, one per --ref")
    p.add_argument("--target", action="append", default=None, metavar="IMG", help="a target image instead of synthetic ones")
    p.add_argument("--out", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def benchmark_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_benchmark` with the options of :func:`add_bench_arguments`; progress goes to stderr."""
    log = None if args.quiet else (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    return run_benchmark(
        args.model, image_size=args.image_size, targets=args.targets, shots=args.shots, device=args.device,
        dtype=args.dtype, weights_dtype=args.weights_dtype, arch=args.arch, rope_periods=args.rope_periods,
        svd_components=args.svd_components, tau=args.tau, merge_threshold=args.merge_threshold,
        clustering=args.clustering, batch_size=args.batch_size, warmup=args.warmup, baseline=not args.no_baseline,
        cold_start=args.cold_start, seed=args.seed, ref_images=args.ref, ref_masks=args.ref_mask,
        target_images=args.target, log=log,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed arguments, print the summary, write ``--out``."""
    res = benchmark_from_args(args)
    print(format_summary(res))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(f"  written: {out}")
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse subparsers object (``func`` = :func:`cmd_bench`)."""
    p = subparsers.add_parser(
        "bench", help="time every stage against re-encoding the reference for every target",
        description="Times the pipeline stage by stage and the authors' procedure on the same inputs; reports per-target "
                    "time, decode time, images/s, peak memory, cold start and mask agreement.",
    )
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m insid3lab.bench [options]``: the same as ``insid3lab bench``."""
    parser = argparse.ArgumentParser(prog="insid3lab-bench", description=__doc__.split("\n")[0])
    add_bench_arguments(parser)
    return cmd_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
