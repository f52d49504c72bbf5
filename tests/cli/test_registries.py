"""A clusterer, refiner or benchmark registered with its decorator reaches the command lines with no other edit:
their choices, their help, and a run that uses it."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from insid3lab import save_pretrained
from insid3lab.cli import build_parser, main
from insid3lab.cli.options import CLIError, check_choices
from insid3lab.eval.datasets import FolderDataset, register_benchmark
from insid3lab.eval.video import DavisDataset, register_video_benchmark
from insid3lab.stages.clustering import register_clusterer
from insid3lab.stages.refine import register_refiner
from insid3lab.synthetic import write_samples

pytestmark = pytest.mark.usefixtures("isolated_cache")

COMMANDS = ("segment", "match", "track", "eval", "bench")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_backbone):
    d = tmp_path_factory.mktemp("registries")
    write_samples(d / "samples", targets=1)
    save_pretrained(tiny_backbone, d / "model")
    return d


def _help(command: str) -> str:
    """``insid3lab COMMAND --help`` on one line, from a parser built now."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return " ".join(sub.choices[command].format_help().split())


def _dataset_choices() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(next(a for a in sub.choices["eval"]._actions if a.dest == "dataset").choices)


def _segment(workdir, out, *extra) -> int:
    s = workdir / "samples"
    return main(["segment", "--model", str(workdir / "model"), "--device", "cpu", "--image-size", "64",
                 "--svd-components", "8", "--no-cache", "--ref", str(s / "reference.png"), "--ref-mask",
                 str(s / "reference_mask.png"), str(s / "target_1.png"), "--out", str(out), "--no-overlay",
                 "--quiet", *extra])  # fmt: skip


def test_a_decorated_clusterer_is_a_choice_of_every_command_and_runs(registries, workdir, tmp_path):
    for command in COMMANDS:
        assert "halves-for-test" not in _help(command)
    calls = []

    @register_clusterer("halves-for-test", help="the first half of the cells, then the second")
    def halves(X, threshold):
        calls.append(tuple(X.shape))
        return (torch.arange(X.shape[0]) >= X.shape[0] // 2).long()

    for command in COMMANDS:
        assert "components (scipy per connected component of the threshold graph), halves-for-test (the first half " \
            "of the cells, then the second)" in _help(command), command  # fmt: skip
    check_choices(argparse.Namespace(clustering="halves-for-test", refine=None))
    with pytest.raises(CLIError, match="allowed .*halves-for-test"):
        check_choices(argparse.Namespace(clustering="thirds", refine=None))
    assert _segment(workdir, tmp_path / "out", "--clustering", "halves-for-test") == 0
    assert calls == [(16, 64)]  # the 4 x 4 cells (64 channels) of the target at S = 64, by the registered function


def test_a_decorated_refiner_is_a_choice_of_every_command_and_runs(registries, workdir, tmp_path):
    calls = []

    @register_refiner("empty-for-test", help="nothing is foreground")
    def empty(mask, image):
        calls.append(tuple(mask.shape))
        return torch.zeros_like(mask)

    for command in COMMANDS:
        assert "empty-for-test (nothing is foreground)" in _help(command), command
    assert _segment(workdir, tmp_path / "out", "--refine", "empty-for-test") == 0
    from PIL import Image

    written = Image.open(tmp_path / "out" / "target_1.png.pred.png")
    assert calls == [(64, 64)] and not np.asarray(written).any()


def test_a_decorated_benchmark_is_a_choice_of_eval_and_runs(registries, eval_data, tmp_path, capsys):
    assert "defects_for_test" not in _dataset_choices()

    @register_benchmark("defects_for_test", folds=(0, 1), help="the defects folder, twice")
    class DefectsTwice(FolderDataset):
        """The folder benchmark with two folds that read the same files."""

        title = "defects, twice"

    assert DefectsTwice.name == "defects_for_test" and DefectsTwice.folds == (0, 1)
    assert "defects_for_test" in _dataset_choices()
    text = _help("eval")
    assert "defects_for_test (the defects folder, twice)" in text
    assert "fold (coco 0-3, lvis 0-9, pascal_part 0-3, paco_part 0-3, isaid 0-2, defects_for_test 0-1;" in text
    argv = ["eval", "--dataset", "defects-for-test", "--data-root", str(eval_data / "defects"), "--model",
            "random:tiny", "--image-size", "64", "--svd-components", "8", "--device", "cpu", "--no-cache",
            "--no-progress", "--episodes", "2", "--bootstrap", "0"]  # fmt: skip
    assert main([*argv, "--fold", "all", "--out", str(tmp_path / "all")]) == 0
    folds = json.loads((tmp_path / "all" / "folds.json").read_text())
    assert list(folds["per_fold"]) == ["fold0", "fold1"]
    summary = json.loads((tmp_path / "all" / "fold1" / "summary.json").read_text())
    assert summary["dataset"]["name"] == "defects_for_test" and summary["dataset"]["fold"] == 1
    capsys.readouterr()
    assert main([*argv, "--fold", "2", "--out", str(tmp_path / "x")]) == 1
    assert "--fold 2: defects_for_test has folds 0..1" in capsys.readouterr().err


def test_a_decorated_video_benchmark_is_a_choice_of_eval(registries):
    @register_video_benchmark("davis2016_for_test", help="DAVIS 2016 lists")
    class Davis2016(DavisDataset):
        def __init__(self, root):
            super().__init__(root, year="2016")

    assert "davis2016_for_test" in _dataset_choices()
    assert "davis2016_for_test (DAVIS 2016 lists)" in _help("eval")
    assert "video (davis2017, youtube_vos, davis2016_for_test)" in _help("eval")


def test_a_taken_name_is_refused_unless_replaced(registries):
    with pytest.raises(ValueError, match="'coco' is already registered; pass overwrite=True"):
        register_benchmark("coco")(type("Other", (FolderDataset,), {}))
    with pytest.raises(ValueError, match="'davis2017' is already registered"):
        register_video_benchmark("davis2017")(type("Other", (DavisDataset,), {}))
    with pytest.raises(ValueError, match="'crf' is already registered"):
        register_refiner("crf", lambda mask, image: mask)
    with pytest.raises(ValueError, match="lower-case string without '-'"):
        register_benchmark("My-Data")
    with pytest.raises(ValueError, match="folds must be None or at least one fold"):
        register_benchmark("mine", folds=())
