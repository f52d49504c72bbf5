"""Run a notebook in a real JupyterLab, in headless Chromium, and observe its explorer widget.

`run_notebook_in_lab` starts JupyterLab on 127.0.0.1 (free port, random token, temporary root,
configuration, data and runtime directories), opens a copy of the notebook in Chromium driven by
Playwright, runs all cells through the Run menu, waits for every code cell to have an execution
count and the kernel to be idle, then changes each given control and waits for the mask image
to change (the SHA-256 of the bytes behind its blob URL, so a new value sent by the kernel, not
just a new URL). It returns what it saw (`LabRun`) and leaves screenshots, the browser console
and the server log in the artefact directory. It raises `LabError` when a cell raises (with the
traceback), when a widget fails to display (with its error message), and when any wait runs out
of time. The server, its kernels and the browser are stopped in every case.

DOM contract of an explorer widget (ipywidgets with CSS classes added by `add_class`):

- every image panel is an `ipywidgets.Image` with class `insid3lab-panel`;
- the mask panel additionally has class `insid3lab-mask`;
- a control named NAME has class `insid3lab-control-NAME`; a slider (`FloatSlider`, `IntSlider`)
  is moved with the keyboard on its handle, a `Dropdown` gets another option selected.

The kernel is a kernelspec written into the temporary data directory whose argv starts with
`sys.executable`, so the notebook runs on the same Python as the caller; it is the only
kernelspec the server offers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from helpers.browser.page import JS_PANELS, STDERR_SELECTOR, Page
from helpers.browser.server import LabError, LabServer, prepare_root

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 1000}

__all__ = ["ControlChange", "LabError", "LabRun", "artifacts_dir", "chromium_path", "run_notebook_in_lab"]


@dataclasses.dataclass
class ControlChange:
    """One control changed in the page and what the mask did."""

    selector: str
    kind: str  # "slider" or "dropdown"
    value_before: str
    value_after: str
    mask_before: str  # SHA-256 of the mask image bytes
    mask_after: str
    widget_text: str  # text of the output that holds the mask, after the change
    screenshot: Path


@dataclasses.dataclass
class LabRun:
    """What the page showed for one notebook."""

    notebook: str
    kernel_status: str
    prompts: list[str]  # input prompt of each code cell after Run All, e.g. "[2]:"
    code_cells: list[bool]  # per code cell: whether its source is not blank
    panels: list[dict]  # per panel image: natural width/height, complete, src scheme
    widget_text: str  # text of the output that holds the mask, after Run All
    widget_errors: list[str]  # widget error texts found in the notebook
    stderr_outputs: list[str]  # text of every stderr / error output in the notebook
    changes: list[ControlChange]
    screenshots: list[Path]
    seconds: float


def artifacts_dir() -> Path:
    """Directory for screenshots and logs: `$INSID3LAB_ARTIFACTS`, else `test-artifacts/browser`."""
    path = Path(os.environ.get("INSID3LAB_ARTIFACTS") or REPO_ROOT / "test-artifacts" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_path() -> str | None:
    """Chromium executable (`$INSID3LAB_CHROMIUM`, else /usr/bin/chromium), or None if absent."""
    path = os.environ.get("INSID3LAB_CHROMIUM") or DEFAULT_CHROMIUM
    return path if os.access(path, os.X_OK) else None


def run_notebook_in_lab(
    notebook_path: str | os.PathLike,
    *,
    control_selectors: Sequence[str],
    mask_selector: str = ".insid3lab-mask",
    panel_selector: str = ".insid3lab-panel",
    extra_files: Sequence[str | os.PathLike] = (),
    artefacts: str | os.PathLike | None = None,
    run_timeout_s: float = 90.0,
    step_timeout_s: float = 30.0,
    start_timeout_s: float = 60.0,
) -> LabRun:
    """Open `notebook_path` in JupyterLab in headless Chromium, run all cells, change controls.

    notebook_path: the .ipynb to open; a copy is served from a temporary root, next to copies
        of `extra_files` (files or directories the notebook reads by relative path).
    control_selectors: CSS selectors of the controls to change one after another (each must
        hold an ipywidgets slider or dropdown); after each, the image of `mask_selector` must
        change, else LabError.
    mask_selector / panel_selector: CSS selectors of the mask image and of all image panels.
    artefacts: directory for screenshots, browser console and server log (default
        `artifacts_dir()`); files are named after the notebook's stem.
    run_timeout_s: limit for Run All (every code cell executed, kernel idle).
    step_timeout_s: limit for every other wait in the page.
    start_timeout_s: limit for the server to answer /api/status.

    Raises LabError when a step does not complete in time; a screenshot `<stem>-failed.png`
    is saved first.
    """
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    notebook = Path(notebook_path)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook_path: {notebook} does not exist")
    executable = chromium_path()
    if executable is None:
        raise LabError(f"no Chromium at {os.environ.get('INSID3LAB_CHROMIUM') or DEFAULT_CHROMIUM}")
    out = Path(artefacts) if artefacts is not None else artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    name = notebook.stem
    for old in out.glob(f"{name}-*"):
        if old.is_file():
            old.unlink()
    console: list[str] = []

    scratch = Path(tempfile.mkdtemp(prefix="insid3lab-lab-"))
    try:
        target, code_cells = prepare_root(notebook, scratch / "root", [Path(p) for p in extra_files])
        with (
            LabServer(
                scratch / "root", scratch / "home", out / f"{name}-jupyter.log", start_timeout_s=start_timeout_s
            ) as server,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(
                executable_path=executable, args=list(CHROMIUM_ARGS), timeout=step_timeout_s * 1000
            )
            view = None
            try:
                context = browser.new_context(viewport=VIEWPORT)
                context.set_default_timeout(step_timeout_s * 1000)
                page = context.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                view = Page(page, name, code_cells, out, step_timeout_s)
                page.goto(server.url(f"lab/tree/{target.name}"), wait_until="domcontentloaded")
                page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(state="visible")
                view.wait_idle("the kernel did not start and become idle")
                view.run_all()
                # Run All stops at a cell that raises: stop waiting once the kernel is idle
                # with an error shown.
                state = view.poll(
                    "Run All did not give every code cell an execution count",
                    view.state,
                    lambda st: view.executed(st) or (view.idle(st) and bool(st["stderr"])),
                    timeout_s=run_timeout_s,
                )
                if not view.executed(state):
                    view.screenshot("cell-error")
                    raise LabError(
                        f"{name}: Run All stopped at prompts {state['prompts']}; stderr/error outputs:\n"
                        + "\n---\n".join(state["stderr"])
                    )
                view.poll(
                    f"no decoded image under {mask_selector} appeared",
                    lambda: view.digest(mask_selector) or view.widget_errors(),
                    bool,
                )
                if view.widget_errors():
                    view.screenshot("widget-error")
                    raise LabError(f"{name}: a widget failed in the page: {view.widget_errors()}")
                view.show_output(mask_selector)
                panels = page.evaluate(JS_PANELS, panel_selector)
                widget_text = view.widget_text(mask_selector)
                view.screenshot("rendered")
                changes = []
                for selector in control_selectors:
                    before = view.mask_settled(mask_selector)
                    kind, value_before, value_after = view.change(selector)
                    after = view.mask_settled(mask_selector, differs_from=before)
                    view.show_output(mask_selector)
                    label = re.sub(r"[^A-Za-z0-9_-]+", "_", selector.replace("insid3lab-control-", "")).strip("_")
                    changes.append(
                        ControlChange(
                            selector=selector,
                            kind=kind,
                            value_before=value_before,
                            value_after=value_after,
                            mask_before=before,
                            mask_after=after,
                            widget_text=view.widget_text(mask_selector),
                            screenshot=view.screenshot(f"after-{label}"),
                        )
                    )
                return LabRun(
                    notebook=name,
                    kernel_status=state["status"],
                    prompts=state["prompts"],
                    code_cells=code_cells,
                    panels=panels,
                    widget_text=widget_text,
                    widget_errors=view.widget_errors(),
                    stderr_outputs=page.locator(STDERR_SELECTOR).all_inner_texts(),
                    changes=changes,
                    screenshots=list(view.screenshots),
                    seconds=time.monotonic() - started,
                )
            except BaseException:
                if view is not None:
                    try:
                        view.page.screenshot(path=str(out / f"{name}-failed.png"), timeout=10_000)
                    except Exception:  # the original failure is the one to report
                        pass
                raise
            finally:
                (out / f"{name}-console.log").write_text("\n".join(console) + "\n")
                browser.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python tests/lab/browser/lab.py NOTEBOOK [--control SELECTOR ...]`: run and print what was seen."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--control", action="append", default=[], help="CSS selector of a control to change")
    parser.add_argument("--mask", default=".insid3lab-mask", help="CSS selector of the mask image")
    parser.add_argument("--extra", action="append", default=[], type=Path, help="file or folder to copy next to it")
    args = parser.parse_args(argv)
    run = run_notebook_in_lab(
        args.notebook,
        control_selectors=args.control or [".insid3lab-control-tau"],
        mask_selector=args.mask,
        extra_files=args.extra,
    )
    for field in dataclasses.fields(run):
        print(f"{field.name}: {getattr(run, field.name)!r}")
    return 0 if not run.widget_errors and not run.stderr_outputs else 1


if __name__ == "__main__":
    sys.exit(main())
