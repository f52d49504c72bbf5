"""Evaluation on the few-shot benchmarks: datasets, episode sampling, metrics, the resumable/distributed runner.

Only the public pipeline (``set_reference`` / ``segment`` / ``match``) is called.

>>> from insid3lab.eval import build_dataset, run_evaluation
>>> ds = build_dataset("coco", "data", fold=0, shots=1)            # doctest: +SKIP
>>> summary = run_evaluation(model, ds, "runs/coco0", episodes=1000)  # doctest: +SKIP
"""

from .datasets import (
    BENCHMARKS,
    BadSampleError,
    DatasetNotFoundError,
    KeypointPair,
    Sample,
    build_dataset,
    dataset_names,
)
from .episodes import Episode, episode_rng, load_episodes, sample_episode, sample_episodes, save_episodes
from .metrics import PCK_ALPHAS, KeypointMeter, SegmentationMeter, intersection_union, pck_hits
from .runner import read_records, run_evaluation

__all__ = [
    "BENCHMARKS",
    "PCK_ALPHAS",
    "BadSampleError",
    "DatasetNotFoundError",
    "Episode",
    "KeypointMeter",
    "KeypointPair",
    "Sample",
    "SegmentationMeter",
    "build_dataset",
    "dataset_names",
    "episode_rng",
    "intersection_union",
    "load_episodes",
    "pck_hits",
    "read_records",
    "run_evaluation",
    "sample_episode",
    "sample_episodes",
    "save_episodes",
]
