"""Explorer and MaskPainter without a browser: set a control, check what was recomputed and what is shown."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from helpers.synthetic import SCENE

import insid3lab.lab.explorer
from insid3lab.lab.controls import method_controls
from insid3lab.lab.explorer import CONTROL_NAMES, EXPLORER_PANELS, PANEL_NAMES, Explorer, MaskPainter, Panel
from insid3lab.model.insid3 import INSID3
from insid3lab.stages.clustering import register_clusterer
from insid3lab.viz.story import PANELS as STORY_PANELS

S = 128


class CountingEncoder:
    """Wraps a backbone and counts its forward passes (calls of get_intermediate_layers)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def get_intermediate_layers(self, *args, **kwargs):
        self.calls += 1
        return self.inner.get_intermediate_layers(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def explorer(tiny, scene):
    ref, ref_mask, tgt, tgt_mask = scene
    enc = CountingEncoder(tiny)
    model = INSID3(enc, image_size=S, svd_components=8, basis_cache=False, progress=False)
    ex = Explorer(model, ref, ref_mask, tgt, ground_truth=tgt_mask, sizes=[64, S])
    assert ex.last_error is None, ex.status.value
    assert ex.trace.cluster_labels is not None, "the scene must give candidates at S=128"
    return ex


def fresh_mask(tiny, scene, **settings):
    """The mask a new pipeline computes from scratch with these settings."""
    ref, ref_mask, tgt, _ = scene
    model = INSID3(tiny, basis_cache=False, progress=False, **settings)
    model.set_reference(ref, ref_mask)
    return model.segment(tgt).numpy()


def backbone_passes(ex) -> int:
    """Backbone passes seen by the counting encoder."""
    return ex.model.encoder.calls


def snapshot(ex):
    return dict(ex.counts), {k: p.value for k, p in ex.panels.items()}, backbone_passes(ex)


def test_dom_contract(explorer):
    assert set(explorer.controls) == set(CONTROL_NAMES)
    assert set(explorer.panels) == set(PANEL_NAMES)
    for name, w in explorer.controls.items():
        assert f"insid3lab-control-{name}" in w._dom_classes
        assert isinstance(w, (widgets.FloatSlider, widgets.IntSlider, widgets.Dropdown))
    assert isinstance(explorer.controls["tau"], widgets.FloatSlider)
    for name, img in explorer.panels.items():
        assert isinstance(img, widgets.Image) and "insid3lab-panel" in img._dom_classes
        assert img.value[:8] == b"\x89PNG\r\n\x1a\n"
        assert ("insid3lab-mask" in img._dom_classes) == (name == "prediction")
    assert isinstance(explorer.widget, widgets.VBox)
    assert hasattr(explorer, "_ipython_display_") and callable(explorer.display)
    # every panel and control is inside the root widget
    seen, stack = set(), [explorer.widget]
    while stack:
        w = stack.pop()
        seen.add(id(w))
        stack.extend(getattr(w, "children", ()))
    assert all(id(w) in seen for w in [*explorer.panels.values(), *explorer.controls.values()])


def test_the_panels_are_the_tables_and_named_as_in_the_story(explorer):
    assert PANEL_NAMES == tuple(p.name for p in EXPLORER_PANELS)
    assert tuple(explorer.panels) == PANEL_NAMES
    assert set(PANEL_NAMES) <= set(STORY_PANELS)  # viz.story's names: "prediction", not "mask"
    shown = [w for row in explorer.widget.children if isinstance(row, widgets.HBox) for w in row.children]
    assert [w for w in shown if isinstance(w, widgets.Image)] == [explorer.panels[n] for n in PANEL_NAMES]
    assert all(explorer.renders[n] == 1 for n in PANEL_NAMES)  # each drawn once at the start
    with pytest.raises(ValueError, match="panel 'mask': allowed reference, target"):
        Panel("mask", lambda ex, ax, name: None, ("tau",))
    with pytest.raises(ValueError, match=r"redrawn by \['sigma'\]"):
        Panel("votes", lambda ex, ax, name: None, ("sigma",))


#: A new value for each control (every one differs from the explorer's start).
NEW_VALUES = {"tau": 0.8, "svd": 30, "merge": 0.0, "debias": False, "clustering": "torch", "refine": "crf", "layer": 0,
              "size": 64}  # fmt: skip


def test_each_control_redraws_exactly_the_panels_listed_for_it(explorer):
    assert set(NEW_VALUES) == set(CONTROL_NAMES)
    for control, value in NEW_VALUES.items():
        renders, shown = dict(explorer.renders), {k: p.value for k, p in explorer.panels.items()}
        explorer.controls[control].value = value
        assert explorer.last_error is None, (control, explorer.status.value)
        listed = {p.name for p in EXPLORER_PANELS if control in p.redrawn_by}
        redrawn = {n for n in PANEL_NAMES if explorer.renders[n] != renders[n]}
        assert redrawn == listed, control
        assert all(explorer.renders[n] == renders[n] + 1 for n in listed), control
        assert all(explorer.panels[n].value == shown[n] for n in set(PANEL_NAMES) - listed), control
        assert explorer.panels["prediction"].value != shown["prediction"], control  # its caption names the change


def test_a_panel_added_to_the_table_is_shown_and_redrawn(tiny, scene, monkeypatch):
    votes = Panel("votes", insid3lab.lab.explorer._story_panel, ("size", "svd", "debias"))
    monkeypatch.setattr(insid3lab.lab.explorer, "EXPLORER_PANELS", (*EXPLORER_PANELS, votes))
    ref, ref_mask, tgt, _ = scene
    model = INSID3(tiny, image_size=64, svd_components=8, basis_cache=False, progress=False)
    ex = Explorer(model, ref, ref_mask, tgt, sizes=[64])
    assert list(ex.panels) == [*PANEL_NAMES, "votes"] and ex.panels["votes"].value[:8] == b"\x89PNG\r\n\x1a\n"
    ex.controls["merge"].value = 0.0
    assert ex.renders["votes"] == 1
    ex.controls["svd"].value = 4
    assert ex.last_error is None and ex.renders["votes"] == 2


def test_initial_state_matches_a_fresh_pipeline(explorer, tiny, scene):
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8))
    assert explorer.counts["encode"] == 2  # reference + target
    assert explorer.counts["clustering"] == 1 and explorer.counts["decode"] == 1
    assert "IoU" in explorer.status.value


