"""Task objects over one model and the model's short forms of them (insid3lab.tasks.shortcuts)."""

from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np
import pytest
import torch

from insid3lab import INSID3, ConceptSegmenter, KeypointMatcher, Params, Tracker
from insid3lab.model import insid3 as model_module
from insid3lab.synthetic.video import moving_object_sequence
from insid3lab.tasks.shortcuts import SHORT_FORMS

pytestmark = pytest.mark.usefixtures("isolated_cache")

#: What the short forms call: (task object's class, its method); ``labels`` is a property.
TASK_OF = {
    "segment_labels": (ConceptSegmenter, "segment_labels"),
    "segment_instances": (ConceptSegmenter, "segment_instances"),
    "labels": (ConceptSegmenter, "labels"),
    "track": (Tracker, "track"),
    "match": (KeypointMatcher, "match"),
}


def _concept_model(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    model.set_reference(scenes[0][0], scenes[0][1], label="a")
    model.set_reference(scenes[1][0], scenes[1][1], label="b")
    return model


# ------------------------------------------------------------------ the table and the model's size
def test_the_table_names_every_short_form_once():
    assert set(SHORT_FORMS) == set(TASK_OF)
    for name, form in SHORT_FORMS.items():
        assert inspect.getattr_static(INSID3, name) is form  # attached as listed, nothing else
        fn = form.fget if isinstance(form, property) else form
        assert fn.__qualname__ == f"INSID3.{name}" and fn.__doc__.startswith("Short form of")


def test_the_short_forms_keep_the_task_objects_signatures():
    for name, (cls, method) in TASK_OF.items():
        if name == "labels":
            assert isinstance(SHORT_FORMS[name], property) and isinstance(getattr(cls, method), property)
            continue
        short = inspect.signature(SHORT_FORMS[name]).parameters
        task = inspect.signature(getattr(cls, method)).parameters
        if cls is Tracker:  # the tracker's own settings are constructor arguments
            task = {**task, **{k: v for k, v in inspect.signature(Tracker).parameters.items() if k != "model"}}
        assert set(short) - {"self"} == set(task) - {"self"}, name
        for p in short.values():
            if p.name != "self":
                assert p.default == task[p.name].default and p.kind == task[p.name].kind, (name, p.name)


def test_the_model_class_of_the_root_is_the_model_layers_class_with_its_short_forms():
    assert INSID3 is model_module.INSID3 and all(hasattr(model_module.INSID3, n) for n in SHORT_FORMS)


def test_the_model_has_at_most_twenty_public_members_besides_the_short_forms():
    own = [n for n in dir(INSID3) if not n.startswith("_") and n not in SHORT_FORMS]
    assert len(own) <= 20, own
    for name in ("params", "encode", "set_reference", "clear_reference", "references", "segment"):
        assert name in own
    for name in ("segment_many", "decode", "positional", "shots", "set_target"):
        assert name in own
    # the hyper-parameters are served from params by one mechanism, not ten properties
    assert not set(own) & {f for f in Params.__dataclass_fields__}


def test_no_method_of_the_model_is_longer_than_a_screen():
    tree = ast.parse(textwrap.dedent(inspect.getsource(model_module.INSID3)))
    lengths = {f.name: f.end_lineno - f.lineno + 1 for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    assert max(lengths.values()) <= 50, lengths


def test_hyper_parameters_are_attributes_read_from_and_written_to_params(tiny):
    model = INSID3(tiny, image_size=64, tau=0.7, progress=False)
    assert model.tau == 0.7 == model.params.tau and model.image_size == 64
    before = model.params
    model.tau = 0.5
    assert model.params.tau == 0.5 and model.params is not before and before.tau == 0.7
    assert model.params.replace(tau=0.7) == before  # nothing else changed
    with pytest.raises(ValueError, match="tau"):
        model.tau = 2.0
    assert model.tau == 0.5  # a refused value leaves the record alone
    assert {"tau", "svd_components", "refine", "basis_seed"} <= set(dir(model))
    with pytest.raises(AttributeError, match="no attribute 'taus'"):
        _ = model.taus


# ------------------------------------------------------------------ each task object equals its short form
def test_concept_segmenter_equals_the_short_forms(tiny, scenes):
    model = _concept_model(tiny, scenes)
    concepts = ConceptSegmenter(model)
    assert concepts.labels == model.labels == ["a", "b"]
    label_map, scores = concepts.segment_labels(scenes[2][0])
    want_map, want_scores = model.segment_labels(scenes[2][0])
    assert torch.equal(label_map, want_map) and scores == want_scores
    got = concepts.segment_instances(scenes[2][0])
    want = model.segment_instances(scenes[2][0])
    assert [(d["label"], d["score"], d["box"]) for d in got] == [(d["label"], d["score"], d["box"]) for d in want]
    assert all(torch.equal(a["mask"], b["mask"]) for a, b in zip(got, want))
    both = concepts.labels_and_instances(scenes[2][0])
    assert torch.equal(both[0], want_map) and both[1] == want_scores and len(both[2]) == len(want)
    # decode of an encoded target is the same pass after the backbone
    decoded = concepts.decode(model.encode(scenes[2][0]))
    assert torch.equal(decoded.label_map, want_map)


def test_the_authors_sequence_works_through_a_task_object(tiny, scenes):
    model = _concept_model(tiny, scenes)
    want, _ = model.segment_labels(scenes[2][0])
    model.set_target(scenes[2][0])
    got, _ = ConceptSegmenter(model).segment_labels()
    assert torch.equal(got, want) and model.references == []  # the shots are forgotten afterwards


def test_tracker_over_a_model_equals_model_track(tiny):
    frames, maps = moving_object_sequence(4, (64, 80), seed=1, objects=2)
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    tracker = Tracker(model, memory=2, min_confidence=0.0)
    got = list(tracker.track(frames, maps[0], labels=True))
    want = list(model.track(frames, maps[0], memory=2, min_confidence=0.0, labels=True))
    assert len(got) == len(want) == 4 and all(torch.equal(a, b) for a, b in zip(got, want))
    assert [r.index for r in tracker.records] == [0, 1, 2, 3] and tracker.ids == [1, 2]
    # start and step by hand give the same masks; a new start forgets the old sequence
    first = tracker.start(frames[0], maps[0], labels=True)
    assert torch.equal(first, want[0]) and len(tracker.records) == 1
    assert all(torch.equal(tracker.step(f), w) for f, w in zip(frames[1:], want[1:]))


def test_tracker_settings_are_checked_when_it_is_built(tiny):
    model = INSID3(tiny, image_size=64, progress=False)
    with pytest.raises(ValueError, match="memory=-1"):
        Tracker(model, memory=-1)
    with pytest.raises(ValueError, match="min_confidence='x'"):
        Tracker(model, min_confidence="x")
    with pytest.raises(RuntimeError, match="call start"):
        Tracker(model).step(np.zeros((64, 64, 3), np.uint8))
    assert (Tracker.MEMORY, Tracker.MIN_CONFIDENCE) == (4, 0.5)


def test_keypoint_matcher_equals_model_match_and_leaves_the_settings(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    model.set_reference(scenes[0][0])
    pts = [[10.0, 20.0], [80.0, 60.0]]
    out, maps = KeypointMatcher(model).match(pts, scenes[1][0], svd_components=2, return_maps=True)
    want, want_maps = model.match(pts, scenes[1][0], svd_components=2, return_maps=True)
    assert torch.equal(out, want) and torch.equal(maps, want_maps)
    assert out.shape == (2, 2) and maps.shape == (2, 4, 4)
    assert model.svd_components == 8
    other = KeypointMatcher(model).match(pts, scenes[1][0], svd_components=8)
    assert not torch.equal(other, out)  # r of the call is used
    # an explicit reference image gives the first shot's answer
    same = KeypointMatcher(model).match(pts, scenes[1][0], scenes[0][0], svd_components=2)
    assert torch.equal(same, out)
