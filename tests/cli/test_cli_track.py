"""``insid3lab track`` at its edges: a mask among the frames, odd images, frames of other sizes, what it says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from insid3lab import save_pretrained
from insid3lab.cli import main
from insid3lab.cli.figures import RANDOM_WEIGHTS_NOTE
from insid3lab.cli.track import ANIMATION, MASKS_DIR
from insid3lab.synthetic.video import moving_object_sequence


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def clip(tmp_path):
    """clip/frame1..4.png (96 x 128), frame9.png (40 x 40) and the first frame's mask clip/first.png."""
    frames, maps = moving_object_sequence(5, (96, 128), seed=0, objects=1)
    d = tmp_path / "clip"
    d.mkdir()
    for t in range(4):
        Image.fromarray(frames[t]).save(d / f"frame{t + 1}.png")
    Image.fromarray(frames[4][:40, :40]).save(d / "frame9.png")
    Image.fromarray((maps[0] == 1).astype(np.uint8) * 255).save(d / "first.png")
    return d


def _track(frames, mask, out, *extra, model="random:tiny"):
    return ["track", "--model", str(model), "--device", "cpu", "--image-size", "64", "--svd-components", "8",
            "--frames", str(frames), "--mask", str(mask), "--out", str(out), *map(str, extra)]  # fmt: skip


def test_the_mask_among_the_frames_is_left_out_and_odd_images_are_named(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_track(clip, clip / "first.png", out)) == 0
    err = capsys.readouterr().err
    names = sorted(p.name for p in (out / MASKS_DIR).iterdir())
    assert names == ["frame1.png", "frame2.png", "frame3.png", "frame4.png", "frame9.png"]  # no first.png
    first = np.asarray(Image.open(out / MASKS_DIR / "frame1.png")) > 0
    assert np.array_equal(first, np.asarray(Image.open(clip / "first.png")) > 0)
    # a frame of another size gets its mask at its own size
    assert Image.open(out / MASKS_DIR / "frame9.png").size == (40, 40)
    warnings = [ln for ln in err.splitlines() if ln.startswith("insid3lab: warning:")]
    assert warnings == [
        f"insid3lab: warning: --frames {clip}: 1 image(s) look unlike the other frames and are tracked as frames "
        "all the same (move them out of the folder if they are not): frame9.png (40x40 where the others are 128x96 "
        "(width x height))"
    ]
    # the bar knows its total, the last line has the prefix and names both outputs
    assert "5/5" in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1] == f"insid3lab: wrote 5 mask(s) (one object) to {out / MASKS_DIR} and {out / ANIMATION}"


def test_the_animation_says_when_the_weights_are_random(clip, tmp_path, tiny_backbone, capsys):
    (clip / "frame9.png").unlink()
    out = tmp_path / "random"
    assert main(_track(clip, clip / "first.png", out, "--quiet")) == 0
    assert capsys.readouterr().err == ""  # --quiet: no bar, no status line
    with Image.open(out / ANIMATION) as gif:
        assert gif.n_frames == 4 and gif.width == 128 and gif.height > 96  # a caption band under the frames
        assert gif.info.get("comment", b"").decode() == RANDOM_WEIGHTS_NOTE
    save_pretrained(tiny_backbone, tmp_path / "model")
    out = tmp_path / "trained"
    assert main(_track(clip, clip / "first.png", out, "--quiet", model=tmp_path / "model")) == 0
    with Image.open(out / ANIMATION) as gif:
        assert gif.size == (128, 96) and "comment" not in gif.info
