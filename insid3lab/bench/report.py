"""The text report of ``insid3lab bench``."""

from __future__ import annotations

from typing import Any

__all__ = ["format_summary"]

_COLD = (
    ("pipeline_cold_cache", "empty basis cache"),
    ("pipeline_warm_cache", "warm basis cache"),
    ("baseline", "baseline"),
)
_COLD_PHASES = (
    ("import_s", "imports"),
    ("weights_s", "weights"),
    ("basis_s", "basis"),
    ("reference_s", "references"),
    ("first_target_s", "first target"),
)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f} ms" if x < 1 else f"{x:.2f} s"


def _gb(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e9:.2f} GB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _headline(res: dict[str, Any]) -> list[str]:
    c = res["config"]
    return [
        (
            f"insid3lab bench: {c['model']} on {c['device']} ({c['device_name']}), {c['dtype']} ({c['mode']} mode), "
            f"S={c['image_size']} ({c['grid'][0]}x{c['grid'][1]} cells), {c['shots']} shot(s), {c['targets']} target(s)"
            + (f", refine {c['refine']}" if c.get("refine") else "")
        ),
        (
            f"  ready: weights {_ms(res['load_s'])} | basis {_ms(res['basis_s'])} | "
            f"reference encoding {_ms(res['reference_encoding_s'])}"
        ),
    ]


def _per_target(res: dict[str, Any]) -> list[str]:
    b, pt, dec, n = res.get("baseline"), res["per_target"], res["decode"], res["config"]["targets"]
    if not b:
        return [f"  per target: {_ms(pt['mean_s'])} (median {_ms(pt['median_s'])}); decode {_ms(dec['mean_s'])}"]
    r = res["ratios"]
    return [
        (
            f"  per target: {_ms(pt['mean_s'])} (median {_ms(pt['median_s'])}) vs baseline "
            f"{_ms(b['per_target']['mean_s'])}  -> ratio {r['per_target']:.3f} "
            f"(CPU-time ratio {r['per_target_cpu_time']:.3f})"
        ),
        f"  decode:     {_ms(dec['mean_s'])} vs baseline {_ms(b['decode']['mean_s'])}  -> ratio {r['decode']:.3f}",
        f"  masks identical to the baseline: {b['identical']}/{n} (mean IoU {b['mean_iou']:.4f})",
    ]


def _stages(res: dict[str, Any]) -> list[str]:
    lines = ["  stages:   " + ", ".join(f"{k} {_ms(v)}" for k, v in res["stages"].items())]
    dv = res.get("decode_vs_encoding")
    if dv:
        parts = ", ".join(f"{k} {_pct(v)}" for k, v in dv["stages"].items())
        lines.append(f"  decode / target encoding ({_ms(dv['encoding_s'])}): {_pct(dv['decode'])} = {parts}")
    b = res.get("baseline")
    if b:
        lines.append("  baseline: " + ", ".join(f"{k} {_ms(v)}" for k, v in b["stages"].items()))
    return lines


def _throughput_memory(res: dict[str, Any]) -> list[str]:
    tp, mem, n = res["throughput"], res["memory"], res["config"]["targets"]
    what = "CUDA max allocated" if mem["kind"] == "cuda_max_allocated" else "peak RSS of a fresh process"
    return [
        (
            f"  throughput: {tp['images_per_s']:.3f} images/s (batch {tp['batch_size']}, {tp['source']}); "
            f"masks equal to segment(): {tp['masks_identical_to_segment']}/{n}"
        ),
        (
            f"  peak memory ({what}), one target: {_gb(mem.get('pipeline_one_target_bytes'))}"
            f" vs baseline {_gb(mem.get('baseline_one_target_bytes'))}"
        ),
    ]


def _refinement(res: dict[str, Any]) -> list[str]:
    r = res.get("refinement")
    if not r:
        return []
    mem = r["memory"]
    what = "CUDA max allocated" if mem["kind"] == "cuda_max_allocated" else "peak RSS growth"
    shown = f"{mem['bytes'] / 2**20:.1f} MiB" if mem["bytes"] is not None else f"not measured ({mem.get('note', '')})"
    band = "" if r.get("band_pixels") is None else f", band {r['band_pixels']} px"
    line = (
        f"  refinement ({r['name']}): {_ms(r['time']['mean_s'])} per target (median {_ms(r['time']['median_s'])}), "
        f"{_pct(r['fraction_of_decode'])} of the decode; peak memory ({what}), one target: {shown}{band}"
    )
    return [line]


