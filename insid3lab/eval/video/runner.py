"""Score a video object segmentation method on a set of sequences: resumable, shardable, one summary.

Files in ``out_dir`` (as for :func:`insid3lab.eval.run_evaluation`):

* ``run.json``: what the run is (dataset, sequences, tolerance, settings); a resumed run must match it.
* ``results.jsonl``: one line per finished sequence (per-process ``results.rank<R>.jsonl`` while a
  distributed run is going; merged and sorted by sequence index at its end), with the per-object,
  per-frame J and F of :func:`insid3lab.eval.video.scores.evaluate_sequence`.
* ``summary.json``: the DAVIS report of :func:`insid3lab.eval.video.scores.summarise`, settings and time,
  and ``skipped``: the sequences that could not be scored and why.

A sequence whose first annotation holds no object, with fewer than 3 frames (the first and the
last are not scored) or whose files cannot be read stops the run with one line naming it; with
``skip_bad`` it is named in a warning, recorded as skipped and left out of the scores (a resumed
run tries it again).

Distributed: when ``torch.distributed`` is initialised, process ``r`` of ``W`` runs the
sequences whose index is ``r`` modulo ``W``; the records are gathered and every process returns
the summary of a single-process run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from insid3lab.core.warn import warn
from insid3lab.eval.run.files import (
    RESULTS,
    RecordFile,
    RunExistsError,
    dist_info,
    json_line,
    now,
    package_version,
    plain,
    read_records,
    repair_tail,
    write_atomic,
    write_json,
)
from insid3lab.eval.video.scores import BOUND_TH, evaluate_sequence, summarise

__all__ = ["BadSequenceError", "evaluate_sequences"]

PredictSequence = Callable[[Iterator[np.ndarray], np.ndarray], Iterable]
#: The fewest frames a semi-supervised sequence is scored on: the first (given) and the last are not.
MIN_FRAMES = 3


class BadSequenceError(ValueError):
    """A sequence that cannot be scored (``sequence`` and ``reason``)."""

    def __init__(self, sequence: str, reason: str):
        self.sequence, self.reason = sequence, reason
        super().__init__(f"sequence {sequence!r}: {reason}")


def _ground_truth(dataset, seq: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W) ground truth and (H, W) first label map of ``seq``; a :class:`BadSequenceError` saying why not."""
    try:
        gt = dataset.label_maps(seq)
        first = dataset.first_label_map(seq)
    except (OSError, ValueError) as e:
        raise BadSequenceError(seq, str(e).removeprefix(f"sequence {seq!r}: ")) from None
    if not first.any():
        raise BadSequenceError(seq, "its first annotation holds no object")
    if len(gt) < MIN_FRAMES:
        raise BadSequenceError(
            seq, f"{len(gt)} frame(s); the scores need at least {MIN_FRAMES} (the first and last are not scored)"
        )
    return gt, first


def _predict(predict_sequence: PredictSequence, dataset, seq: str, gt: np.ndarray, first: np.ndarray) -> np.ndarray:
    maps = []
    for t, m in enumerate(predict_sequence(dataset.frames(seq), first)):
        m = np.asarray(m)
        if m.dtype == np.bool_:
            m = m.astype(np.uint8)
        if m.shape != gt.shape[1:] or not np.issubdtype(m.dtype, np.integer):
            raise ValueError(
                f"sequence {seq!r}, frame {t}: the prediction is {m.shape} {m.dtype}; "
                f"expected an {gt.shape[1]}x{gt.shape[2]} integer label map (the frame's size)"
            )
        maps.append(m)
    if len(maps) != len(gt):
        raise ValueError(
            f"sequence {seq!r}: {len(maps)} predicted label maps for {len(gt)} frames; "
            "predict_sequence must yield one per frame, the first frame included"
        )
    return np.stack(maps)


def _scored(records) -> list[dict]:
    """The records of sequences that were scored (not skipped as bad)."""
    return [r for r in records if "bad" not in r]


def _set_aside(out: Path) -> None:
    """Name every record line that cannot be trusted and keep only the sound records (their sequences run again)."""
    for f in out.glob("results*.jsonl"):
        repair_tail(f)
    problems: list[str] = []
    records = read_records(out, problems=problems)
    if problems:
        warn(f"resuming {out}: {len(problems)} line(s) of its records are set aside and their sequences run "
             f"again: {'; '.join(problems)}")  # fmt: skip
        write_atomic(out / RESULTS, "".join(json_line(records[i]) for i in sorted(records)))
        for f in out.glob("results.rank*.jsonl"):
            f.unlink()


