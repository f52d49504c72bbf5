"""The INSID3 pipeline end to end: reproduction, the hand-made encoder, k-shot, caching, inputs, errors."""

import warnings

import numpy as np
import pytest
import torch
from helpers.synthetic import ColourPositionEncoder
from PIL import Image

from insid3lab import INSID3, authors, load_backbone
from insid3lab.model.insid3 import SegmentManyError
from insid3lab.synthetic import grid_scene
from insid3lab.viz import iou

pytestmark = pytest.mark.usefixtures("isolated_cache")

RED, GREEN, YELLOW = (230, 30, 30), (30, 200, 40), (240, 230, 40)


# ---------------------------------------------------------------- the hand-made encoder
def _moved_object_scenes():
    ref, rm = grid_scene([(32, 32, 96, 112, RED), (160, 160, 224, 224, YELLOW)])
    # the object moved; a green square now sits where the object was in the reference
    tgt, tm = grid_scene([(144, 128, 208, 208, RED), (32, 32, 96, 112, GREEN), (16, 176, 64, 240, YELLOW)])
    return ref, rm[RED], tgt, tm[RED]


def test_hand_made_encoder_finds_the_object():
    ref, ref_mask, tgt, gt = _moved_object_scenes()
    model = INSID3(ColourPositionEncoder(pos_strength=2.0), image_size=256, svd_components=16, basis_cache=False)
    model.set_reference(ref, ref_mask)
    pred = model.segment(tgt)
    assert pred.shape == gt.shape and pred.dtype == torch.bool
    assert iou(pred.numpy(), gt) >= 0.9


def test_without_debiasing_the_position_wins_when_the_object_moves():
    """Why the SVD stage exists: without it the prototype carries the reference position."""
    ref, ref_mask, tgt, gt = _moved_object_scenes()
    enc = ColourPositionEncoder(pos_strength=2.0)
    model = INSID3(enc, image_size=256, svd_components=16, basis_cache=False, debias=False)
    model.set_reference(ref, ref_mask)
    mask, trace = model.segment(tgt, return_trace=True)
    assert iou(mask.numpy(), gt) < 0.1
    old_place = np.zeros_like(gt)
    old_place[32:96, 32:112] = True
    assert iou(mask.numpy(), old_place) > 0.9  # it segments whatever sits where the object used to be
    # the basis found on the black image lies in the positional channels (all but a trace of its energy)
    model.debias = True
    U = model.positional.basis
    assert U.shape == (enc.embed_dim, 16)
    assert float((U[27:] ** 2).sum() / (U**2).sum()) > 0.999


def test_trace_holds_every_intermediate():
    ref, ref_mask, tgt, gt = _moved_object_scenes()
    model = INSID3(ColourPositionEncoder(), image_size=256, svd_components=16, basis_cache=False)
    model.set_reference(ref, ref_mask)
    mask, t = model.segment(tgt, return_trace=True)
    h = w = 16
    C = 27 + 16
    assert t.grid == (h, w)
    assert t.reference_features.shape == (1, C, h, w)
    assert t.target_features_deb.shape == (C, h, w)
    assert t.basis.shape == (C, 16) and t.singular_values.shape == (C,)
    assert t.prototype.shape == (C,)
    assert t.forward_similarity.shape == (h, w) and t.votes.dtype == torch.int32
    assert t.candidates.dtype == torch.bool
    K = t.num_clusters
    for name in ("cluster_cross", "cluster_intra", "cluster_area", "cluster_score"):
        assert getattr(t, name).shape == (K,)
    assert t.cluster_labels.shape == (h, w) and int(t.cluster_labels.max()) == K - 1
    assert bool(t.candidates[t.cluster_labels == t.seed].any())
    # the score is the product the description defines, with the seed's area set to 1
    assert float(t.cluster_area[t.seed]) == 1.0
    assert torch.allclose(t.cluster_score, t.cluster_cross * t.cluster_intra * t.cluster_area)
    assert torch.equal(t.mask_low, (t.cluster_score > 0.2)[t.cluster_labels])
    assert torch.equal(t.mask, mask) and t.mask_upsampled.shape == (256, 256)
    assert set(t.timings) >= {"features", "clustering", "aggregation"}
    assert "clusters" in t.summary()
    assert t.cpu().mask.device.type == "cpu"


# ------------------------------------------------------------------ reproduction
@pytest.mark.parametrize("S, r, k, tau, thr", [(64, 10, 1, 0.6, 0.2), (128, 20, 2, 0.6, 0.2), (96, 30, 3, 0.5, 0.1)])
def test_pipeline_equals_the_literal_implementation(tiny, scenes, S, r, k, tau, thr):
    model = INSID3(tiny, image_size=S, svd_components=r, tau=tau, merge_threshold=thr, progress=False)
    refs = scenes[:k]
    for img, m in refs:
        model.set_reference(img, m)
    nonempty = 0
    for img, _ in scenes[3:]:
        ours = model.segment(img)
        theirs = authors.segment(tiny, refs, img, image_size=S, svd_components=r, tau=tau, merge_threshold=thr)
        assert torch.equal(ours, theirs)
        nonempty += int(ours.any())
    assert ours.shape == (scenes[-1][0].height, scenes[-1][0].width)
    assert nonempty >= 1, "the comparison should include non-empty masks"


