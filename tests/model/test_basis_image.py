"""The positional basis from the black image (the authors' code, the default) or seeded noise images (the paper)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from insid3lab import authors
from insid3lab.cli import main
from insid3lab.cli.options import add_hyperparameter_arguments, add_model_arguments, build_pipeline
from insid3lab.core.preprocess import IMAGENET_MEAN, IMAGENET_STD, black_image, denormalize, noise_images
from insid3lab.method.params import Params
from insid3lab.model import basis_cache as cache
from insid3lab.model.basis import basis_images, basis_tag
from insid3lab.model.insid3 import INSID3
from insid3lab.stages import subspace as sub
from insid3lab.stages.features import extract_features, l2_normalize
from insid3lab.synthetic import sample_scene, write_samples

S = 64
R = 8


def _model(encoder, **kw) -> INSID3:
    return INSID3(encoder, image_size=S, svd_components=R, basis_cache=False, progress=False, **kw)


# ------------------------------------------------------------ parameters
def test_black_is_the_default_and_bad_values_are_refused():
    p = Params()
    assert (p.basis_image, p.basis_noise_images, p.basis_seed) == ("black", 8, 0)
    assert {"basis_image", "basis_noise_images", "basis_seed"} <= set(p.as_dict())
    for bad, said in (
        ({"basis_image": "white"}, "basis_image='white': allowed 'black', 'noise'"),
        ({"basis_noise_images": 0}, "basis_noise_images=0: must be >= 1"),
        ({"basis_seed": -1}, "basis_seed=-1: must be >= 0"),
        ({"basis_seed": 0.5}, "basis_seed=0.5: must be an integer"),
    ):
        with pytest.raises(ValueError, match=said.replace("(", r"\(").replace(")", r"\)")):
            Params(**bad)


def test_model_records_the_basis_images(tiny_backbone):
    m = _model(tiny_backbone, basis_image="noise", basis_noise_images=3, basis_seed=5)
    s = m.settings()
    assert (s["basis_image"], s["basis_noise_images"], s["basis_seed"]) == ("noise", 3, 5)
    assert _model(tiny_backbone).settings()["basis_image"] == "black"


# ----------------------------------------------------------------- images
def test_noise_images_are_seeded_valid_images():
    a = noise_images(3, 32, seed=0)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, noise_images(3, 32, seed=0))
    assert not torch.equal(a, noise_images(3, 32, seed=1))
    assert not torch.equal(a[0], a[1])  # n different images, not one repeated
    pixels = denormalize(a)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6  # clamped to [0, 1] before normalising
    # per channel, the pixels follow the ImageNet statistics (clamping moves them only a little)
    big = denormalize(noise_images(4, 64, seed=2))
    for c in range(3):
        assert abs(big[:, c].mean().item() - IMAGENET_MEAN[c]) < 0.01
        assert abs(big[:, c].std().item() - IMAGENET_STD[c]) < 0.015


def test_basis_images_from_params():
    assert torch.equal(basis_images(Params(), 32), black_image(32))
    noise = basis_images(Params(basis_image="noise", basis_noise_images=2, basis_seed=7), 32)
    assert torch.equal(noise, noise_images(2, 32, seed=7))
    assert basis_tag(Params()) == "black"
    assert basis_tag(Params(basis_seed=3, basis_noise_images=2)) == "black"  # count and seed only matter for noise
    assert basis_tag(Params(basis_image="noise", basis_noise_images=2, basis_seed=7)) == "noise2s7"


# ------------------------------------------------------------------ stage
def test_positional_svd_pools_all_positions_of_all_images():
    g = torch.Generator().manual_seed(0)
    f = l2_normalize(torch.randn(3, 6, 4, 5, generator=g), dim=1)
    U, S_, mean = sub.positional_svd(f)
    E = f.permute(1, 0, 2, 3).reshape(6, 60).double()  # C x (n*h*w): every cell of every image a column
    assert torch.allclose(mean.double(), E.mean(1), atol=1e-6)
    s_ref = np.linalg.svd((E - E.mean(1, keepdim=True)).numpy(), compute_uv=False)
    assert U.shape == (6, 6) and np.allclose(S_.numpy(), s_ref, atol=1e-5)
    # one image: the same as the (C, h, w) form
    one = sub.positional_svd(f[:1])
    assert all(torch.equal(a, b) for a, b in zip(one, sub.positional_svd(f[0])))


# ------------------------------------------------------------------ bases
def test_black_basis_is_the_authors(tiny_backbone):
    m = _model(tiny_backbone)
    U = m.positional.basis
    ref = authors.baseline_basis(tiny_backbone, S, R)
    # the same subspace (singular vectors are defined up to sign)
    assert torch.allclose(U.T @ ref, torch.diag(torch.diagonal(U.T @ ref)), atol=1e-4)
    assert torch.allclose(torch.diagonal(U.T @ ref).abs(), torch.ones(R), atol=1e-4)
    raw = extract_features(tiny_backbone, black_image(S))
    assert torch.equal(m.positional.svd()["U"], sub.positional_svd(l2_normalize(raw, dim=1))[0])


def _cosines(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between span(A) and span(B), both (C, r) orthonormal."""
    return torch.linalg.svdvals(A.T @ B)


