"""N-way K-shot episodes and instance AP in the evaluation runner: sampling, scoring by hand, resume, the command."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_api
import pytest
import torch
import torch.nn.functional as F
from helpers.processes import free_port, gloo_group
from helpers.runs import FakeModel, comparable, records_without_time
from PIL import Image

import insid3lab
import insid3lab.cli.options
from insid3lab.cli.eval import build_eval_parser
from insid3lab.eval import build_dataset, run_evaluation
from insid3lab.eval.datasets.cocojson import CocoJsonDataset
from insid3lab.eval.run.episodes import Episode, load_episodes, sample_episodes, save_episodes
from insid3lab.eval.run.nway import nway_episode
from insid3lab.eval.run.runner import _segment_episode
from insid3lab.synthetic import box_scene

# ───────────────────────── a COCO-format export drawn by hand ─────────────────────────

H, W = 32, 48
NAMES = ["red", "green", "blue"]
COLOURS = {1: (220, 40, 40), 2: (40, 200, 60), 3: (40, 80, 230)}
N_IMAGES = 9


def boxes_of(i: int) -> list[tuple[int, tuple[int, int, int, int], int]]:
    """(category id, (x0, y0, x1, y1), iscrowd) of image i: category i % 3 + 1 on the left, in odd images also
    category (i + 1) % 3 + 1 on the right; image 4 has a second red instance, image 6 a red crowd region."""
    out = [(i % 3 + 1, (2, 4 + i % 4, 12, 14 + i % 4), 0)]
    if i % 2:
        out.append(((i + 1) % 3 + 1, (30, 6, 40, 18), 0))
    if i == 4:
        out.append((1, (16, 20, 26, 28), 0))
    if i == 6:
        out.append((1, (34, 20, 44, 30), 1))
    return out


def make_export(root):
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    images, anns = [], []
    for i in range(N_IMAGES):
        img, _ = box_scene((H, W), [(box, COLOURS[cat]) for cat, box, _ in boxes_of(i)], grey=128, noise=0)
        for cat, (x0, y0, x1, y1), crowd in boxes_of(i):
            m = np.zeros((H, W), dtype=np.uint8)
            m[y0:y1, x0:x1] = 1
            rle = mask_api.encode(np.asfortranarray(m))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "iscrowd": crowd,
                         "segmentation": {"size": [H, W], "counts": rle["counts"].decode("ascii")},
                         "area": int(m.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0]})  # fmt: skip
        Image.fromarray(img).save(images_dir / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": W, "height": H})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]}  # fmt: skip
    path = root / "export.json"
    path.write_text(json.dumps(doc))
    return images_dir, path


@pytest.fixture()
def export(tmp_path):
    return make_export(tmp_path)


def dataset(export, shots=1):
    images_dir, path = export
    return CocoJsonDataset(images_dir, annotations=path, shots=shots, reference_split=None)


def area(i: int, cat: int) -> int:
    """Pixels of category ``cat`` (non-crowd) in image i."""
    return sum((x1 - x0) * (y1 - y0) for c, (x0, y0, x1, y1), crowd in boxes_of(i) if c == cat and not crowd)


# ───────────────────────── models that see colours ─────────────────────────


class ColourModel(FakeModel):
    """Labels the target pixels of each concept's exact reference colour; instances are its connected boxes.

    ``drop``: a concept never predicted; ``shift``: instance masks moved right by that many pixels.
    """

    def __init__(self, drop: str | None = None, shift: int = 0, fail_after: int | None = None):
        super().__init__(fail_after=fail_after)
        self.concepts: dict[str, list] = {}
        self.drop, self.shift = drop, shift
        self.resize_to_orig_size = True

    def clear_reference(self) -> None:
        super().clear_reference()
        self.concepts = {}

    def set_reference(self, image, mask, label=None) -> None:
        super().set_reference(image, mask)
        self.concepts.setdefault(label, []).append(self.refs[-1])

    @property
    def labels(self) -> list[str]:
        return list(self.concepts)

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        if self.resize_to_orig_size:
            return t
        s = self.image_size
        return F.interpolate(t[None, None].float(), size=(s, s), mode="nearest")[0, 0].to(t.dtype)

    def segment_labels(self, target):
        self._tick()
        img = np.asarray(target, dtype=np.float64)
        out = np.zeros(img.shape[:2], dtype=np.int64)
        for k, (name, cols) in enumerate(self.concepts.items()):
            if self.drop is None or name != self.drop:
                out[np.linalg.norm(img - np.mean(cols, axis=0), axis=2) < 1.0] = k + 1
        return self._out(torch.from_numpy(out)), {n: 1.0 for n in self.concepts}

    def segment_instances(self, target):
        from scipy import ndimage

        labels, _ = self.segment_labels(target)
        found = []
        for k, name in enumerate(self.concepts):
            comp, n = ndimage.label(labels.numpy() == k + 1)
            for j in range(1, n + 1):
                m = np.roll(comp == j, self.shift, axis=1)
                found.append({"label": name, "label_id": k + 1, "mask": torch.from_numpy(m), "score": 1.0 - 0.01 * j,
                              "box": (0, 0, 1, 1)})  # fmt: skip
        return found


# ───────────────────────── N-way episodes ─────────────────────────


def test_nway_episodes_are_deterministic_replayable_and_well_formed(export, tmp_path):
    ds = dataset(export, shots=2)
    eps = sample_episodes(ds, 12, seed=5, ways=3)
    assert [e.to_json() for e in eps] == [e.to_json() for e in sample_episodes(ds, 12, seed=5, ways=3)]
    assert [e.digest() for e in eps] != [e.digest() for e in sample_episodes(ds, 12, seed=6, ways=3)]
    for e in eps:
        classes = [c for c, _ in e.classes]
        assert len(classes) == 3 and len(set(classes)) == 3 and classes[0] == e.class_index
        assert [n for _, n in e.classes] == [ds.class_names[c] for c in classes]
        assert ds.load(e.target, e.class_index).foreground.any()  # the target holds way 0's class
        assert len(e.references) == 6
        keys = [ds.item_key(r) for r in e.references]
        assert ds.item_key(e.target) not in keys
        for way, (c, _) in enumerate(e.classes):
            for r in e.references_of(way):
                assert ds.load(r, c).foreground.any()  # every shot holds its way's class
    # JSON round trip
    save_episodes(tmp_path / "eps.json", eps)
    back, _ = load_episodes(tmp_path / "eps.json")
    assert back == eps and all(isinstance(e.ways, tuple) for e in back)
    # way 0 of an N-way episode is the 1-way episode of the same (seed, index)
    one = sample_episodes(ds, 12, seed=5)
    assert [(e.class_index, e.target, e.references) for e in one] == [
        (e.class_index, e.target, tuple(e.references_of(0))) for e in eps
    ]
    assert "ways" not in one[0].to_json()


def test_ways_1_equals_the_one_way_run(eval_data, tmp_path):
    ds = build_dataset("coco", eval_data, fold=0)
    a = run_evaluation(FakeModel(), ds, tmp_path / "a", episodes=6, seed=1, progress=False)
    b = run_evaluation(FakeModel(), ds, tmp_path / "b", episodes=6, seed=1, progress=False, ways=1)
    assert comparable(a) == comparable(b) and b["ways"] == 1
    assert records_without_time(tmp_path / "a" / "results.jsonl") == records_without_time(
        tmp_path / "b" / "results.jsonl"
    )
    assert "ways" not in json.loads((tmp_path / "b" / "run.json").read_text())["identity"]


def test_nway_scoring_of_one_way_episodes_equals_the_one_way_scoring(export):
    ds = dataset(export)
    model = ColourModel(drop=None)
    model.segment = lambda target: model.segment_labels(target)[0] > 0  # the same prediction as a mask
    for ep in sample_episodes(ds, 9, seed=0):
        one = _segment_episode(model, ds, ep, 255)
        many = nway_episode(model, ds, Episode(ep.index, ep.class_index, ep.class_name, ep.target, ep.references,
                                               ((ep.class_index, ep.class_name),)), 255)  # fmt: skip
        assert many["intersection"] == one["intersection"] and many["union"] == one["union"]


@pytest.mark.parametrize("protocol", ["native", "paper"])
def test_perfect_labels_give_miou_100(export, tmp_path, protocol):
    ds = dataset(export)
    s = run_evaluation(ColourModel(), ds, tmp_path / "run", episodes=9, seed=2, ways=2, protocol=protocol,
                       progress=False)  # fmt: skip
    assert s["ways"] == 2 and s["settings"]["ways"] == 2
    assert s["miou"] == 100.0 and s["fb_iou"] == 100.0
    assert sum(s["per_class_episodes"].values()) == 18  # two ways per episode
    rec = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert len(rec["ways"]) == 2 and len(rec["intersection"]) == 3


def test_a_dropped_class_gives_the_hand_computed_sums(export, tmp_path):
    ds = dataset(export)
    green = ds.class_names.index("green")
    s = run_evaluation(ColourModel(drop="green"), ds, tmp_path / "run", episodes=9, seed=4, ways=3, progress=False)
    eps, _ = load_episodes(tmp_path / "run" / "episodes.json")
    inter, union = np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3), dtype=np.int64)
    for e in eps:
        i = int(e.target["image"][2:-4])
        crowd = sum((x1 - x0) * (y1 - y0) for _, (x0, y0, x1, y1), c in boxes_of(i) if c)  # ignored (255)
        fg = {c: area(i, c + 1) for c, _ in e.classes}
        for c in fg:
            inter[1, c] += 0 if c == green else fg[c]
            union[1, c] += fg[c]
        bg = H * W - crowd - sum(fg.values())
        inter[0, e.class_index] += bg
        union[0, e.class_index] += bg + fg[green]
    assert s["intersection"] == inter.tolist() and s["union"] == union.tolist()
    iou = inter[1] / np.maximum(union[1], 1)
    assert s["miou"] == pytest.approx(100 * iou.mean()) and iou[green] == 0 and s["miou"] == pytest.approx(200 / 3)
    assert s["fb_iou"] == pytest.approx(50 * (inter[0].sum() / union[0].sum() + inter[1].sum() / union[1].sum()))


def test_nway_resume_gives_identical_numbers(export, tmp_path):
    ds = dataset(export)
    full = run_evaluation(ColourModel(drop="blue"), ds, tmp_path / "full", episodes=9, seed=3, ways=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(ColourModel(drop="blue", fail_after=4), ds, tmp_path / "cut", episodes=9, seed=3, ways=2,
                       progress=False)  # fmt: skip
    resumed = run_evaluation(ColourModel(drop="blue"), ds, tmp_path / "cut", episodes=9, seed=3, ways=2,
                             progress=False, resume=True)  # fmt: skip
    assert resumed["episodes"]["resumed"] == 4
    assert comparable(resumed) == comparable(full) and resumed["interval"] == full["interval"]
    # the stored run is 2-way: a 1-way or 3-way resume is refused
    for ways in (1, 3):
        with pytest.raises(ValueError, match="stored run differs"):
            run_evaluation(ColourModel(), ds, tmp_path / "cut", episodes=9, seed=3, ways=ways, resume=True,
                           progress=False)  # fmt: skip
    # the episodes file reruns the same episodes
    again = run_evaluation(ColourModel(drop="blue"), ds, tmp_path / "again", episodes=str(tmp_path / "full" /
                           "episodes.json"), ways=2, progress=False)  # fmt: skip
    assert comparable(again) == comparable(full)


def test_bad_nway_input(export, eval_data, tmp_path):
    ds = dataset(export)
    with pytest.raises(ValueError, match="ways=0: must be an integer >= 1"):
        sample_episodes(ds, 2, ways=0)
    with pytest.raises(ValueError, match="has only 3 classes"):
        sample_episodes(ds, 2, ways=4)
    with pytest.raises(ValueError, match="folder cannot give the mask of another class"):
        sample_episodes(build_dataset("folder", eval_data / "defects"), 2, ways=2)
    save_episodes(tmp_path / "e.json", sample_episodes(ds, 3, ways=2))
    with pytest.raises(ValueError, match="has 2 way\\(s\\) but the run is set to ways=3"):
        run_evaluation(ColourModel(), ds, tmp_path / "r", episodes=str(tmp_path / "e.json"), ways=3, progress=False)
    with pytest.raises(ValueError, match="task='bogus': allowed: semantic, instances"):
        run_evaluation(ColourModel(), ds, tmp_path / "r2", episodes=2, task="bogus", progress=False)


# ───────────────────────── instance AP ─────────────────────────


def test_perfect_instances_give_ap_1(export, tmp_path):
    ds = dataset(export)
    s = run_evaluation(ColourModel(), ds, tmp_path / "run", episodes=9, seed=0, task="instances", progress=False)
    assert s["task"] == "instances" and s["settings"]["task"] == "instances"
    assert (s["ap"], s["ap50"], s["ap75"]) == (1.0, 1.0, 1.0)
    visited = {ds.class_names[json.loads(line)["class_index"]]
               for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()}  # fmt: skip
    assert {n for n, v in s["per_class_ap"].items() if v == 1.0} == visited
    rec = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert set(rec) >= {"size", "gt", "pred"} and all(isinstance(p["rle"], str) for p in rec["pred"])
    from insid3lab.eval.reports.report import report_rows

    row = report_rows([tmp_path / "run"])[0]
    assert row["metric"] == "mask AP" and list(row["cells"].values()) == [(100.0, None)]


def test_shifted_instances_give_the_known_lower_ap(export, tmp_path):
    # every instance is 10 px wide; moved 2 px right its IoU is 8 / 12 = 2/3: a match at the IoU thresholds
    # 0.50, 0.55, 0.60, 0.65 (4 of 10), none above; the crowd region's prediction is never a false positive there
    ds = dataset(export)
    s = run_evaluation(ColourModel(shift=2), ds, tmp_path / "run", episodes=9, seed=0, task="instances",
                       progress=False)  # fmt: skip
    assert s["ap"] == pytest.approx(0.4) and s["ap50"] == 1.0 and s["ap75"] == 0.0


def test_instance_resume_gives_identical_ap(export, tmp_path):
    ds = dataset(export)
    kw = {"episodes": 9, "seed": 1, "task": "instances", "progress": False}
    full = run_evaluation(ColourModel(shift=2), ds, tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(ColourModel(shift=2, fail_after=5), ds, tmp_path / "cut", **kw)
    resumed = run_evaluation(ColourModel(shift=2), ds, tmp_path / "cut", resume=True, **kw)
    assert resumed["episodes"]["resumed"] == 5
    assert [resumed[k] for k in ("ap", "ap50", "ap75", "per_class_ap")] == [
        full[k] for k in ("ap", "ap50", "ap75", "per_class_ap")
    ]
    with pytest.raises(ValueError, match="stored run differs"):
        run_evaluation(ColourModel(), ds, tmp_path / "cut", episodes=9, seed=1, resume=True, progress=False)


def test_instances_need_instance_annotations(eval_data, export, tmp_path):
    with pytest.raises(ValueError, match="needs instance annotations; coco has none"):
        run_evaluation(FakeModel(), build_dataset("coco", eval_data), tmp_path / "r", episodes=2, task="instances",
                       progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="ways=2 is not allowed"):
        run_evaluation(ColourModel(), dataset(export), tmp_path / "r", episodes=2, task="instances", ways=2,
                       progress=False)  # fmt: skip


# ───────────────────────── the command ─────────────────────────


@pytest.fixture
def colour_pipeline(monkeypatch):
    monkeypatch.setattr(insid3lab.cli.options, "load_model_source", lambda *a, **k: "backbone")
    monkeypatch.setattr(insid3lab, "INSID3", lambda backbone, **kw: ColourModel(), raising=False)


def _argv(export, out, *more):
    images_dir, path = export
    return ["eval", "--dataset", "coco-json", "--annotations", str(path), "--images", str(images_dir),
            "--reference-split", "none", "--model", "m", "--out", str(out), "--episodes", "6", "--device", "cpu",
            "--no-progress", "--bootstrap", "0", *more]  # fmt: skip


def _run(argv) -> int:
    args = build_eval_parser().parse_args(argv)
    return args.func(args)


def test_command_ways_and_task(export, tmp_path, colour_pipeline, capsys):
    assert _run(_argv(export, tmp_path / "nway", "--ways", "2", "--protocol", "native")) == 0
    s = json.loads((tmp_path / "nway" / "summary.json").read_text())
    assert s["ways"] == 2 and s["miou"] == 100.0
    assert json.loads((tmp_path / "nway" / "run.json").read_text())["identity"]["ways"] == 2
    printed = capsys.readouterr().out
    assert "mIoU 100.00" in printed and "protocol native, 2-way)" in printed
    assert _run(_argv(export, tmp_path / "inst", "--task", "instances", "--protocol", "native")) == 0
    s = json.loads((tmp_path / "inst" / "summary.json").read_text())
    assert s["task"] == "instances" and s["ap"] == 1.0
    printed = capsys.readouterr().out
    assert "AP 100.00  AP50 100.00  AP75 100.00" in printed and "task instances" in printed
    with pytest.raises(ValueError, match="stored run differs"):
        _run(_argv(export, tmp_path / "inst", "--protocol", "native", "--resume"))


def test_command_refuses_bad_combinations(export, eval_data, tmp_path, colour_pipeline):
    coco = ["eval", "--dataset", "coco", "--data-root", str(eval_data), "--model", "m", "--out", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="^--task instances needs instance annotations; --dataset coco has none"):
        _run(coco + ["--task", "instances"])
    with pytest.raises(ValueError, match="^--ways 0: must be >= 1$"):
        _run(coco + ["--ways", "0"])
    with pytest.raises(ValueError, match="--ways 2 is not allowed"):
        _run(_argv(export, tmp_path / "x", "--task", "instances", "--ways", "2"))
    with pytest.raises(SystemExit):
        build_eval_parser().parse_args(coco + ["--task", "panoptic"])


def test_tiny_insid3_runs_nway_and_instances_under_both_protocols(export, tmp_path, tiny_saved):
    from insid3lab import INSID3

    ds = dataset(export)
    model = INSID3(tiny_saved.backbone, image_size=64, svd_components=8, basis_cache=False)
    for protocol in ("paper", "native"):
        s = run_evaluation(model, ds, tmp_path / f"nway-{protocol}", episodes=3, ways=2, protocol=protocol,
                           progress=False, bootstrap=0)  # fmt: skip
        assert 0.0 <= s["miou"] <= 100.0 and s["episodes"]["evaluated"] == 3
        s = run_evaluation(model, ds, tmp_path / f"inst-{protocol}", episodes=3, task="instances", protocol=protocol,
                           progress=False)  # fmt: skip
        rec = json.loads((tmp_path / f"inst-{protocol}" / "results.jsonl").read_text().splitlines()[0])
        assert rec["size"] == ([64, 64] if protocol == "paper" else [H, W])
        assert 0.0 <= s["ap"] <= 1.0
    assert model.resize_to_orig_size is True  # restored after the runs


def _worker(rank: int, world: int, port: int, images_dir: str, path: str, out: str) -> None:
    with gloo_group(rank, world, port):
        ds = CocoJsonDataset(images_dir, annotations=path, reference_split=None)
        run_evaluation(ColourModel(drop="green"), ds, f"{out}/nway", episodes=9, seed=4, ways=3, progress=False)
        run_evaluation(ColourModel(shift=2), ds, f"{out}/inst", episodes=9, seed=4, task="instances", progress=False)


def test_two_processes_equal_one(export, tmp_path):
    import torch.multiprocessing as mp

    ds = dataset(export)
    nway = run_evaluation(ColourModel(drop="green"), ds, tmp_path / "nway", episodes=9, seed=4, ways=3, progress=False)
    inst = run_evaluation(ColourModel(shift=2), ds, tmp_path / "inst", episodes=9, seed=4, task="instances",
                          progress=False)  # fmt: skip
    args = (2, free_port(), str(export[0]), str(export[1]), str(tmp_path / "two"))
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="fork")
    two = json.loads((tmp_path / "two" / "nway" / "summary.json").read_text())
    assert comparable(two) == comparable(nway) and two["interval"] == nway["interval"]
    two = json.loads((tmp_path / "two" / "inst" / "summary.json").read_text())
    assert [two[k] for k in ("ap", "ap50", "ap75", "per_class_ap")] == [
        inst[k] for k in ("ap", "ap50", "ap75", "per_class_ap")
    ]
    assert two["settings"]["world_size"] == 2
    for name in ("nway", "inst"):
        assert records_without_time(tmp_path / "two" / name / "results.jsonl") == records_without_time(
            tmp_path / name / "results.jsonl"
        )


def test_compare_and_report_speak_of_ways(export, tmp_path, capsys):
    from insid3lab.cli import main
    from insid3lab.eval.reports.compare import RunsDifferError, compare_runs
    from insid3lab.eval.reports.report import report

    ds = dataset(export)
    for ways in (1, 2):
        run_evaluation(ColourModel(), ds, tmp_path / f"w{ways}", episodes=6, seed=1, ways=ways, progress=False,
                       bootstrap=20)  # fmt: skip
    with pytest.raises(RunsDifferError, match=r"different ways: a 1-way and a 2-way run$"):
        compare_runs(tmp_path / "w1", tmp_path / "w2")
    assert main(["compare", str(tmp_path / "w1"), str(tmp_path / "w2")]) == 1
    assert "different ways: a 1-way and a 2-way run" in capsys.readouterr().err
    md, _ = report([tmp_path / "w1", tmp_path / "w2"], resamples=20)
    head, _, one, two = md.splitlines()[:4]
    assert head.startswith("| run | dataset | shots | ways | protocol | metric |")
    assert one.startswith("| w1 | coco_json | 1 | 1 | native | mIoU |")
    assert two.startswith("| w2 | coco_json | 1 | 2 | native | mIoU |")


def test_runs_of_other_episodes_are_told_apart_in_the_users_terms(export, tmp_path):
    from insid3lab.eval.reports.compare import RunsDifferError, compare_runs

    ds = dataset(export)
    kw = {"progress": False, "bootstrap": 0}
    run_evaluation(ColourModel(), ds, tmp_path / "a", episodes=6, seed=1, **kw)
    run_evaluation(ColourModel(), ds, tmp_path / "seed", episodes=6, seed=2, **kw)
    run_evaluation(ColourModel(), ds, tmp_path / "count", episodes=5, seed=1, **kw)
    # the same seed and count, but episodes given as a list (or a file) drawn otherwise
    run_evaluation(ColourModel(), ds, tmp_path / "given", episodes=sample_episodes(ds, 6, seed=9), seed=1, **kw)
    with pytest.raises(RunsDifferError, match=r"different episodes: drawn with seed 1 and seed 2$"):
        compare_runs(tmp_path / "a", tmp_path / "seed")
    with pytest.raises(RunsDifferError, match=r"different episodes: 6 and 5 episodes$"):
        compare_runs(tmp_path / "a", tmp_path / "count")
    with pytest.raises(
        RunsDifferError,
        match=r"different episodes: the same seed and count, but other targets or "
        r"references \(episodes given as a file or list, or other data\)$",
    ):
        compare_runs(tmp_path / "a", tmp_path / "given")
