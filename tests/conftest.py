"""Shared test fixtures: tiny random DINOv3 backbones, saved in every checkpoint format; benchmark replicas.

The whole test session runs offline: Hugging Face hub access is disabled before
transformers is imported, so no test can reach the network.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on a busy shared CPU the thread
# hand-offs cost tens of milliseconds per operation.
torch.set_num_threads(int(os.environ.get("INSID3LAB_TEST_THREADS", "1")))

from helpers.backbones import TINY_DEPTH, SavedBackbone  # noqa: E402
from helpers.eval_fixtures import eval_data  # noqa: E402, F401  (a fixture: the benchmark replicas on disk)

from insid3lab.backbone import (  # noqa: E402
    DinoV3Backbone,
    random_backbone,
    save_meta_checkpoint,
    save_pretrained,
)


@pytest.fixture(scope="session")
def tiny_backbone() -> DinoV3Backbone:
    """A random 64-dim, 4-block DINOv3 ViT (1 head, 4 registers, patch 16) in float32 on CPU."""
    return random_backbone("tiny", seed=0, num_hidden_layers=TINY_DEPTH)


@pytest.fixture(scope="session")
def tiny_saved(tiny_backbone, tmp_path_factory) -> SavedBackbone:
    """``tiny_backbone`` saved as a transformers folder, a Meta ``.pth`` and a Meta ``.safetensors``."""
    root = tmp_path_factory.mktemp("tiny_backbone")
    hf_dir = save_pretrained(tiny_backbone, root / "hf")
    pth = save_meta_checkpoint(tiny_backbone, root / "tiny_meta.pth")
    st = save_meta_checkpoint(tiny_backbone, root / "tiny_meta.safetensors")
    return SavedBackbone(tiny_backbone, root, hf_dir, pth, st)


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    """(2, 3, 64, 96) float32 normal noise: two normalised 'images' with a 4 x 6 patch grid."""
    g = torch.Generator().manual_seed(1234)
    return torch.randn(2, 3, 64, 96, generator=g)


@pytest.fixture(scope="module")
def tiny() -> DinoV3Backbone:
    """The tiny random DINOv3 (seed 0) the pipeline tests run on, one per test module."""
    return random_backbone("tiny", seed=0)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """The positional-basis disk cache in the test's own folder (``pytest.mark.usefixtures("isolated_cache")``)."""
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def registries():
    """Every registry (clusterers, refiners, image and video benchmarks) restored after the test, so a test may
    register its own."""
    from insid3lab.eval.datasets import BENCHMARKS
    from insid3lab.eval.video import VIDEO_BENCHMARKS
    from insid3lab.stages.clustering import CLUSTERERS
    from insid3lab.stages.refine import REFINERS

    saved = [(r, dict(r)) for r in (CLUSTERERS, REFINERS, BENCHMARKS, VIDEO_BENCHMARKS)]
    yield
    for registry, entries in saved:
        registry.clear()
        registry.update(entries)
