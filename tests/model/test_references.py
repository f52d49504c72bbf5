"""The reference shots of a model (insid3lab.model.references, ``model.shots``)."""

import pytest
import torch

from insid3lab import INSID3
from insid3lab.model.references import stack_shots

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_the_stacked_state_is_kept_per_settings_and_equals_stack_shots(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(*scenes[0])
    model.set_reference(*scenes[1])
    first = model.shots.state()
    assert model.shots.state() is first  # kept
    model.tau = 0.5  # the state does not depend on τ
    assert model.shots.state() is first
    model.svd_components = 4  # it depends on r
    second = model.shots.state()
    assert second is not first and not torch.equal(second["features_deb"], first["features_deb"])
    direct = stack_shots(model.references, model.positional.debias)
    assert direct.keys() == second.keys()
    assert all(torch.equal(direct[k], second[k]) for k in direct)
    assert second["features_deb"].shape == (2, 64, 4, 4) and second["prototype"].shape == (64,)


def test_assigning_references_replaces_the_shots_and_the_state(tiny, scenes):
    model = INSID3(tiny, image_size=64, svd_components=8)
    model.set_reference(*scenes[0])
    kept = list(model.references)
    model.set_reference(*scenes[1])
    two = model.shots.state()
    model.references = kept
    assert model.references is kept and model.shots.state()["masks"].shape[0] == 1
    model.references = []
    with pytest.raises(RuntimeError, match="no reference yet"):
        model.segment(scenes[2][0])
    assert two["masks"].shape[0] == 2
