"""The summary of an evaluation run: every process's records gathered, then the scores, counts, times and versions.

The records are the lines of ``results.jsonl`` (:mod:`insid3lab.eval.run.runner`); :func:`add_record` counts one
in the task's meter as it is finished, and :func:`build_summary` reduces the meters and records of all
processes into the dict written to ``summary.json``.
"""

from __future__ import annotations

import math
import platform
import time

import numpy as np
import torch

from insid3lab.core.warn import warn
from insid3lab.eval.metrics.segmentation import PCK_ALPHAS, KeypointMeter, SegmentationMeter
from insid3lab.eval.metrics.stats import pck_interval, segmentation_interval
from insid3lab.eval.run.files import dist_info, now, package_version, plain
from insid3lab.eval.run.instances import instance_summary
from insid3lab.eval.run.nway import add_nway, nway_counts

__all__ = ["add_record", "build_summary", "episode_counts"]


def build_summary(
    records: dict[int, dict],
    meter,
    dataset,
    *,
    task: str,
    ways: int,
    protocol: str,
    identity: dict,
    msettings: dict,
    settings: dict | None,
    skip_bad: bool,
    threads: int,
    episodes: int,
    resumed: int,
    retried: int,
    started: str,
    t0: float,
    bootstrap: int,
    bootstrap_seed: int,
) -> dict:
    """The run's summary from this process's ``records`` (episode index -> record) and ``meter``.

    Under ``torch.distributed`` the segmentation sums are all-reduced and the other facts gathered, so
    every process returns the same summary. ``identity``: the run's identity (run.json); ``msettings``: the
    model's settings; ``settings``: the extra facts to record; ``episodes``: the run's episode count;
    ``resumed``: this process's episodes found done; ``retried``: bad records evaluated again; ``started``
    and ``t0``: the run's start time stamp and ``time.perf_counter()``.
    """
    dist, rank, world = dist_info()
    # ── reduce across processes ──
    bad_local = [{"index": r["index"], "class": r["class"], **r["bad"]} for r in records.values() if "bad" in r]
    secs_local = [float(r.get("seconds", 0.0)) for r in records.values()]
    if task == "segmentation" and dist is not None:
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        t = meter.as_tensor().to(dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        meter = SegmentationMeter.from_tensor(list(dataset.class_names), t)
    good_local = [episode_counts(r) for r in records.values() if "bad" not in r] if task == "segmentation" else []
    if task == "instances":
        good_local = [{k: r[k] for k in ("index", "class_index", "size", "gt", "pred")} for r in records.values()
                      if "bad" not in r]  # fmt: skip
    extras = {
        "bad": bad_local,
        "seconds": secs_local,
        "resumed": resumed,
        "good": good_local,
        "pairs": meter.pairs if task == "keypoints" else None,
    }
    if dist is not None:
        gathered = [None] * world
        dist.all_gather_object(gathered, extras)
    else:
        gathered = [extras]
    bad = sorted((b for g in gathered for b in g["bad"]), key=lambda b: b["index"])
    episode_seconds = math.fsum(s for g in gathered for s in g["seconds"])
    n_resumed = sum(g["resumed"] for g in gathered)
    per_episode = sorted((c for g in gathered for c in g["good"]),
                         key=lambda c: c["index"] if task == "instances" else c[0])  # fmt: skip
    if task == "keypoints":
        meter = KeypointMeter(list(dataset.class_names), pairs=[p for g in gathered for p in g["pairs"]])

    summary = {
        "task": task,
        "ways": ways,
        "protocol": protocol,
        "dataset": dataset.describe(),
        "settings": {
            **identity,
            "model": msettings,
            **({} if settings is None else {k: plain(v) for k, v in settings.items()}),
            "skip_bad": bool(skip_bad),
            "world_size": world,
            "num_threads": threads,
        },
        "weights": {
            "fingerprint": msettings.get("weights_fingerprint"),
            **({"source": settings["model_source"]} if settings and "model_source" in settings else {}),
        },
    }
    n_total = episodes
    if task == "segmentation":
        iou = meter.class_iou() * 100.0
        without = [n for n, k in zip(dataset.class_names, meter.episodes) if k == 0]
        scored = bool(meter.episodes.sum())  # without any evaluated episode there is no score: null in the JSON
        summary.update(
            {
                "miou": meter.miou() if scored else None,
                "fb_iou": meter.fb_iou() if scored else None,
                "miou_visited_classes": meter.miou_visited(),
                "classes_visited": int((meter.episodes > 0).sum()),
                "classes_without_episodes": without,
                "per_class_iou": {n: float(v) for n, v in zip(dataset.class_names, iou)},
                "per_class_episodes": {n: int(v) for n, v in zip(dataset.class_names, meter.episodes)},
                "intersection": meter.intersection.tolist(),
                "union": meter.union.tolist(),
            }
        )
        if bootstrap:
            summary["interval"] = segmentation_interval(
                per_episode, len(dataset.class_names), resamples=bootstrap, seed=bootstrap_seed
            )
    elif task == "instances":
        ap = instance_summary(per_episode, list(dataset.class_names))
        summary.update({"ap": ap["AP"], "ap50": ap["AP50"], "ap75": ap["AP75"], "per_class_ap": ap["per_class_AP"],
                        "instances": {k: ap[k] for k in ("ground_truth", "predictions")}})  # fmt: skip
    else:
        summary.update(
            {
                "pck": meter.pck(),
                "pck_per_point": meter.pck_per_point(),
                "per_class_pck": meter.pck_per_class(),
                "alphas": list(PCK_ALPHAS),
            }
        )
        if bootstrap:
            summary["interval"] = pck_interval(meter.pairs, meter.alphas, resamples=bootstrap, seed=bootstrap_seed)
    summary.update(
        {
            "episodes": {"total": n_total, "evaluated": n_total - len(bad), "bad": len(bad), "resumed": n_resumed},
            "bad_samples": bad,
            "bad_retried": retried,
            "time": {
                "started": started,
                "finished": now(),
                "wall_seconds": round(time.perf_counter() - t0, 3),
                "episode_seconds": round(episode_seconds, 3),
                "seconds_per_episode": round(episode_seconds / max(n_total, 1), 4),
            },
            "versions": {
                "insid3lab": package_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
        }
    )
    if rank == 0 and not summary["episodes"]["evaluated"]:
        warn(f"no episode of {dataset.name} was evaluated ({len(bad)} bad); the run has no score")
    elif rank == 0 and task == "segmentation" and summary["classes_without_episodes"]:
        names = summary["classes_without_episodes"]
        warn(
            f"{len(names)} of {len(dataset.class_names)} classes have no evaluated episode and count as IoU 0 in "
            f"the mIoU: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
        )
    return summary


def episode_counts(rec: dict) -> tuple:
    """(index, class index, (2,) intersection, (2,) union) of a segmentation record (N-way: see nway_counts)."""
    if "ways" in rec:
        return nway_counts(rec)
    return int(rec["index"]), int(rec["class_index"]), list(rec["intersection"]), list(rec["union"])


def add_record(meter, rec: dict, task: str) -> None:
    """Count a finished record in the task's meter (bad records and instance records add nothing)."""
    if "bad" in rec or task == "instances":
        return
    if "ways" in rec:
        add_nway(meter, rec)
    elif task == "segmentation":
        meter.add(int(rec["class_index"]), rec["intersection"], rec["union"])
    else:
        meter.add(int(rec["class_index"]), int(rec["n_points"]), rec["hits"])
