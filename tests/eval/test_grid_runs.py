"""Grid runs: every setting equals its own run; resume after SIGKILL, two processes; report, compare, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.benchmarks import isaid_three_folds
from helpers.processes import cli_worker, free_port
from helpers.runs import FakeModel, comparable
from test_eval_nway import dataset as coco_json_dataset
from test_eval_nway import make_export

from insid3lab import INSID3, random_backbone
from insid3lab.cli import main
from insid3lab.eval import build_dataset, read_records, run_evaluation
from insid3lab.eval.reports.compare import compare_runs
from insid3lab.eval.reports.grid_report import OPTIMISM, grid_report, grid_results

ROOT = Path(__file__).resolve().parents[2]
AXES = {"tau": [0.4, 0.6, 0.8], "merge_threshold": [0.1, 0.3], "svd_components": [0, 16]}
SIZE = 128


def tiny_model(**kw) -> INSID3:
    kw = {"image_size": SIZE, "svd_components": 16, "tau": 0.6, "merge_threshold": 0.1, **kw}
    return INSID3(random_backbone("tiny", seed=0), basis_cache=False, progress=False, **kw)


def config_view(config: dict) -> dict:
    """The parts of a setting's summary that two equal runs share (no times, no world size)."""
    out = comparable(config)
    out["interval"] = config.get("interval")
    for key in ("ap", "ap50", "ap75", "per_class_ap"):
        if key in config:
            out[key] = config[key]
    return out


def grid_view(path: Path) -> dict:
    doc = json.loads((path / "grid.json").read_text())
    return {**{k: doc[k] for k in ("axes", "base", "primary")},
            "configs": [{"params": c["params"], **config_view(c)} for c in doc["configs"]]}  # fmt: skip


def _by_setting(path: Path) -> dict:
    """{episode index: {setting label: (intersection, union)}} of a grid run's records."""
    out = {}
    for i, r in read_records(path).items():
        out[i] = {",".join(f"{k}={v}" for k, v in sorted(e["setting"].items())): (e["intersection"], e["union"])
                  for e in r["grid"]}  # fmt: skip
    return out


@pytest.fixture(scope="module")
def folder(eval_data):
    return build_dataset("folder", eval_data / "defects")


@pytest.fixture(scope="module")
def grid_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "run"
    summary = run_evaluation(tiny_model(), folder, out, episodes=6, seed=1, progress=False, protocol="paper",
                             grid=AXES, bootstrap=200)  # fmt: skip
    return out, summary


def test_every_setting_equals_a_run_with_that_setting_alone(grid_run, folder, tmp_path):
    out, summary = grid_run
    doc = json.loads((out / "grid.json").read_text())
    assert doc["axes"] == AXES and len(doc["configs"]) == 12
    assert doc["base"] == {"tau": 0.6, "merge_threshold": 0.1, "svd_components": 16}
    per_episode = _by_setting(out)
    distinct = set()
    for config in doc["configs"]:
        p = config["params"]
        alone = run_evaluation(tiny_model(**p), folder, tmp_path / "x", episodes=6, seed=1, progress=False,
                               protocol="paper", bootstrap=200)  # fmt: skip
        label = ",".join(f"{k}={v}" for k, v in sorted(p.items()))
        for i, r in read_records(tmp_path / "x").items():
            assert per_episode[i][label] == (r["intersection"], r["union"]), (i, label)
            distinct.add(json.dumps(r["intersection"]))
        assert config_view(config) == config_view(alone), label
        assert config["settings"]["model"] == {**alone["settings"]["model"]}
        assert "grid" not in config["settings"]  # the grid is said once, not in each of its settings
        for f in (tmp_path / "x").iterdir():
            f.unlink()
        (tmp_path / "x").rmdir()
    assert len(distinct) >= 4, len(distinct)  # the settings do change the predictions
    # summary.json holds the base setting (in the grid), named
    primary = doc["configs"][doc["primary"]]
    assert primary["params"] == doc["base"] and config_view(summary) == config_view(primary)
    assert summary["grid"]["label"] == "tau=0.6,merge_threshold=0.1,svd_components=16"
    assert json.loads((out / "summary.json").read_text()) == summary


