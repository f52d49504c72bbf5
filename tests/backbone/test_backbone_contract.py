"""Meta's feature contract (``get_intermediate_layers``, ``forward_features``) and the patch grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.backbones import P, R, hf_outputs, max_diff

from insid3lab.backbone import random_backbone

# --------------------------------------------------------------- Meta's feature contract


def test_n1_norm_equals_transformers_last_hidden_state(tiny_backbone, images):
    out = hf_outputs(tiny_backbone, images)
    (patches,) = tiny_backbone.get_intermediate_layers(images, n=1)
    assert patches.shape == (2, 4 * 6, 64)
    assert max_diff(patches, out.last_hidden_state[:, P:]) <= 1e-6


def test_n4_norm_applies_the_final_layernorm_to_every_block(tiny_backbone, images):
    out = hf_outputs(tiny_backbone, images)
    assert len(out.hidden_states) == 1 + 4  # embeddings + one per block
    got = tiny_backbone.get_intermediate_layers(images, n=4, norm=True)
    assert len(got) == 4
    with torch.no_grad():
        want = [tiny_backbone.model.norm(h)[:, P:] for h in out.hidden_states[-4:]]
    assert max_diff(got, want) <= 1e-6
    # the last block is transformers' last_hidden_state
    assert max_diff(got[-1], out.last_hidden_state[:, P:]) <= 1e-6


def test_norm_false_returns_the_raw_residual_stream(tiny_backbone, images):
    out = hf_outputs(tiny_backbone, images)
    got = tiny_backbone.get_intermediate_layers(
        images, n=4, norm=False, return_class_token=True, return_extra_tokens=True
    )
    for (patch, cls, reg), h in zip(got, out.hidden_states[-4:], strict=True):
        assert max_diff(patch, h[:, P:]) <= 1e-6
        assert max_diff(cls, h[:, 0]) <= 1e-6
        assert max_diff(reg, h[:, 1:P]) <= 1e-6


def test_index_lists_take_those_blocks_in_block_order(tiny_backbone, images):
    out = hf_outputs(tiny_backbone, images)
    with torch.no_grad():
        normed = [tiny_backbone.model.norm(h)[:, P:] for h in out.hidden_states[1:]]  # block i -> normed[i]
    bb = tiny_backbone
    assert max_diff(bb.get_intermediate_layers(images, n=[0, 2]), [normed[0], normed[2]]) <= 1e-6
    # negative indices count from the end; results come in ascending block order, as in Meta's code
    assert max_diff(bb.get_intermediate_layers(images, n=[-1, -3]), [normed[1], normed[3]]) <= 1e-6
    assert max_diff(bb.get_intermediate_layers(images, n=[3, 0]), [normed[0], normed[3]]) <= 1e-6
    assert max_diff(bb.get_intermediate_layers(images, n=range(1, 3)), [normed[1], normed[2]]) <= 1e-6
    assert max_diff(bb.get_intermediate_layers(images, n=2), [normed[2], normed[3]]) <= 1e-6


@pytest.mark.parametrize(
    "n, message",
    [
        (0, "between 1 and the number of blocks (4)"),
        (5, "between 1 and the number of blocks (4)"),
        ([4], "allowed -4..3"),
        ([-5], "allowed -4..3"),
        ([], "empty"),
        ([1, -3], "twice"),
    ],
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
    out = hf_outputs(tiny_backbone, images)
    lhs = out.last_hidden_state
    bb = tiny_backbone

    (only,) = bb.get_intermediate_layers(images)
    assert isinstance(only, torch.Tensor)

    ((patch, cls),) = bb.get_intermediate_layers(images, return_class_token=True)
    assert cls.shape == (2, 64)
    assert max_diff(cls, lhs[:, 0]) <= 1e-6
    assert max_diff(patch, lhs[:, P:]) <= 1e-6

    ((patch, reg),) = bb.get_intermediate_layers(images, return_extra_tokens=True)
    assert reg.shape == (2, R, 64)
    assert max_diff(reg, lhs[:, 1:5]) <= 1e-6

    both = bb.get_intermediate_layers(images, n=2, return_class_token=True, return_extra_tokens=True)
    assert isinstance(both, tuple) and len(both) == 2
    assert all(isinstance(t, tuple) and len(t) == 3 for t in both)
    patch, cls, reg = both[-1]
    assert max_diff((patch, cls, reg), (lhs[:, P:], lhs[:, 0], lhs[:, 1:5])) <= 1e-6


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
    out = hf_outputs(tiny_backbone, images)
    ff = tiny_backbone.forward_features(images)
    assert set(ff) == {"x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm", "masks"}
    assert ff["masks"] is None
    assert ff["x_norm_clstoken"].shape == (2, 64)
    assert ff["x_storage_tokens"].shape == (2, R, 64)
    assert ff["x_norm_patchtokens"].shape == (2, 24, 64)
    assert ff["x_prenorm"].shape == (2, P + 24, 64)
    lhs = out.last_hidden_state
    assert max_diff(ff["x_norm_clstoken"], lhs[:, 0]) <= 1e-6
    assert max_diff(ff["x_storage_tokens"], lhs[:, 1:P]) <= 1e-6
    assert max_diff(ff["x_norm_patchtokens"], lhs[:, P:]) <= 1e-6
    assert max_diff(ff["x_prenorm"], out.hidden_states[-1]) <= 1e-6
    assert max_diff(tiny_backbone(images)["x_norm_patchtokens"], ff["x_norm_patchtokens"]) == 0


def test_naive_hidden_states_adapter_is_off_by_a_large_factor(images):
    """Taking transformers' ``hidden_states[-n:]`` for n > 1 skips the final LayerNorm.

    With a residual stream as large as a trained DINOv3's, those pre-norm tokens are
    tens of times larger than Meta's normalised ones, which every downstream cosine
    similarity, PCA and clustering threshold would silently absorb.
    """
    ratios = {}
    for scale in (1.0, 10.0):
        bb = random_backbone("tiny", seed=0, num_hidden_layers=4, residual_scale=scale)
        naive = [h[:, P:] for h in hf_outputs(bb, images).hidden_states[-4:]]
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
    assert max_diff(fmap, cropped) <= 1e-6
    ff, ffc = tiny_backbone.forward_features(x), tiny_backbone.forward_features(x[:, :, :64, :96])
    assert max_diff(ff["x_norm_clstoken"], ffc["x_norm_clstoken"]) <= 1e-6
