"""``insid3lab eval`` flags: protocol, ignore value, threads, bootstrap, every fold, several shot counts,
busy and non-empty run folders, the coco_json, davis2017 and youtube_vos benchmarks."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers.benchmarks import isaid_three_folds
from helpers.cli import eval_argv, tiny_eval_argv
from helpers.cocojson import make_export

from insid3lab import INSID3, load_backbone
from insid3lab.cli import main
from insid3lab.eval.run.files import RunLock


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_protocol_is_recorded_printed_and_never_mixed(eval_data, tmp_path, stand_in, capsys):
    out = tmp_path / "r"
    assert main(eval_argv(eval_data, "isic", out, "--episodes", "3")) == 0
    s = _summary(out)
    assert s["protocol"] == "paper" and s["settings"]["protocol"] == "paper"
    assert "protocol paper" in capsys.readouterr().out
    rc = main(eval_argv(eval_data, "isic", out, "--episodes", "3", "--protocol", "native", "--resume"))
    err = capsys.readouterr().err
    assert rc == 1 and "protocol: stored 'paper', now 'native'" in err and len(err.strip().splitlines()) == 1
    assert _summary(out) == s  # nothing overwritten
    assert main(eval_argv(eval_data, "isic", tmp_path / "n", "--episodes", "3", "--protocol", "native")) == 0
    assert _summary(tmp_path / "n")["protocol"] == "native"


def test_ignore_threads_and_bootstrap_are_recorded(eval_data, tmp_path, stand_in):
    root = eval_data / "defects"
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        main(
            eval_argv(
                root,
                "folder",
                a,
                "--episodes",
                "4",
                "--no-ignore",
                "--threads",
                "1",
                "--bootstrap",
                "50",
                "--bootstrap-seed",
                "3",
            )
        )
        == 0
    )
    assert main(eval_argv(root, "folder", b, "--episodes", "4", "--ignore-value", "200", "--bootstrap", "0")) == 0
    sa, sb = _summary(a), _summary(b)
    assert sa["settings"]["ignore_value"] is None and sb["settings"]["ignore_value"] == 200
    assert sa["settings"]["num_threads"] == 1
    assert (sa["interval"]["resamples"], sa["interval"]["seed"]) == (50, 3)
    lo, hi = sa["interval"]["miou"]
    assert lo <= sa["miou"] <= hi
    assert "interval" not in sb
    # the same bootstrap seed gives the same interval
    assert (
        main(
            eval_argv(
                root,
                "folder",
                tmp_path / "c",
                "--episodes",
                "4",
                "--no-ignore",
                "--bootstrap",
                "50",
                "--bootstrap-seed",
                "3",
            )
        )
        == 0
    )
    assert _summary(tmp_path / "c")["interval"] == sa["interval"]


def test_every_fold_into_its_folder_and_the_mean(eval_data, tmp_path, stand_in, capsys):
    root = isaid_three_folds(eval_data, tmp_path / "data")
    out = tmp_path / "all"
    assert main(eval_argv(root, "isaid", out, "--fold", "all", "--episodes", "2")) == 0
    printed = capsys.readouterr().out
    folds = json.loads((out / "folds.json").read_text())
    assert list(folds["per_fold"]) == ["fold0", "fold1", "fold2"]
    per = [_summary(out / f"fold{k}") for k in range(3)]
    assert [p["dataset"]["fold"] for p in per] == [0, 1, 2]
    assert folds["mean"]["miou"] == pytest.approx(sum(p["miou"] for p in per) / 3)
    for k, p in enumerate(per):
        assert f"fold{k}  mIoU {p['miou']:.2f}  FB-IoU {p['fb_iou']:.2f}  (2 episodes)" in printed
    assert f"mean over 3 folds  mIoU {folds['mean']['miou']:.2f}" in printed
    # resumable: the same command with --resume gives the same numbers
    assert main(eval_argv(root, "isaid", out, "--fold", "all", "--episodes", "2", "--resume")) == 0
    assert json.loads((out / "folds.json").read_text())["mean"] == folds["mean"]


@pytest.mark.parametrize(
    ("dataset", "fold", "message"),
    [
        ("isic", "all", "--fold all: isic has no folds; benchmarks with folds: coco, lvis"),
        ("coco", "7", "--fold 7: coco has folds 0..3 (or 'all')"),
        ("isic", "2", "--fold 2: isic has no folds; leave --fold unset"),
    ],
)
def test_bad_folds_are_one_line(eval_data, tmp_path, stand_in, capsys, dataset, fold, message):
    rc = main(eval_argv(eval_data, dataset, tmp_path / "x", "--fold", fold, "--episodes", "2"))
    err = capsys.readouterr().err.strip()
    assert rc == 1 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists() and not stand_in.models  # nothing made, no model built


def test_several_shot_counts_in_one_go(eval_data, tmp_path, stand_in, capsys):
    out = tmp_path / "s"
    assert main(eval_argv(eval_data, "isaid", out, "--shots", "1,2", "--episodes", "2")) == 0
    printed = capsys.readouterr().out
    s1, s2 = _summary(out / "shots1"), _summary(out / "shots2")
    assert (s1["settings"]["shots"], s2["settings"]["shots"]) == (1, 2)
    assert f"1-shot: mIoU {s1['miou']:.2f}" in printed and f"2-shot: mIoU {s2['miou']:.2f}" in printed
    assert len(stand_in.models) == 1  # one model for both
    rec = json.loads((out / "shots2" / "results.jsonl").read_text().splitlines()[0])
    assert len(rec["references"]) == 2
    with pytest.raises(SystemExit):
        main(eval_argv(eval_data, "isaid", out, "--shots", "1,x"))


def test_busy_and_non_empty_run_folders(eval_data, tmp_path, stand_in, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    lock = RunLock(out).acquire()
    try:
        rc = main(eval_argv(eval_data, "isic", out, "--episodes", "2"))
    finally:
        lock.release()
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "in use" in err and len(err.splitlines()) == 1
    assert main(eval_argv(eval_data, "isic", out, "--episodes", "2")) == 0
    capsys.readouterr()
    before = (out / "results.jsonl").read_text()
    rc = main(eval_argv(eval_data, "isic", out, "--episodes", "2"))
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "already holds an evaluation run" in err and len(err.splitlines()) == 1
    assert (out / "results.jsonl").read_text() == before


def test_coco_json_from_the_command_line(tmp_path, stand_in, capsys):
    images, ann, _ = make_export(tmp_path)
    out = tmp_path / "cj"
    argv = ["eval", "--dataset", "coco-json", "--annotations", str(ann), "--images", str(images), "--model", "w",
            "--device", "cpu", "--no-progress", "--out", str(out), "--episodes", "4", "--categories", "square",
            "--reference-split", "none"]  # fmt: skip
    assert main(argv) == 0
    s = _summary(out)
    assert s["dataset"]["name"] == "coco_json" and list(s["per_class_iou"]) == ["square"]
    assert s["episodes"]["evaluated"] == 4
    rc = main(["eval", "--dataset", "coco-json", "--images", str(images), "--model", "w", "--out", str(tmp_path / "y")])
    assert rc == 1 and "needs --annotations FILE.json and --images DIR" in capsys.readouterr().err
    rc = main(eval_argv(tmp_path, "isic", tmp_path / "z", "--annotations", str(ann)))
    assert rc == 1 and "--annotations belongs to --dataset coco_json" in capsys.readouterr().err


def test_davis2017_prints_j_and_f(tmp_path, tiny_saved, capsys):
    from insid3lab.synthetic.video import write_moving_sequences

    root = tmp_path / "DAVIS"
    write_moving_sequences(root, 1, frames=3, size=(48, 64), objects=1)
    out = tmp_path / "dv"
    assert main(tiny_eval_argv(tiny_saved, root, "davis2017", out, "--memory", "1")) == 0
    s = _summary(out)
    printed = capsys.readouterr().out
    assert (
        f"J&F-Mean {100 * s['J&F-Mean']:.2f}  J-Mean {100 * s['J-Mean']:.2f}  F-Mean {100 * s['F-Mean']:.2f}" in printed
    )
    rc = main(eval_argv(root, "isic", tmp_path / "q", "--memory", "2"))
    err = capsys.readouterr().err
    assert rc == 1 and "--memory and --min-confidence belong to the video benchmarks: davis2017, youtube_vos" in err


def _youtube_vos(root):
    """One YouTube-VOS train sequence of 11 frames (00000 00005 00010 in the split); object 2 appears at frame 5."""
    from insid3lab.synthetic.video import moving_object_sequence, write_youtube_vos_sequence

    frames, labels = moving_object_sequence(11, (48, 64), seed=0, objects=2)
    labels[:5][labels[:5] == 2] = 0
    write_youtube_vos_sequence(root, "clip", frames, labels)
    return root


def test_youtube_vos_prints_j_and_f_of_its_annotated_frames(tmp_path, tiny_saved, capsys):
    from insid3lab.eval.video import YouTubeVOSDataset
    from insid3lab.eval.video.evaluate import evaluate_video

    root = _youtube_vos(tmp_path / "YouTube-VOS")
    out = tmp_path / "yt"
    assert main(tiny_eval_argv(tiny_saved, root, "youtube-vos", out, "--memory", "1")) == 0
    s, printed = _summary(out), capsys.readouterr().out
    assert f"J&F-Mean {100 * s['J&F-Mean']:.2f}  J-Mean {100 * s['J-Mean']:.2f}" in printed
    assert "(sequences 1, objects 2)" in printed and s["dataset"]["name"] == "youtube_vos"
    (rec,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rec["ids"] == [1, 2] and rec["frames"] == ["00005", "00010"] and [len(j) for j in rec["J"]] == [2, 1]
    # the numbers of the library's own evaluation of the same data with the same model
    model = INSID3(load_backbone(tiny_saved.hf_dir, device="cpu"), image_size=64, svd_components=8,
                   basis_cache=False, progress=False)  # fmt: skip
    direct = evaluate_video(model, YouTubeVOSDataset(root), tmp_path / "direct", memory=1, progress=False)
    keys = ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "per_object")
    assert {k: s[k] for k in keys} == {k: direct[k] for k in keys}


def test_youtube_vos_validation_split_is_refused_before_the_model(tmp_path, stand_in, capsys):
    root = _youtube_vos(tmp_path / "YouTube-VOS")
    shutil.copytree(root / "train", root / "valid")  # its annotations would not be public
    rc = main(eval_argv(root / "valid", "youtube_vos", tmp_path / "v"))
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "YouTube-VOS valid" in err and "ground truth of the valid split is not public" in err
    assert stand_in.backbone is None and not stand_in.models and not (tmp_path / "v").exists()
