"""Grids of settings: the spec (parsing, checks, names) and the shared decode (each setting equals its own decode)."""

from __future__ import annotations

import json

import pytest
import torch

from insid3lab import INSID3, Params, SettingsGrid, segment_grid, segment_instances_grid, segment_labels_grid
from insid3lab.bench.concepts import concept_label_map
from insid3lab.method import grid_decode, pipeline
from insid3lab.method.grid import MAX_SETTINGS, parse_axis, parse_setting, parse_value
from insid3lab.method.grid_decode import ClusterCuts
from insid3lab.method.pipeline import cluster_target
from insid3lab.stages.clustering.tree import linkage_tree
from insid3lab.synthetic import sample_scene

# ───────────────────────── the spec ─────────────────────────


def test_axes_give_their_product_first_axis_slowest():
    g = SettingsGrid.parse(["tau=0.4,0.5", "merge_threshold=0.1,0.2,0.3"], Params(svd_components=20))
    assert len(g) == 6 and g.axes == {"tau": (0.4, 0.5), "merge_threshold": (0.1, 0.2, 0.3)}
    assert [g.label(i) for i in (0, 1, 3)] == [
        "tau=0.4,merge_threshold=0.1",
        "tau=0.4,merge_threshold=0.2",
        "tau=0.5,merge_threshold=0.1",
    ]
    assert g[4] == Params(svd_components=20, tau=0.5, merge_threshold=0.2)
    assert all(p.svd_components == 20 for p in g)
    assert g.base_index is None  # tau 0.6 is not an axis value
    assert g.to_json()["settings"][5] == {"tau": 0.5, "merge_threshold": 0.3}


def test_values_are_parsed_as_the_field_is_typed():
    assert parse_value("svd_components", " 100 ") == 100 and isinstance(parse_value("tau", "1"), float)
    assert parse_value("debias", "off") is False and parse_value("debias", "TRUE") is True
    assert parse_value("basis_image", "noise") == "noise" and parse_value("refine", "crf") == "crf"
    assert parse_axis("merge-threshold=-0.1, 0.5") == ("merge_threshold", [-0.1, 0.5])
    assert parse_setting("tau=0.5,svd_components=0") == {"tau": 0.5, "svd_components": 0}


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        (["foo=1"], "grid axis 'foo' is not a parameter; allowed: image_size, svd_components, tau, merge_threshold"),
        (["tau=1.5"], r"tau=1.5: must be in \(0, 1\]"),
        (["svd_components=1.5"], "svd_components='1.5': must be an integer"),
        (["debias=maybe"], "debias='maybe': must be true or false"),
        (["refine=blur"], "refine='blur': allowed 'bilinear'"),
        (["tau="], "grid axis 'tau' is empty"),
        (["tau"], "write NAME=V1,V2"),
        (["tau=0.4,0.4"], "grid axis 'tau' repeats the value 0.4"),
        (["tau=0.4", "tau=0.5"], "grid axis 'tau' is given twice"),
    ],
)
def test_bad_axes_are_named(axes, message):
    with pytest.raises(ValueError, match=message):
        SettingsGrid.parse(axes)


def test_more_than_ten_thousand_settings_are_refused_with_the_count():
    axes = {"tau": [i / 100 for i in range(1, 101)], "merge_threshold": [i / 200 for i in range(101)]}
    with pytest.raises(ValueError, match=r"grid of 10,100 settings \(100 x 101\) is refused: at most 10,000"):
        SettingsGrid.from_axes(axes)
    assert len(SettingsGrid.from_axes({"tau": axes["tau"], "merge_threshold": axes["merge_threshold"][:100]})) == (
        MAX_SETTINGS
    )


