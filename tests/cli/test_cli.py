"""The command line: segment and match end to end on generated images, feedback lines, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers.cli import match_argv, segment_argv
from PIL import Image

from insid3lab import INSID3, load_backbone
from insid3lab.cli import main


def _segment(workdir, out, *extra, targets=None):
    return segment_argv(workdir, targets or [workdir / "samples" / "target_1.png"], out, *extra)


def test_segment_writes_masks_and_overlays(workdir):
    s = workdir / "samples"
    out = workdir / "out"
    cmd = [
        sys.executable,
        "-m",
        "insid3lab",
        *_segment(workdir, out, targets=[str(s / "target_1.png"), str(s / "target_2.png")]),
    ]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for t in ("target_1", "target_2"):
        mask = np.asarray(Image.open(out / f"{t}.png.pred.png"))
        target = Image.open(s / f"{t}.png")
        assert mask.shape == (target.height, target.width)
        assert set(np.unique(mask)) <= {0, 255}
        assert (out / f"{t}.png.overlay.png").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == [
        "target_1.png.overlay.png",
        "target_1.png.pred.png",
        "target_2.png.overlay.png",
        "target_2.png.pred.png",
    ]
    # the written mask is the library's mask
    model = INSID3(load_backbone(workdir / "model", device="cpu"), image_size=64, svd_components=8)
    model.set_reference(s / "reference.png", s / "reference_mask.png")
    expected = model.segment(s / "target_2.png").numpy()
    assert np.array_equal(np.asarray(Image.open(out / "target_2.png.pred.png")) > 0, expected)
    # status lines before the progress bar, which reached the end
    err = r.stderr
    loading, basis, refs = (
        err.index(x)
        for x in (
            "insid3lab: loading the weights",
            "insid3lab: positional basis",
            "insid3lab: encoding 1 reference shot(s)",
        )
    )
    assert loading < basis < refs < err.rindex("100%")
    assert "UserWarning" not in err and "Traceback" not in err


def test_quiet_silences_status_lines_and_autocast_is_accepted(workdir, capsys):
    out = workdir / "quiet"
    assert main(_segment(workdir, out, "--quiet", "--no-overlay", "--autocast", "bfloat16")) == 0
    err = capsys.readouterr().err
    assert err == ""
    mask = np.asarray(Image.open(out / "target_1.png.pred.png"))
    assert mask.shape == (
        Image.open(workdir / "samples" / "target_1.png").height,
        Image.open(workdir / "samples" / "target_1.png").width,
    )


def test_a_clamped_svd_is_one_plain_warning_line(workdir, capsys):
    out = workdir / "clamp"
    args = _segment(workdir, out, "--no-overlay", "--quiet")
    args[args.index("--svd-components") + 1] = "400"
    assert main(args) == 0
    lines = capsys.readouterr().err.splitlines()
    # the tiny model has 64 channels; at 64 px its grid has 4 x 4 = 16 cells
    assert lines == ["insid3lab: warning: 64 px gives 16 cells; using 16 positional components (--svd-components 400)"]


def test_warnings_print_as_one_plain_line(capsys, monkeypatch):
    import warnings

    import insid3lab.cli.cache as cache_cmd

    def warn_then_run(args):
        warnings.warn("something to know\nacross two lines", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cache_cmd, "cmd_cache", warn_then_run)
    parser_func = None
    from insid3lab.cli import build_parser

    parser_func = build_parser().parse_args(["cache", "info"]).func
    assert parser_func is warn_then_run
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().err == "insid3lab: warning: something to know across two lines\n"


def test_segment_error_is_one_line_and_nonzero(workdir, tmp_path, capsys):
    missing = tmp_path / "missing.png"
    assert main(_segment(workdir, tmp_path / "o", targets=[str(missing)])) == 1
    assert capsys.readouterr().err.splitlines() == [f"insid3lab: error: {missing}: no such file"]
    assert not (tmp_path / "o").exists()  # nothing was created, nothing was loaded


def test_without_weights_it_says_how_to_get_them(workdir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = workdir / "samples"
    code = main(
        [
            "segment",
            "--model",
            "facebook/dinov3-vitl16-pretrain-lvd1689m",
            "--quiet",
            "--ref",
            str(s / "reference.png"),
            "--ref-mask",
            str(s / "reference_mask.png"),
            str(s / "target_1.png"),
            "--out",
            str(workdir / "o3"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "gated" in err and "accept the licence" in err and ".pth" in err


def test_mismatched_reference_masks(workdir, capsys):
    s = workdir / "samples"
    code = main(
        [
            "segment",
            "--model",
            "random:tiny",
            "--ref",
            str(s / "reference.png"),
            "--ref",
            str(s / "target_1.png"),
            "--ref-mask",
            str(s / "reference_mask.png"),
            str(s / "target_2.png"),
            "--out",
            str(workdir / "o4"),
        ]
    )
    assert code == 1
    assert "one --ref-mask per --ref" in capsys.readouterr().err


def test_match_writes_json_and_figure(workdir, capsys):
    s = workdir / "samples"
    pts = workdir / "points.json"
    pts.write_text(json.dumps({"points": [[100, 80], [200, 150]]}))
    out = workdir / "matches"
    code = main(match_argv(workdir, pts, [s / "target_1.png"], out, "--quiet"))
    assert code == 0, capsys.readouterr().err
    rec = json.loads((out / "target_1.png.matches.json").read_text())
    assert rec["points"] == [[100.0, 80.0], [200.0, 150.0]] and len(rec["matches"]) == 2
    assert rec["settings"]["svd_components"] == 20  # the correspondence default
    tw, th = Image.open(s / "target_1.png").size
    assert all(0 <= x <= tw and 0 <= y <= th for x, y in rec["matches"])
    assert (out / "target_1.png.matches.png").is_file()
    # bad points file
    pts.write_text('{"points": [[1, 2, 3]]}')
    assert main(match_argv(workdir, pts, [s / "target_1.png"], out, model="random:tiny")) == 1
    assert "expected" in capsys.readouterr().err


def test_bad_option_values_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["segment", "--tau", "1.5", "--ref", "r", "--ref-mask", "m", "t", "--out", "o"])
    assert e.value.code == 2
    assert "argument --tau: 1.5: must be in (0, 1]" in capsys.readouterr().err


def test_samples_keep_the_users_files_unless_overwrite(tmp_path, capsys):
    folder = tmp_path / "s"
    folder.mkdir()
    mine = folder / "target_1.png"
    mine.write_bytes(b"my own photo")
    assert main(["samples", str(folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"insid3lab: error: {mine} exists; pass --overwrite to replace, or choose another DIR"]
    assert mine.read_bytes() == b"my own photo" and sorted(p.name for p in folder.iterdir()) == ["target_1.png"]
    assert main(["samples", str(folder), "--overwrite"]) == 0
    assert f"insid3lab: replaced {mine}" in capsys.readouterr().err
    assert mine.read_bytes().startswith(b"\x89PNG")
    # the same files again are no loss: running the command twice succeeds
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["samples", str(folder)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert "replaced" not in capsys.readouterr().err


def test_samples_and_cache_commands(tmp_path, capsys):
    assert main(["samples", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out.split()
    assert any(p.endswith("reference_mask.png") for p in printed)
    assert main(["cache", "info"]) == 0
    assert "0 cached basis" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
