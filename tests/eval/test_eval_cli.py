"""``insid3lab eval``: the argument parser, the command with a stand-in pipeline, torchrun-style processes."""

from __future__ import annotations

import argparse
import json
import os

import pytest
from helpers.cli import eval_argv, tiny_eval_argv
from helpers.processes import cli_worker, free_port
from helpers.runs import comparable

from insid3lab.cli.eval import add_eval_parser, build_eval_parser, run_eval_from_args


def _parser():
    parser = argparse.ArgumentParser(prog="insid3lab")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    return parser


def test_parser_has_every_flag():
    args = _parser().parse_args(
        [
            "eval",
            "--dataset",
            "pascal-part",
            "--fold",
            "2",
            "--data-root",
            "data",
            "--model",
            "m.pth",
            "--shots",
            "5",
            "--out",
            "runs/x",
            "--episodes",
            "40",
            "--seed",
            "3",
            "--image-size",
            "768",
            "--svd-components",
            "20",
            "--tau",
            "0.5",
            "--merge-threshold",
            "0.3",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--resume",
            "--skip-bad",
            "--no-progress",
            "--arch",
            "vitl16",
            "--rope-periods",
            "bf16",
            "--clustering",
            "torch",
            "--no-debias",
            "--no-cache",
            "--episodes-file",
            "e.json",
        ]
    )
    assert args.func is run_eval_from_args
    assert (args.dataset, args.fold, args.data_root, args.model, args.shots, args.out) == (
        "pascal_part",
        2,
        "data",
        "m.pth",
        [5],
        "runs/x",
    )
    assert (args.episodes, args.seed, args.image_size, args.svd_components, args.tau, args.merge_threshold) == (
        40,
        3,
        768,
        20,
        0.5,
        0.3,
    )
    assert (args.device, args.dtype, args.resume, args.skip_bad, args.no_progress) == (
        "cpu",
        "bfloat16",
        True,
        True,
        True,
    )
    assert (args.arch, args.rope_periods, args.clustering, args.no_debias, args.no_cache, args.episodes_file) == (
        "vitl16",
        "bf16",
        "torch",
        True,
        True,
        "e.json",
    )
    d = _parser().parse_args(["eval", "--dataset", "coco", "--data-root", "d", "--model", "m", "--out", "o"])
    assert (d.fold, d.shots, d.episodes, d.seed, d.image_size, d.svd_components, d.tau, d.merge_threshold) == (
        None,
        [1],
        None,
        0,
        1024,
        None,
        0.6,
        0.2,
    )
    assert (d.device, d.dtype, d.resume, d.skip_bad, d.episodes_file) == ("auto", None, False, False, None)
    assert (d.protocol, d.ignore_value, d.no_ignore, d.threads, d.bootstrap, d.bootstrap_seed) == (
        "paper",
        255,
        False,
        None,
        1000,
        0,
    )


def test_unknown_dataset_is_refused(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["eval", "--dataset", "voc", "--data-root", "d", "--model", "m", "--out", "o"])
    assert "invalid choice" in capsys.readouterr().err


