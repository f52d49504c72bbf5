"""Cold start: a fresh Python process from its start to its first mask, and where that time goes.

:func:`run_cold_start` starts a new interpreter that runs :func:`cold_start_child` and turns its
timestamps into the phases of a cold start: interpreter start, imports, loading the weights,
the positional basis, encoding the reference shots and the first target.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from insid3lab.bench.inputs import save_inputs
from insid3lab.bench.timing import encoder_device, peak_rss_bytes, sync

__all__ = ["CHILD_MARK", "DEFAULT_LOADER", "PHASES", "cold_start_child", "cold_starts", "run_cold_start"]

#: Prefix of the one line a cold-start process prints.
CHILD_MARK = "INSID3LAB-BENCH-CHILD "
#: ``module:function`` that turns a model source into a backbone, unless the spec names another.
DEFAULT_LOADER = "insid3lab.backbone:load_backbone"
#: Phases of a cold start, in order: (key in the report, first mark, last mark).
PHASES = (
    ("interpreter_s", "spawn", "start"),
    ("import_s", "start", "imported"),
    ("weights_s", "imported", "weights"),
    ("init_s", "weights", "init"),
    ("basis_s", "init", "basis"),
    ("reference_s", "basis", "reference"),
    ("first_target_s", "reference", "mask"),
)
_CHILD_CODE = (
    "import time; _t = time.time(); import sys; "
    "from insid3lab.bench.coldstart import cold_start_child; cold_start_child(_t, sys.argv[1])"
)


def _child_env(cache_dir: str | None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if cache_dir is not None:
        env["INSID3LAB_CACHE_DIR"] = cache_dir
    return env


def run_cold_start(spec: dict[str, Any], cache_dir: str | None, timeout: float) -> dict[str, Any]:
    """Start a fresh interpreter that segments one target; the seconds of each of :data:`PHASES`.

    Returns:
        ``total_s`` (spawn to first mask), one entry per phase, ``total_minus_weights_s``,
        ``after_imports_minus_weights_s`` and what the child reported; or ``{"error": ...}``.
    """
    t_spawn = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD_CODE, json.dumps(spec)],
            check=False,
            capture_output=True,
            text=True,
            env=_child_env(cache_dir),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no mask after {timeout:.0f} s"}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARK)), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit status {proc.returncode}: " + " | ".join(tail)}
    rep = json.loads(line[len(CHILD_MARK) :])
    marks = {"spawn": t_spawn, **rep.pop("marks")}
    out: dict[str, Any] = {"total_s": marks["mask"] - t_spawn}
    out.update({key: marks[b] - marks[a] for key, a, b in PHASES})
    out["total_minus_weights_s"] = out["total_s"] - out["weights_s"]
    out["after_imports_minus_weights_s"] = out["total_minus_weights_s"] - out["interpreter_s"] - out["import_s"]
    out.update(rep)
    return out


def cold_starts(
    spec: dict[str, Any],
    refs,
    target,
    modes: Sequence[str] = ("pipeline", "pipeline", "baseline"),
    *,
    timeout: float = 900.0,
    say: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Cold starts in a row sharing one basis cache: the first pipeline finds it empty, the second warm.

    Args:
        spec: model and settings for :func:`cold_start_child` (without inputs and ``mode``).
        refs: (PIL image, PIL mask) shots; target: a PIL image. They are written to a temporary folder.
        modes: ``"pipeline"`` or ``"baseline"`` per process, in order.

    Returns:
        ``pipeline_cold_cache``, ``pipeline_warm_cache`` and ``baseline`` (those run), each from
        :func:`run_cold_start`.
    """
    names = {"baseline": "baseline"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="insid3lab-bench-") as tmp:
        folder = Path(tmp)
        pr, pm, pt = save_inputs(folder, refs, [target])
        cache_dir = str(folder / "cache")
        for mode in modes:
            key = names.get(mode) or ("pipeline_warm_cache" if "pipeline_cold_cache" in out else "pipeline_cold_cache")
            say(f"cold start: {key.replace('_', ' ')}")
            full = {**spec, "refs": pr, "ref_masks": pm, "target": pt[0], "mode": mode}
            out[key] = run_cold_start(full, cache_dir if mode == "pipeline" else None, timeout)
    return out


