"""Outputs of segment and match: unique names, inputs never replaced, existing files kept, batches that survive failures."""

import json
import shutil

import numpy as np
import pytest
from helpers.cli import match_argv, segment_argv
from PIL import Image

from insid3lab.cli import main
from insid3lab.cli.figures import RANDOM_WEIGHTS_NOTE, contrasting_colour, segment_overlay
from insid3lab.cli.output import OUTPUT_SUFFIXES, relative_names


def _segment(workdir, targets, out, *extra, ref_mask=None):
    return segment_argv(workdir, targets, out, "--no-overlay", "--quiet", *extra, ref_mask=ref_mask)


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("insid3lab: error:")]


def test_names_are_unique_by_construction():
    targets = ["x/a.png", "y/a.png", "a-1.png", "a.png", "a.jpg", "x/a-1.png", "a.png.pred.png"]
    names = relative_names(targets)
    assert names == ["x/a.png", "y/a.png", "a-1.png", "a.png", "a.jpg", "x/a-1.png", "a.png.pred.png"]
    outputs = [n + suffix for n in names for suffix in OUTPUT_SUFFIXES]
    assert len(set(outputs)) == len(outputs)
    assert relative_names(["/d/p/q.png", "/d/r.png"]) == ["p/q.png", "r.png"]


