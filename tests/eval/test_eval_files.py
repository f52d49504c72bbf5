"""The files of a run: records that vouch for their content, strict JSON, a full disk, permissions, the lock,
folds without episodes."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import stat
import warnings

import pytest
from helpers.benchmarks import isaid_three_folds
from helpers.cli import eval_argv
from helpers.runs import FakeModel, comparable, records_without_time

from insid3lab.cli import main
from insid3lab.eval import build_dataset, run_evaluation
from insid3lab.eval.reports.report import report
from insid3lab.eval.run import files


def _strict(path):
    """The JSON of ``path``, refusing NaN / Infinity (which strict JSON parsers reject)."""
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: non-standard constant {c}"))


def _run(ds, out, **kw):
    return run_evaluation(FakeModel(), ds, out, **{"episodes": 6, "progress": False, "bootstrap": 50, **kw})


# ───────────────────────── records that vouch for their content ─────────────────────────


def test_damaged_duplicated_and_edited_records_are_named_and_recomputed(eval_data, tmp_path):
    ds = build_dataset("isic", eval_data)
    fresh = _run(ds, tmp_path / "fresh")
    out = tmp_path / "run"
    _run(ds, out)
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert all("digest" in json.loads(x) for x in lines)
    edited = json.loads(lines[4])
    edited["intersection"][1] += 7  # a hand-edited number
    lines[1] = "{garbage\n"  # a corrupt line in the middle
    lines[2] = lines[2][:40] + "\n"  # a truncated one
    lines.insert(4, lines[3])  # a duplicated one (line 5 repeats line 4)
    lines[5] = json.dumps(edited, sort_keys=True) + "\n"
    path.write_text("".join(lines))

    model = FakeModel()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_evaluation(model, ds, out, episodes=6, progress=False, bootstrap=50, resume=True)
    said = " ".join(str(w.message) for w in caught)
    assert f"{path}" in said
    assert "line 2: not a record" in said and "line 3: not a record" in said
    assert "line 5: repeats line 4" in said
    assert "line 6: its digest does not match its content" in said
    assert model.calls == 3  # episodes 1, 2 and 4 recomputed; the duplicate kept once
    assert comparable(again) == comparable(fresh)
    assert records_without_time(path) == records_without_time(tmp_path / "fresh" / "results.jsonl")


def test_two_different_records_of_one_episode_are_both_set_aside(eval_data, tmp_path):
    ds = build_dataset("isic", eval_data)
    out = tmp_path / "run"
    _run(ds, out)
    path = out / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    other = json.loads(lines[0])
    other["union"][1] += 3
    other["digest"] = files.record_digest(other)  # a well-formed record, but not the one the run wrote
    path.write_text("".join([*lines, json.dumps(other) + "\n"]))
    model = FakeModel()
    with pytest.warns(UserWarning, match=r"line 7: episode 0 has a different record on line 1; both are set aside"):
        run_evaluation(model, ds, out, episodes=6, progress=False, bootstrap=50, resume=True)
    assert model.calls == 1


def test_a_clean_resume_says_nothing(eval_data, tmp_path):
    ds = build_dataset("isic", eval_data)
    _run(ds, tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(ds, tmp_path / "run", resume=True)


# ───────────────────────── strict JSON, null for what has no value ─────────────────────────


def test_every_json_file_of_a_run_is_strict(eval_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(eval_data / "ISIC", root / "ISIC")
    for f in (root / "ISIC" / "ISIC2018_Task1-2_Training_Input").rglob("*.*"):
        f.write_bytes(b"\x00garbage")  # every episode bad: no value for any score
    ds = build_dataset("isic", root)
    with pytest.warns(UserWarning):
        s = _run(ds, tmp_path / "run", skip_bad=True)
    assert s["episodes"]["evaluated"] == 0 and s["miou"] is None and s["fb_iou"] is None
    for name in ("summary.json", "run.json", "episodes.json"):
        _strict(tmp_path / "run" / name)
    doc = _strict(tmp_path / "run" / "summary.json")
    assert doc["miou"] is None and doc["interval"]["miou"] == [None, None]
    for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    # a run without a score reads back and reports as such
    md, _ = report([tmp_path / "run"], resamples=10)
    assert md.splitlines()[2].endswith("| mIoU | n/a |")


def test_a_fold_without_episodes_is_reported_left_out_of_the_mean_and_fails_the_exit_status(
    eval_data, tmp_path, stand_in, capsys
):
    root = isaid_three_folds(eval_data, tmp_path / "data")
    for f in (root / "iSAID" / "val" / "images").glob("*_1.png"):
        f.write_bytes(b"\x00garbage")  # fold 1: every image unreadable
    out = tmp_path / "all"
    rc = main(eval_argv(root, "isaid", out, "--fold", "all", "--episodes", "2", "--skip-bad", "--shots", "1,2"))
    captured = capsys.readouterr()
    assert rc == 3
    for shots in (1, 2):
        folds = _strict(out / f"shots{shots}" / "folds.json")
        per = [_strict(out / f"shots{shots}" / f"fold{k}" / "summary.json") for k in range(3)]
        assert folds["per_fold"]["fold1"] == {"miou": None, "fb_iou": None, "episodes": 0}
        assert folds["without_episodes"] == ["fold1"]
        assert folds["mean"]["miou"] == pytest.approx((per[0]["miou"] + per[2]["miou"]) / 2)
        assert f"{shots}-shot: fold1  no evaluated episode" in captured.out
        assert f"{shots}-shot: mean over 2 of 3 folds (fold1 has no evaluated episode)" in captured.out
    assert "fold1 has no evaluated episode and is left out of the mean" in captured.err
    assert "incomplete" in captured.err


# ───────────────────────── a full disk, permissions ─────────────────────────


def test_a_full_disk_names_the_file_and_leaves_no_truncated_figure(eval_data, tmp_path, monkeypatch):
    ds = build_dataset("isic", eval_data)
    out = tmp_path / "run"
    _run(ds, out)
    figure = (out / "per_class.png").read_bytes()
    from matplotlib.figure import Figure

    real = Figure.savefig

    def full(self, fname, *a, **kw):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    with pytest.raises(OSError, match="No space left on device") as err:
        _run(ds, out, resume=True)
    assert err.value.filename == str(out / "per_class.png")
    assert (out / "per_class.png").read_bytes() == figure  # the old figure, whole
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    monkeypatch.setattr(Figure, "savefig", real)

    # the records' own file: the path is named too
    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_open(file, mode="r", *a, **kw):
        fh = real_open(file, mode, *a, **kw)
        return Full(fh) if str(file).endswith("results.jsonl") and "a" in mode else fh

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as err:
        _run(ds, tmp_path / "full", episodes=2)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "full" / "results.jsonl")


def test_run_files_get_the_permissions_of_the_umask(eval_data, tmp_path):
    old = os.umask(0o022)
    try:
        _run(build_dataset("isic", eval_data), tmp_path / "run")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").iterdir()}
    assert modes == dict.fromkeys(
        ["run.json", "episodes.json", "results.jsonl", "summary.json", "per_class.png"], 0o644
    )


# ───────────────────────── the lock, the resume message ─────────────────────────


def test_a_finished_or_failed_run_leaves_no_lock_file(eval_data, tmp_path):
    ds = build_dataset("isic", eval_data)
    _run(ds, tmp_path / "run")
    assert not (tmp_path / "run" / ".lock").exists()
    with pytest.raises(FileExistsError, match=r"pass resume=True to continue it"):
        _run(ds, tmp_path / "run")
    assert not (tmp_path / "run" / ".lock").exists()


def test_the_command_line_says_resume_in_its_own_words(eval_data, tmp_path, stand_in, capsys):
    out = tmp_path / "r"
    assert main(eval_argv(eval_data, "isic", out, "--episodes", "2")) == 0
    capsys.readouterr()
    assert main(eval_argv(eval_data, "isic", out, "--episodes", "2")) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"insid3lab: error: {out} already holds an evaluation run; pass --resume to continue it, "
        "or choose another --out"
    )
    assert "resume=True" not in err
