"""The notebook page in Chromium: what the page shows (read by JavaScript) and the waits on it."""

from __future__ import annotations

import re
import time
from pathlib import Path

from helpers.browser.server import KERNEL_DISPLAY_NAME, LabError

WIDGET_ERROR_TEXTS = ("Error displaying widget", "Error rendering")
STDERR_SELECTOR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# Resolve the image of a contract element: the element itself when it is an <img>, else the
# first <img> inside it.
_JS_IMAGE = """
(el) => {
    if (!el) return null;
    return el.tagName === 'IMG' ? el : el.querySelector('img');
}
"""

JS_PANELS = (
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


class Page:
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
