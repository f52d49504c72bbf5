"""Every notebook runs top to bottom, headless, on the tiny random model, with no file but its own."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
#: Wall-clock limit per notebook on the tiny model (they take a few seconds each on an idle CPU).
LIMIT_S = 150


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_notebooks_present_and_numbered():
    names = [p.name for p in NOTEBOOKS]
    for expected in (
        "01_quickstart",
        "02_step_by_step",
        "03_pca_features",
        "04_normalisation_and_registers",
        "05_positional_subspace",
        "06_small_objects",
        "07_correspondence",
        "08_evaluation",
        "09_explorer",
    ):
        assert f"{expected}.ipynb" in names
    numbers = [n[:2] for n in names]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in _code_cells(nb):
        assert cell.outputs == [], f"{path.name}: a code cell has outputs; commit notebooks without outputs"
        assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"
    params = [c for c in _code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    assert "WEIGHTS = None" in params[0].source
    assert sum("WEIGHTS = " in c.source for c in _code_cells(nb)) == 1, "WEIGHTS is set in one cell only"
    assert "INSID3LAB_WEIGHTS" in "".join(c.source for c in _code_cells(nb))
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "**Question:**" in first.source and "meaningless" in first.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_random_weights_given_by_name_are_said_and_sized_to_fit(path, monkeypatch, capsys):
    """INSID3LAB_WEIGHTS=random:ARCH is random weights too: the setup says so and picks the small sizes."""
    monkeypatch.setenv("INSID3LAB_WEIGHTS", "random:tiny")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cells = _code_cells(nbformat.read(path, as_version=4))
    setup = next(c for c in cells if "INSID3LAB_WEIGHTS" in c.source and "WEIGHTS = None" not in c.source)
    namespace: dict = {}
    exec("WEIGHTS = None", namespace)
    exec("\n".join(ln for ln in setup.source.splitlines() if not ln.startswith("%")), namespace)
    out = capsys.readouterr().out
    assert namespace["RANDOM"] is True and "RANDOM weights (random:tiny)" in out, out
    if "IMAGE_SIZE" in namespace:
        assert namespace["IMAGE_SIZE"] <= 256


def _outputs(nb):
    for cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            yield cell, out


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.usefixtures("isolated_cache")
def test_notebook_runs(path, tmp_path, monkeypatch):
    workdir = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, workdir)
    monkeypatch.delenv("INSID3LAB_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    nb = nbformat.read(workdir / path.name, as_version=4)
    client = NotebookClient(
        nb, timeout=LIMIT_S, kernel_name="python3", allow_errors=False, resources={"metadata": {"path": str(workdir)}}
    )
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    assert seconds < LIMIT_S, f"{path.name} took {seconds:.0f} s"

    texts, images, widgets, stderr = [], 0, 0, []
    for _cell, out in _outputs(nb):
        assert out.output_type != "error", f"{path.name}: {out.get('ename')}: {out.get('evalue')}"
        if out.output_type == "stream":
            (stderr if out.name == "stderr" else texts).append(out.text)
        else:
            data = out.get("data", {})
            images += "image/png" in data
            widgets += "application/vnd.jupyter.widget-view+json" in data
            texts.append(data.get("text/plain", ""))
    text = "".join(texts)
    assert "RANDOM weights (random:tiny)" in text, "the notebook must say that it runs on a random model"
    assert not [s for s in stderr if "Traceback" in s], stderr
    if path.stem != "09_explorer":
        assert images >= 1, f"{path.name} drew no figure"
    if path.stem == "02_step_by_step":
        assert "stages by hand == model.segment: True" in text
    if path.stem == "04_normalisation_and_registers":
        assert "last_hidden_state == norm(hidden_states[-1]): True" in text
        assert "cell i holds patch i - 4: True" in text
    if path.stem == "08_evaluation":
        assert "mIoU" in text and "episode  class" in text
    if path.stem == "12_refinement":
        assert "crisp colour edge: IoU coarse" in text and "(helps)" in text
        assert "low-contrast boundary: IoU coarse" in text and "(hurts)" in text
        assert "stem pixels kept 0/" in text and "lesion, whole method: IoU bilinear" in text
    if path.stem in ("06_small_objects", "09_explorer"):
        assert widgets >= 1, f"{path.name}: the explorer widget was not displayed"
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        classes = {c for m in state.values() for c in m.get("state", {}).get("_dom_classes", [])}
        assert {"insid3lab-panel", "insid3lab-mask"} <= classes
        assert {f"insid3lab-control-{n}" for n in ("tau", "svd", "merge", "size", "layer", "debias")} <= classes
    json.dumps(nb)  # the executed notebook is still valid JSON
