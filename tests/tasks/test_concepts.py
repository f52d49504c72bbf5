"""Many concepts in one pass: labelled references, the label map, the competition, instances, outputs."""

import json

import numpy as np
import pytest
import torch
from helpers.synthetic import ColourPositionEncoder
from matplotlib.figure import Figure
from PIL import Image

from insid3lab import INSID3
from insid3lab.method import pipeline as method
from insid3lab.method.concepts import split_instances
from insid3lab.model.references import DEFAULT_LABEL
from insid3lab.synthetic import grid_scene, sample_scene
from insid3lab.tasks.concept_files import write_label_outputs
from insid3lab.viz import iou
from insid3lab.viz import labels as viz_labels

pytestmark = pytest.mark.usefixtures("isolated_cache")

RED, GREEN, YELLOW, DARK_RED = (230, 30, 30), (30, 200, 40), (240, 230, 40), (200, 60, 60)


def _hand(**kw):
    enc = ColourPositionEncoder(pos_strength=kw.pop("pos_strength", 2.0))
    return INSID3(enc, **{"image_size": 256, "svd_components": 16, "basis_cache": False, **kw})


def _two_object_scenes():
    """A reference with a red and a green object (and its label map), a target where both moved."""
    ref, rm = grid_scene([(32, 32, 96, 112, RED), (160, 160, 224, 224, GREEN)])
    label_map = np.zeros((256, 256), np.uint8)
    label_map[rm[RED]] = 1
    label_map[rm[GREEN]] = 2
    tgt, tm = grid_scene([(144, 128, 208, 208, RED), (32, 32, 96, 112, GREEN), (16, 176, 64, 240, YELLOW)])
    return ref, rm, label_map, tgt, tm


# ------------------------------------------------------------------ one concept is unchanged
def test_one_concept_gives_the_single_concept_mask(tiny):
    model = INSID3(tiny, image_size=64, svd_components=10, progress=False)
    shots = [sample_scene(s, (96, 128)) for s in (0, 1)]
    for img, m in shots:
        model.set_reference(Image.fromarray(img), m)
    assert model.labels == [DEFAULT_LABEL]
    nonempty = 0
    for seed in (3, 4, 5):
        tgt = Image.fromarray(sample_scene(seed, (100, 90))[0])
        mask = model.segment(tgt)
        label_map, scores = model.segment_labels(tgt)
        assert label_map.dtype == torch.int64 and label_map.shape == mask.shape
        assert torch.equal(label_map, mask.long())
        assert set(scores) == {DEFAULT_LABEL} and (scores[DEFAULT_LABEL] > 0) == bool(mask.any())
        nonempty += int(mask.any())
    assert nonempty >= 1
    # naming the one concept changes nothing
    named = INSID3(tiny, image_size=64, svd_components=10, progress=False)
    for img, m in shots:
        named.set_reference(Image.fromarray(img), m, label="thing")
    assert named.labels == ["thing"]
    assert torch.equal(named.segment(tgt), mask)


# ------------------------------------------------------------------ a label map
def test_label_map_equals_each_concept_alone_and_encodes_once():
    ref, rm, label_map, tgt, tm = _two_object_scenes()
    model = _hand()
    before = model.encoder.calls
    model.set_reference(ref, label_map, labels={1: "red", 2: "green"})
    assert model.encoder.calls == before + 1, "one encoding for every concept of a label map"
    assert model.labels == ["red", "green"] and len(model.references) == 2
    assert model.references[0].features is model.references[1].features
    out, scores, trace = model.segment_labels(tgt, return_trace=True)
    assert set(torch.unique(out).tolist()) == {0, 1, 2}
    assert iou(out.numpy() == 1, tm[RED]) > 0.9 and iou(out.numpy() == 2, tm[GREEN]) > 0.9
    assert scores["red"] > 0.9 and scores["green"] > 0.9
    for i, colour in enumerate((RED, GREEN), start=1):
        alone = _hand()
        alone.set_reference(ref, rm[colour])
        mask, t = alone.segment(tgt, return_trace=True)
        assert torch.equal(out == i, mask)
        ct = trace.concepts[i - 1]
        assert torch.equal(ct.cluster_score, t.cluster_score) and ct.seed == t.seed
        assert torch.equal(ct.candidates, t.candidates) and torch.equal(ct.mask, mask)
    assert torch.equal(trace.label_map, out) and trace.claims.shape == (2, trace.num_clusters)
    assert "2 concept(s)" in trace.summary()
    # "all" names the concepts by their values
    every = _hand()
    every.set_reference(ref, label_map, labels="all")
    assert every.labels == ["1", "2"]
    assert torch.equal(every.segment_labels(tgt)[0], out)


