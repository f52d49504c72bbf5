"""The r in use: a warning only when the user asked for more than the model allows; the effective r everywhere."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from insid3lab import INSID3, viz
from insid3lab.cli import main
from insid3lab.synthetic import write_samples
from insid3lab.viz.story import settings_line


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))


def _scene(tiny, **kw):
    model = INSID3(tiny, image_size=64, basis_cache=False, progress=False, **kw)  # 4 x 4 = 16 cells, 64 channels
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 16:40] = True
    model.set_reference(img, mask)
    return model, img


def test_the_default_r_is_clamped_without_a_word_and_recorded_as_used(tiny):
    model, img = _scene(tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, trace = model.segment(img, return_trace=True)
    s = model.settings()
    assert s["svd_components"] == 500 and s["effective_components"] == 16
    assert trace.settings["effective_components"] == 16
    assert "r=16" in settings_line(trace.settings) and "r=500" not in settings_line(trace.settings)
    title = viz.story(trace)._suptitle.get_text()
    assert "r=16" in title and "r=500" not in title


def test_an_r_the_user_set_beyond_the_model_warns_once(tiny):
    model, img = _scene(tiny, svd_components=40)
    with pytest.warns(UserWarning, match="svd_components=40 exceeds"):
        model.segment(img)
    assert model.settings()["effective_components"] == 16


def test_the_command_line_warns_only_when_the_user_set_r(tmp_path, capsys):
    write_samples(tmp_path / "s", targets=1)
    s = tmp_path / "s"
    argv = ["segment", "--model", "random:tiny", "--image-size", "64", "--quiet", "--no-overlay",
            "--ref", str(s / "reference.png"), "--ref-mask", str(s / "reference_mask.png"), str(s / "target_1.png"),
            "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # the default r=500: clamped without a warning
    assert main([*argv, "--overwrite", "--svd-components", "100"]) == 0
    assert [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln] == [
        "insid3lab: warning: 64 px gives 16 cells; using 16 positional components (--svd-components 100)"
    ]


def test_eval_summary_records_the_r_used(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "images" / f"x{i}.png")
        m = np.zeros((64, 64), np.uint8)
        m[10:30, 10:30] = 255
        Image.fromarray(m).save(root / "masks" / f"x{i}.png")
    argv = ["eval", "--dataset", "folder", "--data-root", str(root), "--model", "random:tiny", "--image-size", "64",
            "--episodes", "2", "--bootstrap", "0", "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    settings = json.dumps(summary)
    assert '"effective_components": 16' in settings and "exceeds" not in capsys.readouterr().err
