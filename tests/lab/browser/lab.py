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
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

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
KERNEL_NAME = "insid3lab-python"
KERNEL_DISPLAY_NAME = "insid3lab (python)"
WIDGET_ERROR_TEXTS = ("Error displaying widget", "Error rendering")
STDERR_SELECTOR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
VIEWPORT = {"width": 1280, "height": 1000}

# Resolve the image of a contract element: the element itself when it is an <img>, else the
# first <img> inside it.
_JS_IMAGE = """
(el) => {
    if (!el) return null;
    return el.tagName === 'IMG' ? el : el.querySelector('img');
}
"""

_JS_PANELS = (
    """
(selector) => Array.from(document.querySelectorAll(selector)).map((el) => {
    const img = (%s)(el);
    return img ? {src: img.src.slice(0, 5), width: img.naturalWidth, height: img.naturalHeight,
                  complete: img.complete} : null;
})
"""
    % _JS_IMAGE
)

# SHA-256 of the bytes behind the image source (a blob: or data: URL), or null while the
# image is missing, not decoded yet, or its URL was just revoked by a newer value.
_JS_DIGEST = (
    """
async (selector) => {
    const img = (%s)(document.querySelector(selector));
    if (!img || !img.src || !img.complete || img.naturalWidth === 0) return null;
    try {
        const bytes = await (await fetch(img.src)).arrayBuffer();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
        return Array.from(digest).map((b) => b.toString(16).padStart(2, '0')).join('');
    } catch (err) {
        return null;
    }
}
"""
    % _JS_IMAGE
)

# Scroll the notebook so that the output holding the element starts at the top of the view.
_JS_SHOW_OUTPUT = """
(selector) => {
    const el = document.querySelector(selector);
    const output = el ? el.closest('.jp-OutputArea-output') || el : null;
    if (output) output.scrollIntoView({block: 'start'});
    return output !== null;
}
"""

_JS_WIDGET_TEXT = """
(selector) => {
    const el = document.querySelector(selector);
    const output = el ? el.closest('.jp-OutputArea-output') : null;
    return output ? output.innerText : '';
}
"""

# Widget failures in the notebook: text lines of the output renderer's messages ("Error
# displaying widget: model not found", ...) and ipywidgets 8 error views, which show "Click to
# show javascript error." until clicked and then the message and stack.
_JS_WIDGET_ERRORS = """
(texts) => {
    const nb = document.querySelector('.jp-NotebookPanel .jp-Notebook');
    if (!nb) return [];
    const found = nb.innerText.split('\\n').filter((line) => texts.some((t) => line.includes(t)));
    for (const view of nb.querySelectorAll('.jupyter-widgets-error-widget')) {
        const host = view.parentElement;
        if (view.classList.contains('icon-error') && host && typeof host.onclick === 'function') host.onclick();
        found.push('widget error view: ' + view.innerText.trim().slice(0, 2000));
    }
    return found;
}
"""

# Execution state of the open notebook: the execution indicator's kernel status, the status
# bar's kernel item ("<display name> | Idle"; "No Kernel | Initializing" before a kernel is
# connected, while the indicator already says idle) and the input prompt of every code cell
# ("[3]:", "[*]:", "[ ]:"), and the text of every stderr or error output.
_JS_NOTEBOOK_STATE = """
(stderrSelector) => {
    const indicator = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
    const kernel = document.querySelector('#jp-main-statusbar .jp-StatusBar-TextItem[title^="Change kernel"]');
    const prompts = Array.from(
        document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-CodeCell .jp-InputArea-prompt'),
    ).map((el) => el.textContent.trim());
    return {
        status: indicator ? indicator.getAttribute('data-status') : null,
        kernel: kernel ? kernel.textContent.trim() : null,
        prompts: prompts,
        stderr: Array.from(document.querySelectorAll(stderrSelector)).map((el) => el.innerText),
    };
}
"""


class LabError(RuntimeError):
    """JupyterLab or the page did not reach an expected state in time."""


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_start_time(pid: int) -> str | None:
    """Start time of a process (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _children(pid: int) -> list[tuple[int, str]]:
    """Direct children of `pid` as (pid, start time), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry.name), fields[19]))
    return found