def test_pooled_labels_are_k_shot_and_separate_calls_with_one_name_pool(tiny):
    shots = [sample_scene(s, (96, 128)) for s in (0, 1)]
    tgt = Image.fromarray(sample_scene(4, (100, 100))[0])
    plain = INSID3(tiny, image_size=64, svd_components=10, progress=False)
    pooled = INSID3(tiny, image_size=64, svd_components=10, progress=False)
    for img, m in shots:
        plain.set_reference(Image.fromarray(img), m)
        pooled.set_reference(Image.fromarray(img), m, label="cat")
    other = np.zeros((96, 128), np.uint8)
    other[10:40, 10:50] = 1
    pooled.set_reference(Image.fromarray(shots[0][0]), other, label="box")
    assert pooled.labels == ["cat", "box"]
    assert [s["shots"] for s in pooled.shots.concept_states()] == [[0, 1], [2]]
    _label_map, _, trace = pooled.segment_labels(tgt, return_trace=True)
    _mask, t = plain.segment(tgt, return_trace=True)
    assert torch.equal(trace.concepts[0].cluster_score, t.cluster_score)
    assert torch.equal(trace.concepts[0].prototype, t.prototype)


def test_one_clustering_for_many_concepts(monkeypatch):
    calls = []
    real = method.agglomerative_clustering

    def counting(X, tau, *, method="auto"):
        calls.append(X.shape)
        return real(X, tau, method=method)

    monkeypatch.setattr(method, "agglomerative_clustering", counting)
    ref, rm, label_map, tgt, _ = _two_object_scenes()
    model = _hand()
    model.set_reference(ref, label_map, labels={1: "red", 2: "green"})
    model.set_reference(ref, rm[RED], label="red again")
    assert len(model.labels) == 3
    model.segment_labels(tgt)
    assert len(calls) == 1 and calls[0] == (16 * 16, model.embed_dim)
    model.segment_instances(tgt)
    assert len(calls) == 2


# ------------------------------------------------------------------ the competition
def test_a_cluster_claimed_twice_goes_to_the_higher_score():
    """Red and a darker red both reach into each other's object; each cluster goes to the higher score."""
    refs = [grid_scene([(32, 32, 96, 112, RED)]), grid_scene([(160, 160, 224, 224, DARK_RED)])]
    tgt, tm = grid_scene([(144, 16, 208, 96, RED), (32, 144, 96, 224, DARK_RED)])
    model = _hand(pos_strength=0.5, merge_threshold=0.0)
    model.set_reference(refs[0][0], refs[0][1][RED], label="red")
    model.set_reference(refs[1][0], refs[1][1][DARK_RED], label="dark")
    out, _, tr = model.segment_labels(tgt, return_trace=True)
    contested = tr.claims.all(dim=0)
    assert bool(contested.any()), "the scene should make both concepts claim a cluster"
    for k in contested.nonzero()[:, 0].tolist():
        assert int(tr.owner[k]) == int(tr.cluster_scores[:, k].argmax())
    assert torch.equal(tr.label_map_low, (tr.owner + 1)[tr.cluster_labels])
    assert iou(out.numpy() == 1, tm[RED]) > 0.9 and iou(out.numpy() == 2, tm[DARK_RED]) > 0.9
    # each concept alone claims more than it keeps here
    for c, colour in enumerate((RED, DARK_RED)):
        alone = _hand(pos_strength=0.5, merge_threshold=0.0)
        alone.set_reference(refs[c][0], refs[c][1][colour])
        assert bool((alone.segment(tgt) & ~(out == c + 1)).any())


def test_equal_scores_go_to_the_earlier_concept():
    ref, rm, _label_map, tgt, tm = _two_object_scenes()
    model = _hand()
    model.set_reference(ref, rm[RED], label="first")
    model.set_reference(ref, rm[RED], label="second")
    out, scores, tr = model.segment_labels(tgt, return_trace=True)
    assert torch.equal(tr.cluster_scores[0], tr.cluster_scores[1])
    assert int((out == 2).sum()) == 0 and iou(out.numpy() == 1, tm[RED]) > 0.9
    assert scores["second"] == 0.0 and scores["first"] > 0.9