def test_merge_threshold_only_reaggregates(explorer, tiny, scene):
    counts, panels, calls = snapshot(explorer)
    explorer.controls["merge"].value = -0.5  # every cluster scores above it (the non-candidate ones score 0)
    assert explorer.last_error is None
    assert explorer.model.merge_threshold == -0.5
    assert explorer.counts["aggregation"] == counts["aggregation"] + 1
    for stage in ("encode", "clustering", "decode", "layer_features"):
        assert explorer.counts[stage] == counts[stage], stage
    assert backbone_passes(explorer) == calls, "the backbone must not run for a merge-threshold change"
    assert explorer.mask.mean() > 0.9
    np.testing.assert_array_equal(
        explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8, merge_threshold=-0.5)
    )
    assert explorer.panels["prediction"].value != panels["prediction"]
    assert explorer.panels["scores"].value != panels["scores"]
    assert explorer.panels["similarity"].value == panels["similarity"]  # not redrawn
    assert explorer.trace.settings["merge_threshold"] == -0.5


def test_refine_reruns_only_the_final_step(explorer, tiny, scene):
    counts, panels, calls = snapshot(explorer)
    assert explorer.controls["refine"].options == (("bilinear", "bilinear"), ("crf", "crf"))
    explorer.controls["refine"].value = "crf"
    assert explorer.last_error is None, explorer.status.value
    assert explorer.model.refine == "crf" and explorer.trace.settings["refine"] == "crf"
    assert explorer.counts["refinement"] == counts["refinement"] + 1
    for stage in ("encode", "clustering", "decode", "aggregation", "layer_features"):
        assert explorer.counts[stage] == counts[stage], stage
    assert backbone_passes(explorer) == calls, "the backbone must not run for a refiner change"
    crf = fresh_mask(tiny, scene, image_size=S, svd_components=8, refine="crf")
    assert (crf != fresh_mask(tiny, scene, image_size=S, svd_components=8)).sum() > 100, "the CRF changes the mask"
    np.testing.assert_array_equal(explorer.mask, crf)
    assert explorer.trace.mask_refined is not None and explorer.trace.refine_band is not None
    assert explorer.panels["similarity"].value == panels["similarity"]  # not redrawn
    # the merge threshold keeps the refiner; back to bilinear gives the first mask again
    explorer.controls["merge"].value = 0.0
    np.testing.assert_array_equal(
        explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8, refine="crf", merge_threshold=0.0)
    )
    explorer.controls["merge"].value = 0.2
    explorer.controls["refine"].value = "bilinear"
    assert explorer.trace.mask_refined is None
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8))
    assert explorer.panels["prediction"].value == panels["prediction"]
    assert explorer.counts["decode"] == counts["decode"] and explorer.counts["refinement"] == counts["refinement"] + 2


