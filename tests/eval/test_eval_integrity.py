"""Harness integrity: 16-bit images, safe split files, one writer per run folder, resume, threads, protocol, intervals."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.runs import FakeModel, comparable, records_without_time
from PIL import Image

from insid3lab.eval import (
    BadSampleError,
    RunFolderBusyError,
    build_dataset,
    eval_num_threads,
    read_records,
    run_all_folds,
    run_evaluation,
)
from insid3lab.eval.datasets import SplitFileError, load_npy, load_pickle, read_image
from insid3lab.eval.metrics.stats import segmentation_interval
from insid3lab.eval.run.episodes import sample_episodes
from insid3lab.eval.run.files import record_digest

# ───────────────────────── 16-bit images ─────────────────────────


def test_16_bit_images_are_scaled_by_bit_depth_as_the_package_reader_does(tmp_path):
    from insid3lab.core.preprocess import to_pil_rgb

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    img = read_image(path)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    expect = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(img[..., 0], expect) and np.array_equal(img[..., 2], expect)
    assert (img == 255).mean() < 0.01  # PIL's convert("RGB") made 99% of these pixels 255
    assert np.array_equal(img, np.asarray(to_pil_rgb(path, exif_transpose=False)))


# ───────────────────────── restricted unpickling ─────────────────────────


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Opener:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_Shell, _Opener])
def test_crafted_split_pickle_is_refused_and_runs_nothing(eval_data, tmp_path, payload):
    root = tmp_path / "data"
    shutil.copytree(eval_data / "COCO2014", root / "COCO2014")
    marker = tmp_path / "pwned"
    split = root / "COCO2014" / "splits" / "val" / "fold0.pkl"
    split.write_bytes(pickle.dumps({0: ["val2014/x.jpg"], 4: payload(marker)}))
    with pytest.raises(SplitFileError, match=rf"{split}: refusing to load the global .*(system|open)"):
        build_dataset("coco", root, fold=0)
    assert not marker.exists()


def test_crafted_permis_masks_are_refused(eval_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(eval_data / "PerMIRS", root / "PerMIRS")
    marker = tmp_path / "pwned"
    target = root / "PerMIRS" / "0" / "masks.npz.npy"
    np.save(target, np.array([_Shell(marker), {}, {}], dtype=object), allow_pickle=True)
    ds = build_dataset("permis", root)
    with pytest.raises(BadSampleError, match=r"masks.npz.npy: refusing to load the global"):
        ds.load({"video": "0", "frame": 1}, 0)
    assert not marker.exists()


def test_truncated_and_garbage_split_files_give_one_line(eval_data, tmp_path):
    good = eval_data / "LVIS" / "lvis_val.pkl"
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(SplitFileError, match=rf"^{cut}: truncated or not a pickle"):
        load_pickle(cut)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle at all")
    with pytest.raises(SplitFileError, match=rf"^{junk}: ") as e:
        load_pickle(junk)
    assert "\n" not in str(e.value)
    # the legitimate files of the fixtures load as pickle.load reads them
    with open(good, "rb") as fh:
        assert load_pickle(good) == pickle.load(fh)
    masks = load_npy(eval_data / "PerMIRS" / "4" / "masks.npz.npy")
    ref = np.load(eval_data / "PerMIRS" / "4" / "masks.npz.npy", allow_pickle=True)
    assert all(np.array_equal(a[17], b[17]) for a, b in zip(masks, ref))


# ───────────────────────── one writer per run folder ─────────────────────────


class SlowModel(FakeModel):
    def segment(self, target):
        time.sleep(0.15)
        return super().segment(target)


def _first_writer(root: str, out: str) -> None:
    ds = build_dataset("suim", root)
    run_evaluation(SlowModel(), ds, out, episodes=8, seed=0, progress=False)


def test_second_process_is_refused_while_the_first_writes(eval_data, tmp_path):
    out = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    first = ctx.Process(target=_first_writer, args=(str(eval_data), str(out)))
    first.start()
    try:
        lock = out / ".lock"
        for _ in range(400):  # until the first process holds the folder
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.01)
        ds = build_dataset("suim", eval_data)
        with pytest.raises(RunFolderBusyError, match=rf"run folder .*run' is in use by process {first.pid}"):
            run_evaluation(FakeModel(tol=10.0), ds, out, episodes=8, seed=0, progress=False, resume=True)
        assert first.is_alive()  # refused while the first was still writing, not after
    finally:
        first.join(60)
    assert first.exitcode == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in recs] == list(range(8)) and len({r["run"] for r in recs}) == 1
    fresh = run_evaluation(FakeModel(), ds, tmp_path / "fresh", episodes=8, seed=0, progress=False)
    assert records_without_time(out / "results.jsonl") == records_without_time(tmp_path / "fresh" / "results.jsonl")
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name or p.name == ".lock"]
    # the lock is gone with its process: the folder can be resumed now
    again = run_evaluation(FakeModel(), ds, out, episodes=8, seed=0, progress=False, resume=True)
    assert comparable(again) == comparable(fresh)


def test_records_of_other_settings_are_detected_on_resume(eval_data, tmp_path):
    ds = build_dataset("isic", eval_data)
    out = tmp_path / "run"
    run_evaluation(FakeModel(), ds, out, episodes=4, progress=False)
    lines = (out / "results.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["run"] = "0123456789abcdef"  # written by a run with other settings
    rec["digest"] = record_digest(rec)
    lines[1] = json.dumps(rec)
    (out / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"1 record\(s\) .*other run settings .*0123456789abcdef"):
        run_evaluation(FakeModel(), ds, out, episodes=4, progress=False, resume=True)


def test_garbage_run_file_is_named(eval_data, tmp_path):
    ds = build_dataset("isic", eval_data)
    out = tmp_path / "run"
    run_evaluation(FakeModel(), ds, out, episodes=2, progress=False)
    (out / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match=rf"{out / 'run.json'}' is not a run description"):
        run_evaluation(FakeModel(), ds, out, episodes=2, progress=False, resume=True)


# ───────────────────────── resume ─────────────────────────


def test_bad_episodes_are_retried_on_resume(eval_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(eval_data / "ISIC", root / "ISIC")
    ds = build_dataset("isic", root)
    eps = sample_episodes(ds, 6, seed=0)
    broken = root / "ISIC" / "ISIC2018_Task1-2_Training_Input" / eps[2].target["image"]
    original = broken.read_bytes()
    broken.write_bytes(b"\x00garbage")
    out = tmp_path / "run"
    s = run_evaluation(FakeModel(), ds, out, episodes=6, skip_bad=True, progress=False)
    n_bad = s["episodes"]["bad"]
    assert n_bad >= 1

    # still broken, resumed without skip_bad: the bad record is not reused silently
    with pytest.raises(BadSampleError, match="cannot be read as an image"):
        run_evaluation(FakeModel(), ds, out, episodes=6, progress=False, resume=True)

    broken.write_bytes(original)  # fixed
    model = FakeModel()
    resumed = run_evaluation(model, ds, out, episodes=6, progress=False, resume=True)
    assert model.calls == n_bad and resumed["bad_retried"] == n_bad
    assert resumed["settings"]["skip_bad"] is False and resumed["episodes"]["bad"] == 0
    fresh = run_evaluation(FakeModel(), ds, tmp_path / "fresh", episodes=6, progress=False)
    assert comparable(resumed) == comparable(fresh)
    assert records_without_time(out / "results.jsonl") == records_without_time(tmp_path / "fresh" / "results.jsonl")


def test_whole_last_record_without_newline_is_kept(eval_data, tmp_path):
    ds = build_dataset("suim", eval_data)
    out = tmp_path / "run"
    full = run_evaluation(FakeModel(), ds, out, episodes=5, progress=False)
    path = out / "results.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    model = FakeModel()
    again = run_evaluation(model, ds, out, episodes=5, progress=False, resume=True)
    assert model.calls == 0 and again["episodes"]["resumed"] == 5
    assert comparable(again) == comparable(full) and len(path.read_text().splitlines()) == 5
    # the same record followed by NUL padding is kept too; a torn record is cut and evaluated again
    path.write_bytes(path.read_bytes().rstrip(b"\n") + b"\0" * 64)
    model = FakeModel()
    run_evaluation(model, ds, out, episodes=5, progress=False, resume=True)
    assert model.calls == 0
    data = path.read_bytes()
    path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1] + data.rstrip(b"\n").rsplit(b"\n", 1)[1][:30])
    model = FakeModel()
    again = run_evaluation(model, ds, out, episodes=5, progress=False, resume=True)
    assert model.calls == 1 and comparable(again) == comparable(full)


# ───────────────────────── threads ─────────────────────────


def test_thread_count_from_affinity_and_local_processes():
    assert eval_num_threads(cpus=16, env={}) == 16
    assert eval_num_threads(cpus=16, env={"LOCAL_WORLD_SIZE": "4"}) == 4
    assert eval_num_threads(cpus=6, env={"LOCAL_WORLD_SIZE": "4"}) == 1
    assert eval_num_threads(cpus=2, env={"LOCAL_WORLD_SIZE": "8"}) == 1
    assert eval_num_threads(cpus=16, env={"LOCAL_WORLD_SIZE": "4", "INSID3LAB_NUM_THREADS": "3"}) == 3
    assert eval_num_threads(5, cpus=16, env={"INSID3LAB_NUM_THREADS": "3"}) == 5
    assert eval_num_threads(env={}) == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="INSID3LAB_NUM_THREADS='x'"):
        eval_num_threads(cpus=4, env={"INSID3LAB_NUM_THREADS": "x"})
    with pytest.raises(ValueError, match="num_threads=0"):
        eval_num_threads(0)


def test_run_sets_and_restores_threads(eval_data, tmp_path):
    before = torch.get_num_threads()
    seen = []

    class Probe(FakeModel):
        def segment(self, target):
            seen.append(torch.get_num_threads())
            return super().segment(target)

    s = run_evaluation(
        Probe(), build_dataset("isic", eval_data), tmp_path / "r", episodes=2, num_threads=1, progress=False
    )
    assert seen == [1, 1] and s["settings"]["num_threads"] == 1 and torch.get_num_threads() == before


# ───────────────────────── smaller items ─────────────────────────


def test_folder_reports_images_without_mask(eval_data, tmp_path):
    root = tmp_path / "defects"
    shutil.copytree(eval_data / "defects", root)
    shutil.copy(root / "images" / "dent" / "part0.png", root / "images" / "dent" / "orphan.png")
    with pytest.warns(UserWarning, match=r"1 image\(s\) have no mask .*dent/orphan.png"):
        ds = build_dataset("folder", root)
    assert ds.images_without_mask == ["dent/orphan.png"] and ds.describe()["images_without_mask"] == 1


def test_ignore_value_of_the_ground_truth(eval_data, tmp_path):
    ds = build_dataset("isaid", eval_data)
    ep = sample_episodes(ds, 1)[0]
    tgt = ds.load(ep.target, ep.class_index)
    assert (tgt.mask == 255).any()
    model = FakeModel()
    ref = ds.load(ep.references[0], ep.class_index)
    model.set_reference(ref.image, ref.foreground)
    pred = model.segment(tgt.image).numpy()
    for value, name in ((255, "a"), (None, "b")):
        run_evaluation(FakeModel(), ds, tmp_path / name, episodes=1, ignore_value=value, progress=False)
        rec = read_records(tmp_path / name)[0]
        valid = np.ones_like(pred) if value is None else tgt.mask != 255
        g = tgt.mask == 1
        assert rec["intersection"] == [int((~pred & ~g & valid).sum()), int((pred & g & valid).sum())]
        assert rec["union"] == [int(((~pred | ~g) & valid).sum()), int(((pred | g) & valid).sum())]
    with pytest.raises(ValueError, match="ignore_value=1"):
        run_evaluation(FakeModel(), ds, tmp_path / "c", episodes=1, ignore_value=1)


def test_classes_without_episodes_are_listed_and_warned(eval_data, tmp_path):
    ds = build_dataset("coco", eval_data, fold=0)
    with pytest.warns(UserWarning, match=r"19 of 20 classes have no evaluated episode and count as IoU 0"):
        s = run_evaluation(FakeModel(), ds, tmp_path / "r", episodes=2, progress=False)
    assert s["classes_without_episodes"] == [n for n, k in s["per_class_episodes"].items() if k == 0]
    assert len(s["classes_without_episodes"]) == 19


# ───────────────────────── protocol, intervals, folds ─────────────────────────


class SquareModel(FakeModel):
    """Predicts at S x S when ``resize_to_orig_size`` is False (as INSID3 does), else at the target's size."""

    def __init__(self, size: int = 48):
        super().__init__()
        self.image_size = size
        self.resize_to_orig_size = True

    def segment(self, target):
        m = super().segment(target)
        if self.resize_to_orig_size:
            return m
        return F.interpolate(m[None, None].float(), size=(self.image_size,) * 2, mode="bilinear")[0, 0] > 0.5


