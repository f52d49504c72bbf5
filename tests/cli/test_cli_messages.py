"""What the command line says when something goes wrong: one line each, the path and what to do, on a line of its own."""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest
from PIL import Image

from insid3lab.cli import console, main
from insid3lab.synthetic import write_samples


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("messages")
    write_samples(d, targets=2)
    return d


def _segment(samples, targets, out, *extra):
    return ["segment", "--model", "random:tiny", "--image-size", "64", "--svd-components", "8", "--no-overlay",
            "--ref", str(samples / "reference.png"), "--ref-mask", str(samples / "reference_mask.png"),
            *map(str, targets), "--out", str(out), *map(str, extra)]  # fmt: skip


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.EEXIST, "x: already exists; remove it or choose another path"),
        (errno.ENOTDIR, "x/masks: a part of this path is a file, not a folder; choose another path"),
        (errno.ENOSPC, "x: no space left on the device; free some space or write elsewhere"),
        (errno.EACCES, "x: permission denied; choose a path you may write to"),
        (errno.EROFS, "x: the file system is read-only; write elsewhere"),
    ],
)
def test_errno_text_becomes_the_path_and_what_to_do(code, words):
    path = "x/masks" if code == errno.ENOTDIR else "x"
    err = OSError(code, "raw text", path)
    assert console.error_line(err) == words
    assert "Errno" not in console.error_line(err)
    # an error without a file name keeps its own words, less the errno number
    assert console.error_line(OSError(errno.ENOSPC, "No space left on device")) == (
        "no space left on the device; free some space or write elsewhere"
    )
    assert console.error_line(ValueError("plain\nmessage")) == "plain message"


def test_the_handler_prints_the_path_and_what_to_do(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * t, np.uint8)).save(frames / f"{t}.png")
    Image.fromarray(np.pad(np.ones((8, 8), np.uint8) * 255, 12)).save(tmp_path / "m.png")
    argv = ["track", "--model", "no-such-weights", "--frames", str(frames), "--mask", str(tmp_path / "m.png"),
            "--out", str(not_a_folder), "--quiet"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"insid3lab: error: --out {not_a_folder}: is a file; give a folder"]


def test_error_lines_start_a_line_of_their_own_after_a_progress_bar(samples, tmp_path, capsys):
    good, bad, good2 = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    shutil.copy(samples / "target_1.png", good)
    bad.write_text("not an image")
    shutil.copy(samples / "target_2.png", good2)
    assert main(_segment(samples, [good, bad, good2], tmp_path / "o")) == 1  # with the bar and status lines
    err = capsys.readouterr().err
    assert "segment:" in err  # the bar was drawn
    errors = [ln for ln in err.replace("\r", "\n").splitlines() if "insid3lab: error" in ln]
    assert errors and all(ln.startswith("insid3lab: error: ") for ln in err.splitlines() if "insid3lab: error" in ln)
    assert any(ln.startswith(f"insid3lab: error: {bad}: ") for ln in err.splitlines())
