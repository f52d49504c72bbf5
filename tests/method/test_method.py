"""The method as one function: decode/finalize, the recorder, the plug points, the façade's settings."""

import pytest
import torch
from PIL import Image

from insid3lab import INSID3, save_pretrained
from insid3lab.bench import synthetic_inputs
from insid3lab.method import pipeline as method
from insid3lab.method.params import Params
from insid3lab.stages import clustering as clu
from insid3lab.stages import matching as mat
from insid3lab.stages.refine import REFINERS, get_refiner, register_refiner

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def inputs():
    return synthetic_inputs(2, 3, seed=21, size=(120, 160))


def _model(tiny, inputs, **kw):
    model = INSID3(tiny, **{"image_size": 128, "svd_components": 20, "basis_cache": False, **kw})
    for img, m in inputs[0]:
        model.set_reference(img, m)
    return model


def test_decode_called_directly_equals_segment(tiny, inputs):
    model = _model(tiny, inputs)
    ref = model.shots.state()
    for t in inputs[1]:
        enc = model.encode(t)
        mask = method.decode(
            ref["features_deb"],
            ref["masks_low"],
            ref["prototype"],
            enc.features_norm,
            model.positional.debias(enc.features_norm),
            model.params,
            out_size=enc.orig_size,
        )
        assert torch.equal(mask, model.segment(t))


def test_a_trace_never_changes_the_mask_and_records_the_restricted_votes(tiny, inputs):
    model = _model(tiny, inputs)
    restricted_mattered = False
    for t in inputs[1]:
        plain = model.segment(t)
        traced, tr = model.segment(t, return_trace=True)
        assert torch.equal(plain, traced)
        # votes are counted at the forward cells only, with or without a trace ...
        assert int(tr.votes[~tr.forward_mask].abs().sum()) == 0
        # ... and on these scenes the votes of every cell differ from them outside the forward cells
        full = mat.backward_votes(tr.reference_features_deb, tr.target_features_deb, tr.reference_masks_low)
        assert torch.equal(full[tr.forward_mask], tr.votes[tr.forward_mask])
        restricted_mattered |= bool((full[~tr.forward_mask] > 0).any())
        assert torch.equal(tr.candidates, tr.forward_mask & (full >= 1))
    assert restricted_mattered


def test_finalize_equals_decode_and_a_new_threshold_equals_a_new_segment(tiny, inputs):
    model = _model(tiny, inputs)
    t = inputs[1][0]
    mask, tr = model.segment(t, return_trace=True)
    assert tr.cluster_labels is not None, "the scene should have candidates"
    again = method.finalize(
        tr.cluster_labels, tr.cluster_score, model.merge_threshold, model.params, out_size=tr.target_size
    )
    assert torch.equal(again, mask)
    for thr in (-0.2, 0.0, 0.4):
        other = method.finalize(tr.cluster_labels, tr.cluster_score, thr, model.params, out_size=tr.target_size)
        model.merge_threshold = thr
        assert torch.equal(other, model.segment(t))