def test_hand_encoder_equals_the_literal_implementation():
    ref, ref_mask, tgt, _ = _moved_object_scenes()
    enc = ColourPositionEncoder()
    model = INSID3(enc, image_size=256, svd_components=16, basis_cache=False)
    model.set_reference(ref, ref_mask)
    ours = model.segment(tgt)
    theirs = authors.segment(
        enc, [(Image.fromarray(ref), ref_mask)], Image.fromarray(tgt), image_size=256, svd_components=16
    )
    assert torch.equal(ours, theirs) and ours.any()


# ------------------------------------------------------- checkpoints on disk, k-shot, caching
def test_every_checkpoint_format_gives_the_same_masks(tiny_saved, scenes):
    masks = []
    for path in tiny_saved.paths().values():
        model = INSID3(load_backbone(path, device="cpu"), image_size=64, svd_components=8)
        model.set_reference(*scenes[0])
        masks.append([model.segment(img) for img, _ in scenes[1:4]])
    assert len(masks) == 3
    for other in masks[1:]:
        assert all(torch.equal(a, b) for a, b in zip(masks[0], other))


def test_k_shot_and_segment_many_equal_repeated_segment(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    for img, m in scenes[:3]:
        model.set_reference(img, m)
    targets = [img for img, _ in scenes[3:]]
    one_by_one = [model.segment(t) for t in targets]
    for bs in (1, 2, 3):
        many = model.segment_many(targets, batch_size=bs)
        assert all(torch.equal(a, b) for a, b in zip(one_by_one, many))
    assert len(model.references) == 3  # the reference stays


def test_authors_call_sequence_equals_the_new_one(tiny, scenes):
    new = INSID3(tiny, image_size=64, svd_components=8)
    new.set_reference(*scenes[0])
    new.set_reference(*scenes[1])
    expected = [new.segment(img) for img, _ in scenes[2:5]]
    old = INSID3(tiny, image_size=64, svd_components=8)
    for img, e in zip([s[0] for s in scenes[2:5]], expected):
        old.set_reference(*scenes[0])
        old.set_reference(*scenes[1])
        old.set_target(img)
        assert torch.equal(old.segment(), e)
        assert old.references == []  # like the authors' code, the state is reset for the next episode


def test_basis_is_cached_on_disk_and_reused(tiny, isolated_cache, monkeypatch):
    a = INSID3(tiny, image_size=64, svd_components=8)
    U = a.positional.basis
    files = list(isolated_cache.glob("*.pt"))
    assert len(files) == 1
    b = INSID3(tiny, image_size=64, svd_components=8)

    def no_forward(*args, **kw):
        raise AssertionError("the basis should come from the disk cache")

    monkeypatch.setattr(b.positional, "_features", no_forward)  # the basis images' forward passes
    assert torch.equal(b.positional.basis, U)
    # a different image size is a different entry; disabling the cache writes nothing
    c = INSID3(tiny, image_size=96, svd_components=8, basis_cache=False)
    _ = c.positional.basis  # computes the basis (not written to disk)
    assert len(list(isolated_cache.glob("*.pt"))) == 1
    assert a.positional.clear_cache() == 1
    assert not isolated_cache.exists()


def test_changing_settings_reuses_or_reencodes(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(*scenes[0])
    a = model.segment(scenes[1][0])
    model.image_size = 96  # the reference is re-encoded from its inputs
    b, t = model.segment(scenes[1][0], return_trace=True)
    assert t.grid == (6, 6) and model.references[0].features.shape[-1] == 6
    fresh = INSID3(tiny, image_size=96, svd_components=8)
    fresh.set_reference(*scenes[0])
    assert torch.equal(fresh.segment(scenes[1][0]), b)
    assert a.shape == b.shape


def test_keypoint_matching_against_itself(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=4)
    img = scenes[0][0]
    model.set_reference(img)
    pts = [[10.0, 20.0], [100.0, 60.0]]
    out, maps = model.match(pts, img, return_maps=True)
    assert out.shape == (2, 2) and maps.shape == (2, 4, 4)
    # authors' sequence gives the same, then resets
    model2 = INSID3(tiny, image_size=64, svd_components=4)
    model2.set_reference(img)
    model2.set_target(img)
    assert torch.equal(model2.match(pts), out) and model2.references == []
    # the original features path differs from the debiased one in general but has the same shape
    assert model.match(pts, img, debiased=False).shape == (2, 2)


# ------------------------------------------------------------------------- inputs
def test_input_types_give_the_same_mask(tiny, scenes, tmp_path):
    img, m = scenes[0]
    tgt = scenes[2][0]
    path = tmp_path / "ref.png"
    img.save(path)
    mpath = tmp_path / "mask.png"
    Image.fromarray(m.astype(np.uint8) * 255).save(mpath)
    results = []
    for ref_in, mask_in in [
        (img, m),
        (str(path), str(mpath)),
        (np.asarray(img), torch.from_numpy(m)),
        (path, Image.open(mpath)),
    ]:
        model = INSID3(tiny, image_size=64, svd_components=8)
        model.set_reference(ref_in, mask_in)
        results.append(model.segment(tgt))
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_grey_rgba_palette_and_16bit_images_are_converted(tiny, tmp_path):
    model = INSID3(tiny, image_size=64, svd_components=4)
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    m = np.zeros((40, 50), np.uint8)
    m[10:30, 10:30] = 1
    grey = Image.fromarray(rgb[..., 0])
    rgba = Image.fromarray(np.dstack([rgb, np.full((40, 50), 128, np.uint8)]))
    pal = Image.fromarray(rgb).convert("P")
    sixteen = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    for im in (grey, rgba, pal, sixteen):
        model.set_reference(im, m)
    assert len(model.references) == 4
    assert model.segment(rgba).shape == (40, 50)
    # 16-bit grey scaled to 8 bits equals the 8-bit grey image
    assert torch.equal(model.references[3].image, model.references[0].image)


def test_exif_orientation_is_applied(tiny, tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, (30, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated by 90 degrees
    p = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(p, exif=exif)
    model = INSID3(tiny, image_size=64, svd_components=4)
    model.set_reference(p, np.ones((60, 30), np.uint8))
    assert model.references[0].orig_size == (60, 30)  # the displayed size
    raw = INSID3(tiny, image_size=64, svd_components=4, exif_transpose=False)
    raw.set_reference(p, np.ones((30, 60), np.uint8))
    assert raw.references[0].orig_size == (30, 60)


def test_mask_value_selects_one_class(tiny, scenes):
    img, m = scenes[0]
    label_map = np.where(m, 7, 3).astype(np.uint8)
    a = INSID3(tiny, image_size=64, svd_components=8)
    a.set_reference(img, label_map, mask_value=7)
    b = INSID3(tiny, image_size=64, svd_components=8)
    b.set_reference(img, m)
    assert torch.equal(a.references[0].mask, b.references[0].mask)


# ---------------------------------------------------------------------- bad input
def test_empty_reference_mask_names_the_shot(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(*scenes[0])
    with pytest.raises(ValueError, match="reference mask 1 .*empty"):
        model.set_reference(scenes[1][0], np.zeros((112, 96), np.uint8))


def test_segment_before_reference_says_what_to_call(tiny, scenes):
    model = INSID3(tiny, image_size=64)
    with pytest.raises(RuntimeError, match="set_reference"):
        model.segment(scenes[0][0])
    with pytest.raises(RuntimeError, match="set_target"):
        model.segment()


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"image_size": 100}, "multiple of the patch size 16"),
        ({"image_size": 0}, "image_size"),
        ({"tau": 0.0}, r"tau=0.0: must be in \(0, 1\]"),
        ({"tau": 1.5}, "tau"),
        ({"merge_threshold": 1.5}, r"merge_threshold=1.5: must be in \[-1, 1\]"),
        ({"svd_components": -1}, "svd_components"),
        ({"clustering": "kmeans"}, "clustering='kmeans'"),
    ],
)
def test_bad_hyperparameters(tiny, kw, msg):
    with pytest.raises(ValueError, match=msg):
        INSID3(tiny, **kw)


def test_encoder_without_the_contract_is_rejected():
    with pytest.raises(TypeError, match="get_intermediate_layers"):
        INSID3(torch.nn.Linear(2, 2))


def test_too_many_components_are_clamped_with_a_warning(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=400)
    model.set_reference(*scenes[0])
    with pytest.warns(UserWarning, match="svd_components=400 exceeds min"):
        model.segment(scenes[1][0])
    assert model.positional.basis.shape == (64, 16)  # min(C=64, h*w=16)
    model.svd_components = 500  # the default: "as many as the model allows", clamped without a word
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.segment(scenes[1][0])
    assert model.positional.basis.shape == (64, 16)


def test_missing_and_unreadable_images_are_named(tiny, tmp_path):
    model = INSID3(tiny, image_size=64)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        model.set_reference(tmp_path / "nope.png", np.ones((4, 4)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg.*cannot be read"):
        model.set_reference(bad, np.ones((4, 4)))


def test_mask_with_another_aspect_ratio_warns(tiny, scenes):
    model = INSID3(tiny, image_size=64)
    with pytest.warns(UserWarning, match="aspect ratios differ"):
        model.set_reference(scenes[0][0], np.ones((50, 50), np.uint8))


def test_segment_many_failure_names_the_target_and_keeps_masks(tiny, scenes, tmp_path):
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    model.set_reference(*scenes[0])
    targets = [scenes[1][0], scenes[2][0], tmp_path / "missing.png", scenes[3][0]]
    with pytest.raises(SegmentManyError, match=r"target 2 \(.*missing.png\)") as err:
        model.segment_many(targets)
    assert err.value.index == 2 and len(err.value.masks) == 2
    assert torch.equal(err.value.masks[0], model.segment(scenes[1][0]))
    out = model.segment_many(targets, on_error="skip")
    assert out[2] is None and out[3] is not None and len(model.last_errors) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.segment_many([]) == []