def _loader(name: str):
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def cold_start_child(t_start: float, spec_json: str) -> None:
    """Body of a cold-start process: load, get ready, segment one target, print timestamps.

    ``spec_json`` describes the model and the inputs (file paths); ``loader`` (default
    :data:`DEFAULT_LOADER`) names the function that loads the model source. ``mode``
    ``"pipeline"`` uses :class:`~insid3lab.INSID3` with the on-disk basis cache
    (``$INSID3LAB_CACHE_DIR``); ``"baseline"`` builds the basis at start-up and runs
    :func:`~insid3lab.bench.baseline.baseline_segment`. One line ``INSID3LAB-BENCH-CHILD {json}``
    is printed with wall-clock timestamps (``time.time()``) and peak memory.
    """
    from insid3lab.authors import baseline_basis
    from insid3lab.bench.refinement import baseline_refined
    from insid3lab.core.preprocess import preprocess_image, preprocess_mask
    from insid3lab.model import basis_cache as _cache

    spec = json.loads(spec_json)
    marks = {"start": t_start, "imported": time.time()}
    autocast = None if spec["autocast"] is None else getattr(torch, spec["autocast"])
    load = _loader(spec.get("loader") or DEFAULT_LOADER)
    backbone = load(
        spec["model"],
        device=spec["device"],
        dtype=spec["weights_dtype"],
        arch=spec.get("arch"),
        rope_periods=spec.get("rope_periods", "auto"),
    )
    device = encoder_device(backbone)
    sync(device)
    marks["weights"] = time.time()
    S = spec["image_size"]
    extra: dict[str, Any] = {}
    if spec["mode"] == "pipeline":
        from insid3lab.model.insid3 import INSID3

        model = INSID3(
            backbone,
            image_size=S,
            svd_components=spec["svd_components"],
            tau=spec["tau"],
            merge_threshold=spec["merge_threshold"],
            clustering=spec["clustering"],
            refine=spec.get("refine", "bilinear"),
            basis_cache=True,
            autocast_dtype=autocast,
            progress=False,
        )
        fp = _cache.weights_fingerprint(backbone)
        extra["basis_cache_hit"] = bool(fp) and _cache.basis_cache_path(fp, S).is_file()
        marks["init"] = time.time()
        model.positional.svd()
        sync(device)
        marks["basis"] = time.time()
        for img, m in zip(spec["refs"], spec["ref_masks"]):
            model.set_reference(img, m)
        sync(device)
        marks["reference"] = time.time()
        mask = model.segment(spec["target"])
    else:
        marks["init"] = time.time()
        basis = baseline_basis(backbone, S, spec["svd_components"])
        sync(device)
        marks["basis"] = time.time()
        xs = torch.cat([preprocess_image(img, S, device=device)[0] for img in spec["refs"]])
        ms = torch.cat([preprocess_mask(m, S, device=device) for m in spec["ref_masks"]])
        sync(device)
        marks["reference"] = time.time()
        mask = baseline_refined(
            backbone,
            basis,
            xs,
            ms,
            spec["target"],
            refine=spec.get("refine", "bilinear"),
            image_size=S,
            tau=spec["tau"],
            merge_threshold=spec["merge_threshold"],
            autocast_dtype=autocast,
        )
    sync(device)
    marks["mask"] = time.time()
    rep = {"marks": marks, "mode": spec["mode"], "mask_pixels": int(mask.sum()), "peak_rss_bytes": peak_rss_bytes()}
    rep.update(extra)
    if device.type == "cuda":
        rep["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
    print(CHILD_MARK + json.dumps(rep), flush=True)