def test_tau_cuts_the_cached_tree_without_reclustering(explorer, tiny, scene):
    counts, panels, calls = snapshot(explorer)
    explorer.controls["tau"].value = 0.8
    assert explorer.model.tau == pytest.approx(0.8)
    assert explorer.counts["clustering"] == counts["clustering"]  # a cut of the tree built at the first τ
    assert explorer.counts["encode"] == counts["encode"] and backbone_passes(explorer) == calls
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8, tau=0.8))
    assert explorer.panels["prediction"].value != panels["prediction"]
    explorer.controls["tau"].value = 0.6  # back
    assert explorer.counts["clustering"] == counts["clustering"]
    assert explorer.panels["prediction"].value == panels["prediction"]


def test_a_clusterer_without_a_tree_reclusters_once_per_tau(explorer, tiny, scene):
    counts, panels, calls = snapshot(explorer)
    before = explorer.mask
    explorer.controls["clustering"].value = "torch"
    assert explorer.model.clustering == "torch" and explorer.last_error is None
    assert explorer.counts["clustering"] == counts["clustering"] + 1 and backbone_passes(explorer) == calls
    assert explorer.trace.settings["clustering"] == "torch"
    np.testing.assert_array_equal(explorer.mask, before)  # the same partition as the default's
    assert explorer.panels["prediction"].value != panels["prediction"]  # its caption names the clusterer
    explorer.controls["tau"].value = 0.7
    counts = dict(explorer.counts)
    explorer.controls["tau"].value = 0.8
    assert explorer.counts["clustering"] == counts["clustering"] + 1
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8, tau=0.8))
    explorer.controls["tau"].value = 0.7
    assert explorer.counts["clustering"] == counts["clustering"] + 1


