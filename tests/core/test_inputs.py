"""Inputs that would give silently wrong results are refused: non-finite values, integer tensors,
keypoints outside the image or of the wrong shape; one reader for every bit depth; huge images;
lossy masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from insid3lab.core import imageio
from insid3lab.core.preprocess import (
    mask_to_numpy,
    normalize,
    preprocess_image,
    preprocess_mask,
    preprocess_points,
    to_pil_rgb,
)


def _normalised(h=32, w=48, seed=0) -> torch.Tensor:
    return normalize(torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)))


# ------------------------------------------------------------- non-finite
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["one", "all"])
def test_non_finite_tensor_images_are_refused(value, where):
    t = _normalised()
    if where == "one":
        t[1, 5, 7] = value
    else:
        t[:] = value
    with pytest.raises(ValueError, match=r"target image 2: .*NaN or infinite"):
        preprocess_image(t, 64, what="target image 2")


def test_a_numpy_float_image_with_nan_is_refused():
    arr = np.random.default_rng(0).random((20, 30, 3))
    arr[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match=r"reference image 0: .*NaN or infinite"):
        preprocess_image(arr, 64, what="reference image 0")


def test_a_float_pil_image_with_nan_is_refused():
    arr = np.ones((10, 12), dtype=np.float32)
    arr[2, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess_image(Image.fromarray(arr, mode="F"), 32)


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_masks_with_nan_are_refused(kind):
    m = np.zeros((16, 16), dtype=np.float32)
    m[4:8, 4:8] = 1
    m[0, 0] = np.nan
    mask = torch.from_numpy(m) if kind == "tensor" else m
    with pytest.raises(ValueError, match=r"reference mask 1: the mask holds NaN"):
        preprocess_mask(mask, 32, what="reference mask 1")


def test_finite_float_masks_still_work():
    m = np.zeros((16, 16), dtype=np.float32)
    m[4:8, 4:12] = 0.7
    out = preprocess_mask(m, 16)
    assert out.shape == (1, 16, 16) and int(out.sum()) == 32


# ---------------------------------------------------------- integer tensors
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.int32, torch.bool])
def test_integer_tensors_are_refused_with_how_to_pass_pixels(dtype):
    t = torch.randint(0, 255, (3, 20, 20)).to(dtype)
    with pytest.raises(ValueError) as e:
        preprocess_image(t, 32, what="target image")
    msg = str(e.value)
    assert msg.startswith("target image: ") and str(dtype) in msg
    assert "ImageNet mean and std" in msg and "numpy uint8 (H, W, 3)" in msg and "PIL image" in msg


def test_float_tensors_holding_0_to_255_are_refused():
    t = torch.randint(0, 256, (3, 20, 20)).float()
    with pytest.raises(ValueError, match=r"like raw 0\.\.255 pixels"):
        preprocess_image(t, 32)


def test_un_normalised_looking_tensors_warn_but_work():
    with pytest.warns(UserWarning, match=r"all lie in \[0, 1\]"):
        x, orig = preprocess_image(torch.rand(3, 20, 24), 32)
    assert x.shape == (1, 3, 32, 32) and orig == (20, 24)
    with pytest.warns(UserWarning, match="beyond the normalised range"):
        preprocess_image(torch.full((3, 8, 8), 5.0), 32)


def test_a_normalised_tensor_passes_silently_and_unchanged_at_its_own_size():
    t = _normalised(32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, orig = preprocess_image(t, 32)
    assert orig == (32, 32) and torch.equal(x[0], t)


# ---------------------------------------------------------------- keypoints
def test_points_become_an_n_by_2_float32_tensor():
    pts = preprocess_points([[0, 0], [47.5, 31.9], [10, 20]], (32, 48))
    assert pts.dtype == torch.float32 and pts.shape == (3, 2)
    assert pts.tolist() == [[0.0, 0.0], [47.5, pytest.approx(31.9)], [10.0, 20.0]]
    same = preprocess_points(np.array([[3, 4]], dtype=np.int64), (32, 48))
    assert torch.equal(same, torch.tensor([[3.0, 4.0]]))
    assert torch.equal(preprocess_points(torch.tensor([[3.0, 4.0]], dtype=torch.float64), (32, 48)), same)


@pytest.mark.parametrize(
    "points, shape",
    [
        (np.zeros((2, 3)), "(2, 3)"),
        ([1, 2, 3, 4, 5, 6], "(6,)"),
        ([5, 6], "(2,)"),
        (np.zeros((3, 2, 1)), "(3, 2, 1)"),
        (np.zeros((0, 2)), "(0, 2)"),
    ],
)
def test_point_arrays_that_are_not_n_by_2_are_refused(points, shape):
    with pytest.raises(ValueError) as e:
        preprocess_points(points, (32, 48), what="reference keypoints")
    msg = str(e.value)
    assert msg.startswith("reference keypoints: ") and "(N, 2)" in msg and shape in msg


@pytest.mark.parametrize("point", [[48, 5], [5, 32], [-0.01, 3], [3, -1], [1e9, 1]])
def test_points_outside_the_image_are_refused(point):
    with pytest.raises(ValueError) as e:
        preprocess_points([[1, 1], point], (32, 48), what="reference keypoints")
    msg = str(e.value)
    assert "point 1" in msg and "outside the 48x32 image" in msg and "0 <= x < 48, 0 <= y < 32" in msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_points_are_refused(bad):
    with pytest.raises(ValueError, match="point 0 .*NaN or infinite"):
        preprocess_points([[bad, 2.0]], (32, 48), what="reference keypoints")


def test_ragged_point_lists_are_refused():
    with pytest.raises(ValueError, match=r"reference keypoints: expected an \(N, 2\)"):
        preprocess_points([[1, 2], [3]], (32, 48), what="reference keypoints")


# ---------------------------------------------------------- one image reader
def _gradient16(top: int) -> np.ndarray:
    return np.linspace(0, top, 64 * 64).round().astype(np.uint16).reshape(64, 64)


@pytest.mark.parametrize(
    "top, scale", [(65535, 65535), (60000, 65535), (4095, 4095), (3000, 4095), (1023, 1023), (16000, 16383), (200, 255)]
)
def test_high_bit_depth_files_are_scaled_by_the_documented_rule(tmp_path, top, scale):
    arr = _gradient16(top)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    got = imageio.read_rgb_array(path)
    want = np.round(arr.astype(np.float64) * 255 / scale).astype(np.uint8)
    assert got.shape == (64, 64, 3) and got.dtype == np.uint8
    assert np.array_equal(got[..., 0], want) and np.array_equal(got[..., 2], want)
    assert (got == 255).mean() < 0.02  # not nearly white, as PIL's own convert("RGB") makes it
    # The same rule for the numpy array itself and through the API's preprocessing.
    assert np.array_equal(imageio.read_rgb_array(arr)[..., 1], want)
    x_file, _ = preprocess_image(path, 64)
    x_arr, _ = preprocess_image(np.stack([want] * 3, axis=-1), 64)
    assert torch.equal(x_file, x_arr)


def test_big_endian_16_bit_images_follow_the_same_rule():
    arr = _gradient16(4095)
    img = Image.frombytes("I;16B", (64, 64), arr.astype(">u2").tobytes())
    got = np.asarray(to_pil_rgb(img))[..., 0]
    assert np.array_equal(got, np.round(arr.astype(np.float64) * 255 / 4095).astype(np.uint8))


def test_thirty_two_bit_integer_images_use_their_maximum_above_16_bits():
    arr = np.arange(100, dtype=np.int32).reshape(10, 10) * 2000  # max 198000
    got = imageio.read_rgb_array(arr)[..., 0]
    assert got.max() == 255 and np.array_equal(got, np.round(arr * 255 / 198000).astype(np.uint8))


def test_images_over_the_pixel_limit_give_one_line_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # PIL warns above 500 and refuses above 1000
    with pytest.raises(ValueError) as e:
        preprocess_image(path, 32, what="target image")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "target image" in msg
    assert "exceeds PIL's pixel limit of 500 pixels" in msg and "INSID3LAB_MAX_IMAGE_PIXELS" in msg
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1100)
    with pytest.raises(ValueError, match="1200 pixels, which exceeds PIL's pixel limit of 1100"):
        imageio.read_image(path)
    with pytest.raises(ValueError, match="exceeds PIL's pixel limit"):
        mask_to_numpy(path)


def test_the_environment_variable_raises_the_limit_knowingly(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30), (10, 20, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    monkeypatch.setenv("INSID3LAB_MAX_IMAGE_PIXELS", "1200")
    assert imageio.read_rgb_array(path)[0, 0].tolist() == [10, 20, 30]
    assert Image.MAX_IMAGE_PIXELS == 500
    monkeypatch.setenv("INSID3LAB_MAX_IMAGE_PIXELS", "1199")
    with pytest.raises(ValueError, match="limit of 1199 pixels"):
        imageio.read_image(path)
    monkeypatch.setenv("INSID3LAB_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="INSID3LAB_MAX_IMAGE_PIXELS='lots'"):
        imageio.read_image(path)


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        imageio.read_image(tmp_path / "missing.png", what="reference image")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        imageio.read_image(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=f"reference image '{bad}' cannot be read as an image"):
        imageio.read_image(bad, what="reference image")


# ------------------------------------------------------------- lossy masks
def test_jpeg_masks_are_thresholded_at_128(tmp_path):
    m = np.zeros((64, 64), dtype=np.uint8)
    m[16:48, 20:44] = 255
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=60)
    Image.fromarray(m).save(tmp_path / "m.png")
    noisy = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert ((noisy > 0) & (m == 0)).sum() > 0  # compression noise around the edges
    got = mask_to_numpy(tmp_path / "m.jpg")
    assert np.array_equal(got, noisy >= 128)
    assert abs(int(got.sum()) - int((m > 0).sum())) <= 8
    assert np.array_equal(mask_to_numpy(Image.open(tmp_path / "m.jpg")), got)
    assert np.array_equal(mask_to_numpy(tmp_path / "m.png"), m > 0)
    # A lossless mask keeps the ``> 0`` rule, so label maps with small values still work.
    Image.fromarray((m > 0).astype(np.uint8)).save(tmp_path / "labels.png")
    assert np.array_equal(mask_to_numpy(tmp_path / "labels.png"), m > 0)


# ------------------------------------------------------------- empty images, non-finite label maps
def test_an_image_without_pixels_is_one_line_naming_it(tiny):
    from insid3lab import INSID3

    with pytest.raises(
        ValueError, match=r"^target image: the image is 0x0 \(H x W\); an image needs at least one pixel"
    ):
        imageio.read_image(np.zeros((0, 0, 3), np.uint8), what="target image")
    with pytest.raises(ValueError, match=r"^mask: the mask is 0x5 \(H x W\)"):
        mask_to_numpy(np.zeros((0, 5), np.uint8))
    model = INSID3(tiny, image_size=32, svd_components=8, basis_cache=False, progress=False)
    with pytest.raises(ValueError, match=r"^reference image 0: the image is 0x0"):
        model.set_reference(np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8))


@pytest.mark.parametrize("kind", ["array", "tensor"])
def test_a_label_map_with_nan_is_one_line_naming_it(tiny, kind):
    from insid3lab import INSID3

    model = INSID3(tiny, image_size=32, svd_components=8, basis_cache=False, progress=False)
    lm = np.zeros((32, 32))
    lm[4:20, 4:20] = 1
    lm[0, 0] = np.nan
    lm = torch.from_numpy(lm) if kind == "tensor" else lm
    image = np.zeros((32, 32, 3), np.uint8)
    for labels in ("all", {1: "a"}):
        with pytest.raises(ValueError) as e:
            model.set_reference(image, lm, labels=labels)
        msg = str(e.value)
        assert msg.startswith("reference mask 0") and "NaN or infinite" in msg and "\n" not in msg, msg
