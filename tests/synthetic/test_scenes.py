"""Generated scenes: deterministic, with exact masks, written in the layouts the loaders read."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insid3lab import synthetic


@pytest.mark.parametrize("make", [synthetic.lesion_scene, synthetic.defect_scene])
def test_scenes_are_small_objects_and_deterministic(make):
    img, mask = make(3, 96)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and mask.dtype == bool
    assert 0.001 < mask.mean() < 0.05
    img2, mask2 = make(3, 96)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(mask, mask2)
    # the object is darker than its surroundings
    assert img[mask].mean() < img[~mask].mean()


def test_cat_pair_ground_truth_is_the_mirrored_mask():
    pytest.importorskip("skimage")
    pair = synthetic.cat_pair()
    ref_mask, tgt_mask = pair["reference_mask"], pair["target_mask"]
    assert pair["target_image"].shape[:2] == tgt_mask.shape == (260, 401)
    np.testing.assert_array_equal(tgt_mask, ref_mask[:, ::-1][20:280, 30:431])
    np.testing.assert_array_equal(pair["target_image"], pair["reference_image"][:, ::-1][20:280, 30:431])
    # two ellipses (radii 38 x 30 and 28 x 27 pixels): their area by hand, within the rasterisation error
    assert math.isclose(ref_mask.sum(), math.pi * (38 * 30 + 28 * 27), rel_tol=0.02)


def test_write_folder_dataset(tmp_path):
    from PIL import Image

    root = synthetic.write_folder_dataset(tmp_path / "ds", 3, kind="defect", size=64)
    names = sorted(p.name for p in (root / "images").iterdir())
    assert names == ["000.png", "001.png", "002.png"]
    m = np.asarray(Image.open(root / "masks" / "001.png"))
    np.testing.assert_array_equal(m > 0, synthetic.defect_scene(1, 64)[1])
    with pytest.raises(ValueError, match="kind"):
        synthetic.write_folder_dataset(tmp_path / "x", 3, kind="cats")


def test_write_folder_dataset_classes_load_as_a_folder_benchmark(tmp_path):
    from insid3lab.eval.datasets import build_dataset

    for kind in ("lesion", "defect"):
        synthetic.write_folder_dataset(tmp_path, 3, kind=kind, size=64, class_name=kind)
    ds = build_dataset("folder", tmp_path, shots=1)
    assert ds.class_names == ["defect", "lesion"]
    sample = ds.load({"image": "lesion/002.png", "mask": "lesion/002.png"}, 1)
    np.testing.assert_array_equal(sample.mask == 1, synthetic.lesion_scene(2, 64)[1])


def test_box_scene_draws_each_box_in_its_colour_over_seeded_noise():
    boxes = [((2, 3, 10, 8), (220, 40, 40)), ((6, 5, 12, 12), (40, 200, 60))]
    img, labels = synthetic.box_scene((16, 14), boxes, seed=4)
    assert img.shape == (16, 14, 3) and img.dtype == np.uint8 and labels.dtype == np.uint8
    want = np.zeros((16, 14), np.uint8)
    want[3:8, 2:10] = 1
    want[5:12, 6:12] = 2  # the later box covers the earlier one
    np.testing.assert_array_equal(labels, want)
    assert (img[labels == 1] == (220, 40, 40)).all() and (img[labels == 2] == (40, 200, 60)).all()
    background = img[labels == 0].astype(float)
    assert abs(background.mean() - 128) < 5 and 6 < background.std() < 18
    np.testing.assert_array_equal(synthetic.box_scene((16, 14), boxes, seed=4)[0], img)
    assert not np.array_equal(synthetic.box_scene((16, 14), boxes, seed=5)[0], img)
