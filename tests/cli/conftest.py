"""Fixtures of the command-line tests: the sample files and the tiny model on disk, a cache of their own."""

from __future__ import annotations

import pytest

from insid3lab import save_pretrained
from insid3lab.synthetic import write_samples


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_backbone):
    """A folder with ``samples/`` (a reference, its mask and two targets) and ``model/`` (``tiny_backbone``)."""
    d = tmp_path_factory.mktemp("cli")
    write_samples(d / "samples", targets=2)
    save_pretrained(tiny_backbone, d / "model")
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(isolated_cache):
    """Every command runs with the positional-basis cache in the test's own folder."""
