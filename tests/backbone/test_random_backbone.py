"""Random-weight backbones: built without running initialisers, seeded, and the ``random:`` source."""

from __future__ import annotations

import pytest
import torch
from transformers import DINOv3ViTModel
from transformers.initialization import no_init_weights

from insid3lab.backbone.archs import config_for_arch
from insid3lab.backbone.loading import load_backbone, parse_random_source, random_backbone


def state(bb) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in bb.model.state_dict().items()}


def assert_same_state(a, b) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "arch, overrides", [("tiny", {}), ("vits16", {"num_hidden_layers": 1}), ("vitl16plus", {"num_hidden_layers": 1})]
)
def test_the_same_seed_gives_identical_weights_and_another_seed_others(arch, overrides):
    torch.manual_seed(123)  # the global generator must not matter
    a = random_backbone(arch, seed=7, **overrides)
    torch.manual_seed(456)
    b = random_backbone(arch, seed=7, **overrides)
    assert_same_state(a, b)
    c = random_backbone(arch, seed=8, **overrides)
    assert not torch.equal(a.model.embeddings.patch_embeddings.weight, c.model.embeddings.patch_embeddings.weight)


def test_the_initialisers_are_not_run(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("an initialiser ran")

    monkeypatch.setattr(DINOv3ViTModel, "_init_weights", forbidden)
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", forbidden)
    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", forbidden)
    bb = random_backbone("tiny", seed=0)
    assert bb.embed_dim == 64


def test_every_parameter_is_filled_as_documented():
    bb = random_backbone("vits16", seed=0, num_hidden_layers=2)
    sd = {k: v.detach() for k, v in bb.model.named_parameters()}
    assert torch.count_nonzero(sd["embeddings.mask_token"]) == 0
    for name, p in sd.items():
        assert torch.isfinite(p).all(), name
        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            assert abs(float(p.mean()) - 1.0) < 0.03 and 0.07 < float(p.std()) < 0.13, name
        elif name.endswith("lambda1"):
            assert 0.1 <= float(p.min()) and float(p.max()) <= 0.15, name
        elif name.endswith(("q_proj.weight", "up_proj.weight")):
            assert abs(float(p.std()) - 0.02) < 0.001 and abs(float(p.mean())) < 0.001, name
    # the embeddings are scaled as documented (residual_scale 1: x50 and x10 of a 0.02 normal)
    assert abs(float(sd["embeddings.register_tokens"].std()) - 1.0) < 0.2
    assert abs(float(sd["embeddings.patch_embeddings.weight"].std()) - 0.2) < 0.01
    # buffers are computed as in a normally built model (not left uninitialised)
    config = config_for_arch("vits16", num_hidden_layers=2)
    with no_init_weights():
        skipped = DINOv3ViTModel(config)
    buffers = dict(DINOv3ViTModel(config).named_buffers())
    assert buffers.keys() == dict(skipped.named_buffers()).keys() and buffers
    for name, buf in skipped.named_buffers():
        assert torch.equal(buf, buffers[name]), name


def test_features_are_finite():
    bb = random_backbone("vits16", seed=1, num_hidden_layers=2)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        feats = bb.get_intermediate_layers(x, n=1, reshape=True)[0]
    assert feats.shape == (1, 384, 4, 4)
    assert torch.isfinite(feats).all() and float(feats.std()) > 0


# --------------------------------------------------------------------- random: sources


def test_parse_random_source():
    assert parse_random_source("random:vitl16:3") == ("vitl16", 3)
    assert parse_random_source("random:vits16") == ("vits16", 0)
    assert parse_random_source("random:") == ("tiny", 0)
    assert parse_random_source("random:tiny:-2") == ("tiny", -2)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("random:tiny:x", r"source='random:tiny:x': the seed must be an integer, got 'x'"),
        ("random:tiny:1.5", "seed must be an integer"),
        ("random:nope", r"unknown architecture 'nope'; allowed: .*tiny.*vitl16.*vits16"),
        ("random:tiny:1:2", r"expected random:ARCH\[:SEED\]"),
    ],
)
def test_bad_random_sources(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_random_source(spec)
    with pytest.raises(ValueError, match=message):
        load_backbone(spec, device="cpu")


def test_load_backbone_builds_random_sources():
    bb = load_backbone("random:tiny:3", device="cpu")
    assert_same_state(bb, random_backbone("tiny", seed=3))
    assert bb.arch_name == "tiny" and bb.source == "random:tiny:seed=3"
    assert_same_state(load_backbone("random:", device="cpu"), random_backbone("tiny", seed=0))
    half = load_backbone("random:tiny:3", device="cpu", dtype="bfloat16")
    assert half.model.embeddings.patch_embeddings.weight.dtype == torch.bfloat16
    periods = load_backbone("random:tiny", device="cpu", rope_periods="fp32").rope_periods
    assert periods.dtype == torch.float32 and not torch.equal(periods, random_backbone("tiny").rope_periods)
