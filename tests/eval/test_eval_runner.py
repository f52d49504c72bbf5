"""The runner: short evaluations on every benchmark, resume, bad samples, two processes vs one."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers.benchmarks import data_root
from helpers.processes import distributed_worker, free_port
from helpers.runs import FakeModel, comparable, records_without_time
from PIL import Image

from insid3lab.eval import BadSampleError, SegmentationMeter, build_dataset, read_records, run_evaluation
from insid3lab.eval.datasets import BENCHMARKS
from insid3lab.eval.run.episodes import load_episodes, sample_episodes


@pytest.mark.parametrize("name", [n for n, e in BENCHMARKS.items() if not e.annotations])
def test_short_evaluation_on_every_benchmark(eval_data, tmp_path, name):
    ds = build_dataset(name, data_root(eval_data, name))
    out = tmp_path / "run"
    s = run_evaluation(FakeModel(), ds, out, episodes=3, seed=0, progress=False)
    assert s == json.loads((out / "summary.json").read_text())
    assert s["episodes"] == {"total": 3, "evaluated": 3, "bad": 0, "resumed": 0}
    assert s["weights"]["fingerprint"] == "fa4e0000"
    assert s["settings"]["model"]["image_size"] == 64 and s["settings"]["seed"] == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in recs] == [0, 1, 2]
    eps, _ = load_episodes(out / "episodes.json")
    assert [e.digest() for e in eps] == [r["episode"] for r in recs]
    png = Image.open(out / "per_class.png")
    assert png.size[0] > 300 and png.size[1] > 200
    if ds.task == "segmentation":
        # the summary is exactly the sums of the per-episode records
        m = SegmentationMeter(list(ds.class_names))
        for r in recs:
            m.add(r["class_index"], r["intersection"], r["union"])
        assert s["intersection"] == m.intersection.tolist() and s["union"] == m.union.tolist()
        assert s["miou"] == m.miou() and s["fb_iou"] == m.fb_iou()
        assert len(s["per_class_iou"]) == len(ds.class_names)
    else:
        # the fake matcher rescales the source keypoints: 2 of 3 exact, 1 off by 8 px (threshold 60)
        assert s["pck"] == pytest.approx(
            {"pck@0.05": 200 / 3, "pck@0.10": 200 / 3, "pck@0.15": 100.0, "pck@0.20": 100.0}
        )
        assert [r["hits"] for r in recs] == [[2, 2, 3, 3]] * 3


def test_values_by_hand_on_a_folder_dataset(eval_data, tmp_path):
    """The fake model is exact on flat colours: IoU 100; one wrong pixel column changes it as computed."""
    ds = build_dataset("folder", eval_data / "defects")
    s = run_evaluation(FakeModel(), ds, tmp_path / "a", episodes=4, progress=False)
    assert s["miou"] == 100.0 and s["fb_iou"] == 100.0
    assert s["per_class_episodes"] == {"dent": 2, "scratch": 2}

    class ShiftedModel(FakeModel):
        def segment(self, target):
            m = super().segment(target)
            return torch.roll(m, shifts=1, dims=1)

    s2 = run_evaluation(ShiftedModel(), ds, tmp_path / "b", episodes=4, progress=False)
    recs = read_records(tmp_path / "b")
    for r in recs.values():
        tgt = ds.load(sample_episodes(ds, 4)[r["index"]].target, r["class_index"])
        ys, xs = np.nonzero(tgt.mask)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        # a box shifted right by one column: intersection h*(w-1), union h*(w+1)
        assert r["intersection"][1] == h * (w - 1) and r["union"][1] == h * (w + 1)
    assert s2["miou"] < 100.0


def test_segmentation_at_another_size_is_scored_at_the_prediction_size(eval_data, tmp_path):
    class HalfSizeModel(FakeModel):
        def segment(self, target):
            m = super().segment(target)
            return m[::2, ::2]

    ds = build_dataset("isaid", eval_data)
    s = run_evaluation(HalfSizeModel(), ds, tmp_path / "run", episodes=2, progress=False)
    recs = read_records(tmp_path / "run")
    img = ds.load(sample_episodes(ds, 1)[0].target, 0).mask
    h, w = (img.shape[0] + 1) // 2, (img.shape[1] + 1) // 2
    assert sum(recs[0]["union"]) - recs[0]["intersection"][1] <= h * w  # ignore pixels excluded
    assert s["episodes"]["evaluated"] == 2


def test_resume_gives_the_numbers_of_an_uninterrupted_run(eval_data, tmp_path):
    ds = build_dataset("suim", eval_data)
    full = run_evaluation(FakeModel(), ds, tmp_path / "full", episodes=9, seed=1, progress=False)

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(FakeModel(fail_after=4), ds, part, episodes=9, seed=1, progress=False)
    lines = (part / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 and not (part / "summary.json").exists()
    with open(part / "results.jsonl", "a") as fh:
        fh.write('{"index": 4, "episode": "cut-off wri')  # a line cut by the interruption

    with pytest.raises(FileExistsError, match="pass resume=True"):
        run_evaluation(FakeModel(), ds, part, episodes=9, seed=1, progress=False)
    with pytest.raises(ValueError, match="seed: stored 1, now 2"):
        run_evaluation(FakeModel(), ds, part, episodes=9, seed=2, resume=True, progress=False)

    model = FakeModel()
    resumed = run_evaluation(model, ds, part, episodes=9, seed=1, resume=True, progress=False)
    assert model.calls == 5 and resumed["episodes"]["resumed"] == 4
    assert comparable(resumed) == comparable(full)
    assert records_without_time(part / "results.jsonl") == records_without_time(tmp_path / "full" / "results.jsonl")

    # resuming a finished run evaluates nothing and changes nothing
    model = FakeModel()
    again = run_evaluation(model, ds, part, episodes=9, seed=1, resume=True, progress=False)
    assert model.calls == 0 and comparable(again) == comparable(full)


def test_episodes_file_reruns_the_same_set(eval_data, tmp_path):
    ds = build_dataset("coco", eval_data)
    a = run_evaluation(FakeModel(), ds, tmp_path / "a", episodes=5, seed=7, progress=False)
    b = run_evaluation(FakeModel(), ds, tmp_path / "b", episodes=str(tmp_path / "a" / "episodes.json"), progress=False)
    assert comparable(a) == comparable(b)
    other = build_dataset("coco", eval_data, fold=1)
    with pytest.raises(ValueError, match="another benchmark or fold"):
        run_evaluation(
            FakeModel(), other, tmp_path / "c", episodes=str(tmp_path / "a" / "episodes.json"), progress=False
        )


def test_bad_sample_stops_or_is_counted(eval_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(eval_data / "ISIC", root / "ISIC")
    ds = build_dataset("isic", root)
    eps = sample_episodes(ds, 6, seed=0)
    broken = eps[2].target["image"]
    (root / "ISIC" / "ISIC2018_Task1-2_Training_Input" / broken).write_bytes(b"\x00garbage")
    with pytest.raises(BadSampleError, match=rf"{broken}: cannot be read as an image .*episode 2"):
        run_evaluation(FakeModel(), ds, tmp_path / "stop", episodes=6, progress=False)

    s = run_evaluation(FakeModel(), ds, tmp_path / "skip", episodes=6, skip_bad=True, progress=False)
    bad_eps = [e.index for e in eps if broken in [e.target["image"]] + [r["image"] for r in e.references]]
    assert s["episodes"]["bad"] == len(bad_eps) and s["episodes"]["evaluated"] == 6 - len(bad_eps)
    assert [b["index"] for b in s["bad_samples"]] == bad_eps
    assert all(b["file"].endswith(broken) and "cannot be read" in b["reason"] for b in s["bad_samples"])
    good = [r for r in read_records(tmp_path / "skip").values() if "bad" not in r]
    m = SegmentationMeter(list(ds.class_names))
    for r in good:
        m.add(r["class_index"], r["intersection"], r["union"])
    assert s["miou"] == m.miou()


def test_shots_must_match_the_dataset(eval_data, tmp_path):
    with pytest.raises(ValueError, match="shots=2 but the dataset was built with shots=1"):
        run_evaluation(FakeModel(), build_dataset("isic", eval_data), tmp_path / "x", episodes=2, shots=2)


def test_two_processes_equal_one(eval_data, tmp_path):
    """Two gloo processes (episodes sharded by index) give the single-process numbers and records."""
    import torch.multiprocessing as mp

    jobs = []
    for name, n in (("suim", 7), ("spair", 4)):
        single = run_evaluation(
            FakeModel(), build_dataset(name, eval_data), tmp_path / f"{name}1", episodes=n, seed=3, progress=False
        )
        jobs.append((name, str(eval_data), n, str(tmp_path / f"{name}2")))
        (tmp_path / f"{name}_single.json").write_text(json.dumps(comparable(single)))
    # fork: the children inherit the imported modules (a fresh interpreter spends seconds importing transformers)
    mp.start_processes(distributed_worker, args=(2, free_port(), jobs), nprocs=2, join=True, start_method="fork")
    for name, _, n, _out in jobs:
        single = json.loads((tmp_path / f"{name}_single.json").read_text())
        for rank in (0, 1):
            assert json.loads((tmp_path / f"{name}2" / f"returned.rank{rank}.json").read_text()) == single
        assert comparable(json.loads((tmp_path / f"{name}2" / "summary.json").read_text())) == single
        assert records_without_time(tmp_path / f"{name}2" / "results.jsonl") == records_without_time(
            tmp_path / f"{name}1" / "results.jsonl"
        )
        assert not list((tmp_path / f"{name}2").glob("results.rank*.jsonl"))  # merged by rank 0
        summary = json.loads((tmp_path / f"{name}2" / "summary.json").read_text())
        assert summary["settings"]["world_size"] == 2 and summary["episodes"]["total"] == n


def test_interrupted_single_process_run_resumed_by_two_processes(eval_data, tmp_path):
    import torch.multiprocessing as mp

    ds = build_dataset("isic", eval_data)
    full = run_evaluation(FakeModel(), ds, tmp_path / "full", episodes=7, seed=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(FakeModel(fail_after=3), ds, tmp_path / "part", episodes=7, seed=3, progress=False)
    mp.start_processes(
        distributed_worker,
        args=(2, free_port(), [("isic", str(eval_data), 7, str(tmp_path / "part"), True)]),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    resumed = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert resumed["episodes"]["resumed"] == 3
    assert comparable(resumed) == comparable(full)
    assert records_without_time(tmp_path / "part" / "results.jsonl") == records_without_time(
        tmp_path / "full" / "results.jsonl"
    )
