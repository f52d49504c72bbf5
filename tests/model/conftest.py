"""Fixtures of the model tests: the sample object in several places and sizes."""

from __future__ import annotations

import pytest
from PIL import Image

from insid3lab.synthetic import sample_scene


@pytest.fixture(scope="module")
def scenes():
    """(PIL image, mask) pairs of the sample object in different places and sizes."""
    out = []
    for seed, size, scale in [
        (0, (96, 128), 1.0),
        (1, (112, 96), 0.8),
        (2, (128, 128), 1.2),
        (3, (80, 144), 0.7),
        (4, (100, 100), 1.0),
        (5, (120, 90), 0.9),
    ]:
        img, m = sample_scene(seed, size, scale=scale)
        out.append((Image.fromarray(img), m))
    return out
