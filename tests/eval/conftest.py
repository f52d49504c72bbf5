"""Fixtures of the evaluation tests: the command line with a colour-matching stand-in for the model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers.runs import FakeModel

import insid3lab
import insid3lab.cli.options


@pytest.fixture
def stand_in(monkeypatch):
    """``insid3lab eval`` builds the colour-matching :class:`~helpers.runs.FakeModel` instead of INSID3.

    Returns what was built: ``backbone``, the (source, device, dtype) given to the weights loader
    (None until it is called), and ``models``, each with ``settings``, the keywords INSID3 was given.
    Its prediction is at the image's size under either protocol.
    """
    built = SimpleNamespace(backbone=None, models=[])

    def load_model_source(source, *, device="auto", dtype=None, arch=None, rope_periods="auto"):
        built.backbone = (source, device, dtype)
        return "backbone"

    def insid3(backbone, **settings):
        m = FakeModel()
        m.settings = settings
        for name in ("image_size", "svd_components", "tau", "merge_threshold"):
            setattr(m, name, settings.get(name, getattr(m, name)))
        m.resize_to_orig_size = True
        built.models.append(m)
        return m

    monkeypatch.setattr(insid3lab.cli.options, "load_model_source", load_model_source)
    monkeypatch.setattr(insid3lab, "INSID3", insid3, raising=False)
    return built
