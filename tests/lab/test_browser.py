"""The explorer widget in a real JupyterLab, driven from headless Chromium.

Each notebook is opened in JupyterLab, run with Run ▸ Run All Cells, and checked in the page:
the widget renders, its image panels decode, no cell writes an error or to stderr, and
changing each control changes the mask image the kernel sends. Screenshots of every state go
to `test-artifacts/browser/` (or `$INSID3LAB_ARTIFACTS`).

The stand-in notebook `fixture_explorer.ipynb` follows the explorer's DOM contract
and is also checked against its own computation run in this process: the PNG bytes shown in
the page before and after each change equal those computed here. `notebooks/09_explorer.ipynb`
is included as soon as it exists.
"""

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from helpers.browser.lab import DEFAULT_CHROMIUM, artifacts_dir, chromium_path, run_notebook_in_lab

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "fixture_explorer.ipynb"
EXPLORER = REPO / "notebooks" / "09_explorer.ipynb"


def _fixture_namespace() -> dict:
    """Run the fixture's computation cell (field, debiased, png) in this process."""
    cells = json.loads(FIXTURE.read_text(encoding="utf-8"))["cells"]
    (cell,) = [c for c in cells if c.get("id") == "field"]
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile("".join(cell["source"]), f"{FIXTURE}#field", "exec"), namespace)
    return namespace


def _mask_digest(namespace: dict, tau: float, debias: str) -> str:
    values = namespace["debiased"](namespace["field"], debias)
    return hashlib.sha256(namespace["png"]((values > tau).astype(float), "gray")).hexdigest()


def _coverage(namespace: dict, tau: float, debias: str) -> str:
    values = namespace["debiased"](namespace["field"], debias)
    return f"foreground {(values > tau).mean():.3f}"


def check_fixture(run) -> None:
    """Page state equals the fixture's computation at τ 0.5 → 0.7 (four steps of 0.05), then debias "rows"."""
    ns = _fixture_namespace()
    assert run.prompts == ["[1]:", "[2]:", "[3]:"]
    assert [(p["width"], p["height"]) for p in run.panels] == [(192, 192), (192, 192)]
    assert _coverage(ns, 0.5, "none") in run.widget_text

    tau, debias = run.changes
    assert (tau.selector, tau.kind, tau.value_before, tau.value_after) == (
        ".insid3lab-control-tau",
        "slider",
        "0.5",
        "0.7",
    )
    assert tau.mask_before == _mask_digest(ns, 0.5, "none")
    assert tau.mask_after == _mask_digest(ns, 0.7, "none")
    assert _coverage(ns, 0.7, "none") in tau.widget_text

    assert (debias.selector, debias.kind, debias.value_before, debias.value_after) == (
        ".insid3lab-control-debias",
        "dropdown",
        "none",
        "rows",
    )
    assert debias.mask_before == tau.mask_after
    assert debias.mask_after == _mask_digest(ns, 0.7, "rows")
    assert _coverage(ns, 0.7, "rows") in debias.widget_text


def check_explorer(run) -> None:
    """Every panel the explorer declares is shown."""
    from insid3lab.lab.explorer import PANEL_NAMES

    assert len(run.panels) == len(PANEL_NAMES)


NOTEBOOKS = [
    pytest.param(
        FIXTURE, (".insid3lab-control-tau", ".insid3lab-control-debias"), check_fixture, id="fixture_explorer"
    ),
]
if EXPLORER.exists():
    NOTEBOOKS.append(
        pytest.param(
            EXPLORER, (".insid3lab-control-tau", ".insid3lab-control-debias"), check_explorer, id="09_explorer"
        )
    )


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium and Playwright, or skip — except under CI (`$CI` set), where their absence fails."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        problem = f"the playwright package is not importable ({err}); install the dev extra"
    path = chromium_path()
    if path is None:
        where = os.environ.get("INSID3LAB_CHROMIUM") or DEFAULT_CHROMIUM
        problem = f"no Chromium at {where}; run .ci/browser-setup.sh (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {problem}", pytrace=False)
        pytest.skip(problem)
    return path


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("notebook, controls, check", NOTEBOOKS)
def test_explorer_in_jupyterlab(chromium, notebook, controls, check, monkeypatch):
    # The explorer notebook falls back to a tiny random model without this variable.
    monkeypatch.delenv("INSID3LAB_WEIGHTS", raising=False)
    run = run_notebook_in_lab(notebook, control_selectors=controls, artefacts=artifacts_dir())

    assert run.widget_errors == []
    assert run.stderr_outputs == []
    assert run.kernel_status == "idle"
    counts = [p for p, filled in zip(run.prompts, run.code_cells) if filled]
    assert counts == [f"[{i}]:" for i in range(1, len(counts) + 1)]

    assert len(run.panels) >= 2
    for panel in run.panels:
        assert panel is not None and panel["complete"] and panel["width"] > 0 and panel["height"] > 0

    assert [c.selector for c in run.changes] == list(controls)
    for change in run.changes:
        assert change.value_after != change.value_before
        assert change.mask_after != change.mask_before
    for shot in run.screenshots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(run.screenshots) == 1 + len(controls)

    if check is not None:
        check(run)