def test_a_clusterer_registered_before_the_explorer_is_offered_and_used(registries, tiny, scene):
    ref, ref_mask, tgt, _ = scene
    calls = []

    @register_clusterer("one-cluster-for-test", help="every cell in one cluster")
    def one_cluster(X, threshold):
        calls.append(X.shape[0])
        return torch.zeros(X.shape[0], dtype=torch.long)

    model = INSID3(tiny, image_size=S, svd_components=8, basis_cache=False, progress=False)
    assert method_controls(model, 8)["clustering"].options[-1] == ("one-cluster-for-test", "one-cluster-for-test")
    ex = Explorer(model, ref, ref_mask, tgt, sizes=[S])
    assert [v for _, v in ex.controls["clustering"].options] == ["auto", "sklearn", "scipy", "torch", "components",
                                                                 "one-cluster-for-test"]  # fmt: skip
    ex.controls["clustering"].value = "one-cluster-for-test"
    assert ex.last_error is None, ex.status.value
    assert calls == [(S // 16) ** 2] and ex.trace.cluster_labels.unique().tolist() == [0]
    assert ex.trace.settings["clustering"] == "one-cluster-for-test"


def test_svd_and_debias_rematch_without_backbone_or_clustering(explorer, tiny, scene):
    counts, panels, calls = snapshot(explorer)
    explorer.controls["svd"].value = 30
    assert explorer.model.svd_components == 30
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=30))
    explorer.controls["debias"].value = False
    assert explorer.model.debias is False
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=30, debias=False))
    assert explorer.counts["decode"] == counts["decode"] + 2
    assert explorer.counts["clustering"] == counts["clustering"]
    assert explorer.counts["encode"] == counts["encode"] and backbone_passes(explorer) == calls
    assert explorer.panels["similarity"].value != panels["similarity"]
    assert explorer.trace.settings["debias"] is False and explorer.trace.settings["svd_components"] == 30


