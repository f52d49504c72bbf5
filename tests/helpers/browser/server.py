"""JupyterLab on 127.0.0.1 for the browser tests: a private home, the only kernelspec running this Python."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from helpers.processes import free_port

KERNEL_NAME = "insid3lab-python"
KERNEL_DISPLAY_NAME = "insid3lab (python)"


class LabError(RuntimeError):
    """JupyterLab or the page did not reach an expected state in time."""


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


def prepare_root(notebook: Path, root: Path, extra_files: Sequence[Path]) -> tuple[Path, list[bool]]:
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
