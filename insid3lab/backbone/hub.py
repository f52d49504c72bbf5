"""DINOv3 weights from the Hugging Face hub: the local cache first, the hub only when it answers.

An unreachable hub fails at once (a TCP probe with a few seconds' timeout instead of rounds
of retries) with one message that names the ways forward: accepting the licence on the hub,
Meta's download page, or random weights to try the mechanics.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import torch
from transformers import DINOv3ViTModel

__all__ = ["META_DOWNLOAD_URL", "hub_reachable", "load_from_hub"]

META_DOWNLOAD_URL = "https://ai.meta.com/dinov3/"
_HUB_PROBE_TIMEOUT_S = 3.0


def _hub_error(repo_id: str, err: Exception | str) -> OSError:
    if isinstance(err, Exception):
        reason = f"{type(err).__name__}: {str(err).splitlines()[0]}" if str(err) else type(err).__name__
    else:
        reason = err
    return OSError(
        f"No local file or folder {repo_id!r}, and it could not be loaded from the Hugging Face hub ({reason}). "
        "DINOv3 weights are gated: open https://huggingface.co/" + repo_id + " (or another facebook/dinov3-* model), "
        "accept the licence, then log in with `hf auth login` or set HF_TOKEN. Offline (HF_HUB_OFFLINE=1) only "
        "models already in the local cache load. A local path works too: a transformers folder (config.json + "
        "model.safetensors) or one of Meta's .pth files such as dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth, "
        f"downloadable from Meta's page {META_DOWNLOAD_URL}. To try the mechanics without weights: "
        "--model random:vits16 (random weights; the masks are meaningless)."
    )


def _hub_offline() -> bool:
    """Whether Hugging Face's offline mode is on (``HF_HUB_OFFLINE``)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001
        return False


def _hub_endpoint() -> str:
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except Exception:  # noqa: BLE001
        return "https://huggingface.co"


def hub_reachable(endpoint: str | None = None, *, timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds (no request is sent)."""
    url = urlparse(endpoint or _hub_endpoint())
    host = url.hostname
    if not host:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_from_hub(repo_id: str) -> DINOv3ViTModel:
    """A hub model: from the local cache first; online only when the hub answers (no retries when it does not)."""
    try:
        return DINOv3ViTModel.from_pretrained(repo_id, dtype=torch.float32, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - not in the local cache
        local_error = e
    if _hub_offline():
        raise _hub_error(repo_id, local_error) from None
    endpoint = _hub_endpoint()
    if not hub_reachable(endpoint):
        raise _hub_error(repo_id, f"the hub {endpoint} cannot be reached from this machine") from None
    try:
        return DINOv3ViTModel.from_pretrained(repo_id, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - network, auth, missing repo
        raise _hub_error(repo_id, e) from None