def test_nway_and_instance_grids_equal_their_settings_alone(tmp_path):
    export = make_export(tmp_path / "export")
    ds = coco_json_dataset(export)
    axes = {"tau": [0.5, 0.7], "merge_threshold": [-0.1, 0.2]}
    for kind, kw in (("nway", {"ways": 2}), ("instances", {"task": "instances"})):
        run_evaluation(tiny_model(), ds, tmp_path / kind, episodes=4, progress=False, protocol="paper", grid=axes,
                       bootstrap=50, **kw)  # fmt: skip
        doc = json.loads((tmp_path / kind / "grid.json").read_text())
        records = read_records(tmp_path / kind)
        for j, config in enumerate(doc["configs"]):
            alone = run_evaluation(tiny_model(**config["params"]), ds, tmp_path / f"{kind}{j}", episodes=4,
                                   progress=False, protocol="paper", bootstrap=50, **kw)  # fmt: skip
            assert config_view(config) == config_view(alone)
            for i, r in read_records(tmp_path / f"{kind}{j}").items():
                entry = {k: v for k, v in records[i]["grid"][j].items() if k != "setting"}
                own = {k: r[k] for k in entry}
                assert entry == own, (kind, j, i)
        if kind == "instances":
            assert "ap" in doc["configs"][0] and "gt" in records[0] and "pred" in records[0]["grid"][0]
        res = grid_results(tmp_path / kind, resamples=20)
        metric = [100 * c["ap"] if kind == "instances" else c["miou"] for c in doc["configs"]]
        assert res["values"] == pytest.approx(metric) and res["metric"] == (
            "mask AP" if kind == "instances" else "mIoU"
        )
        assert (res["intervals"][0] is None) == (kind == "instances")
        md, (curves, heat) = grid_report(tmp_path / kind, resamples=20)
        assert f"**Best setting:** `{res['labels'][res['best']]}`" in md and len(curves.axes) == 2


# ───────────────────────── resume and processes ─────────────────────────