def evaluate_sequences(
    dataset,
    predict_sequence: PredictSequence,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    bound_th: float = BOUND_TH,
    settings: dict | None = None,
    progress: bool = True,
    skip_bad: bool = False,
) -> dict:
    """Run ``predict_sequence`` on every sequence of ``dataset``, score it as DAVIS does, write the run.

    Args:
        dataset: a :class:`~insid3lab.eval.video.layouts.DavisDataset` (or any object with ``name``,
            ``sequences``, ``frames(seq)``, ``first_label_map(seq)``, ``label_maps(seq)``,
            ``describe()``).
        predict_sequence: ``predict_sequence(frames, first_label_map) -> iterable of label maps``:
            ``frames`` is an iterator of (H, W, 3) uint8 frames, ``first_label_map`` the (H, W) uint8
            object ids of the first frame; it yields one (H, W) integer (or bool, read as object 1)
            label map per frame, the first frame included (its map is not scored).
        out_dir: the run folder (created).
        resume: continue the run in ``out_dir``, skipping sequences already scored; without it a
            folder that already holds a run is an error.
        bound_th: boundary tolerance of F (see :func:`insid3lab.eval.video.scores.boundary_f`).
        settings: extra JSON-serialisable facts to record (method settings, model, device, ...);
            part of the run's identity, so a resumed run must pass the same.
        progress: show a tqdm bar (process 0 only).
        skip_bad: name a sequence that cannot be scored in a warning and go on (see the module)
            instead of stopping.

    Returns:
        The summary (also written to ``out_dir/summary.json``); every process returns it.
    """
    dist, rank, world = dist_info()
    out = Path(out_dir)
    started, t0 = now(), time.perf_counter()
    seqs = list(dataset.sequences)
    identity = {
        "task": "vos-semi-supervised",
        "dataset": {k: v for k, v in dataset.describe().items() if k != "root"},  # the data may move
        "sequences": seqs,
        "bound_th": float(bound_th),
        "settings": {} if settings is None else {k: plain(v) for k, v in settings.items()},
    }

    # ── the run folder ──
    error = None
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
            run_file = out / "run.json"
            existing = run_file.exists() or any(out.glob("results*.jsonl"))
            if existing and not resume:
                raise RunExistsError(out)
            if run_file.exists():
                old = json.loads(run_file.read_text()).get("identity", {})
                if old != json.loads(json.dumps(identity)):
                    keys = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
                    raise ValueError(f"cannot resume {str(out)!r}: the stored run differs in {', '.join(keys)}")
            else:
                write_json(run_file, {"identity": identity, "created": started})
            if resume:
                _set_aside(out)
        except Exception as e:  # noqa: BLE001 - reported on every process below
            error = e
    if dist is not None:
        flag = [None if error is None else f"{type(error).__name__}: {error}"]
        dist.broadcast_object_list(flag, src=0)
        if flag[0] is not None and error is None:
            raise RuntimeError(f"process 0 could not prepare {str(out)!r}: {flag[0]}")
    if error is not None:
        raise error

    # ── what is already done ──
    done = {i: r for i, r in read_records(out).items() if "bad" not in r} if resume else {}  # bad ones: again
    for idx, rec in done.items():
        if idx < len(seqs) and rec.get("sequence") != seqs[idx]:
            raise ValueError(
                f"cannot resume {str(out)!r}: its record {idx} is of sequence {rec.get('sequence')!r}, "
                f"not {seqs[idx]!r}"
            )
    mine = [i for i in range(len(seqs)) if i % world == rank]
    todo = [i for i in mine if i not in done]
    records = {i: done[i] for i in mine if i in done}
    if dist is not None:
        dist.barrier()  # every process has read the old files before anyone appends

    live = out / (RESULTS if world == 1 else f"results.rank{rank}.jsonl")
    repair_tail(live)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        disable=not progress or rank != 0,
        unit="seq",
        desc=dataset.name + ("" if world == 1 else f" [rank 0 of {world}]"),
        dynamic_ncols=True,
    )
    with RecordFile(live) as fh:
        for i in todo:
            seq, ts = seqs[i], time.perf_counter()
            try:
                gt, first = _ground_truth(dataset, seq)
            except BadSequenceError as e:
                if not skip_bad:
                    raise ValueError(f"{e}; pass skip_bad=True (--skip-bad) to name and skip such sequences") from None
                warn(f"sequence {seq!r} skipped: {e.reason}")
                rec = {"index": i, "sequence": seq, "bad": e.reason}
                fh.write(rec)
                records[i] = rec
                bar.update(1)
                continue
            pred = _predict(predict_sequence, dataset, seq, gt, first)
            scores = evaluate_sequence(gt, pred, n_objects=int(first.max()), bound_th=bound_th)
            names = [p.stem for p in dataset.frame_paths(seq)] if hasattr(dataset, "frame_paths") else None
            rec = {
                "index": i,
                "sequence": seq,
                "objects": len(scores["J"]),
                "frames": [names[t] for t in scores["frames"]] if names else scores["frames"],
                **{k: v for k, v in scores.items() if k != "frames"},
                "seconds": round(time.perf_counter() - ts, 4),
            }
            fh.write(rec)
            records[i] = rec
            bar.update(1)
            bar.set_postfix_str(f"J&F {summarise(_scored(records[k] for k in sorted(records)))['J&F-Mean'] * 100:.1f}")
    bar.close()

    # ── gather ──
    local = {"records": list(records.values()), "resumed": len(mine) - len(todo)}
    if dist is not None:
        gathered = [None] * world
        dist.all_gather_object(gathered, local)
    else:
        gathered = [local]
    every = {int(r["index"]): r for g in gathered for r in g["records"]}
    ordered = [every[i] for i in sorted(every)]
    scored = _scored(ordered)
    if not scored:
        raise ValueError(f"no sequence of {dataset.name} could be scored: all {len(ordered)} were skipped as bad")
    seconds = sum(float(r.get("seconds", 0.0)) for r in ordered)
    summary = {
        "task": identity["task"],
        "dataset": dataset.describe(),
        "settings": {**identity["settings"], "bound_th": float(bound_th), "world_size": world},
        **summarise(scored),
        "skipped": [{"sequence": r["sequence"], "reason": r["bad"]} for r in ordered if "bad" in r],
        "resumed": sum(g["resumed"] for g in gathered),
        "time": {
            "started": started,
            "finished": now(),
            "wall_seconds": round(time.perf_counter() - t0, 3),
            "sequence_seconds": round(seconds, 3),
        },
        "versions": {"insid3lab": package_version(), "numpy": np.__version__},
    }

    if dist is not None:
        dist.barrier()  # all per-process files are complete
    if rank == 0:
        write_atomic(out / RESULTS, "".join(json_line(rec) for rec in ordered))
        for f in out.glob("results.rank*.jsonl"):
            f.unlink()
        write_json(out / "summary.json", summary)
    if dist is not None:
        dist.barrier()
    return summary