def test_a_custom_refiner_registered_by_name_is_used(tiny, inputs):
    seen = []

    def fill_box(mask, image):
        seen.append((tuple(mask.shape), mask.dtype, tuple(image.shape), float(image.min()), float(image.max())))
        out = torch.zeros_like(mask)
        out[: mask.shape[0] // 2] = True
        return out

    register_refiner("top-half", fill_box, overwrite=True)
    try:
        model = _model(tiny, inputs, refine="top-half", resize_to_orig_size=False)
        mask = model.segment(inputs[1][0])
        assert len(seen) == 1 and seen[0][:3] == ((128, 128), torch.bool, (3, 128, 128))
        assert 0.0 <= seen[0][3] and seen[0][4] <= 1.0  # the un-normalised image
        assert bool(mask[:64].all()) and not bool(mask[64:].any())
        assert model.settings()["refine"] == "top-half"
    finally:
        REFINERS.pop("top-half")
    with pytest.raises(ValueError, match="Try one of 'bilinear'"):
        get_refiner("top-half")
    with pytest.raises(ValueError, match="refine='top-half'"):
        Params(refine="top-half")


def test_a_custom_clusterer_callable_is_used(tiny, inputs):
    calls = []

    def counting(X, threshold):
        calls.append(X.shape)
        return clu.agglomerative_clustering(X, 1.0 - threshold, method="scipy")

    model = _model(tiny, inputs, clustering=counting)
    reference = _model(tiny, inputs)
    for t in inputs[1]:
        assert torch.equal(model.segment(t), reference.segment(t))
    assert len(calls) >= 1 and all(s == (64, 64) for s in calls)


def test_a_clusterer_registered_by_name_is_used(tiny, inputs):
    calls = []

    def counting(X, threshold):
        calls.append(threshold)
        return clu.agglomerative_clustering(X, 1.0 - threshold, method="sklearn")

    clu.register_clusterer("counting-test", counting)
    try:
        model = _model(tiny, inputs, clustering="counting-test")
        assert torch.equal(model.segment(inputs[1][0]), _model(tiny, inputs).segment(inputs[1][0]))
        assert calls and all(abs(t - (1.0 - model.tau)) < 1e-12 for t in calls)
    finally:
        del clu.CLUSTERERS["counting-test"]


def test_match_with_its_own_components_leaves_the_model_unchanged(tiny, inputs):
    model = _model(tiny, inputs)
    before = model.params
    img = inputs[0][0][0]
    pts = [[10.0, 20.0], [100.0, 60.0]]
    out = model.match(pts, inputs[1][0], svd_components=4)
    assert model.params is before and model.svd_components == 20
    same = INSID3(tiny, image_size=128, svd_components=4, basis_cache=False)
    same.set_reference(img)
    assert torch.equal(out, same.match(pts, inputs[1][0]))


def test_hyperparameters_are_attributes_over_one_params(tiny):
    model = INSID3(tiny, image_size=64, tau=0.5)
    assert model.params == Params(image_size=64, tau=0.5)
    model.tau = 0.7
    model.merge_threshold = 0.1
    assert (model.params.tau, model.params.merge_threshold) == (0.7, 0.1)
    with pytest.raises(ValueError, match="tau=2"):
        model.tau = 2
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        model.image_size = 72
    assert model.tau == 0.7 and model.image_size == 64
    assert INSID3(tiny, params=Params(tau=0.3), image_size=64).params.tau == 0.3


def test_a_target_encoded_at_another_size_is_refused(tiny, inputs):
    model = _model(tiny, inputs)
    enc = model.encode(inputs[1][0])
    model.image_size = 64
    with pytest.raises(ValueError, match="encoded at image_size=128"):
        model.decode(enc)


def test_from_pretrained_reads_a_saved_checkpoint_and_random_sources(tiny, inputs, tmp_path):
    save_pretrained(tiny, tmp_path / "tiny")
    loaded = INSID3.from_pretrained(
        tmp_path / "tiny", device="cpu", image_size=128, svd_components=20, basis_cache=False
    )
    rnd = INSID3.from_pretrained("random:tiny", device="cpu", image_size=128, svd_components=20, basis_cache=False)
    direct = _model(tiny, inputs)
    for m in (loaded, rnd):
        for img, mask in inputs[0]:
            m.set_reference(img, mask)
    t = inputs[1][0]
    assert torch.equal(loaded.segment(t), direct.segment(t))
    assert torch.equal(rnd.segment(t), direct.segment(t))  # random:tiny is seed 0, as the fixture


def test_the_authors_sequence_resets_and_takes_pil_inputs(tiny, inputs):
    from insid3lab import authors

    model = _model(tiny, inputs)
    t = inputs[1][1]
    theirs = authors.segment(tiny, inputs[0], t, image_size=128, svd_components=20)
    assert isinstance(t, Image.Image) and torch.equal(model.segment(t), theirs)
