"""The reference shots (insid3lab.model.references) and keypoint matching (insid3lab.tasks.matching) behind the façade."""

import pytest
import torch

from insid3lab import INSID3
from insid3lab.model.references import stack_shots
from insid3lab.tasks.matching import match_points

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_the_stacked_state_is_kept_per_settings_and_equals_stack_shots(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(*scenes[0])
    model.set_reference(*scenes[1])
    first = model.reference_state()
    assert model.reference_state() is first  # kept
    model.tau = 0.5  # the state does not depend on τ
    assert model.reference_state() is first
    model.svd_components = 4  # it depends on r
    second = model.reference_state()
    assert second is not first and not torch.equal(second["features_deb"], first["features_deb"])
    direct = stack_shots(model.references, model.debias_features)
    assert direct.keys() == second.keys()
    assert all(torch.equal(direct[k], second[k]) for k in direct)
    assert second["features_deb"].shape == (2, 64, 4, 4) and second["prototype"].shape == (64,)


def test_assigning_references_replaces_the_shots_and_the_state(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(*scenes[0])
    kept = list(model.references)
    model.set_reference(*scenes[1])
    two = model.reference_state()
    model.references = kept
    assert model.references is kept and model.reference_state()["masks"].shape[0] == 1
    model.references = []
    with pytest.raises(RuntimeError, match="no reference yet"):
        model.segment(scenes[2][0])
    assert two["masks"].shape[0] == 2


def test_match_points_is_what_match_runs_and_leaves_the_settings(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(scenes[0][0])
    pts = [[10.0, 20.0], [80.0, 60.0]]
    out, maps = match_points(model, pts, scenes[1][0], svd_components=2)
    want, want_maps = model.match(pts, scenes[1][0], svd_components=2, return_maps=True)
    assert torch.equal(out, want) and torch.equal(maps, want_maps)
    assert out.shape == (2, 2) and maps.shape == (2, 4, 4)
    assert model.svd_components == 8
    other, _ = match_points(model, pts, scenes[1][0], svd_components=8)
    assert not torch.equal(other, out)  # r of the call is used