def test_paper_protocol_equals_a_hand_computation(eval_data, tmp_path):
    ds = build_dataset("isaid", eval_data)
    model = SquareModel(48)
    s = run_evaluation(model, ds, tmp_path / "paper", episodes=2, protocol="paper", progress=False)
    assert model.resize_to_orig_size is True  # restored
    assert s["protocol"] == "paper" and s["settings"]["protocol"] == "paper"
    recs = read_records(tmp_path / "paper")
    for ep in sample_episodes(ds, 2):
        ref = ds.load(ep.references[0], ep.class_index)
        tgt = ds.load(ep.target, ep.class_index)
        m = SquareModel(48)
        m.resize_to_orig_size = False
        m.set_reference(ref.image, ref.foreground)
        pred = m.segment(tgt.image).numpy()
        assert pred.shape == (48, 48)
        # the ground truth at S x S by nearest-neighbour, as the authors' loop resizes it
        h, w = tgt.mask.shape
        rows = np.floor(np.arange(48) * (h / 48)).astype(int)
        cols = np.floor(np.arange(48) * (w / 48)).astype(int)
        gt = tgt.mask[rows][:, cols]
        valid, g = gt != 255, gt == 1
        assert recs[ep.index]["intersection"] == [int((~pred & ~g & valid).sum()), int((pred & g & valid).sum())]
        assert recs[ep.index]["union"] == [int(((~pred | ~g) & valid).sum()), int(((pred | g) & valid).sum())]
        assert sum(recs[ep.index]["union"]) - recs[ep.index]["intersection"][1] <= 48 * 48
    native = run_evaluation(SquareModel(48), ds, tmp_path / "native", episodes=2, progress=False)
    assert native["protocol"] == "native" and native["intersection"] != s["intersection"]
    with pytest.raises(ValueError, match="protocol: stored 'paper', now 'native'"):
        run_evaluation(SquareModel(48), ds, tmp_path / "paper", episodes=2, progress=False, resume=True)
    with pytest.raises(ValueError, match="resize_to_orig_size"):
        run_evaluation(FakeModel(), ds, tmp_path / "x", episodes=2, protocol="paper", progress=False)


