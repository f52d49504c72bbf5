"""Conversion between Meta's and transformers' layouts, and the architecture read from a checkpoint."""

from __future__ import annotations

import pytest
import torch
from helpers.backbones import max_diff
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
    save_meta_checkpoint,
    save_pretrained,
    transformers_to_meta,
)
from insid3lab.backbone.archs import arch_from_filename, swiglu_hidden_size
from insid3lab.backbone.convert import infer_meta_arch, meta_to_hf_state_dict
from insid3lab.backbone.loading import _config_from_hf_state_dict

# -------------------------------------------------------------------------- round trip


def _tiny_swiglu() -> DinoV3Backbone:
    # vits16plus-like: SwiGLU feed-forward, 2 blocks of width 128, 64-dim heads
    hidden = swiglu_hidden_size(128 * 6)  # int(768 * 2/3) = 512, already a multiple of 8
    assert hidden == 512
    return random_backbone(
        "vits16plus", seed=3, num_hidden_layers=2, hidden_size=128, intermediate_size=hidden, num_attention_heads=2
    )


def _tiny_odd_swiglu() -> DinoV3Backbone:
    # a SwiGLU width that Meta's ratio/alignment formula cannot produce from a round ratio
    return random_backbone(
        "vits16plus", seed=4, num_hidden_layers=2, hidden_size=128, intermediate_size=344, num_attention_heads=2
    )


@pytest.mark.parametrize(
    "make",
    [lambda: random_backbone("tiny", seed=2, num_hidden_layers=2), _tiny_swiglu, _tiny_odd_swiglu],
    ids=["mlp", "swiglu", "swiglu-odd-width"],
)
def test_transformers_meta_transformers_round_trip_is_bitwise(make, tmp_path, images):
    bb = make()
    hf_sd = bb.model.state_dict()
    meta = transformers_to_meta(bb)
    gated = bb.config.use_gated_mlp
    C = bb.embed_dim
    # Meta's key names
    assert {
        "cls_token",
        "storage_tokens",
        "mask_token",
        "rope_embed.periods",
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.qkv.bias",
        "blocks.0.attn.qkv.bias_mask",
        "blocks.0.ls1.gamma",
        "blocks.1.ls2.gamma",
        "norm.weight",
    } <= set(meta)
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
        assert max_diff(loaded.get_intermediate_layers(images, 2), bb.get_intermediate_layers(images, 2)) == 0
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
    assert max_diff(bb.get_intermediate_layers(images, 3), want) <= 1e-6

    # Without the mask the key bias is real: it is kept and changes the features.
    for i in range(tiny_backbone.n_blocks):
        sd[f"blocks.{i}.attn.qkv.bias_mask"] = torch.ones(3 * C)
    torch.save(sd, tmp_path / "unmasked.pth")
    bb2 = load_backbone(tmp_path / "unmasked.pth")
    assert bb2.config.key_bias is True
    assert torch.equal(bb2.model.model.layer[0].attention.k_proj.bias, sd["blocks.0.attn.qkv.bias"][C : 2 * C])
    # a key bias adds the same amount to every logit of a query: softmax ignores it up to rounding
    assert max_diff(bb2.get_intermediate_layers(images, 3), want) <= 1e-4
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
        "cls_token": t(1, 1, C),
        "storage_tokens": t(1, 4, C),
        "mask_token": t(1, C),
        "patch_embed.proj.weight": t(C, 3, 16, 16),
        "patch_embed.proj.bias": t(C),
        "rope_embed.periods": default_rope_periods(C // heads),
        "norm.weight": t(C),
        "norm.bias": t(C),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        sd.update(
            {
                b + "norm1.weight": t(C),
                b + "norm1.bias": t(C),
                b + "norm2.weight": t(C),
                b + "norm2.bias": t(C),
                b + "attn.qkv.weight": t(3 * C, C),
                b + "attn.proj.weight": t(C, C),
                b + "attn.proj.bias": t(C),
                b + "ls1.gamma": t(C),
                b + "ls2.gamma": t(C),
            }
        )
        if qkv_bias:
            sd[b + "attn.qkv.bias"] = torch.zeros(3 * C)
            sd[b + "attn.qkv.bias_mask"] = torch.cat([torch.ones(C), torch.zeros(C), torch.ones(C)])
        if ffn == "mlp":
            sd.update(
                {
                    b + "mlp.fc1.weight": t(hidden, C),
                    b + "mlp.fc1.bias": t(hidden),
                    b + "mlp.fc2.weight": t(C, hidden),
                    b + "mlp.fc2.bias": t(C),
                }
            )
        else:
            sd.update(
                {
                    b + "mlp.w1.weight": t(hidden, C),
                    b + "mlp.w1.bias": t(hidden),
                    b + "mlp.w2.weight": t(hidden, C),
                    b + "mlp.w2.bias": t(hidden),
                    b + "mlp.w3.weight": t(C, hidden),
                    b + "mlp.w3.bias": t(C),
                }
            )
    if local_cls_norm:
        sd["local_cls_norm.weight"], sd["local_cls_norm.bias"] = t(C), t(C)
    return sd


@pytest.mark.parametrize("name", list(RELEASED))
def test_arch_inference_matches_metas_builders(name):
    C, depth, heads, hidden, ffn, qkv_bias = RELEASED[name]
    a = get_arch(name)
    assert (a.embed_dim, a.depth, a.num_heads, a.intermediate_size, a.ffn_layer, a.qkv_bias) == RELEASED[name]
    sd = _shapes_only_meta_state_dict(
        C, depth, heads, hidden, ffn, qkv_bias, local_cls_norm=name in ("vitl16", "vit7b16")
    )
    assert arch_from_filename(FILENAMES[name]) == name
    for filename in (FILENAMES[name], "", "weights.pth"):
        got = infer_meta_arch(sd, filename=filename)
        assert got.name == name
        assert (got.embed_dim, got.depth, got.num_heads, got.intermediate_size, got.gated, got.qkv_bias) == (
            C,
            depth,
            heads,
            hidden,
            ffn != "mlp",
            qkv_bias,
        )
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
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "use_gated_mlp",
        "hidden_act",
        "query_bias",
        "key_bias",
        "value_bias",
        "num_register_tokens",
        "patch_size",
    ):
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
    assert max_diff(bb.get_intermediate_layers(images, 2), tiny_backbone.get_intermediate_layers(images, 2)) == 0
    back = transformers_to_meta(bb)
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], v) for k, v in sd.items())
    save_meta_checkpoint(bb, tmp_path / "sat_again.safetensors")
    again = load_backbone(tmp_path / "sat_again.safetensors")
    assert torch.equal(again.meta_extras["local_cls_norm.weight"], sd["local_cls_norm.weight"])