def _cold_start(res: dict[str, Any]) -> list[str]:
    cold = res.get("cold_start")
    if not cold:
        return []
    lines = ["  cold start to first mask:"]
    for key, label in _COLD:
        if key not in cold:
            continue
        v = cold[key]
        if "error" in v:
            lines.append(f"    {label}: {v['error']}")
            continue
        phases = ", ".join(f"{name} {_ms(v.get(k))}" for k, name in _COLD_PHASES)
        lines.append(f"    {label}: {_ms(v['total_s'])} ({phases})")
    return lines


def _fast(res: dict[str, Any]) -> list[str]:
    f = res.get("fast_mode")
    if not f:
        return []
    line = (
        f"  fast mode ({f['dtype']}) vs float32: mean IoU {f['mean_iou_vs_float32']:.4f} "
        f"(min {f['min_iou_vs_float32']:.4f}), {f['identical']}/{f['targets']} identical, "
        f"{f['nonempty_float32']} non-empty float32 masks"
    )
    return [line]


def _verdict(r: float | None, goal: float) -> str:
    return "-" if r is None else f"{r:.3f} ({'within' if r <= goal else 'above'} the goal <= {goal})"


def _concepts(res: dict[str, Any]) -> list[str]:
    c = res.get("concepts")
    if not c:
        return []
    n, per, dec = c["concepts"], c["per_target_s"], c["after_encoding_s"]
    lines = [
        (
            f"  {n} concepts vs 1 per target: {_ms(per['concepts'])} vs {_ms(per['one_concept'])}  -> ratio "
            f"{_verdict(c['ratio'], c['goal'])}"
        ),
        (
            f"    after the encoding: {_ms(dec['concepts'])} vs {_ms(dec['one_concept'])}; encoding + {n} concepts' "
            f"decode / 1 concept: {c['ratio_from_decode']:.3f}; 1 concept / segment: {c['ratio_segment']:.3f}"
        ),
    ]
    if c.get("ratio_images") is not None:
        lines.append(f"    {n} concepts from {n} reference images: {_ms(per['concepts_images'])}, ratio "
                     f"{c['ratio_images']:.3f}")  # fmt: skip
    return lines


def _tracking(res: dict[str, Any]) -> list[str]:
    t = res.get("tracking")
    if not t:
        return []
    return [
        (
            f"  track (memory {t['memory']}, {t['shots_last_frame']} shots) vs segment per frame: "
            f"{_ms(t['track_s_per_frame'])} vs {_ms(t['segment_s_per_frame'])} over {t['pairs']} frame pairs  -> "
            f"ratio {_verdict(t['ratio'], t['goal'])}"
        )
    ]


def _grid(res: dict[str, Any]) -> list[str]:
    g = res.get("grid")
    if not g:
        return []
    per = g["per_episode_s"]
    return [
        (
            f"  grid of {g['settings']} settings vs 1 per episode: {_ms(per['grid'])} vs {_ms(per['one'])}  -> ratio "
            f"{_verdict(g['ratio'], g['goal'])}"
        ),
        (
            f"    each extra setting: {_ms(g['per_extra_setting_s'])} = {g['per_extra_setting_of_encoding']:.3f} of one "
            f"target's encoding ({_ms(per['encoding'])}; goal <= {g['goal_per_setting']})"
        ),
        (
            f"    after the encoding: grid {_ms(g['after_encoding_s']['grid'])} vs {_ms(g['after_encoding_s']['one'])}; "
            f"ratio from the decodes {g['ratio_from_decode']:.3f}, each extra setting "
            f"{g['per_extra_setting_from_decode_of_encoding']:.3f} of the encoding"
        ),
    ]


def format_summary(res: dict[str, Any]) -> str:
    """A compact text report of :func:`~insid3lab.bench.run_benchmark`'s result."""
    parts = (_headline, _per_target, _stages, _refinement, _concepts, _tracking, _grid, _throughput_memory,
             _cold_start, _fast)  # fmt: skip
    return "\n".join(line for part in parts for line in part(res))