def test_a_list_of_settings_fills_the_rest_from_the_base_and_rebases():
    g = SettingsGrid.from_settings([{"tau": 0.5}, {"tau": 0.7, "svd_components": 100}], Params(svd_components=20))
    assert g.axes == {"tau": (0.5, 0.7), "svd_components": (20, 100)} and not g.product
    assert [g.label(i) for i in range(2)] == ["tau=0.5,svd_components=20", "tau=0.7,svd_components=100"]
    moved = g.rebase(Params(svd_components=30, merge_threshold=0.1))
    assert moved[0] == Params(svd_components=30, merge_threshold=0.1, tau=0.5)
    assert moved[1].svd_components == 100
    with pytest.raises(ValueError, match="the setting tau=0.5,svd_components=20 is given twice"):
        SettingsGrid.from_settings([{"tau": 0.5}, {"tau": 0.5, "svd_components": 20}], Params(svd_components=20))
    with pytest.raises(ValueError, match="non-empty list"):
        SettingsGrid.from_settings([])


def test_grid_files(tmp_path):
    f = tmp_path / "g.json"
    f.write_text(json.dumps([{"tau": 0.5}, {"merge_threshold": 0.3}]))
    g = SettingsGrid.from_file(f)
    assert [p.as_dict()["tau"] for p in g] == [0.5, 0.6] and g[1].merge_threshold == 0.3
    f.write_text(json.dumps({"axes": {"tau": [0.5, 0.6], "debias": [True, False]}}))
    assert len(SettingsGrid.from_file(f)) == 4
    f.write_text('[{"tau": 2}]')
    with pytest.raises(ValueError, match=r"grid file '.*g.json': tau=2.0: must be in \(0, 1\]"):
        SettingsGrid.from_file(f)
    f.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        SettingsGrid.from_file(f)
    with pytest.raises(ValueError, match="does not exist"):
        SettingsGrid.from_file(tmp_path / "missing.json")


def test_find_reads_a_setting_name_back():
    g = SettingsGrid.parse(["tau=0.5,0.6", "merge_threshold=0.1,0.2"])  # base: tau 0.6, merge 0.2
    assert g.base_index == 3
    assert g.find("tau=0.5") == 1  # merge_threshold left out: the base's 0.2
    assert g.find("merge_threshold=0.1,tau=0.5") == 0 == g.find({"tau": 0.5, "merge_threshold": 0.1})
    assert g.find("") == 3
    with pytest.raises(ValueError, match="setting tau=0.55,merge_threshold=0.2 is not in the grid; its settings: "
                       "tau in 0.5, 0.6; merge_threshold in 0.1, 0.2"):  # fmt: skip
        g.find("tau=0.55")
    with pytest.raises(ValueError, match="svd_components is not an axis of the grid"):
        g.find("svd_components=3")


# ───────────────────────── the shared decode ─────────────────────────

SIZE = 128


@pytest.fixture(scope="module")
def scenes():
    img, mask = sample_scene(0, (SIZE, SIZE))
    return img, mask, sample_scene(11, (SIZE, SIZE))[0]


def _model(tiny, **kw):
    kw = {"image_size": SIZE, "svd_components": 32, **kw}
    return INSID3(tiny, basis_cache=False, progress=False, **kw)


def test_every_setting_equals_its_own_segment(tiny, scenes):
    img, mask, tgt = scenes
    model = _model(tiny)
    model.set_reference(img, mask)
    axes = {"tau": [0.4, 0.6, 0.8], "merge_threshold": [0.1, 0.3], "svd_components": [0, 16], "image_size": [64, 128]}
    g = SettingsGrid.from_axes(axes, model.params)
    masks = segment_grid(model, tgt, g)
    assert model.params == Params(image_size=SIZE, svd_components=32)  # restored
    sums = set()
    for i, p in enumerate(g):
        alone = INSID3(tiny, params=p, basis_cache=False, progress=False)
        alone.set_reference(img, mask)
        expected = alone.segment(tgt)
        assert torch.equal(masks[i], expected), g.label(i)
        sums.add(int(expected.sum()))
    assert len(sums) > 3  # the settings do change the masks
    # an encoding of the target serves the settings of its size; the others encode its image again
    encoded = segment_grid(model, model.encode(tgt), g)
    assert all(torch.equal(a, b) for a, b in zip(encoded, masks))