def test_image_size_reencodes_once_per_size(explorer, tiny, scene):
    counts, panels, calls = snapshot(explorer)
    explorer.controls["size"].value = 64
    assert explorer.last_error is None, explorer.status.value
    assert explorer.model.image_size == 64
    assert explorer.counts["encode"] == counts["encode"] + 2  # target and reference at the new size
    limit = min(tiny.embed_dim, (64 // 16) ** 2)
    assert explorer.controls["svd"].max == limit and explorer.model.svd_components == min(8, limit)
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=64, svd_components=8))
    assert explorer.panels["reference"].value != panels["reference"]
    at_64, calls_at_64 = dict(explorer.counts), backbone_passes(explorer)
    explorer.controls["size"].value = S  # encodings and cluster labels of S are cached
    assert backbone_passes(explorer) == calls_at_64
    assert explorer.counts["encode"] == at_64["encode"] and explorer.counts["clustering"] == at_64["clustering"]
    assert explorer.controls["svd"].max == min(tiny.embed_dim, (S // 16) ** 2)
    np.testing.assert_array_equal(explorer.mask, fresh_mask(tiny, scene, image_size=S, svd_components=8))


def test_layer_changes_only_the_pca(explorer):
    counts, panels, calls = snapshot(explorer)
    explorer.controls["layer"].value = 0
    assert explorer.counts["layer_features"] == counts["layer_features"] + 1
    assert backbone_passes(explorer) == calls + 1
    assert explorer.counts["decode"] == counts["decode"]
    assert explorer.panels["pca_reference"].value != panels["pca_reference"]
    assert explorer.panels["pca_target"].value != panels["pca_target"]
    assert explorer.panels["similarity"].value == panels["similarity"]
    explorer.controls["layer"].value = explorer.model.encoder.n_blocks - 1  # the features in use: no pass
    explorer.controls["layer"].value = 0  # cached
    assert backbone_passes(explorer) == calls + 1


def test_an_error_is_shown_not_raised(explorer):
    explorer._targets.clear()
    explorer._target_source = "/nonexistent/target.png"
    explorer.controls["size"].value = 64
    assert isinstance(explorer.last_error, FileNotFoundError)
    assert "nonexistent" in explorer.status.value and "size" in explorer.status.value


def test_sizes_are_validated_before_the_model_changes(tiny, scene):
    ref, ref_mask, tgt, _ = scene
    model = INSID3(tiny, image_size=64, basis_cache=False)
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        Explorer(model, ref, ref_mask, tgt, sizes=[64, 100])
    assert model.references == []


# ----------------------------------------------------------------- painter


def test_painter_cells_toggle(scene):
    img = scene[0]
    p = MaskPainter(img, cells=8)
    assert p.mask.shape == (SCENE, SCENE) and not p.mask.any()
    assert len(p.buttons) == 64
    off_color = p.buttons[9].style.button_color
    p.buttons[9].click()  # row 1, col 1: pixels 32:64 x 32:64
    want = np.zeros((SCENE, SCENE), bool)
    want[32:64, 32:64] = True
    np.testing.assert_array_equal(p.mask, want)
    assert p.buttons[9].style.button_color != off_color
    assert p.preview.value[:8] == b"\x89PNG\r\n\x1a\n"
    p.buttons[9].click()
    assert not p.mask.any() and p.buttons[9].style.button_color == off_color


def test_painter_polygons_invert_clear(scene):
    p = MaskPainter(scene[0], cells=4)
    p.polygon.value = "10.5,20.5 110.5,20.5 110.5,60.5 10.5,60.5"
    p.actions["add"].click()
    # pixel (x, y) is inside when its centre lies in the rectangle: x in 11..110, y in 21..60
    assert p.mask.sum() == 100 * 40
    assert p.mask[21:61, 11:111].all()
    assert p.mask[40, 50] and not p.mask[40, 5]
    p.add_polygon([[0, 0], [60, 0], [60, 40], [0, 40]], erase=True)
    assert not p.mask[30, 50] and p.mask[50, 50]
    before = p.mask
    p.polygon.value = "1,2 3"
    p.actions["add"].click()
    np.testing.assert_array_equal(p.mask, before)
    assert "x,y" in p.status.value
    p.actions["invert"].click()
    np.testing.assert_array_equal(p.mask, ~before)
    p.actions["clear"].click()
    assert not p.mask.any()
    with pytest.raises(ValueError, match="cells"):
        MaskPainter(scene[0], cells=1)


def test_painter_mask_feeds_the_explorer(tiny, scene):
    ref, _, tgt, _ = scene
    p = MaskPainter(ref, cells=8, mask=scene[1])
    np.testing.assert_array_equal(p.mask, scene[1])
    model = INSID3(tiny, image_size=64, svd_components=4, basis_cache=False)
    ex = Explorer(model, ref, p.mask, tgt)
    assert ex.last_error is None
    from insid3lab.core.preprocess import preprocess_mask

    assert torch.equal(ex.model.references[0].mask, preprocess_mask(scene[1], 64)[0])


def test_concept_explorer_refine_keeps_the_clustering(tiny, scene):
    from insid3lab.lab.explorer import ConceptExplorer

    ref, ref_mask, tgt, _ = scene
    lm = np.asarray(ref_mask).astype(np.uint8)
    lm[:40, :] = np.where(lm[:40, :] == 0, 2, lm[:40, :])  # a second concept: the top rows of the background
    labels = {1: "lesion", 2: "top"}
    app = ConceptExplorer(INSID3(tiny, image_size=S, svd_components=8, basis_cache=False, progress=False),
                          ref, lm, labels, tgt, panel_px=120)  # fmt: skip
    assert app.last_error is None and "insid3lab-concepts-control-refine" in app.controls["refine"]._dom_classes
    counts = dict(app.counts)
    app.controls["refine"].value = "crf"
    assert app.last_error is None, app.status.value
    assert app.counts["clustering"] == counts["clustering"] and app.counts["decode"] == counts["decode"] + 1
    direct = INSID3(tiny, image_size=S, svd_components=8, refine="crf", basis_cache=False, progress=False)
    direct.set_reference(ref, lm, labels=labels)
    assert torch.equal(app.label_map, direct.segment_labels(tgt)[0])
    before, counts = app.label_map.clone(), dict(app.counts)
    app.controls["clustering"].value = "torch"  # no tree: clustered once more, the same partition
    assert app.last_error is None and app.model.clustering == "torch"
    assert app.counts["clustering"] == counts["clustering"] + 1 and torch.equal(app.label_map, before)