# ------------------------------------------------------------------ instances
def test_two_separated_objects_are_two_instances_with_their_boxes():
    ref, rm = grid_scene([(32, 32, 96, 112, RED)])
    tgt, _tm = grid_scene([(144, 16, 208, 96, RED), (32, 160, 80, 224, RED), (176, 160, 240, 240, YELLOW)])
    model = _hand(pos_strength=0.5)
    model.set_reference(ref, rm[RED], label="red")
    found, tr = model.segment_instances(tgt, return_trace=True)
    assert [f["label"] for f in found] == ["red", "red"]
    boxes = sorted(f["box"] for f in found)
    assert np.abs(np.array(boxes) - np.array([(16, 144, 96, 208), (160, 32, 224, 80)])).max() <= 2
    union = found[0]["mask"] | found[1]["mask"]
    assert not bool((found[0]["mask"] & found[1]["mask"]).any())
    assert torch.equal(union, tr.label_map == 1)  # the instances partition the concept's mask
    for f in found:
        ys, xs = f["mask"].nonzero(as_tuple=True)
        assert f["box"] == (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_touching_objects_of_one_concept_stay_one_instance():
    ref, rm = grid_scene([(32, 32, 96, 112, RED)])
    tgt, tm = grid_scene([(144, 16, 208, 96, RED), (144, 96, 208, 160, RED)])  # side by side
    model = _hand(pos_strength=0.5)
    model.set_reference(ref, rm[RED])
    found = model.segment_instances(tgt)
    assert len(found) == 1 and iou(found[0]["mask"].numpy(), tm[RED]) > 0.9


@pytest.mark.parametrize("look_alike", [DARK_RED, (180, 30, 30)])
def test_instance_scores_rank_the_true_objects_first(look_alike):
    ref, rm = grid_scene([(32, 32, 96, 112, RED)])
    tgt, tm = grid_scene([(144, 16, 208, 96, RED), (32, 160, 80, 224, RED), (176, 160, 240, 240, look_alike)])
    model = _hand(pos_strength=1.0)
    model.set_reference(ref, rm[RED])
    found, tr = model.segment_instances(tgt, return_trace=True)
    correct = [bool((f["mask"].numpy() & tm[RED]).sum() > 0.5 * f["mask"].sum()) for f in found]
    assert correct.count(True) == 2 and correct.count(False) == 1, "two true objects and the look-alike"
    assert correct == [True, True, False]  # sorted by score: the look-alike last
    # the chosen score separates them by a wider margin than the clusters' mean aggregation score
    cell_scores = tr.cluster_scores[0][tr.cluster_labels]
    low = [
        torch.from_numpy(np.array(Image.fromarray(f["mask"].numpy()).resize((16, 16), Image.NEAREST))) for f in found
    ]
    by_cluster = [float(cell_scores[c].mean()) for c in low]
    by_similarity = [f["score"] for f in found]
    assert min(by_similarity[:2]) - by_similarity[2] > min(by_cluster[:2]) - by_cluster[2]


# ------------------------------------------------------------------ outputs and figures
def test_write_label_outputs(tmp_path):
    from pycocotools import mask as mask_utils

    ref, _rm, label_map, tgt, _tm = _two_object_scenes()
    model = _hand()
    model.set_reference(ref, label_map, labels={1: "red", 2: "green"})
    out, scores, tr = model.segment_labels(tgt, return_trace=True)
    found = split_instances(tr)
    paths = write_label_outputs(out, found, model.labels, tmp_path / "out", "scene", image=tgt)
    png = Image.open(paths["labels"])
    assert png.mode == "P" and np.array_equal(np.asarray(png), out.numpy())
    assert tuple(png.getpalette()[3:6]) != (0, 0, 0)
    doc = json.loads(paths["instances"].read_text())
    assert doc["image_size"] == [256, 256] and [c["name"] for c in doc["categories"]] == ["red", "green"]
    assert len(doc["instances"]) == len(found) == 2
    for rec, f in zip(doc["instances"], found):
        rle = {"size": rec["segmentation"]["size"], "counts": rec["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), f["mask"].numpy())
        assert rec["category"] == f["label"] and rec["category_id"] == model.labels.index(f["label"]) + 1
        x0, y0, x1, y1 = f["box"]
        assert rec["bbox"] == [x0, y0, x1 - x0, y1 - y0] and rec["area"] == int(f["mask"].sum())
    assert Image.open(paths["overlay"]).size[0] > 100
    with pytest.raises(ValueError, match="names has 1 concepts"):
        write_label_outputs(out, found, ["red"], tmp_path, "x")
    fig = viz_labels.labels(out, model.labels, scores, image=tgt)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["red", "green"]
    assert isinstance(viz_labels.instances(tgt, found, model.labels), Figure)


def test_label_map_shots_follow_a_new_image_size():
    ref, _rm, label_map, _tgt, _tm = _two_object_scenes()
    model = _hand()
    model.set_reference(ref, label_map, labels={1: "red", 2: "green"})
    model.image_size = 128
    model.positional.svd()  # the black image at the new size
    before = model.encoder.calls
    states = model.shots.concept_states()
    assert model.encoder.calls == before + 1
    assert [r.label for r in model.references] == ["red", "green"] and states[0]["masks_low"].shape[-1] == 8


# ------------------------------------------------------------------ bad input
def test_bad_input_errors(tiny):
    ref, rm, label_map, tgt, _ = _two_object_scenes()
    model = _hand()
    with pytest.raises(RuntimeError, match="no concept yet"):
        model.segment_labels(tgt)
    with pytest.raises(ValueError, match=r"no value other than 0 \(background\) and 255 \(void\)"):
        model.set_reference(ref, np.zeros((256, 256), np.uint8), labels="all")
    with pytest.raises(ValueError, match="'a' is given for values 1 and 2"):
        model.set_reference(ref, label_map, labels={1: "a", 2: "a"})
    with pytest.raises(ValueError, match="non-zero integer"):
        model.set_reference(ref, label_map, labels={0: "background"})
    with pytest.raises(ValueError, match="non-empty string"):
        model.set_reference(ref, label_map, labels={1: ""})
    with pytest.raises(ValueError, match="neither label= nor mask_value="):
        model.set_reference(ref, label_map, labels={1: "a"}, label="b")
    with pytest.raises(ValueError, match="non-empty string"):
        model.set_reference(ref, rm[RED], label="  ")
    with pytest.raises(ValueError, match=r"labels value 7 \(.absent.\) is absent from the label map"):
        model.set_reference(ref, label_map, labels={1: "red", 7: "absent"})
    assert model.references == []  # a failed call adds nothing
    model.set_reference(ref, label_map, labels={1: "red", 2: "green"})
    with pytest.raises(RuntimeError, match=r"2 concepts are set \(red, green\).*segment_labels"):
        model.segment(tgt)
    with pytest.raises(RuntimeError, match="segment_labels"):
        model.segment_many([tgt])


def test_concept_explorer_shows_the_label_map_and_clusters_once():
    from insid3lab.lab.explorer import ConceptExplorer

    ref, _rm, label_map, tgt, _tm = _two_object_scenes()
    model = _hand()
    app = ConceptExplorer(model, ref, label_map, {1: "red", 2: "green"}, tgt, panel_px=120)
    assert app.last_error is None and model.labels == ["red", "green"]
    direct = _hand()
    direct.set_reference(ref, label_map, labels={1: "red", 2: "green"})
    assert torch.equal(app.label_map, direct.segment_labels(tgt)[0])
    assert app.counts["clustering"] == 1 and len(app.instances) == 2
    assert all(p.value[:4] == b"\x89PNG" for p in app.panels.values())
    assert "insid3lab-labels" in app.panels["labels"]._dom_classes
    assert {f"insid3lab-concepts-control-{n}" for n in ("tau", "svd", "merge", "debias")} <= {
        c for w in app.controls.values() for c in w._dom_classes
    }
    app.controls["merge"].value = 0.95
    assert app.counts["clustering"] == 1 and app.counts["decode"] == 2 and app.last_error is None
    app.controls["merge"].value = 0.2
    app.controls["tau"].value = 0.8  # a cut of the tree: no new clustering
    direct.tau = 0.8
    assert app.counts["clustering"] == 1 and app.last_error is None
    assert torch.equal(app.label_map, direct.segment_labels(tgt)[0])
    app.controls["tau"].value = 0.6
    direct.tau = 0.6
    assert app.counts["clustering"] == 1 and torch.equal(app.label_map, direct.segment_labels(tgt)[0])
