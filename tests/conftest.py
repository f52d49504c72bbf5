"""Fixtures every layer's tests share: tiny random DINOv3 backbones (saved in every checkpoint format),
an isolated basis cache, generated scenes and the benchmark replicas on disk.

Plain helpers (encoders, replica makers, a stand-in model, process workers) live in ``tests/helpers``;
fixtures of one layer live in that layer's ``conftest.py``.

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

from pathlib import Path  # noqa: E402

from helpers.backbones import TINY_DEPTH, SavedBackbone  # noqa: E402
from helpers.benchmarks import make_all  # noqa: E402
from helpers.synthetic import SCENE  # noqa: E402
from PIL import Image  # noqa: E402

from insid3lab import synthetic  # noqa: E402
from insid3lab.backbone import (  # noqa: E402
    DinoV3Backbone,
    random_backbone,
    save_meta_checkpoint,
    save_pretrained,
)
from insid3lab.model import basis_cache  # noqa: E402


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
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """The positional-basis disk cache in the test's own folder; returns the folder of its entries.

    Also forgets which cache problems were already reported, so each test sees its own warnings.
    Use it as an argument or with ``pytest.mark.usefixtures("isolated_cache")``.
    """
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))
    basis_cache._reported.clear()
    return tmp_path / "cache" / "basis"


@pytest.fixture(scope="module")
def scene():
    """(reference, its mask, target, its mask): two 256 x 256 lesion scenes (seeds 0 and 1), uint8 RGB and bool."""
    ref, ref_mask = synthetic.lesion_scene(seed=0, size=SCENE)
    tgt, tgt_mask = synthetic.lesion_scene(seed=1, size=SCENE)
    return ref, ref_mask, tgt, tgt_mask


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
        img, m = synthetic.sample_scene(seed, size, scale=scale)
        out.append((Image.fromarray(img), m))
    return out


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory) -> Path:
    """A ``--data-root`` with every benchmark replica (read-only by convention; copy before corrupting)."""
    return make_all(tmp_path_factory.mktemp("eval_data"))


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