def test_other_axes_and_a_list_of_settings(tiny, scenes):
    img, mask, tgt = scenes
    model = _model(tiny, resize_to_orig_size=False)
    model.set_reference(img, mask)
    settings = [{"debias": False}, {"basis_image": "noise", "basis_noise_images": 2}, {"refine": "crf", "tau": 0.5},
                {"clustering": "torch", "tau": 0.5}, {"clustering": "scipy", "tau": 0.7}]  # fmt: skip
    g = SettingsGrid.from_settings(settings, model.params)
    masks = segment_grid(model, tgt, g)
    for i, p in enumerate(g):
        alone = INSID3(tiny, params=p, basis_cache=False, progress=False, resize_to_orig_size=False)
        alone.set_reference(img, mask)
        assert torch.equal(masks[i], alone.segment(tgt)), g.label(i)


def test_the_work_is_shared(tiny, scenes, monkeypatch):
    img, mask, tgt = scenes
    model = _model(tiny)
    model.set_reference(img, mask)
    encoded, debiased = [], []
    encode, debias = model.encode, model.positional.debias
    monkeypatch.setattr(model, "encode", lambda *a, **k: encoded.append(1) or encode(*a, **k))
    monkeypatch.setattr(model.positional, "debias", lambda f, **k: debiased.append(f.ndim) or debias(f, **k))
    trees, clusterings = [], []
    monkeypatch.setattr(grid_decode, "linkage_tree", lambda x: trees.append(1) or linkage_tree(x))
    monkeypatch.setattr(pipeline, "cluster_target", lambda *a: clusterings.append(1) or cluster_target(*a))
    g = SettingsGrid.parse(["tau=0.4,0.5,0.6,0.7", "merge_threshold=0.1,0.2,0.3", "svd_components=0,8,16,32"])
    masks = segment_grid(model, tgt, g)
    assert len(masks) == 48
    assert len(encoded) == 1  # the target once; the reference was encoded by set_reference
    assert debiased.count(3) == 4  # the target debiased once per component count (r = 0 included)
    assert (len(trees), len(clusterings)) == (1, 0)  # one tree for four values of τ
    assert len({id(m) for m in masks}) < 48  # equal masks are one tensor


def test_cluster_cuts_equal_the_clusterer_at_every_tau(tiny, scenes):
    model = _model(tiny)
    enc = model.encode(scenes[2])
    cuts = ClusterCuts(enc.features_norm)
    for tau in (0.3, 0.5, 0.7, 0.9):
        p = Params(tau=tau)
        assert torch.equal(cuts.labels(p, taus=4), cluster_target(enc.features_norm, p))
        assert torch.equal(cuts.labels(p.replace(clustering="torch")), cluster_target(enc.features_norm,
                                                                                      p.replace(clustering="torch")))  # fmt: skip
    assert cuts.runs == 1 + 4  # one tree; "torch" is not a cut of it: once per τ


def test_concept_grids_equal_segment_labels_and_instances(tiny, scenes):
    img, mask, tgt = scenes
    model = _model(tiny)
    names = {1: "a", 2: "b", 3: "c"}
    lm = concept_label_map(mask, 3)
    model.set_reference(img, lm, labels=names)
    g = SettingsGrid.from_axes({"tau": [0.4, 0.6], "merge_threshold": [-0.2, 0.2], "refine": ["bilinear", "crf"]},
                               model.params)  # fmt: skip
    results = segment_labels_grid(model, tgt, g)
    instances = segment_instances_grid(model, tgt, g)
    for i, p in enumerate(g):
        alone = INSID3(tiny, params=p, basis_cache=False, progress=False)
        alone.set_reference(img, lm, labels=names)
        label_map, scores = alone.segment_labels(tgt)
        assert torch.equal(results[i].label_map, label_map) and results[i].scores == scores, g.label(i)
        expected = alone.segment_instances(tgt)
        assert [(d["label"], d["score"], d["box"]) for d in instances[i]] == [
            (d["label"], d["score"], d["box"]) for d in expected
        ]
        assert all(torch.equal(a["mask"], b["mask"]) for a, b in zip(instances[i], expected))


def test_bad_grids_for_a_model(tiny, scenes):
    model = _model(tiny)
    with pytest.raises(ValueError, match="image_size=100: must be a positive multiple of the patch size 16"):
        segment_grid(model, scenes[2], {"image_size": [64, 100]})
    with pytest.raises(RuntimeError, match="no reference yet"):
        segment_grid(model, scenes[2], {"tau": [0.5]})