class LabServer:
    """JupyterLab on 127.0.0.1 with a token, serving `root`; a context manager.

    Configuration, data (holding the only kernelspec, which runs `sys.executable`), runtime,
    IPython, user-settings and workspace directories all live under `home`, so nothing of the
    user's Jupyter setup is read or written. The process runs in its own process group.
    """

    def __init__(self, root: Path, home: Path, log_path: Path, *, start_timeout_s: float = 60.0):
        self.root = Path(root)
        self.home = Path(home)
        self.log_path = Path(log_path)
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None
        self._log = None

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def __enter__(self) -> LabServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _prepare(self) -> dict[str, str]:
        dirs = {name: self.home / name for name in ("config", "data", "runtime", "ipython", "settings", "workspaces")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        kernel_dir = dirs["data"] / "kernels" / KERNEL_NAME
        kernel_dir.mkdir(parents=True, exist_ok=True)
        (kernel_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": KERNEL_DISPLAY_NAME,
                    "language": "python",
                }
            )
        )
        settings = {
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
                "fetchNews": "false",
                "checkForUpdates": False,
                "doNotDisturbMode": True,
            },
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        }
        for name, value in settings.items():
            path = dirs["settings"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        config = {
            "ServerApp": {
                "ip": "127.0.0.1",
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "root_dir": str(self.root),
                "terminals_enabled": False,
                "allow_root": hasattr(os, "geteuid") and os.geteuid() == 0,
                "jpserver_extensions": {"jupyter_lsp": False},
            },
            "IdentityProvider": {"token": self.token},
            "KernelSpecManager": {"allowed_kernelspecs": [KERNEL_NAME], "ensure_native_kernel": False},
            "MappingKernelManager": {"default_kernel_name": KERNEL_NAME},
            "LabApp": {
                "user_settings_dir": str(dirs["settings"]),
                "workspaces_dir": str(dirs["workspaces"]),
                "news_url": None,
                "extension_manager": "readonly",
                "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            },
        }
        for name in ("jupyter_server_config.json", "jupyter_lab_config.json"):
            (dirs["config"] / name).write_text(json.dumps(config))
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),
            PYTHONUNBUFFERED="1",
        )
        # The kernel gets a user's environment: its own matplotlib backend, no Jupyter paths
        # from the caller.
        for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "MPLBACKEND"):
            env.pop(name, None)
        return env

    def start(self) -> None:
        env = self._prepare()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser"],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise LabError(
                    f"JupyterLab exited with code {self._proc.returncode} before answering "
                    f"/api/status; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as response:
                    if response.status == 200:
                        json.load(response)
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise LabError(
                    f"JupyterLab did not answer {self.base_url}/api/status within "
                    f"{self.start_timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _request(self, method: str, path: str, timeout: float = 5.0):
        request = urllib.request.Request(
            f"{self.base_url}/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        """Shut down kernels and server; then kill the process group and any kernel left."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            kernels = _children(proc.pid)
            if proc.poll() is None:
                try:
                    for kernel in self._request("GET", "api/kernels") or []:
                        self._request("DELETE", f"api/kernels/{kernel['id']}")
                    self._request("POST", "api/shutdown")
                except (urllib.error.URLError, OSError, ValueError):
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever is left of the server's process group: SIGTERM, then SIGKILL.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            # Kernels run in sessions of their own; kill any that outlived the server.
            for pid, started in kernels:
                if _proc_start_time(pid) == started:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


def _prepare_root(notebook: Path, root: Path, extra_files: Sequence[Path]) -> tuple[Path, list[bool]]:
    """Copy the notebook (its kernelspec set to KERNEL_NAME, outputs cleared) and extra files.

    Returns the copy and, per code cell, whether its source is not blank (Lab gives blank
    cells no execution count)."""
    root.mkdir(parents=True, exist_ok=True)
    content = json.loads(notebook.read_text(encoding="utf-8"))
    content.setdefault("metadata", {})["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
    }
    code_cells = []
    for cell in content.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            source = cell.get("source", "")
            code_cells.append(bool(("".join(source) if isinstance(source, list) else source).strip()))
    target = root / notebook.name
    target.write_text(json.dumps(content, indent=1, ensure_ascii=False), encoding="utf-8")
    for extra in extra_files:
        extra = Path(extra)
        if extra.is_dir():
            shutil.copytree(extra, root / extra.name)
        elif extra.is_file():
            shutil.copy2(extra, root / extra.name)
        else:
            raise FileNotFoundError(f"extra_files: {extra} is neither a file nor a directory")
    return target, code_cells


class _Page:
    """The notebook page and the waits on it, each bounded by a timeout."""

    def __init__(self, page, name: str, code_cells: list[bool], artefacts: Path, step_timeout_s: float):
        self.page = page
        self.code_cells = code_cells
        self.name = name
        self.artefacts = artefacts
        self.step_timeout_s = step_timeout_s
        self.screenshots: list[Path] = []

    def show_output(self, selector: str) -> None:
        """Scroll the output that holds `selector` to the top of the notebook view."""
        self.page.evaluate(_JS_SHOW_OUTPUT, selector)
        self.page.wait_for_timeout(100)

    def screenshot(self, label: str) -> Path:
        path = self.artefacts / f"{self.name}-{len(self.screenshots) + 1}-{label}.png"
        self.page.screenshot(path=str(path), timeout=self.step_timeout_s * 1000)
        self.screenshots.append(path)
        return path

    def poll(self, what: str, probe, ok=bool, timeout_s: float | None = None, interval_s: float = 0.2):
        """Call `probe()` until `ok(value)`; return that value, or LabError after `timeout_s`."""
        timeout_s = self.step_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            value = probe()
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: {what} within {timeout_s:.0f} s (last seen: {value!r})")
            self.page.wait_for_timeout(interval_s * 1000)

    def state(self) -> dict:
        return self.page.evaluate(_JS_NOTEBOOK_STATE, STDERR_SELECTOR)

    @staticmethod
    def idle(state: dict) -> bool:
        """Kernel connected and idle, no cell queued or running."""
        return (
            state["status"] == "idle"
            and state["kernel"] == f"{KERNEL_DISPLAY_NAME} | Idle"
            and not any("*" in p for p in state["prompts"])
        )

    def executed(self, state: dict) -> bool:
        """Idle, and every non-blank code cell has an execution count."""
        prompts = state["prompts"]
        return (
            self.idle(state)
            and len(prompts) == len(self.code_cells)
            and all(p.strip("[]: ").isdigit() for p, filled in zip(prompts, self.code_cells) if filled)
        )

    def wait_idle(self, what: str, timeout_s: float | None = None) -> dict:
        return self.poll(what, self.state, self.idle, timeout_s)

    def widget_text(self, selector: str) -> str:
        return self.page.evaluate(_JS_WIDGET_TEXT, selector)

    def digest(self, selector: str) -> str | None:
        return self.page.evaluate(_JS_DIGEST, selector)

    def widget_errors(self) -> list[str]:
        """Widget failures shown in the notebook: lines with WIDGET_ERROR_TEXTS and, for each
        ipywidgets error view, its message and stack (revealed by its own click handler)."""
        return self.page.evaluate(_JS_WIDGET_ERRORS, list(WIDGET_ERROR_TEXTS))

    def mask_settled(self, selector: str, differs_from: str | None = None) -> str:
        """Digest of the mask once it differs from `differs_from` and then, on two samples
        0.4 s apart, the kernel is idle and the digest is the same (a slider sends more than
        one update; the last one must have been drawn)."""
        what = f"the mask image {selector} did not change" if differs_from else f"no decoded image under {selector}"
        self.poll(what, lambda: self.digest(selector), lambda d: d is not None and d != differs_from)
        deadline = time.monotonic() + self.step_timeout_s
        previous = None
        while True:
            sample = (self.digest(selector), self.idle(self.state()))
            if sample[0] is not None and sample[1] and sample == previous:
                return sample[0]
            if time.monotonic() > deadline:
                raise LabError(
                    f"{self.name}: the mask image {selector} and the kernel did not settle within "
                    f"{self.step_timeout_s:.0f} s (last seen: {sample!r})"
                )
            previous = sample
            self.page.wait_for_timeout(400)

    def run_all(self) -> None:
        page = self.page
        timeout = self.step_timeout_s * 1000
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click(timeout=timeout)
        page.locator(".lm-Menu-content").get_by_role("menuitem", name="Run All Cells", exact=True).first.click(
            timeout=timeout
        )

    def change(self, selector: str, presses: int = 4) -> tuple[str, str, str]:
        """Change the control under `selector`; returns (kind, value before, value after)."""
        page = self.page
        timeout = self.step_timeout_s * 1000
        control = page.locator(selector).first
        control.wait_for(state="visible", timeout=timeout)
        handle = page.locator(f"{selector} .noUi-handle").first
        select = page.locator(f"{selector} select").first
        if handle.count():
            now = float(handle.get_attribute("aria-valuenow", timeout=timeout))
            top = float(handle.get_attribute("aria-valuemax", timeout=timeout))
            key = "ArrowRight" if now < top else "ArrowLeft"
            handle.focus(timeout=timeout)
            for _ in range(presses):
                page.keyboard.press(key)
            after = self.poll(
                f"the slider {selector} did not move",
                lambda: float(handle.get_attribute("aria-valuenow", timeout=timeout)),
                lambda v: v != now,
            )
            return "slider", f"{now:g}", f"{after:g}"
        if select.count():
            before = select.input_value(timeout=timeout)
            values = [o.get_attribute("value") for o in select.locator("option").all()]
            others = [v for v in values if v != before]
            if not others:
                raise LabError(f"{self.name}: the dropdown {selector} has no option other than {before!r}")
            select.select_option(value=others[0], timeout=timeout)
            return "dropdown", before, others[0]
        raise LabError(
            f"{self.name}: {selector} holds neither a slider handle (.noUi-handle) nor a <select>; "
            "controls must be ipywidgets sliders or dropdowns"
        )


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
        target, code_cells = _prepare_root(notebook, scratch / "root", [Path(p) for p in extra_files])
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
                view = _Page(page, name, code_cells, out, step_timeout_s)
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
                panels = page.evaluate(_JS_PANELS, panel_selector)
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
