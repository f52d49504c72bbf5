"""Score a video object segmentation method on a set of sequences: resumable, shardable, one summary.

Files in ``out_dir`` (as for :func:`insid3lab.eval.run_evaluation`):

* ``run.json``: what the run is (dataset, sequences, tolerance, settings); a resumed run must match it.
* ``results.jsonl``: one line per finished sequence (per-process ``results.rank<R>.jsonl`` while a
  distributed run is going; merged and sorted by sequence index at its end): the object ``ids``,
  the names of the ``frames`` scored, and per object its per-frame ``J`` and ``F`` on the frames
  it is scored on (:meth:`~insid3lab.eval.video.layouts.VideoLayout.scored_frames`: object k's
  lists cover the last ``len(J[k])`` of ``frames``) with their statistics
  (:func:`insid3lab.eval.video.scores.evaluate_objects`).
* ``summary.json``: the DAVIS report of :func:`insid3lab.eval.video.scores.summarise`, settings and time,
  and ``skipped``: the sequences that could not be scored and why.

A sequence that cannot be scored (for DAVIS: no object in its first annotation, fewer than 3
frames; for any layout: no object with an annotated frame after the one where it is given,
files that cannot be read) stops the run with one line naming it; with ``skip_bad`` it is named
in a warning, recorded as skipped and left out of the scores (a resumed run tries it again).

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
from typing import NamedTuple

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
from insid3lab.eval.video.scores import BOUND_TH, evaluate_objects, summarise

__all__ = ["BadSequenceError", "evaluate_sequences"]

PredictSequence = Callable[[Iterator[np.ndarray], np.ndarray], Iterable]


class BadSequenceError(ValueError):
    """A sequence that cannot be scored (``sequence`` and ``reason``)."""

    def __init__(self, sequence: str, reason: str):
        self.sequence, self.reason = sequence, reason
        super().__init__(f"sequence {sequence!r}: {reason}")


class _Truth(NamedTuple):
    frames: list[Path]  # every frame of the sequence
    annotated: list[int]  # the frames with ground truth (indices into frames)
    gt: np.ndarray  # (A, H, W) their label maps
    scored: dict[int, list[int]]  # object id -> the frames it is scored on


def _ground_truth(dataset, seq: str) -> _Truth:
    """What ``seq`` is scored against; a :class:`BadSequenceError` saying why it cannot be."""
    try:
        truth = _Truth(dataset.frame_paths(seq), dataset.annotated_frames(seq), dataset.label_maps(seq),
                       dataset.scored_frames(seq))  # fmt: skip
    except (OSError, ValueError) as e:
        raise BadSequenceError(seq, str(e).removeprefix(f"sequence {seq!r}: ")) from None
    if not truth.scored:
        raise BadSequenceError(seq, "no object appears before its last annotated frame: nothing to score")
    return truth


def _predict(predict_sequence: PredictSequence, dataset, seq: str, truth: _Truth) -> np.ndarray:
    """(A, H, W) uint8 predicted label maps of the annotated frames, from one run of ``predict_sequence``
    per frame where objects are given.

    A run from frame ``t`` tracks the objects given there over frames ``t..T-1`` and must yield one
    label map per frame; where runs from different frames claim a pixel, the later-started run
    keeps it. Frames before the first given frame are background.
    """
    T, shape = len(truth.frames), truth.gt.shape[1:]
    row = {t: i for i, t in enumerate(truth.annotated)}
    out = np.zeros(truth.gt.shape, dtype=np.uint8)
    for start, given in sorted(dataset.given(seq).items()):
        ids = {int(k) for k in np.unique(given)} - {0}
        count = 0
        for m in predict_sequence(dataset.frames(seq, start), given):
            t, m = start + count, np.asarray(m)
            if m.dtype == np.bool_:
                m = m.astype(np.uint8)
            if m.shape != shape or not np.issubdtype(m.dtype, np.integer):
                raise ValueError(
                    f"sequence {seq!r}, frame {t}: the prediction is {m.shape} {m.dtype}; "
                    f"expected an {shape[0]}x{shape[1]} integer label map (the frame's size)"
                )
            extra = {int(k) for k in np.unique(m)} - ids - {0}
            if extra:
                raise ValueError(f"sequence {seq!r}, frame {t}: the prediction holds object id(s) {sorted(extra)}, "
                                 f"but the objects given are {sorted(ids)}")  # fmt: skip
            if t in row:
                np.copyto(out[row[t]], m, where=m > 0, casting="unsafe")
            count += 1
        if count != T - start:
            raise ValueError(
                f"sequence {seq!r}: {count} predicted label maps for {T - start} frames; "
                "predict_sequence must yield one per frame, the given frame included"
            )
    return out


def _score(dataset, seq: str, truth: _Truth, predict_sequence: PredictSequence, bound_th: float) -> dict:
    """The record fields of one sequence: its objects, the frames scored and their J and F."""
    pred = _predict(predict_sequence, dataset, seq, truth)
    row = {t: i for i, t in enumerate(truth.annotated)}
    scored = {k: [row[t] for t in ts] for k, ts in truth.scored.items()}
    scores = evaluate_objects(truth.gt, pred, scored, bound_th=bound_th)
    union = sorted({t for ts in truth.scored.values() for t in ts})
    return {"objects": len(scores["ids"]), "frames": [truth.frames[t].stem for t in union], **scores}


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
    """Run ``predict_sequence`` on every sequence of ``dataset``, score it (J, F, J&F as DAVIS reports), write the run.

    Args:
        dataset: a :class:`~insid3lab.eval.video.layouts.VideoLayout` (DAVIS, YouTube-VOS, ...):
            what is given, at which frame, and what is scored. Checked first
            (:meth:`~insid3lab.eval.video.layouts.VideoLayout.check_scorable`).
        predict_sequence: ``predict_sequence(frames, given_label_map) -> iterable of label maps``:
            ``frames`` is an iterator of (H, W, 3) uint8 frames from a frame where objects are
            given, ``given_label_map`` the (H, W) uint8 ids of those objects in that frame (for
            DAVIS, the first frame and all its objects); it yields one (H, W) integer (or bool,
            read as object 1) label map per frame, the given frame included (its map is not
            scored). It is called once per frame where objects are first given.
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
    dataset.check_scorable()
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
                truth = _ground_truth(dataset, seq)
            except BadSequenceError as e:
                if not skip_bad:
                    raise ValueError(f"{e}; pass skip_bad=True (--skip-bad) to name and skip such sequences") from None
                warn(f"sequence {seq!r} skipped: {e.reason}")
                rec = {"index": i, "sequence": seq, "bad": e.reason}
                fh.write(rec)
                records[i] = rec
                bar.update(1)
                continue
            rec = {"index": i, "sequence": seq, **_score(dataset, seq, truth, predict_sequence, bound_th),
                   "seconds": round(time.perf_counter() - ts, 4)}  # fmt: skip
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