def test_bootstrap_interval_is_seeded_and_holds_the_estimate(eval_data, tmp_path):
    ds = build_dataset("suim", eval_data)

    class Noisy(FakeModel):
        def segment(self, target):
            m = super().segment(target)
            return torch.roll(m, shifts=(self.calls % 3) * 2, dims=1)

    a = run_evaluation(Noisy(), ds, tmp_path / "a", episodes=12, bootstrap=300, bootstrap_seed=5, progress=False)
    b = run_evaluation(Noisy(), ds, tmp_path / "b", episodes=12, bootstrap=300, bootstrap_seed=5, progress=False)
    assert a["interval"] == b["interval"] and a["interval"]["seed"] == 5 and a["interval"]["resamples"] == 300
    lo, hi = a["interval"]["miou"]
    assert lo <= a["miou"] <= hi and lo < hi
    lo, hi = a["interval"]["fb_iou"]
    assert lo <= a["fb_iou"] <= hi
    # one episode per class: every resample is an mIoU the hand can compute
    one = [(0, 0, [5, 3], [10, 4])]
    iv = segmentation_interval(one, 2, resamples=10, seed=0)
    assert iv["miou"] == [37.5, 37.5] and iv["fb_iou"] == pytest.approx([100 * (0.5 + 0.75) / 2] * 2)
    kp = run_evaluation(FakeModel(), build_dataset("spair", eval_data), tmp_path / "kp", episodes=3, progress=False)
    lo, hi = kp["interval"]["pck@0.10"]
    assert lo - 1e-9 <= kp["pck"]["pck@0.10"] <= hi + 1e-9