def test_noise_basis_is_deterministic_and_depends_on_the_seed(tiny_backbone):
    noise = _model(tiny_backbone, basis_image="noise", basis_noise_images=3)
    again = _model(tiny_backbone, basis_image="noise", basis_noise_images=3)
    assert torch.equal(noise.positional.svd()["U"], again.positional.svd()["U"])
    # by hand: the features of the three images, pooled
    raw = torch.cat([extract_features(tiny_backbone, x[None]) for x in noise_images(3, S, seed=0)])
    assert torch.equal(noise.positional.svd()["U"], sub.positional_svd(l2_normalize(raw, dim=1))[0])
    other = _model(tiny_backbone, basis_image="noise", basis_noise_images=3, basis_seed=1)
    black = _model(tiny_backbone)
    assert _cosines(noise.positional.basis, other.positional.basis).min() < 0.999  # another seed: another subspace
    assert _cosines(noise.positional.basis, black.positional.basis).min() < 0.99  # not the black image's subspace
    assert noise.positional.svd()["U"].shape == (tiny_backbone.embed_dim, min(tiny_backbone.embed_dim, 3 * 16))


def test_switching_the_basis_images_recomputes_the_reference_state(tiny_backbone):
    ref, tgt = sample_scene(1, (S, S)), sample_scene(2, (S, S))[0]
    m = _model(tiny_backbone)
    m.set_reference(*ref)
    _, black_trace = m.segment(tgt, return_trace=True)
    m.basis_image = "noise"
    _, switched = m.segment(tgt, return_trace=True)
    fresh = _model(tiny_backbone, basis_image="noise")
    fresh.set_reference(*ref)
    _, expected = fresh.segment(tgt, return_trace=True)
    assert torch.equal(switched.basis, expected.basis)
    assert torch.equal(switched.shot_prototypes, expected.shot_prototypes)
    assert not torch.allclose(switched.shot_prototypes, black_trace.shot_prototypes)
    m.basis_image = "black"
    _, back = m.segment(tgt, return_trace=True)
    assert torch.equal(back.shot_prototypes, black_trace.shot_prototypes)


# ------------------------------------------------------------------ cache
def test_cache_keys_differ_by_kind_count_and_seed(isolated_cache):
    fp = "ab12"
    paths = {
        tag: cache.basis_cache_path(fp, S, tag)
        for tag in (
            cache.basis_tag("black"),
            cache.basis_tag("noise", 8, 0),
            cache.basis_tag("noise", 8, 1),
            cache.basis_tag("noise", 4, 0),
        )  # fmt: skip
    }
    assert len(set(paths.values())) == 4
    assert paths["black"].name == f"{fp}-s{S}-v3.pt"  # the black image keeps its existing entries
    assert paths["noise8s1"].name == f"{fp}-s{S}-noise8s1-v3.pt"
    assert all(cache._ENTRY.fullmatch(p.name) for p in paths.values())
    with pytest.raises(ValueError, match="basis tag 'x/y'"):
        cache.basis_cache_path(fp, S, "x/y")


def test_cached_noise_and_black_bases_stay_apart(tiny_backbone, isolated_cache):
    def svd(**kw):
        return INSID3(tiny_backbone, image_size=S, progress=False, **kw).positional.svd()["U"]

    noise = svd(basis_image="noise", basis_noise_images=2)
    black = svd()
    fp = cache.weights_fingerprint(tiny_backbone)
    names = sorted(p.name for p in cache.cache_entries())
    assert names == sorted([f"{fp}-s{S}-noise2s0-v3.pt", f"{fp}-s{S}-v3.pt"])
    # read back from disk, each its own
    assert torch.equal(svd(basis_image="noise", basis_noise_images=2), noise)
    assert torch.equal(svd(), black)
    assert torch.equal(cache.load_basis(fp, S, tag="noise2s0")["U"], noise.cpu())
    # an entry under another tag's name is refused, not used
    (isolated_cache / f"{fp}-s{S}-v3.pt").write_bytes((isolated_cache / f"{fp}-s{S}-noise2s0-v3.pt").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.load_basis(fp, S) is None
    assert any("estimated from 'noise2s0', not 'black'" in str(w.message) for w in caught)
    assert cache.clear_cache() == 1  # the bad black entry was deleted; the noise one remains to clear


# -------------------------------------------------------------------- CLI
def test_the_flag_reaches_the_model():
    import argparse

    p = argparse.ArgumentParser()
    add_model_arguments(p)
    add_hyperparameter_arguments(p)
    args = p.parse_args(["--model", "random:tiny", "--device", "cpu", "--image-size", "64", "--basis-image", "noise"])
    assert build_pipeline(args).basis_image == "noise"
    assert build_pipeline(p.parse_args(["--model", "random:tiny", "--device", "cpu"])).basis_image == "black"
    with pytest.raises(SystemExit):
        p.parse_args(["--model", "random:tiny", "--basis-image", "white"])
    text = " ".join(p.format_help().split())
    assert "black (code) or noise (paper) (default black)" in text


def test_match_records_the_basis_images(tmp_path, isolated_cache, capsys):
    write_samples(tmp_path / "s", targets=1)
    pts = tmp_path / "points.json"
    pts.write_text(json.dumps({"points": [[10, 10]]}))
    out = tmp_path / "m"
    s = tmp_path / "s"
    model = ["--model", "random:tiny", "--device", "cpu", "--image-size", "64", "--basis-image", "noise"]
    argv = ["match", *model, "--ref", str(s / "reference.png"), "--points", str(pts), str(s / "target_1.png"),
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    rec = json.loads((out / "target_1.png.matches.json").read_text())
    assert (rec["settings"]["basis_image"], rec["settings"]["basis_noise_images"]) == ("noise", 8)


def test_bench_refuses_the_noise_basis(capsys):
    assert main(["bench", "--model", "random:tiny", "--basis-image", "noise"]) != 0
    assert "--basis-image noise does not apply" in capsys.readouterr().err
