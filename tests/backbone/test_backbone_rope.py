"""RoPE periods: the checkpoint's own, Meta's bf16 defaults, fp32, or a tensor given by the user."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.backbones import P, max_diff
from transformers import DINOv3ViTModel

from insid3lab.backbone import (
    DinoV3Backbone,
    load_backbone,
    random_backbone,
    save_meta_checkpoint,
    save_pretrained,
    transformers_to_meta,
)

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
    assert max_diff(got, want) <= 1e-5
    (default,) = load_backbone(tmp_path / "default.pth").get_intermediate_layers(images)
    assert max_diff(got, default) > 0.5


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
    ((patch, cls, reg),) = bb.get_intermediate_layers(images, return_class_token=True, return_extra_tokens=True)
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
    assert max_diff(back.get_intermediate_layers(images, 2), bb.get_intermediate_layers(images, 2)) == 0
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