def test_command_runs_and_prints_the_headline(eval_data, tmp_path, stand_in, capsys):
    out = tmp_path / "run"
    argv = [
        "eval",
        "--dataset",
        "isic",
        "--data-root",
        str(eval_data),
        "--model",
        "weights.pth",
        "--out",
        str(out),
        "--episodes",
        "4",
        "--image-size",
        "128",
        "--svd-components",
        "12",
        "--tau",
        "0.55",
        "--merge-threshold",
        "0.25",
        "--device",
        "cpu",
        "--no-progress",
    ]
    args = build_eval_parser().parse_args(argv)
    assert args.func(args) == 0
    assert stand_in.backbone == ("weights.pth", "cpu", None)
    assert stand_in.models[0].settings == {
        "image_size": 128,
        "svd_components": 12,
        "tau": 0.55,
        "merge_threshold": 0.25,
        "clustering": "auto",
        "debias": True,
        "refine": "bilinear",
        "basis_cache": True,
        "progress": False,
        "basis_image": "black",
        "basis_noise_images": 8,
        "basis_seed": 0,
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["model"] == {
        "image_size": 128,
        "svd_components": 12,
        "tau": 0.55,
        "merge_threshold": 0.25,
        "dtype": "float32",
        "weights_fingerprint": "fa4e0000",
    }
    assert summary["weights"] == {"fingerprint": "fa4e0000", "source": "weights.pth"}
    printed = capsys.readouterr().out
    lo, hi = summary["interval"]["miou"]
    assert f"mIoU {summary['miou']:.2f} [{lo:.2f}, {hi:.2f}]  FB-IoU {summary['fb_iou']:.2f}" in printed
    assert "(episodes 4/4, protocol paper)" in printed
    # --resume on the finished run: nothing new, same numbers
    args = build_eval_parser().parse_args(argv + ["--resume"])
    args.func(args)
    assert comparable(json.loads((out / "summary.json").read_text())) == comparable(summary)
    with pytest.raises(ValueError, match="exclude each other"):
        args = build_eval_parser().parse_args(argv[:-1] + ["--episodes-file", str(out / "episodes.json"), "--resume"])
        args.func(args)


def test_missing_benchmark_prints_the_layout(tmp_path, stand_in, capsys):
    from insid3lab.cli.eval import main

    rc = main(
        [
            "eval",
            "--dataset",
            "isaid",
            "--fold",
            "1",
            "--data-root",
            str(tmp_path),
            "--model",
            "w",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "iSAID-5i" in err
    assert "\n  splits/val/fold0.txt .. fold2.txt" in err  # the layout keeps its lines
    assert stand_in.backbone is None and not stand_in.models  # nothing was loaded


def test_torchrun_environment_two_processes_equal_one(eval_data, tmp_path, stand_in):
    """WORLD_SIZE/RANK/MASTER_* as torchrun sets them: gloo on CPU, one summary equal to a single process."""
    import torch.multiprocessing as mp

    def argv(out):
        return eval_argv(eval_data / "defects", "folder", out, "--episodes", "5", "--seed", "4")

    from insid3lab.cli.eval import main

    assert "WORLD_SIZE" not in os.environ
    main(argv(tmp_path / "one"))
    mp.start_processes(
        cli_worker,
        args=(2, free_port(), argv(tmp_path / "two")),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["settings"]["world_size"] == 2 and one["settings"]["world_size"] == 1
    assert comparable(two) == comparable(one)


# ───────────────────────── the real pipeline with a tiny random DINOv3 ─────────────────────────


def test_end_to_end_with_a_tiny_backbone(eval_data, tmp_path, tiny_saved, capsys):
    from insid3lab import INSID3
    from insid3lab.cli.eval import main
    from insid3lab.eval import build_dataset, run_evaluation

    out = tmp_path / "cli"
    assert main(tiny_eval_argv(tiny_saved, eval_data, "isaid", out, "--episodes", "3", "--seed", "2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"]["fingerprint"] == tiny_saved.backbone.fingerprint()
    assert summary["settings"]["model"]["svd_components"] == 8 and summary["settings"]["model"]["image_size"] == 64
    assert summary["episodes"] == {"total": 3, "evaluated": 3, "bad": 0, "resumed": 0}
    assert 0.0 <= summary["miou"] <= 100.0 and 0.0 <= summary["fb_iou"] <= 100.0
    assert "mIoU" in capsys.readouterr().out
    # the Python API with the same model gives the same numbers
    model = INSID3(tiny_saved.backbone, image_size=64, svd_components=8, basis_cache=False)
    api = run_evaluation(
        model, build_dataset("isaid", eval_data), tmp_path / "api", episodes=3, seed=2, progress=False, protocol="paper"
    )
    assert summary["protocol"] == "paper" and summary["settings"]["protocol"] == "paper"
    assert comparable(api) == comparable(summary)


def test_end_to_end_keypoints_with_a_tiny_backbone(eval_data, tmp_path, tiny_saved):
    from insid3lab.cli.eval import main

    out = tmp_path / "spair"
    assert main(tiny_eval_argv(tiny_saved, eval_data, "spair", out, "--episodes", "2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["pck"]) == {"pck@0.05", "pck@0.10", "pck@0.15", "pck@0.20"}
    values = list(summary["pck"].values())
    assert all(0.0 <= v <= 100.0 for v in values) and values == sorted(values)
    assert summary["per_class_pck"].keys() == {"cat"}


def test_tiny_backbone_two_processes_equal_one(eval_data, tmp_path, tiny_saved):
    import torch.multiprocessing as mp

    from insid3lab.cli.eval import main

    argv = lambda out: tiny_eval_argv(tiny_saved, eval_data / "defects", "folder", out, "--episodes", "4")  # noqa: E731
    assert main(argv(tmp_path / "one")) == 0
    mp.start_processes(
        cli_worker, args=(2, free_port(), argv(tmp_path / "two")), nprocs=2, join=True, start_method="fork"
    )
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["settings"]["world_size"] == 2
    assert comparable(two) == comparable(one)
