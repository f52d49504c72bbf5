"""``insid3lab bench``: the command runs end to end on the tiny model and reports what it promises.

Nothing here asserts on time: the machine running the tests is not the one the targets are for.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from insid3lab.bench import PIPELINE_STAGES, cold_start_child, mask_iou, synthetic_inputs
from insid3lab.bench.coldstart import CHILD_MARK as _CHILD_MARK
from insid3lab.cli import main

pytestmark = pytest.mark.usefixtures("isolated_cache")

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path, *extra, device="cpu"):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--model",
            "random:tiny",
            "--image-size",
            "64",
            "--targets",
            "1",
            "--device",
            device,
            "--cold-start",
            "none",
            "--quiet",
            "--out",
            str(out),
            *extra,
        ]
    )
    assert rc == 0
    return json.loads(out.read_text())


def test_bench_command_reports_every_measure_and_identical_masks(tmp_path, capsys):
    res = _bench(tmp_path)
    assert {
        "config",
        "load_s",
        "basis_s",
        "reference_encoding_s",
        "per_target",
        "stages",
        "decode",
        "images_per_s",
        "throughput",
        "memory",
        "baseline",
        "ratios",
        "cold_start",
        "fast_mode",
    } <= set(res)
    assert res["config"]["targets"] == 1 and res["config"]["shots"] == 1 and res["config"]["mode"] == "exact"
    assert res["config"]["grid"] == [4, 4]
    assert set(res["stages"]) == set(PIPELINE_STAGES)
    assert len(res["per_target"]["times_s"]) == 1
    assert {"mean_s", "median_s", "min_s", "max_s", "cpu_mean_s"} <= set(res["per_target"])
    base = res["baseline"]
    assert base["masks_identical"] is True and base["identical"] == 1 and base["mean_iou"] == 1.0
    assert {"per_target", "stages", "decode", "basis_s"} <= set(base)
    assert set(res["ratios"]) == {"per_target", "per_target_cpu_time", "decode"}
    assert res["throughput"]["masks_identical_to_segment"] == 1
    assert res["memory"]["kind"] == "peak_rss" and res["memory"]["this_process_peak_rss_bytes"] > 0
    assert res["cold_start"] is None and res["fast_mode"] is None
    printed = capsys.readouterr().out
    assert "masks identical to the baseline: 1/1" in printed and "written:" in printed


def test_bench_fast_mode_reports_agreement_with_float32(tmp_path):
    res = _bench(tmp_path, "--autocast", "bfloat16", "--no-baseline", "--batch-size", "2")
    assert res["config"]["mode"] == "fast" and res["config"]["dtype"] == "bfloat16"
    fast = res["fast_mode"]
    assert fast["targets"] == 1 and len(fast["ious"]) == 1
    assert 0.0 <= fast["mean_iou_vs_float32"] <= 1.0
    assert res["baseline"] is None and res["ratios"] is None
    assert res["throughput"]["source"] == "segment_many" and res["throughput"]["masks_identical_to_segment"] == 1


def test_cold_start_child_reports_timestamps_in_order(tmp_path, capsys):
    refs, targets = synthetic_inputs(1, 1, seed=0, size=(60, 80))
    refs[0][0].save(tmp_path / "r.png")
    refs[0][1].save(tmp_path / "m.png")
    targets[0].save(tmp_path / "t.png")
    spec = {
        "model": "random:tiny",
        "loader": "insid3lab.cli.options:load_model_source",
        "device": "cpu",
        "weights_dtype": "float32",
        "autocast": None,
        "image_size": 64,
        "svd_components": 20,
        "tau": 0.6,
        "merge_threshold": 0.2,
        "clustering": "auto",
        "refs": [str(tmp_path / "r.png")],
        "ref_masks": [str(tmp_path / "m.png")],
        "target": str(tmp_path / "t.png"),
    }
    reports = {}
    for mode in ("pipeline", "pipeline", "baseline"):
        cold_start_child(time.time(), json.dumps({**spec, "mode": mode}))
        line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(_CHILD_MARK)][-1]
        rep = json.loads(line[len(_CHILD_MARK) :])
        marks = rep["marks"]
        assert (
            marks["start"]
            <= marks["imported"]
            <= marks["weights"]
            <= marks["init"]
            <= marks["reference"]
            <= marks["mask"]
        )
        assert rep["peak_rss_bytes"] > 0
        reports.setdefault(mode, []).append(rep)
    # the first pipeline process fills the basis cache, the second finds it; both find the same mask
    assert [r["basis_cache_hit"] for r in reports["pipeline"]] == [False, True]
    assert (
        reports["pipeline"][0]["mask_pixels"]
        == reports["pipeline"][1]["mask_pixels"]
        == reports["baseline"][0]["mask_pixels"]
    )


def test_mask_iou():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = torch.zeros(4, 4, dtype=torch.bool)
    assert mask_iou(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert mask_iou(a, b) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="shapes"):
        mask_iou(a, torch.zeros(3, 4, dtype=torch.bool))


def test_synthetic_inputs_are_a_function_of_the_seed():
    r1, t1 = synthetic_inputs(2, 3, seed=4)
    r2, t2 = synthetic_inputs(2, 3, seed=4)
    assert len(r1) == 2 and len(t1) == 3
    for (a, am), (b, bm) in zip(r1, r2):
        assert a.tobytes() == b.tobytes() and am.tobytes() == bm.tobytes()
        assert am.getextrema() == (0, 255)  # every reference mask holds the object
    assert all(a.tobytes() == b.tobytes() for a, b in zip(t1, t2))


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_insid3", ROOT / "benchmarks" / "bench_insid3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_script_checks_the_targets():
    script = _load_script()
    res = {
        "config": {"mode": "fast", "targets": 2},
        "per_target": {"mean_s": 0.05},
        "memory": {"pipeline_one_target_bytes": 2.6e9},
        "fast_mode": {"mean_iou_vs_float32": 0.99},
        "cold_start": {"pipeline_warm_cache": {"total_minus_weights_s": 1.2}},
        "ratios": {"per_target": 0.45, "decode": 1.1},
        "decode": {"mean_s": 0.004},
        "decode_vs_encoding": {"decode": 0.12},
        "baseline": {"identical": 2},
    }
    gpu = {name: ok for name, _, _, _, ok in script.check(res, "gpu")}
    assert gpu == {
        "per-target time, fast mode (s)": True,
        "peak memory, one target (GB)": False,
        "mean IoU with float32 masks": True,
        "cold start, warm basis cache, minus weights (s)": True,
    }
    cpu = {name: ok for name, _, _, _, ok in script.check(res, "cpu")}
    assert list(cpu.values()) == [True, False, False, True]  # decode 12% of the encoding > 10%
    res["baseline"] = None
    assert script.check(res, "cpu")[3][-1] is False  # no baseline: nothing shows the masks are identical
    res["config"]["mode"] = "exact"
    exact = {name: (value, ok) for name, value, _, _, ok in script.check(res, "gpu")}
    assert exact["decode, float32 (s)"] == (0.004, True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_command_on_cuda(tmp_path):
    res = _bench(tmp_path, device="cuda")
    assert res["config"]["device"].startswith("cuda")
    assert res["memory"]["kind"] == "cuda_max_allocated"
    assert res["memory"]["pipeline_one_target_bytes"] > 0 and res["memory"]["baseline_one_target_bytes"] > 0
    assert res["baseline"]["masks_identical"] is True
    assert res["throughput"]["masks_identical_to_segment"] == 1


def test_bench_concepts_and_frames_report_their_ratios(tmp_path, capsys):
    res = _bench(tmp_path, "--concepts", "3", "--frames", "3", "--no-baseline")
    c = res["concepts"]
    assert c["concepts"] == 3 and c["targets"] == 1 and c["goal"] == 1.3
    per, dec = c["per_target_s"], c["after_encoding_s"]
    assert set(per) == {"segment", "one_concept", "concepts"} and set(dec) == {"one_concept", "concepts"}
    assert c["ratio"] == pytest.approx(per["concepts"] / per["one_concept"])
    assert c["ratio_segment"] == pytest.approx(per["one_concept"] / per["segment"])
    encoding = per["one_concept"] - dec["one_concept"]
    assert c["ratio_from_decode"] == pytest.approx((encoding + dec["concepts"]) / per["one_concept"])
    t = res["tracking"]
    assert t["frames"] == 3 and t["memory"] == 4 and t["pairs"] == 2 and t["goal"] == 1.15
    assert t["shots_last_frame"] == 2  # the first frame and frame 1 (every frame is remembered)
    printed = capsys.readouterr().out
    assert "3 concepts vs 1 per target: " in printed and f"ratio {c['ratio']:.3f} (" in printed
    assert "track (memory 4, 2 shots) vs segment per frame" in printed and f"ratio {t['ratio']:.3f} (" in printed


def test_concept_label_map_regions():
    from insid3lab.bench.concepts import concept_label_map

    mask = np.zeros((8, 12), bool)
    mask[2:5, 3:6] = True
    lm = concept_label_map(mask, 4)
    assert (lm[mask] == 1).all()
    # the background in three strips of 4 columns: values 2, 3, 4
    np.testing.assert_array_equal(lm[0], [2] * 4 + [3] * 4 + [4] * 4)
    assert set(np.unique(concept_label_map(mask, 1))) == {0, 1}
    with pytest.raises(ValueError, match="empty"):
        concept_label_map(np.zeros((4, 4)), 2)
    full = np.ones((8, 12), bool)
    with pytest.raises(ValueError, match="covers a whole strip"):
        concept_label_map(full, 2)


def test_given_targets_are_repeated_to_the_count_asked_for(tmp_path):
    refs, targets = synthetic_inputs(1, 2, seed=0, size=(60, 80))
    refs[0][0].save(tmp_path / "r.png")
    refs[0][1].save(tmp_path / "m.png")
    targets[0].save(tmp_path / "a.png")
    targets[1].save(tmp_path / "b.png")
    given = ["--ref", str(tmp_path / "r.png"), "--ref-mask", str(tmp_path / "m.png"), "--no-baseline"]
    res = _bench(tmp_path, *given, "--targets", "3", "--target", str(tmp_path / "a.png"))
    assert res["config"]["targets"] == 3 and len(res["per_target"]["times_s"]) == 3
    res = _bench(tmp_path, *given, "--targets", "3", "--target", str(tmp_path / "a.png"), "--target",
                 str(tmp_path / "b.png"))  # fmt: skip
    assert res["config"]["targets"] == 3 and len(res["per_target"]["times_s"]) == 3
