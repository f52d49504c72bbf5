"""Loading a backbone: every checkpoint format gives the same model; dtype, device and bad input.

All models are tiny and random, written to a temporary folder by the tests and read back
through ``load_backbone``: the same code path a user's checkpoint takes.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from helpers.backbones import max_diff
from transformers import DINOv3ViTModel

from insid3lab.backbone import (
    CheckpointFormatError,
    DinoV3Backbone,
    config_for_arch,
    default_rope_periods,
    load_backbone,
    random_backbone,
    resolve_device,
    resolve_dtype,
    save_meta_checkpoint,
    transformers_to_meta,
)

# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["transformers", "meta_pth", "meta_safetensors"])
def test_every_format_gives_the_same_features(tiny_saved, images, fmt):
    bb = load_backbone(tiny_saved.paths()[fmt], device="cpu")
    ref = tiny_saved.backbone
    assert isinstance(bb, DinoV3Backbone)
    assert (bb.embed_dim, bb.n_blocks, bb.patch_size, bb.num_register_tokens) == (64, 4, 16, 4)
    assert torch.equal(bb.rope_periods, ref.rope_periods)
    got = bb.get_intermediate_layers(images, n=4, return_class_token=True, return_extra_tokens=True)
    want = ref.get_intermediate_layers(images, n=4, return_class_token=True, return_extra_tokens=True)
    assert max_diff(got, want) <= 1e-6
    raw = bb.get_intermediate_layers(images, n=[0, 3], norm=False)
    assert max_diff(raw, ref.get_intermediate_layers(images, n=[0, 3], norm=False)) <= 1e-6
    for k, v in ref.model.state_dict().items():
        assert torch.equal(bb.model.state_dict()[k], v), k


def test_formats_agree_with_each_other(tiny_saved, images):
    feats = {
        name: load_backbone(p).get_intermediate_layers(images, n=2, reshape=True)
        for name, p in tiny_saved.paths().items()
    }
    assert max_diff(feats["transformers"], feats["meta_pth"]) <= 1e-6
    assert max_diff(feats["meta_pth"], feats["meta_safetensors"]) <= 1e-6


def test_single_transformers_safetensors_file_loads_with_inferred_config(tiny_saved, images):
    bb = load_backbone(tiny_saved.hf_dir / "model.safetensors")
    ref = tiny_saved.backbone
    cfg, rcfg = bb.config, ref.config
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_register_tokens"):
        assert getattr(cfg, key) == getattr(rcfg, key), key
    # No periods stored in a bare state dict: Meta's bf16 defaults, which the original also uses.
    assert torch.equal(bb.rope_periods, default_rope_periods(64))
    assert max_diff(bb.get_intermediate_layers(images, 4), ref.get_intermediate_layers(images, 4)) <= 1e-6


def test_wrapped_and_prefixed_meta_state_dicts_load(tiny_backbone, tmp_path, images):
    sd = transformers_to_meta(tiny_backbone)
    torch.save(
        {"teacher": {f"backbone.{k}": v for k, v in sd.items()}, "iteration": torch.tensor(3)}, tmp_path / "w.pth"
    )
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "m.pth")
    want = tiny_backbone.get_intermediate_layers(images, 1)
    for name in ("w.pth", "m.pth"):
        assert max_diff(load_backbone(tmp_path / name).get_intermediate_layers(images, 1), want) <= 1e-6


# ---------------------------------------------------------------------- dtype and device


@pytest.mark.parametrize(
    "dtype, expected",
    [(torch.bfloat16, torch.bfloat16), ("float16", torch.float16), ("bf16", torch.bfloat16), (None, torch.float32)],
)
def test_half_precision_loads_and_keeps_rope_in_float32(tiny_saved, images, dtype, expected):
    bb = load_backbone(tiny_saved.meta_pth, dtype=dtype)
    assert bb.dtype == expected
    assert all(p.dtype == expected for p in bb.parameters())
    inv = bb.model.rope_embeddings.inv_freq
    assert inv.dtype == torch.float32 and torch.equal(inv, 1.0 / tiny_saved.backbone.rope_periods)
    (got,) = bb.get_intermediate_layers(images.to(expected))
    assert got.dtype == expected
    (ref,) = tiny_saved.backbone.get_intermediate_layers(images)
    rel = float((got.float() - ref).norm() / ref.norm())
    assert rel < 0.05


def test_casting_a_backbone_keeps_rope_in_float32(images):
    bb = random_backbone("tiny", seed=1)
    fp = bb.fingerprint()
    bb.to(torch.bfloat16)
    assert bb.dtype == torch.bfloat16
    inv = bb.model.rope_embeddings.inv_freq
    assert inv.dtype == torch.float32 and torch.equal(inv, 1.0 / bb.rope_periods)
    assert bb.fingerprint() != fp
    fp_bf16 = bb.fingerprint()
    bb.float()
    assert bb.model.rope_embeddings.inv_freq.dtype == torch.float32
    assert bb.fingerprint() not in (fp, fp_bf16)  # float32 again, with bfloat16-rounded values
    assert bb.fingerprint() == random_backbone("tiny", seed=1).to(torch.bfloat16).float().fingerprint()


def test_auto_device_resolves_to_the_best_available():
    if torch.cuda.is_available():
        expected = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype(None) is torch.float32


def test_auto_device_on_this_cpu_machine(tiny_saved):
    if torch.cuda.is_available() or (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        pytest.skip("an accelerator is present")
    assert load_backbone(tiny_saved.meta_pth, device="auto").device == torch.device("cpu")


# ----------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    missing = tmp_path / "nope" / "dinov3_vits16.pth"
    with pytest.raises(FileNotFoundError) as e:
        load_backbone(missing)
    assert str(missing) in str(e.value) and "no such file or folder" in str(e.value)


def test_folder_without_config_json(tiny_backbone, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_backbone(tmp_path / "empty")
    assert "config.json" in str(e.value) and str(tmp_path / "empty") in str(e.value)
    save_meta_checkpoint(tiny_backbone, tmp_path / "empty" / "weights.pth")
    with pytest.raises(FileNotFoundError, match="weights.pth: pass that file's path instead"):
        load_backbone(tmp_path / "empty")


def test_folder_with_another_model_type(tiny_saved, tmp_path):
    folder = tmp_path / "dinov2"
    folder.mkdir()
    cfg = json.loads((tiny_saved.hf_dir / "config.json").read_text())
    cfg["model_type"] = "dinov2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(folder)
    msg = str(e.value)
    assert str(folder / "config.json") in msg and "'dinov2'" in msg and "dinov3_vit" in msg
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        load_backbone(folder)


def _dinov2_state_dict(C=32):
    sd = {
        "cls_token": torch.zeros(1, 1, C),
        "pos_embed": torch.zeros(1, 17, C),
        "mask_token": torch.zeros(1, C),
        "patch_embed.proj.weight": torch.zeros(C, 3, 14, 14),
        "patch_embed.proj.bias": torch.zeros(C),
        "norm.weight": torch.ones(C),
        "norm.bias": torch.zeros(C),
    }
    for i in range(2):
        sd.update(
            {
                f"blocks.{i}.norm1.weight": torch.ones(C),
                f"blocks.{i}.attn.qkv.weight": torch.zeros(3 * C, C),
                f"blocks.{i}.attn.qkv.bias": torch.zeros(3 * C),
                f"blocks.{i}.mlp.fc1.weight": torch.zeros(4 * C, C),
            }
        )
    return sd


def _convnext_state_dict():
    return {
        "downsample_layers.0.0.weight": torch.zeros(8, 3, 4, 4),
        "downsample_layers.0.1.weight": torch.ones(8),
        "stages.0.0.dwconv.weight": torch.zeros(8, 1, 7, 7),
        "stages.0.0.gamma": torch.ones(8),
        "norm.weight": torch.ones(8),
    }


_NOT_DINOV3 = {
    "dinov2": (_dinov2_state_dict(), ["DINOv2", "pos_embed", "rope_embed.periods", "DINOv3 ViT"]),
    "convnext": (_convnext_state_dict(), ["ConvNeXt", "downsample_layers", "DINOv3 ViT"]),
    "random-dict": (
        {"foo.weight": torch.zeros(3), "bar": torch.zeros(2, 2)},
        ["not a DINOv3 ViT state dict", "foo.weight"],
    ),
    "no-tensors": ({"epoch": 3, "note": "hello"}, ["holds no tensors"]),
    "a-list": ([torch.zeros(2)], ["expected a state dict", "list"]),
}
# safetensors files hold tensor dictionaries only
_NOT_DINOV3_CASES = [(name, ".pth") for name in _NOT_DINOV3] + [
    (name, ".safetensors") for name in ("dinov2", "convnext", "random-dict")
]


@pytest.mark.parametrize("name, suffix", _NOT_DINOV3_CASES, ids=[f"{n}{s}" for n, s in _NOT_DINOV3_CASES])
def test_checkpoints_that_are_not_dinov3_vits(tmp_path, name, suffix):
    content, messages = _NOT_DINOV3[name]
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(content, str(path))
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(path)
    msg = str(e.value)
    assert str(path) in msg
    for m in messages:
        assert m in msg, (m, msg)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_a_file_that_is_not_a_checkpoint(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(os.urandom(4096))
    t0 = time.monotonic()
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(path)
    assert time.monotonic() - t0 < 5
    assert str(path) in str(e.value) and "cannot be read as a checkpoint" in str(e.value)


def test_an_incomplete_meta_checkpoint(tiny_backbone, tmp_path):
    sd = transformers_to_meta(tiny_backbone)
    del sd["blocks.2.attn.proj.weight"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(tmp_path / "cut.pth")
    assert "cut.pth" in str(e.value) and "blocks.2.attn.proj.weight" in str(e.value)


@pytest.mark.parametrize(
    "x, exc, message",
    [
        (torch.zeros(1, 1, 64, 64), ValueError, "(B, 3, H, W)"),
        (torch.zeros(1, 4, 64, 64), ValueError, "got (1, 4, 64, 64)"),
        (torch.zeros(3, 64, 64), ValueError, "got (3, 64, 64)"),
        (torch.zeros(1, 1, 3, 64, 64), ValueError, "(B, 3, H, W)"),
        (torch.zeros(1, 3, 8, 64), ValueError, "at least the patch size 16"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_tensors(tiny_backbone, x, exc, message):
    with pytest.raises(exc) as e:
        tiny_backbone.get_intermediate_layers(x)
    assert message in str(e.value)
    with pytest.raises(exc):
        tiny_backbone.forward_features(x)


def test_unreachable_hub_id_explains_gating_and_returns_fast():
    from huggingface_hub import constants

    assert os.environ.get("HF_HUB_OFFLINE") == "1" and constants.HF_HUB_OFFLINE
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        load_backbone(repo)
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert repo in msg and "No local file or folder" in msg
    assert "gated" in msg
    assert f"https://huggingface.co/{repo}" in msg and "accept the licence" in msg and "HF_TOKEN" in msg
    assert "A local path works too" in msg and ".pth" in msg


@pytest.mark.parametrize("value", ["foo", "FP32", 3, None])
def test_unknown_rope_periods_value(tiny_saved, value):
    with pytest.raises(ValueError) as e:
        load_backbone(tiny_saved.meta_pth, rope_periods=value)
    msg = str(e.value)
    assert f"rope_periods={value!r}" in msg and "'auto'" in msg and "'fp32'" in msg


@pytest.mark.parametrize("source_attr", ["meta_pth", "hf_dir"])
def test_unknown_arch(tiny_saved, source_attr):
    with pytest.raises(ValueError) as e:
        load_backbone(getattr(tiny_saved, source_attr), arch="vitz99")
    assert "arch='vitz99'" in str(e.value) and "vitl16" in str(e.value)
    with pytest.raises(ValueError, match="allowed"):
        random_backbone("vitz99")


@pytest.mark.parametrize("dtype", ["int8", torch.int64, torch.float64, "double"])
def test_bad_dtype(tiny_saved, dtype):
    with pytest.raises(ValueError) as e:
        load_backbone(tiny_saved.meta_pth, dtype=dtype)
    assert "dtype=" in str(e.value) and "bfloat16" in str(e.value)


@pytest.mark.parametrize("device", ["gpu0", "tpu", "cuda:x"])
def test_bad_device(tiny_saved, device):
    with pytest.raises(ValueError) as e:
        load_backbone(tiny_saved.meta_pth, device=device)
    assert f"device={device!r}" in str(e.value) and "'cpu'" in str(e.value)


def test_cuda_requested_without_cuda(tiny_saved):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_backbone(tiny_saved.meta_pth, device="cuda")


def test_source_of_the_wrong_type():
    with pytest.raises(TypeError, match="source must be"):
        load_backbone(123)


def test_loading_a_backbone_or_model_object(tiny_backbone, images):
    same = load_backbone(tiny_backbone)
    assert same is tiny_backbone
    model = DINOv3ViTModel(config_for_arch("tiny")).eval()
    bb = load_backbone(model)
    assert bb.arch_name is None  # not a released architecture
    assert load_backbone(model, arch="tiny").arch_name == "tiny"
    assert torch.equal(bb.rope_periods, default_rope_periods(64))
