"""``compare`` (paired differences of two runs) and ``report`` (the paper-style table), library and command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.benchmarks import isaid_three_folds
from helpers.runs import FakeModel

from insid3lab.cli import main
from insid3lab.eval import SegmentationMeter, build_dataset, run_evaluation
from insid3lab.eval.metrics.stats import bootstrap_weights
from insid3lab.eval.reports.compare import RunsDifferError, compare_runs
from insid3lab.eval.reports.report import report
from insid3lab.eval.reports.runs import NotARunError
from insid3lab.eval.run.folds import run_all_folds


@pytest.fixture(scope="module")
def runs(eval_data, tmp_path_factory):
    """Two runs of the folder dataset on the same 8 episodes (different colour tolerances), one on other episodes,
    one with the other protocol."""
    root = tmp_path_factory.mktemp("runs")
    ds = build_dataset("folder", eval_data / "defects")
    kw = {"episodes": 8, "seed": 0, "progress": False, "bootstrap": 200}
    run_evaluation(FakeModel(tol=40), ds, root / "a", **kw)
    run_evaluation(FakeModel(tol=90), ds, root / "b", **kw)
    run_evaluation(FakeModel(tol=40), ds, root / "other", **{**kw, "seed": 1})
    paper = FakeModel(tol=40)
    paper.resize_to_orig_size = True
    run_evaluation(paper, ds, root / "paper", **kw, protocol="paper")
    return root


def _records(path):
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_paired_difference_and_its_interval_by_hand(runs):
    c = compare_runs(runs / "a", runs / "b", resamples=30, seed=4)
    sa, sb = (json.loads((runs / n / "summary.json").read_text()) for n in ("a", "b"))
    assert c["a"] == pytest.approx(sa["miou"]) and c["b"] == pytest.approx(sb["miou"])
    assert c["difference"] == pytest.approx(sb["miou"] - sa["miou"]) and c["episodes"] == 8
    # each resample rebuilt with the meter, the same draw for both runs
    ra, rb = _records(runs / "a"), _records(runs / "b")
    names = list(sa["per_class_iou"])
    diffs = []
    for w in bootstrap_weights(8, 30, 4):
        m = []
        for recs in (ra, rb):
            meter = SegmentationMeter(names)
            for r, k in zip(recs, w):
                for _ in range(k):
                    meter.add(r["class_index"], r["intersection"], r["union"])
            m.append(meter.miou())
        diffs.append(m[1] - m[0])
    assert c["interval"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])))
    assert c["bootstrap"]["seed"] == 4 and c["bootstrap"]["resamples"] == 30
    for n in names:
        assert c["per_class"][n]["difference"] == pytest.approx(sb["per_class_iou"][n] - sa["per_class_iou"][n])
    same = compare_runs(runs / "a", runs / "a", resamples=30)
    assert same["difference"] == 0.0 and same["interval"] == [0.0, 0.0]


def test_runs_that_cannot_be_paired(runs, tmp_path):
    with pytest.raises(RunsDifferError, match="different episodes_digest|different episodes"):
        compare_runs(runs / "a", runs / "other")
    with pytest.raises(RunsDifferError, match="different protocol: 'native' vs 'paper'"):
        compare_runs(runs / "a", runs / "paper")
    with pytest.raises(NotARunError, match="is not a finished evaluation run"):
        compare_runs(runs / "a", tmp_path)


def test_compare_command(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--out", str(out), "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    c = json.loads((out / "compare.json").read_text())
    lo, hi = c["interval"]
    assert f"B - A {c['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]" in printed
    assert (out / "compare.png").stat().st_size > 1000
    rc = main(["compare", str(runs / "a"), str(runs / "other")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "different episodes" in err and len(err.splitlines()) == 1
    rc = main(["compare", str(runs / "a"), str(tmp_path / "nothing")])
    assert rc == 1 and "not a finished evaluation run" in capsys.readouterr().err


def test_report_of_fold_runs_and_single_runs(eval_data, runs, tmp_path, capsys):
    root = isaid_three_folds(eval_data, tmp_path / "data")
    folds = run_all_folds(FakeModel(), "isaid", root, tmp_path / "all", episodes=3, progress=False, bootstrap=100)
    md, fig = report([tmp_path / "all", runs / "a"], resamples=100)
    lines = md.splitlines()
    assert lines[0] == "| run | dataset | shots | ways | protocol | metric | fold0 | fold1 | fold2 | all | mean |"
    row = lines[2].split(" | ")
    per = [json.loads((tmp_path / "all" / f"fold{k}" / "summary.json").read_text()) for k in range(3)]
    for k, s in enumerate(per):
        lo, hi = s["interval"]["miou"]
        assert row[6 + k] == f"{s['miou']:.1f} [{lo:.1f}, {hi:.1f}]"
    mean_cell = row[10].rstrip(" |")
    assert mean_cell.startswith(f"{folds['mean']['miou']:.1f} [")
    lo, hi = (float(x) for x in mean_cell.split("[")[1].rstrip("]").split(","))
    assert lo <= folds["mean"]["miou"] + 0.05 and folds["mean"]["miou"] - 0.05 <= hi
    a = json.loads((runs / "a" / "summary.json").read_text())
    single = lines[3].split(" | ")
    assert single[0] == "| a" and single[6:9] == ["–"] * 3 and single[9].startswith(f"{a['miou']:.1f} [")
    assert len(fig.axes) == 1
    # the command: printed and written; a folder that is not a run is one line and writes nothing
    out = tmp_path / "rep" / "table.md"
    assert main(["report", str(tmp_path / "all"), str(runs / "a"), "--out", str(out), "--bootstrap", "100"]) == 0
    assert out.read_text() == md and out.with_suffix(".png").stat().st_size > 1000
    assert md in capsys.readouterr().out
    rc = main(["report", str(runs / "a"), str(tmp_path / "data"), "--out", str(tmp_path / "none.md")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "is not an evaluation run" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "none.md").exists()


# ───────────────────────── outputs: never an input, replaced only with --overwrite ─────────────────────────


def test_report_never_writes_over_a_run_and_keeps_existing_files(runs, tmp_path, capsys):
    summary = runs / "a" / "summary.json"
    before = summary.read_bytes()
    for target in (summary, runs / "a" / "results.jsonl"):
        rc = main(["report", str(runs / "a"), "--out", str(target), "--overwrite"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and err == [f"insid3lab: error: output {target} would replace the input {target}; "
                                   "choose another --out"]  # fmt: skip
    assert summary.read_bytes() == before and json.loads(before)["task"] == "segmentation"
    # the figure beside the table is an output too: runs/a/results.png is not an input, summary.png is not either,
    # but a table named per_class.md would put its figure over the run's per_class.png
    figure = runs / "a" / "per_class.png"
    old_figure = figure.read_bytes()
    rc = main(["report", str(runs / "a"), "--out", str(runs / "a" / "per_class.md"), "--overwrite"])
    assert rc == 1 and f"output {figure} would replace the input {figure}" in capsys.readouterr().err
    assert figure.read_bytes() == old_figure and not (runs / "a" / "per_class.md").exists()

    table = tmp_path / "table.md"
    table.write_text("my notes")
    rc = main(["report", str(runs / "a"), "--out", str(table)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [
        f"insid3lab: error: {table} exists; pass --overwrite to replace, or choose another --out"
    ]
    assert table.read_text() == "my notes" and not table.with_suffix(".png").exists()
    assert main(["report", str(runs / "a"), "--out", str(table), "--overwrite"]) == 0
    assert f"insid3lab: replaced {table}" in capsys.readouterr().err
    assert table.read_text().startswith("| run |")


def test_compare_keeps_existing_files_unless_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--out", str(out), "--bootstrap", "20"]) == 0
    mine = out / "compare.json"
    mine.write_text("keep me")
    capsys.readouterr()
    rc = main(["compare", str(runs / "a"), str(runs / "b"), "--out", str(out), "--bootstrap", "20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [f"insid3lab: error: {mine} exists (and 1 more output file(s): {out / 'compare.png'}); "
                               "pass --overwrite to replace, or choose another --out"]  # fmt: skip
    assert mine.read_text() == "keep me"
    rc = main(["compare", str(runs / "a"), str(runs / "b"), "--out", str(out), "--bootstrap", "20", "--overwrite"])
    assert rc == 0 and json.loads(mine.read_text())["episodes"] == 8
    assert f"insid3lab: replaced {mine}" in capsys.readouterr().err


def test_compare_names_a_run_file_in_the_way(runs, tmp_path, capsys):
    fake = tmp_path / "out"
    fake.mkdir()
    (fake / "compare.json").symlink_to(runs / "a" / "summary.json")
    before = (runs / "a" / "summary.json").read_bytes()
    rc = main(["compare", str(runs / "a"), str(runs / "b"), "--out", str(fake), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1 and f"would replace the input {runs / 'a' / 'summary.json'}" in err
    assert (runs / "a" / "summary.json").read_bytes() == before


# ───────────────────────── help texts ─────────────────────────


@pytest.mark.parametrize("command", ["eval", "report", "compare"])
def test_help_shows_percent_signs_once(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "95%" in text and "%%" not in text
