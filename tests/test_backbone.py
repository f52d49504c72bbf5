"""The backbone layer: every checkpoint format gives the same model, with Meta's feature contract.

All models are tiny and random, written to a temporary folder by the tests and read back
through ``load_backbone``: the same code path a user's checkpoint takes.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from transformers import DINOv3ViTModel

from insid3lab.backbone import (
    CheckpointFormatError,
    DinoV3Backbone,
    config_for_arch,
    default_rope_periods,
    get_arch,
    load_backbone,
    meta_to_transformers,
    random_backbone,
    resolve_device,
    resolve_dtype,
    save_meta_checkpoint,
    save_pretrained,
    transformers_to_meta,
)
from insid3lab.backbone.archs import arch_from_filename, swiglu_hidden_size
from insid3lab.backbone.convert import infer_meta_arch, meta_to_hf_state_dict
from insid3lab.backbone.loading import _config_from_hf_state_dict

R = 4  # register tokens of every DINOv3 ViT
P = 1 + R  # prefix tokens: CLS + registers


def _hf_outputs(bb: DinoV3Backbone, x: torch.Tensor):
    """transformers' own forward of the backbone's DINOv3ViTModel, with every hidden state."""
    with torch.no_grad():
        return bb.model(x, output_hidden_states=True)


def _max_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return float((a - b).abs().max())
    return max(_max_diff(u, v) for u, v in zip(a, b, strict=True))


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
    assert _max_diff(got, want) <= 1e-6
    raw = bb.get_intermediate_layers(images, n=[0, 3], norm=False)
    assert _max_diff(raw, ref.get_intermediate_layers(images, n=[0, 3], norm=False)) <= 1e-6
    for k, v in ref.model.state_dict().items():
        assert torch.equal(bb.model.state_dict()[k], v), k


def test_formats_agree_with_each_other(tiny_saved, images):
    feats = {
        name: load_backbone(p).get_intermediate_layers(images, n=2, reshape=True)
        for name, p in tiny_saved.paths().items()
    }
    assert _max_diff(feats["transformers"], feats["meta_pth"]) <= 1e-6
    assert _max_diff(feats["meta_pth"], feats["meta_safetensors"]) <= 1e-6


def test_single_transformers_safetensors_file_loads_with_inferred_config(tiny_saved, images):
    bb = load_backbone(tiny_saved.hf_dir / "model.safetensors")
    ref = tiny_saved.backbone
    cfg, rcfg = bb.config, ref.config
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_register_tokens"):
        assert getattr(cfg, key) == getattr(rcfg, key), key
    # No periods stored in a bare state dict: Meta's bf16 defaults, which the original also uses.
    assert torch.equal(bb.rope_periods, default_rope_periods(64))
    assert _max_diff(bb.get_intermediate_layers(images, 4), ref.get_intermediate_layers(images, 4)) <= 1e-6


def test_wrapped_and_prefixed_meta_state_dicts_load(tiny_backbone, tmp_path, images):
    sd = transformers_to_meta(tiny_backbone)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in sd.items()}, "iteration": torch.tensor(3)}, tmp_path / "w.pth")
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "m.pth")
    want = tiny_backbone.get_intermediate_layers(images, 1)
    for name in ("w.pth", "m.pth"):
        assert _max_diff(load_backbone(tmp_path / name).get_intermediate_layers(images, 1), want) <= 1e-6


# --------------------------------------------------------------- Meta's feature contract


def test_n1_norm_equals_transformers_last_hidden_state(tiny_backbone, images):
    out = _hf_outputs(tiny_backbone, images)
    (patches,) = tiny_backbone.get_intermediate_layers(images, n=1)
    assert patches.shape == (2, 4 * 6, 64)
    assert _max_diff(patches, out.last_hidden_state[:, P:]) <= 1e-6


def test_n4_norm_applies_the_final_layernorm_to_every_block(tiny_backbone, images):
    out = _hf_outputs(tiny_backbone, images)
    assert len(out.hidden_states) == 1 + 4  # embeddings + one per block
    got = tiny_backbone.get_intermediate_layers(images, n=4, norm=True)
    assert len(got) == 4
    with torch.no_grad():
        want = [tiny_backbone.model.norm(h)[:, P:] for h in out.hidden_states[-4:]]
    assert _max_diff(got, want) <= 1e-6
    # the last block is transformers' last_hidden_state
    assert _max_diff(got[-1], out.last_hidden_state[:, P:]) <= 1e-6


def test_norm_false_returns_the_raw_residual_stream(tiny_backbone, images):
    out = _hf_outputs(tiny_backbone, images)
    got = tiny_backbone.get_intermediate_layers(images, n=4, norm=False, return_class_token=True, return_extra_tokens=True)
    for (patch, cls, reg), h in zip(got, out.hidden_states[-4:], strict=True):
        assert _max_diff(patch, h[:, P:]) <= 1e-6
        assert _max_diff(cls, h[:, 0]) <= 1e-6
        assert _max_diff(reg, h[:, 1:P]) <= 1e-6


def test_index_lists_take_those_blocks_in_block_order(tiny_backbone, images):
    out = _hf_outputs(tiny_backbone, images)
    with torch.no_grad():
        normed = [tiny_backbone.model.norm(h)[:, P:] for h in out.hidden_states[1:]]  # block i -> normed[i]
    bb = tiny_backbone
    assert _max_diff(bb.get_intermediate_layers(images, n=[0, 2]), [normed[0], normed[2]]) <= 1e-6
    # negative indices count from the end; results come in ascending block order, as in Meta's code
    assert _max_diff(bb.get_intermediate_layers(images, n=[-1, -3]), [normed[1], normed[3]]) <= 1e-6
    assert _max_diff(bb.get_intermediate_layers(images, n=[3, 0]), [normed[0], normed[3]]) <= 1e-6
    assert _max_diff(bb.get_intermediate_layers(images, n=range(1, 3)), [normed[1], normed[2]]) <= 1e-6
    assert _max_diff(bb.get_intermediate_layers(images, n=2), [normed[2], normed[3]]) <= 1e-6


@pytest.mark.parametrize(
    "n, message",
    [(0, "between 1 and the number of blocks (4)"), (5, "between 1 and the number of blocks (4)"),
     ([4], "allowed -4..3"), ([-5], "allowed -4..3"), ([], "empty"), ([1, -3], "twice")],
)
def test_bad_block_selection_is_rejected(tiny_backbone, images, n, message):
    with pytest.raises(ValueError, match="n") as e:
        tiny_backbone.get_intermediate_layers(images, n=n)
    assert message in str(e.value)


def test_outputs_are_ordinary_tensors_without_grad(tiny_backbone, images):
    (t,) = tiny_backbone.get_intermediate_layers(images, n=np.int64(1))
    assert not t.requires_grad and not t.is_inference()
    before = t.clone()
    t.mul_(2)  # a notebook may edit features in place
    assert torch.equal(t, 2 * before)


def test_class_and_register_tokens_are_the_right_rows(tiny_backbone, images):
    out = _hf_outputs(tiny_backbone, images)
    lhs = out.last_hidden_state
    bb = tiny_backbone

    (only,) = bb.get_intermediate_layers(images)
    assert isinstance(only, torch.Tensor)

    ((patch, cls),) = bb.get_intermediate_layers(images, return_class_token=True)
    assert cls.shape == (2, 64)
    assert _max_diff(cls, lhs[:, 0]) <= 1e-6
    assert _max_diff(patch, lhs[:, P:]) <= 1e-6

    ((patch, reg),) = bb.get_intermediate_layers(images, return_extra_tokens=True)
    assert reg.shape == (2, R, 64)
    assert _max_diff(reg, lhs[:, 1:5]) <= 1e-6

    both = bb.get_intermediate_layers(images, n=2, return_class_token=True, return_extra_tokens=True)
    assert isinstance(both, tuple) and len(both) == 2
    assert all(isinstance(t, tuple) and len(t) == 3 for t in both)
    patch, cls, reg = both[-1]
    assert _max_diff((patch, cls, reg), (lhs[:, P:], lhs[:, 0], lhs[:, 1:5])) <= 1e-6


def test_reshape_gives_channel_first_maps_of_the_same_tokens(tiny_backbone, images):
    (tokens,) = tiny_backbone.get_intermediate_layers(images)
    ((fmap, cls),) = tiny_backbone.get_intermediate_layers(images, reshape=True, return_class_token=True)
    assert fmap.shape == (2, 64, 4, 6)
    assert fmap.is_contiguous()
    # token k sits at row k // w, column k % w
    for k in (0, 5, 6, 23):
        assert torch.equal(fmap[:, :, k // 6, k % 6], tokens[:, k])
    assert cls.shape == (2, 64)


def test_forward_features_matches_meta_keys_and_transformers_values(tiny_backbone, images):
    out = _hf_outputs(tiny_backbone, images)
    ff = tiny_backbone.forward_features(images)
    assert set(ff) == {"x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm", "masks"}
    assert ff["masks"] is None
    assert ff["x_norm_clstoken"].shape == (2, 64)
    assert ff["x_storage_tokens"].shape == (2, R, 64)
    assert ff["x_norm_patchtokens"].shape == (2, 24, 64)
    assert ff["x_prenorm"].shape == (2, P + 24, 64)
    lhs = out.last_hidden_state
    assert _max_diff(ff["x_norm_clstoken"], lhs[:, 0]) <= 1e-6
    assert _max_diff(ff["x_storage_tokens"], lhs[:, 1:P]) <= 1e-6
    assert _max_diff(ff["x_norm_patchtokens"], lhs[:, P:]) <= 1e-6
    assert _max_diff(ff["x_prenorm"], out.hidden_states[-1]) <= 1e-6
    assert _max_diff(tiny_backbone(images)["x_norm_patchtokens"], ff["x_norm_patchtokens"]) == 0


def test_naive_hidden_states_adapter_is_off_by_a_large_factor(images):
    """Taking transformers' ``hidden_states[-n:]`` for n > 1 skips the final LayerNorm.

    With a residual stream as large as a trained DINOv3's, those pre-norm tokens are
    tens of times larger than Meta's normalised ones, which every downstream cosine
    similarity, PCA and clustering threshold would silently absorb.
    """
    ratios = {}
    for scale in (1.0, 10.0):
        bb = random_backbone("tiny", seed=0, num_hidden_layers=4, residual_scale=scale)
        naive = [h[:, P:] for h in _hf_outputs(bb, images).hidden_states[-4:]]
        meta = bb.get_intermediate_layers(images, n=4)
        ratios[scale] = [float(a.norm(dim=-1).mean() / b.norm(dim=-1).mean()) for a, b in zip(naive, meta)]
        # normalised tokens: about sqrt(C) * |LayerNorm weight| ~ 8 for C = 64, whatever the scale
        for b in meta:
            assert 6.0 < float(b.norm(dim=-1).mean()) < 10.0
    assert all(r > 40 for r in ratios[10.0]), ratios
    assert all(r > 4 for r in ratios[1.0]), ratios
    # the gap grows with the residual stream, the normalised features do not
    for r1, r10 in zip(ratios[1.0], ratios[10.0]):
        assert 9.0 < r10 / r1 < 11.0


# ------------------------------------------------------------------------- patch grid


@pytest.mark.parametrize("hw, grid", [((64, 64), (4, 4)), ((64, 96), (4, 6)), ((112, 48), (7, 3))])
def test_patch_grid_is_h_over_p_by_w_over_p(tiny_backbone, hw, grid):
    x = torch.randn(1, 3, *hw)
    (fmap,) = tiny_backbone.get_intermediate_layers(x, reshape=True)
    assert fmap.shape == (1, 64, *grid)
    (tokens,) = tiny_backbone.get_intermediate_layers(x)
    assert tokens.shape == (1, grid[0] * grid[1], 64)


def test_sides_not_multiple_of_the_patch_are_cropped_like_meta(tiny_backbone, images):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 64 + 15, 96 + 9, generator=g)
    (fmap,) = tiny_backbone.get_intermediate_layers(x, n=1, reshape=True)
    assert fmap.shape == (2, 64, 64 // 16, 96 // 16)  # floor(79/16), floor(105/16)
    (cropped,) = tiny_backbone.get_intermediate_layers(x[:, :, :64, :96], n=1, reshape=True)
    assert _max_diff(fmap, cropped) <= 1e-6
    ff, ffc = tiny_backbone.forward_features(x), tiny_backbone.forward_features(x[:, :, :64, :96])
    assert _max_diff(ff["x_norm_clstoken"], ffc["x_norm_clstoken"]) <= 1e-6


# ------------------------------------------------------------------------------ RoPE


def _rope_sensitive_backbone() -> DinoV3Backbone:
    """A tiny backbone whose attention depends strongly on position.

    Random weights of std 0.02 give near-uniform attention whose small output barely
    reaches the residual stream, so RoPE hardly matters; larger query/key weights make
    the attention logits depend on position, larger value/output weights and a unit
    layer scale carry that into the features.
    """
    bb = random_backbone("tiny", seed=11, num_hidden_layers=2)
    with torch.no_grad():
        for layer in bb.model.model.layer:
            layer.attention.q_proj.weight.mul_(20)
            layer.attention.k_proj.weight.mul_(20)
            layer.attention.v_proj.weight.mul_(10)
            layer.attention.o_proj.weight.mul_(10)
            layer.layer_scale1.lambda1.fill_(1.0)
    return bb


def test_meta_checkpoint_periods_are_honoured(tmp_path, images):
    base = _rope_sensitive_backbone()
    save_pretrained(base, tmp_path / "hf")
    save_meta_checkpoint(base, tmp_path / "default.pth")
    sd = transformers_to_meta(base)
    periods = torch.linspace(0.7, 60.0, 16) ** 1.1
    sd["rope_embed.periods"] = periods.clone()
    torch.save(sd, tmp_path / "custom_periods.pth")
    bb = load_backbone(tmp_path / "custom_periods.pth")
    assert torch.equal(bb.rope_periods, periods)

    hf = DINOv3ViTModel.from_pretrained(tmp_path / "hf").eval()
    hf.rope_embeddings.inv_freq = 1.0 / periods
    with torch.no_grad():
        want = hf(images).last_hidden_state[:, P:]
    (got,) = bb.get_intermediate_layers(images)
    assert _max_diff(got, want) <= 1e-5
    (default,) = load_backbone(tmp_path / "default.pth").get_intermediate_layers(images)
    assert _max_diff(got, default) > 0.5


def test_auto_periods_on_a_folder_without_stored_periods_are_metas_bf16_defaults(tiny_backbone, tmp_path):
    tiny_backbone.model.save_pretrained(tmp_path / "plain")  # transformers' own writer: no periods in config.json
    assert "insid3lab_rope_periods" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    bb = load_backbone(tmp_path / "plain")
    # Meta's RopePositionEmbedding initialisation in bfloat16: base ** (2 i / (D_head / 2)), D_head = 64
    meta_bf16 = (100.0 ** (2 * torch.arange(16, dtype=torch.bfloat16) / 32)).float()
    assert torch.equal(bb.rope_periods, meta_bf16)
    assert bb.model.rope_embeddings.inv_freq.dtype == torch.float32
    assert torch.equal(bb.model.rope_embeddings.inv_freq, 1.0 / meta_bf16)
    # rounding to bfloat16 really changes them
    fp32 = 100.0 ** (torch.arange(16, dtype=torch.float32) / 16)
    assert not torch.equal(meta_bf16, fp32)
    with pytest.raises(ValueError, match="rope_periods='checkpoint'"):
        load_backbone(tmp_path / "plain", rope_periods="checkpoint")
    assert torch.equal(load_backbone(tmp_path / "plain", rope_periods="bf16").rope_periods, meta_bf16)


def test_fp32_periods_reproduce_a_plain_transformers_model_bitwise(tiny_saved, images):
    plain = DINOv3ViTModel.from_pretrained(tiny_saved.hf_dir).eval()
    bb = load_backbone(tiny_saved.hf_dir, rope_periods="fp32")
    assert torch.equal(bb.model.rope_embeddings.inv_freq, plain.rope_embeddings.inv_freq)
    with torch.no_grad():
        out = plain(images, output_hidden_states=True)
    (patch, cls, reg), = bb.get_intermediate_layers(images, return_class_token=True, return_extra_tokens=True)
    assert torch.equal(patch, out.last_hidden_state[:, P:])
    assert torch.equal(cls, out.last_hidden_state[:, 0])
    assert torch.equal(reg, out.last_hidden_state[:, 1:P])
    raw = bb.get_intermediate_layers(images, n=4, norm=False)
    assert all(torch.equal(a, h[:, P:]) for a, h in zip(raw, out.hidden_states[1:], strict=True))
    # the same through an in-memory DINOv3ViTModel
    bb2 = load_backbone(plain, rope_periods="fp32")
    assert torch.equal(bb2.get_intermediate_layers(images)[0], out.last_hidden_state[:, P:])


def test_tensor_periods_are_honoured_and_saved(tiny_saved, tmp_path, images):
    periods = torch.logspace(0, 2, 16)
    bb = load_backbone(tiny_saved.meta_pth, rope_periods=periods)
    assert torch.equal(bb.rope_periods, periods.float())
    assert torch.equal(bb.model.rope_embeddings.inv_freq, 1.0 / periods.float())
    bb_list = load_backbone(tiny_saved.hf_dir, rope_periods=periods.tolist())
    assert torch.equal(bb_list.rope_periods, periods.float())

    save_pretrained(bb, tmp_path / "saved")
    stored = json.loads((tmp_path / "saved" / "config.json").read_text())["insid3lab_rope_periods"]
    assert torch.equal(torch.tensor(stored, dtype=torch.float32), periods.float())
    back = load_backbone(tmp_path / "saved")
    assert torch.equal(back.rope_periods, periods.float())
    assert _max_diff(back.get_intermediate_layers(images, 2), bb.get_intermediate_layers(images, 2)) == 0
    # and through a Meta file
    save_meta_checkpoint(bb, tmp_path / "saved.pth")
    assert torch.equal(load_backbone(tmp_path / "saved.pth").rope_periods, periods.float())


@pytest.mark.parametrize(
    "bad, message",
    [(torch.ones(8), "shape (16,)"), (-torch.ones(16), "positive"), (torch.ones(2, 16), "shape (16,)")],
)
def test_bad_period_tensors_are_rejected(tiny_saved, bad, message):
    with pytest.raises(ValueError, match="rope_periods") as e:
        load_backbone(tiny_saved.meta_pth, rope_periods=bad)
    assert message in str(e.value)


# -------------------------------------------------------------------------- round trip


def _tiny_swiglu() -> DinoV3Backbone:
    # vits16plus-like: SwiGLU feed-forward, 2 blocks of width 128, 64-dim heads
    hidden = swiglu_hidden_size(128 * 6)  # int(768 * 2/3) = 512, already a multiple of 8
    assert hidden == 512
    return random_backbone("vits16plus", seed=3, num_hidden_layers=2, hidden_size=128,
                           intermediate_size=hidden, num_attention_heads=2)


def _tiny_odd_swiglu() -> DinoV3Backbone:
    # a SwiGLU width that Meta's ratio/alignment formula cannot produce from a round ratio
    return random_backbone("vits16plus", seed=4, num_hidden_layers=2, hidden_size=128,
                           intermediate_size=344, num_attention_heads=2)


@pytest.mark.parametrize("make", [lambda: random_backbone("tiny", seed=2, num_hidden_layers=2), _tiny_swiglu,
                                  _tiny_odd_swiglu], ids=["mlp", "swiglu", "swiglu-odd-width"])
def test_transformers_meta_transformers_round_trip_is_bitwise(make, tmp_path, images):
    bb = make()
    hf_sd = bb.model.state_dict()
    meta = transformers_to_meta(bb)
    gated = bb.config.use_gated_mlp
    C = bb.embed_dim
    # Meta's key names
    assert {"cls_token", "storage_tokens", "mask_token", "rope_embed.periods", "patch_embed.proj.weight",
            "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.qkv.bias_mask",
            "blocks.0.ls1.gamma", "blocks.1.ls2.gamma", "norm.weight"} <= set(meta)
    assert ("blocks.0.mlp.w1.weight" in meta) == gated and ("blocks.0.mlp.fc1.weight" in meta) != gated
    assert meta["blocks.0.attn.qkv.weight"].shape == (3 * C, C)
    assert meta["mask_token"].shape == (1, C)
    mask = meta["blocks.1.attn.qkv.bias_mask"]
    assert torch.equal(mask, torch.cat([torch.ones(C), torch.zeros(C), torch.ones(C)]))

    model, periods, extras, arch = meta_to_transformers(meta)
    assert torch.equal(periods, bb.rope_periods)
    assert extras == {}
    assert arch.intermediate_size == bb.config.intermediate_size
    back = model.state_dict()
    assert set(back) == set(hf_sd)
    for k, v in hf_sd.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k

    for suffix in (".pth", ".safetensors"):
        path = save_meta_checkpoint(bb, tmp_path / f"rt{suffix}")
        loaded = load_backbone(path)
        assert torch.equal(loaded.rope_periods, bb.rope_periods)
        assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in hf_sd.items())
        assert _max_diff(loaded.get_intermediate_layers(images, 2), bb.get_intermediate_layers(images, 2)) == 0
        # and on to a transformers folder and back
        save_pretrained(loaded, tmp_path / f"hf{suffix}")
        again = load_backbone(tmp_path / f"hf{suffix}")
        assert all(torch.equal(again.model.state_dict()[k], v) for k, v in hf_sd.items())
        assert torch.equal(again.rope_periods, bb.rope_periods)


def test_masked_key_bias_loads_as_no_key_bias(tiny_backbone, tmp_path, images):
    sd = transformers_to_meta(tiny_backbone)
    C = tiny_backbone.embed_dim
    g = torch.Generator().manual_seed(5)
    for i in range(tiny_backbone.n_blocks):
        bias = sd[f"blocks.{i}.attn.qkv.bias"].clone()
        bias[C : 2 * C] = torch.randn(C, generator=g)  # what Meta stores: a trained-then-masked key bias
        sd[f"blocks.{i}.attn.qkv.bias"] = bias
    torch.save(sd, tmp_path / "masked.pth")
    bb = load_backbone(tmp_path / "masked.pth")
    assert bb.config.key_bias is False
    assert bb.model.model.layer[0].attention.k_proj.bias is None
    want = tiny_backbone.get_intermediate_layers(images, 3)
    assert _max_diff(bb.get_intermediate_layers(images, 3), want) <= 1e-6

    # Without the mask the key bias is real: it is kept and changes the features.
    for i in range(tiny_backbone.n_blocks):
        sd[f"blocks.{i}.attn.qkv.bias_mask"] = torch.ones(3 * C)
    torch.save(sd, tmp_path / "unmasked.pth")
    bb2 = load_backbone(tmp_path / "unmasked.pth")
    assert bb2.config.key_bias is True
    assert torch.equal(bb2.model.model.layer[0].attention.k_proj.bias, sd["blocks.0.attn.qkv.bias"][C : 2 * C])
    # a key bias adds the same amount to every logit of a query: softmax ignores it up to rounding
    assert _max_diff(bb2.get_intermediate_layers(images, 3), want) <= 1e-4
    meta_again = transformers_to_meta(bb2)
    assert torch.equal(meta_again["blocks.0.attn.qkv.bias_mask"], torch.ones(3 * C))
    assert torch.equal(meta_again["blocks.0.attn.qkv.bias"], sd["blocks.0.attn.qkv.bias"])


# --------------------------------------------------------------- architecture inference

# Meta's builders (dinov3/hub/backbones.py): embed dim, depth, heads, ffn ratio, ffn layer, qkv bias,
# and the feed-forward hidden width their layers create (SwiGLU: int(C * ratio * 2/3) aligned up).
RELEASED = {
    "vits16": (384, 12, 6, 1536, "mlp", True),
    "vits16plus": (384, 12, 6, 1536, "swiglu", True),  # int(2304 * 2/3) = 1536
    "vitb16": (768, 12, 12, 3072, "mlp", True),
    "vitl16": (1024, 24, 16, 4096, "mlp", True),
    "vitl16plus": (1024, 24, 16, 4096, "swiglu", True),  # int(6144 * 2/3) = 4096
    "vith16plus": (1280, 32, 20, 5120, "swiglu", True),  # int(7680 * 2/3) = 5120
    "vit7b16": (4096, 40, 32, 8192, "swiglu64", False),  # int(12288 * 2/3) = 8192, aligned to 64
}
FILENAMES = {
    "vits16": "dinov3_vits16_pretrain_lvd1689m-08c60483.pth",
    "vits16plus": "dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth",
    "vitb16": "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth",
    "vitl16": "dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth",
    "vitl16plus": "dinov3_vitl16plus_pretrain_lvd1689m-46503df0.pth",
    "vith16plus": "dinov3_vith16plus_pretrain_lvd1689m-7c1da9a5.pth",
    "vit7b16": "dinov3_vit7b16_pretrain_lvd1689m-a955f4ea.pth",
}


def _shapes_only_meta_state_dict(C, depth, heads, hidden, ffn, qkv_bias, local_cls_norm=False):
    """A Meta-keyed state dict with the right shapes and (almost) no memory: big tensors have stride 0."""

    def t(*shape):
        return torch.zeros(1).expand(*shape)

    sd = {
        "cls_token": t(1, 1, C), "storage_tokens": t(1, 4, C), "mask_token": t(1, C),
        "patch_embed.proj.weight": t(C, 3, 16, 16), "patch_embed.proj.bias": t(C),
        "rope_embed.periods": default_rope_periods(C // heads), "norm.weight": t(C), "norm.bias": t(C),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update({b + "norm1.weight": t(C), b + "norm1.bias": t(C), b + "norm2.weight": t(C), b + "norm2.bias": t(C),
                   b + "attn.qkv.weight": t(3 * C, C), b + "attn.proj.weight": t(C, C), b + "attn.proj.bias": t(C),
                   b + "ls1.gamma": t(C), b + "ls2.gamma": t(C)})
        if qkv_bias:
            sd[b + "attn.qkv.bias"] = torch.zeros(3 * C)
            sd[b + "attn.qkv.bias_mask"] = torch.cat([torch.ones(C), torch.zeros(C), torch.ones(C)])
        if ffn == "mlp":
            sd.update({b + "mlp.fc1.weight": t(hidden, C), b + "mlp.fc1.bias": t(hidden),
                       b + "mlp.fc2.weight": t(C, hidden), b + "mlp.fc2.bias": t(C)})
        else:
            sd.update({b + "mlp.w1.weight": t(hidden, C), b + "mlp.w1.bias": t(hidden),
                       b + "mlp.w2.weight": t(hidden, C), b + "mlp.w2.bias": t(hidden),
                       b + "mlp.w3.weight": t(C, hidden), b + "mlp.w3.bias": t(C)})
    if local_cls_norm:
        sd["local_cls_norm.weight"], sd["local_cls_norm.bias"] = t(C), t(C)
    return sd


@pytest.mark.parametrize("name", list(RELEASED))
def test_arch_inference_matches_metas_builders(name):
    C, depth, heads, hidden, ffn, qkv_bias = RELEASED[name]
    a = get_arch(name)
    assert (a.embed_dim, a.depth, a.num_heads, a.intermediate_size, a.ffn_layer, a.qkv_bias) == RELEASED[name]
    sd = _shapes_only_meta_state_dict(C, depth, heads, hidden, ffn, qkv_bias, local_cls_norm=name in ("vitl16", "vit7b16"))
    assert arch_from_filename(FILENAMES[name]) == name
    for filename in (FILENAMES[name], "", "weights.pth"):
        got = infer_meta_arch(sd, filename=filename)
        assert got.name == name
        assert (got.embed_dim, got.depth, got.num_heads, got.intermediate_size, got.gated, got.qkv_bias) == (
            C, depth, heads, hidden, ffn != "mlp", qkv_bias)
        assert (got.patch_size, got.n_storage_tokens, got.head_dim) == (16, 4, 128 if name == "vit7b16" else 64)
    # The transformers model built from that architecture has exactly the converted tensors' shapes.
    hf_sd, periods, extras, key_bias = meta_to_hf_state_dict(sd)
    assert key_bias is False
    assert set(extras) == ({"local_cls_norm.weight", "local_cls_norm.bias"} if name in ("vitl16", "vit7b16") else set())
    with torch.device("meta"):
        model = DINOv3ViTModel(config_for_arch(infer_meta_arch(sd, filename=FILENAMES[name])))
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in hf_sd.items()} == want
    # A transformers-keyed file without config.json gets the same configuration.
    cfg = _config_from_hf_state_dict(hf_sd, None, "model.safetensors")
    ref = config_for_arch(name)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "use_gated_mlp",
                "hidden_act", "query_bias", "key_bias", "value_bias", "num_register_tokens", "patch_size"):
        assert getattr(cfg, key) == getattr(ref, key), key


def test_swiglu_alignment_follows_meta():
    # SwiGLUFFN: d = int(hidden * 2/3); d + (-d % align_to)
    assert swiglu_hidden_size(1000) == 672  # 666 -> 672
    assert swiglu_hidden_size(1000, 64) == 704  # 666 -> 704
    assert swiglu_hidden_size(4096 * 3, 64) == 8192


def test_a_mislabelled_file_fails_clearly(tiny_backbone, tmp_path):
    path = save_meta_checkpoint(tiny_backbone, tmp_path / "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth")
    with pytest.raises(CheckpointFormatError) as e:
        load_backbone(path)
    msg = str(e.value)
    assert path.name in msg and "vitl16" in msg and "named by the file" in msg
    assert "(64, 4, 1, 256, False)" in msg and "(1024, 24, 16, 4096, False)" in msg
    # the same weights under a neutral name load, and arch= is checked the same way
    neutral = save_meta_checkpoint(tiny_backbone, tmp_path / "weights.pth")
    with pytest.raises(CheckpointFormatError, match="vits16 architecture .* given by arch='vits16'"):
        load_backbone(neutral, arch="vits16")
    assert load_backbone(neutral).n_blocks == 4
    # arch= overrides the file name
    three = random_backbone("tiny", seed=5)
    named = save_meta_checkpoint(three, tmp_path / "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth")
    with pytest.raises(CheckpointFormatError, match="vitb16"):
        load_backbone(named)
    bb = load_backbone(named, arch="tiny")
    assert (bb.arch_name, bb.n_blocks) == ("tiny", 3)


def test_arch_is_checked_for_transformers_folders(tiny_saved):
    with pytest.raises(CheckpointFormatError, match="vitb16 architecture") as e:
        load_backbone(tiny_saved.hf_dir, arch="vitb16")
    assert str(tiny_saved.hf_dir) in str(e.value)


def test_sat493m_local_cls_norm_is_accepted_and_kept(tiny_backbone, tmp_path, images):
    sd = transformers_to_meta(tiny_backbone)
    g = torch.Generator().manual_seed(9)
    sd["local_cls_norm.weight"] = 1 + 0.1 * torch.randn(64, generator=g)
    sd["local_cls_norm.bias"] = 0.1 * torch.randn(64, generator=g)
    torch.save(sd, tmp_path / "sat.pth")
    bb = load_backbone(tmp_path / "sat.pth")
    assert set(bb.meta_extras) == {"local_cls_norm.weight", "local_cls_norm.bias"}
    # training only: the features do not use it
    assert _max_diff(bb.get_intermediate_layers(images, 2), tiny_backbone.get_intermediate_layers(images, 2)) == 0
    back = transformers_to_meta(bb)
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    save_meta_checkpoint(bb, tmp_path / "sat_again.safetensors")
    again = load_backbone(tmp_path / "sat_again.safetensors")
    assert torch.equal(again.meta_extras["local_cls_norm.weight"], sd["local_cls_norm.weight"])


# ---------------------------------------------------------------------- dtype and device


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.bfloat16), ("float16", torch.float16),
                                             ("bf16", torch.bfloat16), (None, torch.float32)])
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
    if torch.cuda.is_available() or (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
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
    sd = {"cls_token": torch.zeros(1, 1, C), "pos_embed": torch.zeros(1, 17, C), "mask_token": torch.zeros(1, C),
          "patch_embed.proj.weight": torch.zeros(C, 3, 14, 14), "patch_embed.proj.bias": torch.zeros(C),
          "norm.weight": torch.ones(C), "norm.bias": torch.zeros(C)}
    for i in range(2):
        sd.update({f"blocks.{i}.norm1.weight": torch.ones(C), f"blocks.{i}.attn.qkv.weight": torch.zeros(3 * C, C),
                   f"blocks.{i}.attn.qkv.bias": torch.zeros(3 * C), f"blocks.{i}.mlp.fc1.weight": torch.zeros(4 * C, C)})
    return sd


def _convnext_state_dict():
    return {"downsample_layers.0.0.weight": torch.zeros(8, 3, 4, 4), "downsample_layers.0.1.weight": torch.ones(8),
            "stages.0.0.dwconv.weight": torch.zeros(8, 1, 7, 7), "stages.0.0.gamma": torch.ones(8),
            "norm.weight": torch.ones(8)}


_NOT_DINOV3 = {
    "dinov2": (_dinov2_state_dict(), ["DINOv2", "pos_embed", "rope_embed.periods", "DINOv3 ViT"]),
    "convnext": (_convnext_state_dict(), ["ConvNeXt", "downsample_layers", "DINOv3 ViT"]),
    "random-dict": ({"foo.weight": torch.zeros(3), "bar": torch.zeros(2, 2)}, ["not a DINOv3 ViT state dict", "foo.weight"]),
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