SLOW_CHILD = """
import sys, time
import insid3lab
from insid3lab.model import grid
real = grid.segment_grid
def slow(*a, **k):
    time.sleep(0.4)
    return real(*a, **k)
insid3lab.segment_grid = slow
from insid3lab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(data, out, *more):
    return ["eval", "--dataset", "folder", "--data-root", str(data), "--model", "random:tiny", "--image-size",
            str(SIZE), "--svd-components", "16", "--episodes", "8", "--seed", "2", "--device", "cpu", "--no-progress",
            "--no-cache", "--bootstrap", "100", "--out", str(out), "--grid", "tau=0.4,0.6,0.8",
            "--grid", "merge_threshold=0.1,0.3", *more]  # fmt: skip


def test_resume_after_sigkill_gives_the_grid_of_an_uninterrupted_run(eval_data, tmp_path):
    data = eval_data / "defects"
    assert main(_cli(data, tmp_path / "full")) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INSID3LAB_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, *_cli(data, tmp_path / "part")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    results = tmp_path / "part" / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(read_records(tmp_path / "part"))
    assert 3 <= done < 8 and not (tmp_path / "part" / "grid.json").exists()
    assert main(_cli(data, tmp_path / "part", "--resume")) == 0
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["episodes"]["resumed"] == done
    assert grid_view(tmp_path / "part") == grid_view(tmp_path / "full")
    full = read_records(tmp_path / "full")
    assert {i: r["grid"] for i, r in read_records(tmp_path / "part").items()} == {i: r["grid"] for i, r in full.items()}


def test_torchrun_processes_give_the_grid_of_one(eval_data, tmp_path):
    """WORLD_SIZE/RANK/MASTER_* as torchrun sets them: two gloo processes, the grid.json of one process."""
    import torch.multiprocessing as mp

    data = eval_data / "defects"
    assert main(_cli(data, tmp_path / "one")) == 0
    argv = _cli(data, tmp_path / "two")[1:]  # the eval command's own arguments
    mp.start_processes(cli_worker, args=(2, free_port(), ["eval", *argv]), nprocs=2, join=True, start_method="fork")
    assert grid_view(tmp_path / "two") == grid_view(tmp_path / "one")
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["settings"]["world_size"] == 2 and not list((tmp_path / "two").glob("results.rank*.jsonl"))
    one, both = read_records(tmp_path / "one"), read_records(tmp_path / "two")
    assert {i: r["grid"] for i, r in both.items()} == {i: r["grid"] for i, r in one.items()}


# ───────────────────────── report and compare ─────────────────────────


def test_report_and_compare_on_a_grid_run(grid_run, tmp_path, capsys):
    out, _ = grid_run
    res = grid_results(out, resamples=200)
    values = res["values"]
    assert res["best"] == max(range(12), key=lambda j: values[j]) and res["default"] == 5
    md, (curves, heat) = grid_report(out, resamples=200)
    assert f"> {OPTIMISM}" in md and f"**Best setting:** `{res['labels'][res['best']]}`" in md
    assert "## tau (others at the default setting: merge_threshold=0.1, svd_components=16)" in md
    assert "## tau × merge_threshold (others at the default setting: svd_components=16)" in md
    assert len(curves.axes) == 3 and len([a for a in heat.axes if a.images]) == 3
    if res["best"] != res["default"]:
        # the paired bootstrap is compare's, between the two settings of the run
        c = compare_runs(f"{out}:{res['labels'][res['default']]}", f"{out}:{res['labels'][res['best']]}",
                         resamples=200)  # fmt: skip
        assert res["paired"]["interval"] == pytest.approx(c["interval"])
        assert res["paired"]["difference"] == pytest.approx(c["difference"])
    # compare two settings: the same numbers as their summaries
    doc = json.loads((out / "grid.json").read_text())
    assert main(["compare", f"{out}:tau=0.4", f"{out}:tau=0.8,merge_threshold=0.3", "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    a = next(c for c in doc["configs"] if c["params"] == {"tau": 0.4, "merge_threshold": 0.1, "svd_components": 16})
    b = next(c for c in doc["configs"] if c["params"] == {"tau": 0.8, "merge_threshold": 0.3, "svd_components": 16})
    assert f"A mIoU {a['miou']:.2f}  B mIoU {b['miou']:.2f}" in printed
    # a setting not in the run: one line, exit 1
    assert main(["compare", f"{out}:tau=0.45", str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        "setting tau=0.45,merge_threshold=0.1,svd_components=16 is not in the grid; its settings: tau in 0.4, " in err
    )
    assert err.count("\n") == 1
    # the command writes the Markdown and both figures
    assert main(["report", str(out), "--out", str(tmp_path / "rep" / "ablation.md"), "--bootstrap", "50"]) == 0
    assert {f.name for f in (tmp_path / "rep").iterdir()} == {"ablation.md", "ablation.png", "ablation-heatmaps.png"}
    assert "![ablation.png](ablation.png)" in (tmp_path / "rep" / "ablation.md").read_text()
    # an existing report is replaced only with --overwrite; a file of the run never
    again = ["report", str(out), "--out", str(tmp_path / "rep" / "ablation.md"), "--bootstrap", "50"]
    before = (tmp_path / "rep" / "ablation.png").read_bytes()
    assert main(again) == 1 and "pass --overwrite to replace" in capsys.readouterr().err
    assert (tmp_path / "rep" / "ablation.png").read_bytes() == before
    assert main([*again, "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(out / "grid.json"), "--overwrite"]) == 1
    assert "would replace the input" in capsys.readouterr().err


def test_every_fold_and_both_shot_counts_with_a_grid(eval_data, tmp_path, capsys):
    root = isaid_three_folds(eval_data, tmp_path / "data")
    argv = ["eval", "--dataset", "isaid", "--data-root", str(root), "--fold", "all", "--shots", "1,2", "--model",
            "random:tiny", "--image-size", "64", "--svd-components", "8", "--episodes", "2", "--device", "cpu",
            "--no-progress", "--no-cache", "--bootstrap", "50", "--out", str(tmp_path / "all"),
            "--grid", "tau=0.5,0.6", "--grid", "merge_threshold=0.1,0.2"]  # fmt: skip
    assert main(argv) == 0
    for shots in (1, 2):
        base = tmp_path / "all" / f"shots{shots}"
        folds = json.loads((base / "folds.json").read_text())
        for k in range(3):
            doc = json.loads((base / f"fold{k}" / "grid.json").read_text())
            assert len(doc["configs"]) == 4 and doc["configs"][0]["settings"]["shots"] == shots
            assert folds["per_fold"][f"fold{k}"]["miou"] == doc["configs"][doc["primary"]]["miou"]
        res = grid_results(base, resamples=50)
        assert res["folds"] == 3
        per_fold = [json.loads((base / f"fold{k}" / "grid.json").read_text())["configs"] for k in range(3)]
        assert res["values"] == pytest.approx([sum(c[j]["miou"] for c in per_fold) / 3 for j in range(4)])
    printed = capsys.readouterr().out
    assert f"grid: 4 settings per fold in {tmp_path / 'all' / 'shots1' / 'fold<k>' / 'grid.json'}" in printed
    assert main(["report", str(tmp_path / "all" / "shots1"), "--bootstrap", "50"]) == 0
    assert "mean over 3 folds" in capsys.readouterr().out


# ───────────────────────── bad input ─────────────────────────


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grid", "tau=0.5", "--grid", "bogus=1"], "grid axis 'bogus' is not a parameter; allowed: image_size, "),
        (["--grid", "merge_threshold=2"], r"merge_threshold=2.0: must be in \[-1, 1\]"),
        (["--grid", "tau="], "grid axis 'tau' is empty"),
        (["--grid", "tau=0.5", "--grid", "tau=0.6"], "grid axis 'tau' is given twice"),
        (
            [
                "--grid",
                "tau=" + ",".join(f"{i / 1000:g}" for i in range(1, 1001)),
                "--grid",
                "merge_threshold=" + ",".join(f"{i / 100:g}" for i in range(11)),
            ],
            "grid of 11,000 settings",
        ),  # fmt: skip
    ],
)
def test_bad_grids_are_one_line_and_touch_nothing(eval_data, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    argv = ["eval", "--dataset", "folder", "--data-root", str(eval_data / "defects"), "--model", "random:tiny",
            "--out", str(out), *flags]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("davis2017", "--grid does not apply to --dataset davis2017: tracking feeds each frame's prediction"),
        ("spair", "--grid does not apply to --dataset spair: keypoint matching reads only"),
    ],
)
def test_benchmarks_that_cannot_share_the_encoding_are_refused(eval_data, tmp_path, capsys, dataset, message):
    argv = ["eval", "--dataset", dataset, "--data-root", str(eval_data), "--model", "random:tiny", "--out",
            str(tmp_path / "run"), "--grid", "tau=0.5,0.6"]  # fmt: skip
    assert main(argv) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_resume_with_another_grid_names_the_difference(grid_run, folder, eval_data, tmp_path):
    out, _ = grid_run
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    kw = {"episodes": 6, "seed": 1, "progress": False, "protocol": "paper", "resume": True, "bootstrap": 200}
    with pytest.raises(ValueError, match=r"the stored grid differs: tau: stored \[0.4, 0.6, 0.8\], now \[0.4, 0.6\]"):
        run_evaluation(tiny_model(), folder, out, grid={**AXES, "tau": [0.4, 0.6]}, **kw)
    with pytest.raises(ValueError, match="axis refine is given now"):
        run_evaluation(tiny_model(), folder, out, grid={**AXES, "refine": ["bilinear"]}, **kw)
    with pytest.raises(ValueError, match="the stored run is a grid run; give it the same grid"):
        run_evaluation(tiny_model(), folder, out, **kw)
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    with pytest.raises(ValueError, match="a grid run needs an insid3lab.INSID3 model"):
        run_evaluation(FakeModel(), folder, tmp_path / "fake", grid=AXES, progress=False)
    with pytest.raises(ValueError, match="spair scores keypoint matching"):
        run_evaluation(tiny_model(), build_dataset("spair", eval_data), tmp_path / "kp", grid=AXES)
