"""Figures: what each draws (axes, image sizes, colour limits, bars, lines), checked against hand computations."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from helpers.synthetic import SCENE
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch, Rectangle

from insid3lab import viz
from insid3lab.model.insid3 import INSID3
from insid3lab.viz import draw as _draw

S = 128  # network input: an 8 x 8 grid with patch 16


@pytest.fixture(scope="module")
def traced(tiny, scene):
    ref, ref_mask, tgt, tgt_mask = scene
    model = INSID3(tiny, image_size=S, svd_components=8, basis_cache=False, progress=False)
    model.set_reference(ref, ref_mask)
    mask, trace = model.segment(tgt, return_trace=True)
    assert trace.cluster_labels is not None, "the fixture needs a trace with candidates"
    return model, mask, trace


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "figure functions must not leave pyplot figures open"


def _map_images(ax):
    return [im for im in ax.images]


# ----------------------------------------------------------------- helpers


def test_pca_rgb_orders_the_main_direction_and_fits_jointly():
    rng = np.random.default_rng(0)
    C, h, w = 6, 4, 5
    t = np.arange(h * w, dtype=np.float64).reshape(h, w)
    direction = np.zeros(C)
    direction[2] = 1.0
    feats = direction[:, None, None] * t[None] + 1e-3 * rng.standard_normal((C, h, w))
    rgb = viz.pca_rgb(torch.from_numpy(feats).float())
    assert rgb.shape == (h, w, 3)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    # the first component is the ramp: red increases with t (the largest loading is made positive)
    red = rgb[..., 0].reshape(-1)
    assert np.all(np.diff(red[1:-1]) >= 0)
    assert red[0] == 0.0 and red[-1] == 1.0
    # joint fit: the same map twice gets the same colours; a shifted copy does not fit alone
    a, b = viz.pca_rgb([feats, feats.copy()])
    np.testing.assert_array_equal(a, b)
    a2, b2 = viz.pca_rgb([feats, feats + 5.0 * direction[:, None, None]])
    assert b2[..., 0].mean() > a2[..., 0].mean() + 0.2


def test_pca_rgb_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="equal C"):
        viz.pca_rgb([np.zeros((4, 2, 2)), np.zeros((5, 2, 2))])


def test_iou_by_hand_and_resizing():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b = np.zeros((4, 4), bool)
    b[:2, :] = True
    assert viz.iou(a, b) == pytest.approx(4 / 8)
    # the prediction is resized (nearest) to the ground truth: a 2x2 half-mask scales to 4x4
    small = np.array([[True, True], [False, False]])
    assert viz.iou(small, b) == 1.0
    assert viz.iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_to_png_bytes():
    fig = viz.mask_overlay(np.zeros((8, 8, 3), np.uint8), np.eye(8, dtype=bool))
    data = viz.to_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------- features


def test_feature_pca_draws_image_and_grid(traced):
    _, _, trace = traced
    fig = viz.feature_pca(trace.target_features_norm, trace.target_image)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].images[0].get_array().shape == (S, S, 3)
    assert fig.axes[1].images[0].get_array().shape == (8, 8, 3)


def test_feature_pca_pair_is_one_joint_fit(traced):
    _, _, trace = traced
    ref, tgt = trace.reference_features_norm[0], trace.target_features_norm
    fig = viz.feature_pca_pair(ref, tgt, reference_image=trace.reference_images[0], target_image=trace.target_image)
    assert len(fig.axes) == 4
    rgb_r, rgb_t = viz.pca_rgb([ref, tgt])
    np.testing.assert_allclose(np.asarray(fig.axes[2].images[0].get_array()), rgb_r)
    np.testing.assert_allclose(np.asarray(fig.axes[3].images[0].get_array()), rgb_t)
    assert len(viz.feature_pca_pair(ref, tgt).axes) == 2


def test_feature_pca_debiased_rows(traced):
    _, _, trace = traced
    fig = viz.feature_pca_debiased(
        [trace.reference_features_norm[0], trace.target_features_norm],
        [trace.reference_features_deb[0], trace.target_features_deb],
        images=[trace.reference_images[0], trace.target_image],
        names=["r", "t"],
    )
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[2:]] == ["original r", "original t", "debiased r", "debiased t"]
    with pytest.raises(ValueError, match="same maps"):
        viz.feature_pca_debiased([trace.target_features_norm], [])


def test_layer_features_match_get_intermediate_layers(tiny, scene):
    ref, _, tgt, _ = scene
    feats = viz.layer_features(tiny, [ref, tgt], [2, 0, -2], image_size=S)
    assert list(feats) == [2, 0, 1]
    from insid3lab.core.preprocess import preprocess_image

    x = torch.cat([preprocess_image(ref, S)[0], preprocess_image(tgt, S)[0]])
    want = tiny.get_intermediate_layers(x, n=[0], reshape=True)[0]
    torch.testing.assert_close(feats[0][1], want[1])
    one = viz.layer_features(tiny, ref, [0, 2], image_size=S)
    assert one[0].shape == (tiny.embed_dim, 8, 8)
    fig = viz.feature_pca_layers(feats, images=[ref, tgt])
    assert len(fig.axes) == 2 * 4
    assert [fig.axes[i].get_title() for i in (1, 2, 3)] == ["block 2", "block 0", "block 1"]
    with pytest.raises(ValueError, match="twice"):
        viz.layer_features(tiny, ref, [1, -2], image_size=S)


# ----------------------------------------------------------------- subspace


def test_singular_values_spectrum_and_cut(traced):
    model, _, _ = traced
    svd = model.positional.svd()
    fig = viz.singular_values(svd["S"], components=8)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.maximum(svd["S"].numpy(), 1e-12))
    assert len(ax.lines[0].get_xdata()) == svd["S"].numel()
    assert ax.get_yscale() == "log"
    assert list(ax.lines[1].get_xdata()) == [8.5, 8.5]


def test_component_maps_are_projections(traced):
    model, _, _ = traced
    svd = model.positional.svd()
    black = torch.nn.functional.normalize(model.positional.black_image_features()[0], dim=0)
    maps = viz.component_maps(black, svd["U"], 3)
    X = black.reshape(black.shape[0], -1).double()
    X = X - X.mean(dim=1, keepdim=True)
    want = (svd["U"][:, 1].double() @ X).reshape(8, 8).numpy()
    np.testing.assert_allclose(maps[1], want, atol=1e-6)
    fig = viz.positional_components(black, svd["U"], count=3, S=svd["S"])
    assert len(fig.axes) == 3
    for ax in fig.axes:
        lo, hi = ax.images[0].get_clim()
        assert lo == pytest.approx(-hi) and hi > 0
    fig = viz.positional_subspace(model, count=3)
    assert len(fig.axes) == 1 + 1 + 3
    assert len(viz.black_image_pca(black).axes[0].images) == 1


# ----------------------------------------------------------------- similarity


def test_similarity_map_is_symmetric_around_zero(traced):
    _, _, trace = traced
    s = trace.forward_similarity
    fig = viz.similarity_map(s, image=trace.target_image, outline=trace.forward_mask)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the map and its colour bar
    img, heat = ax.images
    assert img.get_array().shape == (S, S, 3)
    np.testing.assert_allclose(np.asarray(heat.get_array()), s.numpy(), rtol=1e-6)
    lim = float(s.abs().max())
    assert heat.get_clim() == pytest.approx((-lim, lim))
    assert heat.get_extent() == [-0.5, S - 0.5, S - 0.5, -0.5]


def test_cell_similarity_by_hand(traced):
    _, _, trace = traced
    ref, tgt = trace.reference_features_deb[0], trace.target_features_deb
    m = viz.cell_similarity_map(ref, tgt, (3, 5))
    np.testing.assert_allclose(m, torch.einsum("c,chw->hw", ref[:, 3, 5].double(), tgt.double()).numpy(), atol=1e-10)
    fig = viz.cell_similarity(
        ref, tgt, (3, 5), reference_image=trace.reference_images[0], target_image=trace.target_image
    )
    rect = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)][0]
    assert rect.get_xy() == (5 * 16 - 0.5, 3 * 16 - 0.5) and rect.get_width() == 16
    r, c = np.unravel_index(m.argmax(), m.shape)
    marker = fig.axes[1].lines[0]
    assert marker.get_xdata()[0] == (c + 0.5) * 16 - 0.5 and marker.get_ydata()[0] == (r + 0.5) * 16 - 0.5
    with pytest.raises(ValueError, match="reference grid"):
        viz.cell_similarity_map(ref, tgt, (8, 0))


def test_backward_votes_discrete_limits(traced):
    _, _, trace = traced
    fig = viz.backward_votes(trace.votes, 3, image=trace.target_image)
    heat = fig.axes[0].images[1]
    assert heat.get_clim() == (-0.5, 3.5)
    np.testing.assert_array_equal(np.asarray(heat.get_array()), trace.votes.numpy())


def test_candidates_overlay_categories():
    f = np.array([[1, 1], [0, 0]], bool)
    b = np.array([[1, 0], [1, 0]], bool)
    cat = _draw.candidate_categories(f, b)
    np.testing.assert_array_equal(cat, [[3, 1], [2, 0]])
    fig = viz.candidates(f, b)
    rgba = np.asarray(fig.axes[0].images[0].get_array())
    assert rgba.shape == (2, 2, 4)
    np.testing.assert_allclose(rgba[0, 0, :3], _draw.CANDIDATE_COLORS["candidates"])
    assert rgba[1, 1, 3] == 0.0 and rgba[0, 0, 3] > rgba[0, 1, 3] > 0
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["forward only (1)", "backward only (1)", "candidates (1)"]


# ----------------------------------------------------------------- clusters


def test_boundary_segments_by_hand():
    labels = np.array([[0, 0, 1], [2, 2, 1]])
    segs = _draw.boundary_segments(labels, (20, 30))  # cells are 10 x 10 pixels
    # vertical: (0,1)|(0,2) and (1,1)|(1,2); horizontal: (0,0)/(1,0), (0,1)/(1,1)
    assert len(segs) == 4
    xs = sorted({s[0][0] for s in segs if s[0][0] == s[1][0]})
    assert xs == [19.5]
    seed = _draw.boundary_segments(labels, (20, 30), select=1)
    # cluster 1 (right column): one inner vertical edge of 2 segments + top, bottom and right border
    assert len(seed) == 2 + 1 + 1 + 2


def test_clusters_figure(traced):
    _, _, trace = traced
    fig = viz.clusters(trace.cluster_labels, image=trace.target_image, seed=trace.seed)
    ax = fig.axes[0]
    assert ax.images[1].get_array().shape == (8, 8, 3)
    colls = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(colls) == 2
    want = _draw.boundary_segments(trace.cluster_labels.numpy(), (S, S))
    assert len(colls[0].get_segments()) == len(want)
    texts = [t.get_text() for t in ax.texts]
    assert sorted(texts, key=int) == [str(k) for k in range(trace.num_clusters)]


def test_cluster_scores_bars_and_threshold_line(traced):
    _, _, trace = traced
    fig = viz.cluster_scores(
        trace.cluster_cross,
        trace.cluster_intra,
        trace.cluster_area,
        trace.cluster_score,
        merge_threshold=0.2,
        seed=trace.seed,
        overlap=trace.cluster_overlap,
    )
    ax = fig.axes[0]
    shown = np.nonzero(trace.cluster_overlap.numpy())[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 4 * len(shown)
    heights = [b.get_height() for b in bars]
    np.testing.assert_allclose(heights[3 * len(shown) :], trace.cluster_score.numpy()[shown], rtol=1e-6)
    threshold = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(threshold) == 1 and list(threshold[0].get_ydata()) == [0.2, 0.2]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert f"{trace.seed}★" in ticks
    red = [t.get_text().rstrip("★") for t in ax.get_xticklabels() if t.get_color() == _draw.PRED_COLOR]
    assert sorted(int(k) for k in red) == sorted(int(k) for k in shown if trace.cluster_score[k] > 0.2)
    everything = viz.cluster_scores(
        trace.cluster_cross, trace.cluster_intra, trace.cluster_area, trace.cluster_score, merge_threshold=0.5
    )
    assert len(everything.axes[0].patches) == 4 * trace.num_clusters


# ----------------------------------------------------------------- overlays


def test_reference_target_overlay(scene):
    ref, ref_mask, tgt, tgt_mask = scene
    pred = np.zeros_like(tgt_mask)
    pred[: SCENE // 2] = True
    fig = viz.reference_target_overlay(ref, torch.from_numpy(ref_mask), tgt, pred, ground_truth=tgt_mask, title="t")
    assert len(fig.axes) == 2
    for ax, m in zip(fig.axes, (ref_mask, pred)):
        assert ax.images[0].get_array().shape == (SCENE, SCENE, 3)
        layer = np.asarray(ax.images[1].get_array())
        assert layer.shape == (SCENE, SCENE, 4)
        np.testing.assert_array_equal(layer[..., 3] > 0, m)
    want = np.logical_and(pred, tgt_mask).sum() / np.logical_or(pred, tgt_mask).sum()
    assert f"IoU {want:.3f}" in fig.axes[1].get_title()
    assert fig._suptitle.get_text() == "t"
    no_gt = viz.reference_target_overlay(ref, ref_mask, tgt, pred)
    assert "IoU" not in no_gt.axes[1].get_title()


def test_overlay_masks_of_another_size_cover_the_image(scene):
    _, _, tgt, _ = scene
    fig = viz.mask_overlay(tgt, np.ones((8, 8), bool))
    assert fig.axes[0].images[1].get_extent() == [-0.5, SCENE - 0.5, SCENE - 0.5, -0.5]


def test_keypoint_matches(scene):
    ref, _, tgt, _ = scene
    ref_pts = np.array([[10.0, 20.0], [50.0, 60.0], [100.0, 30.0]])
    pts = torch.tensor([[12.0, 22.0], [40.0, 60.0], [90.0, 90.0]])
    gt = np.array([[12.0, 20.0], [50.0, 60.0], [100.0, 30.0]])
    fig = viz.keypoint_matches(ref, ref_pts, tgt, pts, ground_truth=gt, title="kp")
    a, b = fig.axes
    np.testing.assert_allclose(a.collections[0].get_offsets(), ref_pts)
    np.testing.assert_allclose(b.collections[0].get_offsets(), pts.numpy())
    np.testing.assert_allclose(b.collections[1].get_offsets(), gt)
    assert sum(isinstance(x, ConnectionPatch) for x in fig.artists) == 3
    err = np.linalg.norm(pts.numpy() - gt, axis=1)
    pck = (err <= 0.1 * SCENE).mean()
    assert fig._suptitle.get_text() == f"kp: 3 keypoints; mean error {err.mean():.1f} px; PCK@0.1 {pck:.2f}"
    with pytest.raises(ValueError, match="reference_points has 3 points"):
        viz.keypoint_matches(ref, ref_pts, tgt, pts[:2])


def test_mask_grid_and_score_table(scene):
    _, _, tgt, tgt_mask = scene
    masks = {f"m{i}": np.roll(tgt_mask, i * 3, axis=1) for i in range(5)}
    fig = viz.mask_grid(tgt, masks, ground_truth=tgt_mask, ncols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and len(visible) == 5
    assert visible[0].get_title() == "m0  IoU 1.000"
    values = np.array([[0.1, 0.5], [0.9, np.nan]])
    fig = viz.score_table(values, ["a", "b"], [1, 2], fmt="{:.1f}")
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.texts] == ["0.1", "0.5", "0.9", "–"]
    with pytest.raises(ValueError, match="rows x cols"):
        viz.score_table(values, ["a"], [1, 2])


# ----------------------------------------------------------------- normalisation


def test_token_statistics_by_hand(tiny, scene):
    ref = scene[0]
    stats = viz.token_statistics(tiny, ref, image_size=64)
    from insid3lab.core.preprocess import preprocess_image

    x, _ = preprocess_image(ref, 64)
    with torch.inference_mode():
        hs = tiny.model(pixel_values=x, output_hidden_states=True).hidden_states
        post = tiny.model.norm(hs[2])
    P = tiny.num_prefix_tokens
    assert stats["patch"]["pre"]["norm_mean"][1] == pytest.approx(float(hs[2][0, P:].norm(dim=-1).mean()), rel=1e-5)
    assert stats["cls"]["post"]["norm_mean"][1] == pytest.approx(float(post[0, 0].norm()), rel=1e-5)
    rms = post[0, 1:P].pow(2).mean(dim=0).sqrt()
    assert stats["registers"]["post"]["channel_rms_max"][1] == pytest.approx(float(rms.max()), rel=1e-5)
    # the same numbers from transformers' hidden states
    with torch.inference_mode():
        posts = [tiny.model.norm(h) for h in hs[1:]]
    seq_stats = viz.tokens_statistics(hs[1:], posts, num_prefix_tokens=P)
    for kind in ("patch", "cls", "registers"):
        for which in ("pre", "post"):
            np.testing.assert_allclose(
                seq_stats[kind][which]["channel_rms_median"], stats[kind][which]["channel_rms_median"], rtol=1e-5
            )
    fig = viz.normalisation_statistics(stats)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert len(ax.lines) == 6 and ax.get_yscale() == "log"
        assert len(ax.lines[0].get_xdata()) == tiny.n_blocks


# ----------------------------------------------------------------- story


def test_story_has_every_panel(traced, scene):
    _, mask, trace = traced
    tgt_mask = scene[3]
    fig = viz.story(trace, ground_truth=tgt_mask)
    titled = {ax.get_title().split("  ")[0] for ax in fig.axes}
    for expected in (
        "reference + mask",
        "target",
        "forward similarity s(x)",
        "backward votes",
        "cluster scores (clusters with candidates)",
        "prediction",
    ):
        assert expected in titled
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == len(viz.PANELS)
    head = fig._suptitle.get_text()
    assert head.startswith("INSID3: RANDOM weights, S=128, r=8, τ=0.60, merge=0.20, debiased")
    assert head.endswith(f"IoU {viz.iou(mask, tgt_mask):.3f}")
    for name in viz.PANELS:
        assert isinstance(viz.trace_panel(trace, name), Figure)
    with pytest.raises(ValueError, match="allowed"):
        viz.trace_panel(trace, "nope")


def test_story_without_candidates(tiny, scene):
    ref, ref_mask, tgt, _ = scene
    model = INSID3(tiny, image_size=64, svd_components=4, basis_cache=False)
    model.set_reference(ref, ref_mask)
    _, trace = model.segment(np.zeros((64, 64, 3), np.uint8), return_trace=True)
    trace.candidates = torch.zeros_like(trace.candidates)
    for f in ("cluster_labels", "cluster_score", "cluster_cross", "cluster_intra", "cluster_area", "seed"):
        setattr(trace, f, None)
    fig = viz.story(trace)
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no candidate cell" in n for n in notes)
