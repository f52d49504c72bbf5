"""Semi-supervised video object segmentation with ``insid3lab.Tracker``, scored as the DAVIS toolkit does.

>>> from insid3lab.eval.video.evaluate import evaluate_davis, evaluate_video
>>> summary = evaluate_davis(model, "data/DAVIS", "runs/davis17", memory=4)  # doctest: +SKIP
>>> summary["J&F-Mean"]                                                     # doctest: +SKIP
>>> from insid3lab.eval.video import build_video_dataset
>>> train = build_video_dataset("youtube_vos", "data/YouTube-VOS")          # doctest: +SKIP
>>> summary = evaluate_video(model, train, "runs/ytvos-train")              # doctest: +SKIP

The run folder, resume and the sharding over ``torchrun`` processes are those of
:func:`insid3lab.eval.video.runner.evaluate_sequences`.
"""

from __future__ import annotations

import os

from insid3lab import Tracker
from insid3lab.eval.video.layouts import DavisDataset
from insid3lab.eval.video.runner import evaluate_sequences
from insid3lab.eval.video.scores import BOUND_TH

__all__ = ["evaluate_davis", "evaluate_video", "track_predictor"]


def track_predictor(model, *, memory: int = Tracker.MEMORY, min_confidence: float = Tracker.MIN_CONFIDENCE):
    """A ``predict_sequence(frames, given_label_map)`` for :func:`evaluate_sequences` built on a
    :class:`~insid3lab.Tracker` over ``model``.

    Every object of the given label map is tracked with its own memory (``labels=True``); yields
    (H, W) uint8 label maps as numpy arrays.
    """
    tracker = Tracker(model, memory=memory, min_confidence=min_confidence)  # checks both before any work
    if not model.resize_to_orig_size:
        raise ValueError(
            "resize_to_orig_size=False: video scores need masks at the frame's size; build INSID3 with True"
        )

    def predict_sequence(frames, given_label_map):
        for m in tracker.track(frames, given_label_map, labels=True, progress=False):
            yield m.cpu().numpy()

    return predict_sequence


def evaluate_video(
    model,
    dataset,
    out_dir: str | os.PathLike,
    *,
    memory: int = Tracker.MEMORY,
    min_confidence: float = Tracker.MIN_CONFIDENCE,
    resume: bool = True,
    bound_th: float = BOUND_TH,
    settings: dict | None = None,
    progress: bool = True,
    skip_bad: bool = False,
) -> dict:
    """Track every sequence of a video benchmark with ``model`` and score it (J, F, J&F as the DAVIS toolkit reports).

    Args:
        model: an :class:`~insid3lab.INSID3` (``resize_to_orig_size=True``).
        dataset: a :class:`~insid3lab.eval.video.layouts.VideoLayout`, e.g. from
            :func:`~insid3lab.eval.video.registry.build_video_dataset`; what it gives is tracked
            and what it scores is scored.
        out_dir: the run folder (``run.json``, ``results.jsonl``, ``summary.json``).
        memory, min_confidence: see :class:`~insid3lab.Tracker`.
        resume: continue a run in ``out_dir``, skipping finished sequences.
        bound_th: boundary tolerance of F (fraction of the image diagonal).
        settings: extra facts recorded in the run (model source, device, ...).
        progress: a tqdm bar over sequences.
        skip_bad: name and skip a sequence that cannot be scored (see
            :func:`~insid3lab.eval.video.runner.evaluate_sequences`) instead of stopping.

    Returns:
        The summary of :func:`~insid3lab.eval.video.runner.evaluate_sequences`.
    """
    dataset.check_scorable()  # before the tracker checks the model
    predict = track_predictor(model, memory=memory, min_confidence=min_confidence)
    facts = {**model.settings(), "memory": int(memory), "min_confidence": float(min_confidence), **(settings or {})}
    return evaluate_sequences(
        dataset, predict, out_dir, resume=resume, bound_th=bound_th, settings=facts, progress=progress,
        skip_bad=skip_bad,
    )  # fmt: skip


def evaluate_davis(
    model,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    memory: int = Tracker.MEMORY,
    min_confidence: float = Tracker.MIN_CONFIDENCE,
    resume: bool = True,
    sequences=None,
    split: str = "val",
    year: str = "2017",
    resolution: str = "480p",
    bound_th: float = BOUND_TH,
    settings: dict | None = None,
    progress: bool = True,
    skip_bad: bool = False,
) -> dict:
    """Track every sequence of a DAVIS split with ``model`` and score it (J, F, J&F as the toolkit reports).

    Args:
        model: an :class:`~insid3lab.INSID3` (``resize_to_orig_size=True``).
        data_root: the DAVIS folder (``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets/2017``).
        out_dir: the run folder (``run.json``, ``results.jsonl``, ``summary.json``).
        sequences: names to evaluate instead of the split's list.
        split, year, resolution: which DAVIS list and frames (see :class:`~insid3lab.eval.video.layouts.DavisDataset`).
        memory, min_confidence, resume, bound_th, settings, progress, skip_bad: as for :func:`evaluate_video`.

    Returns:
        The summary of :func:`~insid3lab.eval.video.runner.evaluate_sequences`.
    """
    dataset = DavisDataset(data_root, split, year=year, resolution=resolution, sequences=sequences)
    return evaluate_video(model, dataset, out_dir, memory=memory, min_confidence=min_confidence, resume=resume,
                          bound_th=bound_th, settings=settings, progress=progress, skip_bad=skip_bad)  # fmt: skip