def _isaid_with_three_folds(eval_data, root):
    base = root / "iSAID"
    shutil.copytree(eval_data / "iSAID", base)
    lines = (base / "splits" / "val" / "fold0.txt").read_text().split()
    for k in (1, 2):
        out = []
        for line in lines:
            name, c = line.rsplit("__", 1)
            shutil.copy(base / "val" / "images" / f"{name}.png", base / "val" / "images" / f"{name}f{k}.png")
            labels = np.asarray(Image.open(base / "val" / "semantic_png" / f"{name}_instance_color_RGB.png")).copy()
            labels[(labels > 0) & (labels < 255)] += 5 * k
            Image.fromarray(labels).save(base / "val" / "semantic_png" / f"{name}f{k}_instance_color_RGB.png")
            out.append(f"{name}f{k}__{int(c) + 5 * k}")
        (base / "splits" / "val" / f"fold{k}.txt").write_text("\n".join(out) + "\n")
    return root


def test_every_fold_and_their_mean(eval_data, tmp_path):
    root = _isaid_with_three_folds(eval_data, tmp_path / "data")
    res = run_all_folds(FakeModel(), "isaid", root, tmp_path / "all", episodes=2, progress=False)
    assert res["folds"] == [0, 1, 2]
    for k in range(3):
        s = json.loads((tmp_path / "all" / f"fold{k}" / "summary.json").read_text())
        assert res["per_fold"][f"fold{k}"]["miou"] == s["miou"] and s["dataset"]["fold"] == k
    assert res["mean"]["miou"] == pytest.approx(np.mean([v["miou"] for v in res["per_fold"].values()]))
    assert json.loads((tmp_path / "all" / "folds.json").read_text()) == res
    with pytest.raises(ValueError, match="'isic' has no folds; benchmarks with folds: coco"):
        run_all_folds(FakeModel(), "isic", eval_data, tmp_path / "no")
