"""Evaluation on the few-shot benchmarks: datasets, episode sampling, metrics, the resumable/distributed runner.

Only the public pipeline (``set_reference`` / ``segment`` / ``match``) is called.

>>> from insid3lab.eval import build_dataset, run_evaluation
>>> ds = build_dataset("coco", "data", fold=0, shots=1)            # doctest: +SKIP
>>> summary = run_evaluation(model, ds, "runs/coco0", episodes=1000)  # doctest: +SKIP
"""

from insid3lab.eval.datasets import (
    BENCHMARKS,
    BadSampleError,
    DatasetNotFoundError,
    KeypointPair,
    Sample,
    build_dataset,
    dataset_names,
    register_benchmark,
)
from insid3lab.eval.metrics.segmentation import (
    PCK_ALPHAS,
    KeypointMeter,
    SegmentationMeter,
    intersection_union,
    pck_hits,
)
from insid3lab.eval.run.episodes import (
    Episode,
    episode_rng,
    load_episodes,
    sample_episode,
    sample_episodes,
    save_episodes,
)
from insid3lab.eval.run.files import RunExistsError, RunFolderBusyError
from insid3lab.eval.run.folds import run_all_folds
from insid3lab.eval.run.runner import PROTOCOLS, read_records, run_evaluation
from insid3lab.eval.run.threads import eval_num_threads

__all__ = [
    "BENCHMARKS",
    "PCK_ALPHAS",
    "PROTOCOLS",
    "BadSampleError",
    "DatasetNotFoundError",
    "Episode",
    "KeypointMeter",
    "KeypointPair",
    "RunExistsError",
    "RunFolderBusyError",
    "Sample",
    "SegmentationMeter",
    "build_dataset",
    "dataset_names",
    "episode_rng",
    "eval_num_threads",
    "intersection_union",
    "load_episodes",
    "pck_hits",
    "read_records",
    "register_benchmark",
    "run_all_folds",
    "run_evaluation",
    "sample_episode",
    "sample_episodes",
    "save_episodes",
]
