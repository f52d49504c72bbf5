"""Loading errors are one line that says what the file is and what to do; nothing reaches the network."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from insid3lab.backbone import CheckpointFormatError, hub, load_backbone, loading, transformers_to_meta


def _one_line_without_torch_hints(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg
    assert "weights_only" not in msg and "arbitrary code execution" not in msg
    # The traceback does not relay torch's text either.
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return msg


def test_a_png_renamed_pth_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    Image.new("RGB", (8, 8)).save(path, format="PNG")
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(path)
    msg = _one_line_without_torch_hints(e.value)
    assert str(path) in msg and "is not a DINOv3 checkpoint" in msg


@pytest.mark.parametrize("content", [b"", b"\x80\x02garbage", b"PK\x03\x04garbage"])
def test_damaged_torch_files_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(path)
    msg = _one_line_without_torch_hints(e.value)
    assert str(path) in msg and "not a DINOv3 checkpoint" in msg


@pytest.fixture
def pickled_checkpoint(tiny_backbone, tmp_path):
    """A Meta checkpoint that also pickles a numpy array (as training scripts often store)."""
    path = tmp_path / "trained.pth"
    torch.save({"model": transformers_to_meta(tiny_backbone), "args": np.arange(3)}, path)
    return path


def test_a_checkpoint_needing_trust_says_how_to_opt_in(pickled_checkpoint, monkeypatch):
    monkeypatch.delenv(loading.TRUST_PICKLE_ENV, raising=False)
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(pickled_checkpoint)
    msg = _one_line_without_torch_hints(e.value)
    assert str(pickled_checkpoint) in msg and "run code" in msg
    assert "trust_pickle=True" in msg and "INSID3LAB_TRUST_PICKLE=1" in msg


def test_trusting_a_pickled_checkpoint_loads_it(pickled_checkpoint, tiny_backbone, monkeypatch):
    monkeypatch.delenv(loading.TRUST_PICKLE_ENV, raising=False)
    bb = load_backbone(pickled_checkpoint, trust_pickle=True, device="cpu")
    assert bb.fingerprint() == tiny_backbone.fingerprint()
    monkeypatch.setenv(loading.TRUST_PICKLE_ENV, "1")
    assert load_backbone(pickled_checkpoint, device="cpu").fingerprint() == tiny_backbone.fingerprint()
    with pytest.raises(CheckpointFormatError, match="trust_pickle=True"):
        load_backbone(pickled_checkpoint, trust_pickle=False)


def test_an_unreachable_hub_fails_at_once_with_both_ways_forward(monkeypatch):
    from huggingface_hub import constants
    from transformers import DINOv3ViTModel

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    probes, loads = [], []
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint=None, **k: probes.append(endpoint) or False)
    real = DINOv3ViTModel.from_pretrained

    def from_pretrained(name, *a, **k):
        loads.append(k.get("local_files_only"))
        assert k.get("local_files_only") is True, "the hub must not be contacted when it is unreachable"
        return real(name, *a, **k)

    monkeypatch.setattr(DINOv3ViTModel, "from_pretrained", from_pretrained)
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    with pytest.raises(OSError) as e:
        load_backbone(repo)
    # one local-cache lookup and one refused probe: no rounds of hub retries
    assert loads == [True] and len(probes) == 1
    msg = str(e.value)
    assert "\n" not in msg and repo in msg and "cannot be reached" in msg
    assert "https://ai.meta.com/dinov3/" in msg and "--model random:vits16" in msg
    assert f"https://huggingface.co/{repo}" in msg and "accept the licence" in msg and "HF_TOKEN" in msg


def test_offline_mode_skips_the_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: pytest.fail("probed the hub while offline"))
    with pytest.raises(OSError) as e:
        load_backbone("facebook/dinov3-vitb16-pretrain-lvd1689m")
    assert "https://ai.meta.com/dinov3/" in str(e.value) and "random:vits16" in str(e.value)


def test_the_hub_probe_answers_for_a_local_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert hub.hub_reachable(f"http://127.0.0.1:{port}", timeout=2.0)
    assert not hub.hub_reachable(f"http://127.0.0.1:{port}", timeout=2.0)  # closed now: refused
    assert not hub.hub_reachable("not a url", timeout=2.0)


@pytest.mark.parametrize("value", [["a", "b"], "fast", [1.0, None], [], [1.0, -2.0], {"x": 1}])
def test_bad_rope_periods_in_config_json_name_the_file(tiny_saved, tmp_path, value):
    folder = tmp_path / "hf"
    shutil.copytree(tiny_saved.hf_dir, folder)
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["insid3lab_rope_periods"] = value
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(folder)
    msg = str(e.value)
    assert str(cfg_file) in msg and "insid3lab_rope_periods must be a list of positive numbers" in msg


def test_good_rope_periods_in_config_json_still_load(tiny_saved):
    bb = load_backbone(tiny_saved.hf_dir, device="cpu")
    assert torch.equal(bb.rope_periods, tiny_saved.backbone.rope_periods)