def test_adversarial_target_names_give_one_file_each(workdir, tmp_path, capsys):
    t = workdir / "samples" / "target_1.png"
    for rel in ("x/a.png", "y/a.png", "a-1.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(t, tmp_path / rel)
    shutil.copy(workdir / "samples" / "target_2.png", tmp_path / "y" / "a.png")
    out = tmp_path / "out"
    assert main(_segment(workdir, [tmp_path / "x/a.png", tmp_path / "y/a.png", tmp_path / "a-1.png"], out)) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["a-1.png.pred.png", "x/a.png.pred.png", "y/a.png.pred.png"]
    # y/a.png is another image: its mask has its size, not x/a.png's
    assert Image.open(out / "y/a.png.pred.png").size == Image.open(workdir / "samples" / "target_2.png").size


def test_existing_outputs_are_kept_unless_overwrite_and_replacements_are_reported(workdir, tmp_path, capsys):
    t = workdir / "samples" / "target_1.png"
    out = tmp_path / "o"
    assert main(_segment(workdir, [t], out)) == 0
    pred = out / "target_1.png.pred.png"
    before = pred.read_bytes()
    pred.write_bytes(b"user data")
    capsys.readouterr()
    assert main(_segment(workdir, [t], out)[:-1]) == 1  # without --quiet: refused before anything is loaded
    assert capsys.readouterr().err.splitlines() == [
        f"insid3lab: error: {pred} exists; pass --overwrite to replace, or choose another --out"
    ]
    assert pred.read_bytes() == b"user data"
    assert main(_segment(workdir, [t], out, "--overwrite")) == 0
    assert capsys.readouterr().err.splitlines() == [f"insid3lab: replaced {pred}"]
    assert pred.read_bytes() == before


def test_an_input_is_never_replaced_even_with_overwrite(workdir, tmp_path, capsys):
    shutil.copy(workdir / "samples" / "target_1.png", tmp_path / "t.png")
    mask = tmp_path / "t.png.pred.png"  # a reference mask named like the target's output
    shutil.copy(workdir / "samples" / "reference_mask.png", mask)
    before = mask.read_bytes()
    assert main(_segment(workdir, [tmp_path / "t.png"], tmp_path, "--overwrite", ref_mask=mask)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"insid3lab: error: output {mask} would replace the input {mask}; choose another --out"
    ]
    assert mask.read_bytes() == before


def test_unwritable_output_folder_is_refused_before_loading(workdir, tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    args = _segment(workdir, [workdir / "samples" / "target_1.png"], not_a_folder)
    args[args.index("--model") + 1] = str(tmp_path / "no-such-model")  # never reached
    assert main(args) == 1
    assert capsys.readouterr().err.splitlines() == [f"insid3lab: error: --out {not_a_folder}: is a file; give a folder"]


def test_one_bad_target_does_not_stop_the_others(workdir, tmp_path, capsys):
    good1, good2 = tmp_path / "g1.png", tmp_path / "g2.png"
    shutil.copy(workdir / "samples" / "target_1.png", good1)
    shutil.copy(workdir / "samples" / "target_2.png", good2)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "o"
    assert main(_segment(workdir, [good1, bad, good2], out)) == 1
    err = capsys.readouterr().err
    assert _errors(err) == [f"insid3lab: error: {bad}: cannot be read as an image (not a format PIL knows)"]
    assert "1 of 3 target(s) failed; 2 mask(s) written" in err and ".masks" not in err
    assert sorted(p.name for p in out.iterdir()) == ["g1.png.pred.png", "g2.png.pred.png"]
    # --fail-fast: stops at the bad one
    out2 = tmp_path / "o2"
    assert main(_segment(workdir, [good1, bad, good2], out2, "--fail-fast")) == 1
    assert len(_errors(capsys.readouterr().err)) == 1
    assert sorted(p.name for p in out2.iterdir()) == ["g1.png.pred.png"]


def test_a_folder_target(workdir, tmp_path, capsys):
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(workdir / "samples" / "target_2.png", d / "b.png")
    shutil.copy(workdir / "samples" / "target_1.png", d / "a.png")
    (d / "notes.txt").write_text("skipped: not an image")
    (d / "old.png.pred.png").write_bytes((workdir / "samples" / "reference_mask.png").read_bytes())  # an earlier output
    assert main(_segment(workdir, [d], d)) == 0
    assert sorted(p.name for p in d.iterdir()) == [
        "a.png",
        "a.png.pred.png",
        "b.png",
        "b.png.pred.png",
        "notes.txt",
        "old.png.pred.png",
    ]
    # match says a folder is a folder
    pts = tmp_path / "p.json"
    pts.write_text("[[10, 10]]")
    assert main(match_argv(workdir, pts, [d], tmp_path / "m", "--quiet")) == 1
    assert _errors(capsys.readouterr().err) == [f"insid3lab: error: {d}: is a folder; give image files"]


def test_points_file_that_is_not_json(workdir, tmp_path, capsys):
    pts = tmp_path / "points.json"
    shutil.copy(workdir / "samples" / "reference.png", pts)
    s = workdir / "samples"
    assert main(match_argv(workdir, pts, [s / "target_1.png"], tmp_path / "m", model="random:tiny")) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"insid3lab: error: --points {pts}: not a JSON file")
    assert "JSON list of [x, y]" in lines[0] and "codec" not in lines[0]


def test_an_image_over_the_pixel_limit(workdir, tmp_path, capsys, monkeypatch):
    from PIL import Image as PILImage

    limit_before = PILImage.MAX_IMAGE_PIXELS
    big = tmp_path / "big.png"
    PILImage.new("RGB", (400, 400)).save(big)  # 160,000 pixels: more than twice 78,000
    good = tmp_path / "target_1.png"  # 296 x 256 = 75,776 pixels
    shutil.copy(workdir / "samples" / "target_1.png", good)
    out = tmp_path / "o"
    assert main(_segment(workdir, [big, good], out, "--max-image-pixels", "78000")) == 1
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith(
        f"insid3lab: error: {big}: has 160,000 pixels, more than the pixel limit of 78,000"
    )
    assert "--max-image-pixels" in lines[0]
    assert (out / "target_1.png.pred.png").is_file()
    assert PILImage.MAX_IMAGE_PIXELS == limit_before  # restored after the command
    # the environment variable is the same knob, and 0 lifts the limit
    monkeypatch.setenv("INSID3LAB_MAX_IMAGE_PIXELS", "0")
    assert main(_segment(workdir, [big], out)) == 0
    assert (out / "big.png.pred.png").is_file()


def test_overlay_draws_every_shot_and_says_random_weights():
    img = np.zeros((32, 40, 3), np.uint8)
    img[8:24, 10:30] = (220, 20, 20)  # a red object
    m = np.zeros((32, 40), bool)
    m[8:24, 10:30] = True
    fig = segment_overlay([(img, m), (img, m)], img, m, title="t.png", random_weights=True)
    assert len(fig.axes) == 3
    assert fig._suptitle.get_text() == f"t.png\n{RANDOM_WEIGHTS_NOTE}"
    tint = contrasting_colour(img, m)
    assert tint.tolist() == [0.0, 0.9, 1.0]  # cyan on red


def test_match_writes_each_target_and_keeps_going(workdir, tmp_path, capsys):
    s = workdir / "samples"
    pts = tmp_path / "p.json"
    pts.write_text(json.dumps([[50, 60]]))
    missing = tmp_path / "missing.png"
    out = tmp_path / "m"
    assert main(match_argv(workdir, pts, [missing, s / "target_1.png"], out, "--no-overlay", "--quiet")) == 1
    assert _errors(capsys.readouterr().err) == [f"insid3lab: error: {missing}: no such file"]
    assert [p.name for p in out.iterdir()] == ["target_1.png.matches.json"]


def test_write_atomic_keeps_the_old_file_on_failure_and_reports_a_replacement(tmp_path):
    from insid3lab.cli.output import write_atomic

    said = []
    target = tmp_path / "sub" / "m.png"
    write_atomic(target, lambda tmp: Image.fromarray(np.full((4, 5), 255, np.uint8)).save(tmp), said.append)
    assert said == [] and np.asarray(Image.open(target)).shape == (4, 5)  # the format follows the extension

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, fail, said.append)
    assert np.asarray(Image.open(target)).shape == (4, 5) and sorted(p.name for p in target.parent.iterdir()) == [
        "m.png"
    ]
    write_atomic(target, lambda tmp: tmp.write_bytes(b"x"), said.append)
    assert target.read_bytes() == b"x" and said == [f"replaced {target}"]


def test_a_target_whose_files_cannot_all_be_written_keeps_none(workdir, tmp_path, capsys, monkeypatch):
    import errno

    from matplotlib.figure import Figure

    targets = [workdir / "samples" / "target_1.png", workdir / "samples" / "target_2.png"]
    out = tmp_path / "o"
    argv = segment_argv(workdir, targets, out, "--quiet")
    real = Figure.savefig

    def full(self, fname, *a, **kw):
        fname.write(b"\x89PNG half an overlay")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    assert main(argv) == 1
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 2 and all("no space left on the device; free some space" in e for e in errors)
    assert list(out.iterdir()) == []  # no mask without its overlay, no temporary file
    monkeypatch.setattr(Figure, "savefig", real)
    assert main(argv) == 0  # the rerun needs no --overwrite
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{t.name}{s}" for t in targets for s in (".pred.png", ".overlay.png")
    )


def test_outputs_get_the_permissions_of_the_umask(workdir, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert main(segment_argv(workdir, [workdir / "samples" / "target_1.png"], tmp_path / "o", "--quiet")) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "o").iterdir()}
    assert modes == {"target_1.png.pred.png": 0o644, "target_1.png.overlay.png": 0o644}
