"""The evaluation loop: resumable, shardable across processes, one summary at the end.

Files in ``out_dir``:

* ``run.json``: what the run is (benchmark, fold, shots, seed, episodes, model settings,
  weights fingerprint); a resumed run must match it.
* ``episodes.json``: the episodes, readable with :func:`~insid3lab.eval.run.episodes.load_episodes`.
* ``results.jsonl``: one line per finished episode, flushed as soon as it is computed
  (per-process ``results.rank<R>.jsonl`` while a distributed run is going; merged into
  ``results.jsonl``, sorted by episode, at its end). Segmentation lines hold the
  episode's background/foreground intersection and union counts, so the metric sums can
  be rebuilt exactly from them.
* ``summary.json``: settings, weights identity, mIoU, FB-IoU (or PCK), per-class
  scores, episode counts, bad samples, time.
  N-way runs (``ways`` > 1, :mod:`insid3lab.eval.run.nway`) and instance runs (``task="instances"``,
  :mod:`insid3lab.eval.run.instances`) use the same files and machinery.
* ``per_class.png``: a bar chart of the per-class scores.

Distributed: when ``torch.distributed`` is initialised, process ``r`` of ``W`` evaluates
the episodes whose index is ``r`` modulo ``W``; the integer sums are all-reduced and
process 0 writes the summary. The numbers equal those of a single process.

The scoring protocols ("paper", the authors' scoring, and "native") and each benchmark's
protocol detail with its source in the authors' code: :mod:`insid3lab.eval.run.protocol`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from insid3lab.core.files import write_atomic as write_file
from insid3lab.core.warn import warn
from insid3lab.eval.datasets import IGNORE, BadSampleError
from insid3lab.eval.metrics.segmentation import (
    KeypointMeter,
    SegmentationMeter,
    intersection_union,
    match_size,
    pck_hits,
)
from insid3lab.eval.reports.plots import plot_per_class, plot_run
from insid3lab.eval.reports.summary import add_record, build_summary
from insid3lab.eval.run.episodes import Episode, episodes_digest, resolve_episodes, save_episodes
from insid3lab.eval.run.files import (
    RESULTS,
    RecordFile,
    RunExistsError,
    RunLock,
    dist_info,
    json_line,
    now,
    plain,
    read_records,
    read_run_file,
    repair_tail,
    settings_digest,
    write_atomic,
    write_json,
)
from insid3lab.eval.run.instances import check_instances, instance_episode
from insid3lab.eval.run.nway import nway_episode
from insid3lab.eval.run.protocol import PROTOCOLS
from insid3lab.eval.run.threads import eval_num_threads, threads_requested

__all__ = ["PROTOCOLS", "model_settings", "plot_per_class", "read_records", "run_evaluation"]


# ───────────────────────── helpers ─────────────────────────


def model_settings(model) -> dict:
    """The model's hyperparameters and weights identity, as far as it exposes them."""
    out = {}
    settings = getattr(model, "settings", None)
    if callable(settings):
        out.update({k: plain(v) for k, v in settings().items()})
    else:
        for k in ("image_size", "svd_components", "tau", "merge_threshold"):
            v = getattr(model, k, None)
            if v is not None:
                out[k] = plain(v)
    enc = getattr(model, "encoder", None) or getattr(model, "backbone", None)
    dtype = getattr(enc, "dtype", None)
    if dtype is not None:
        out["dtype"] = plain(dtype)
    fp = getattr(enc, "fingerprint", None)
    out["weights_fingerprint"] = str(fp()) if callable(fp) else None
    return out


# ───────────────────────── one episode ─────────────────────────


def _segment_episode(model, dataset, ep: Episode, ignore_value: int | None) -> dict:
    refs = [dataset.load(r, ep.class_index) for r in ep.references]
    tgt = dataset.load(ep.target, ep.class_index)
    model.clear_reference()
    for r in refs:
        model.set_reference(r.image, r.foreground)
    pred = model.segment(tgt.image)
    pred = torch.as_tensor(pred).detach().cpu()
    if pred.ndim != 2:
        raise ValueError(f"model.segment returned shape {tuple(pred.shape)}; expected (H, W)")
    # the ground truth (and its ignore region) is brought to the prediction's size with nearest-neighbour
    # F.interpolate, as the authors' inference_segmentation.evaluate does; the prediction is S x S under
    # protocol "paper" and at the target's own size under "native"
    gt = match_size(tgt.mask, tuple(pred.shape))
    ignore = None if ignore_value is None else gt == ignore_value
    inter, union = intersection_union(pred, gt == 1, ignore if ignore is not None and bool(ignore.any()) else None)
    i, u = inter.tolist(), union.tolist()
    return {
        "target": tgt.image_path,
        "references": [r.image_path for r in refs],
        "intersection": i,
        "union": u,
        "iou": i[1] / max(u[1], 1),
    }


def _keypoint_episode(model, dataset, ep: Episode, ignore_value: int | None) -> dict:
    pair = dataset.load_pair(ep.target, list(ep.references))
    kw = {"debiased": bool(model.debias)} if isinstance(getattr(model, "debias", None), bool) else {}
    pts = model.match(torch.from_numpy(pair.source_points), pair.target, reference_image=pair.source, **kw)
    pts = torch.as_tensor(pts).detach().cpu().double()
    if tuple(pts.shape) != tuple(pair.target_points.shape):
        raise ValueError(f"model.match returned shape {tuple(pts.shape)}; expected {tuple(pair.target_points.shape)}")
    hits = pck_hits(pts, pair.target_points, pair.threshold)
    n = len(pair.target_points)
    return {
        "target": pair.target_path,
        "references": [pair.source_path],
        "n_points": n,
        "threshold": pair.threshold,
        "hits": hits,
        "pck": [h / n for h in hits],
    }


# ───────────────────────── the run ─────────────────────────


def run_evaluation(
    model,
    dataset,
    out_dir: str | os.PathLike,
    *,
    episodes=None,
    seed: int = 0,
    shots: int | None = None,
    resume: bool = False,
    skip_bad: bool = False,
    settings: dict | None = None,
    progress: bool = True,
    protocol: str = "native",
    ignore_value: int | None = IGNORE,
    num_threads: int | None = None,
    bootstrap: int = 1000,
    bootstrap_seed: int = 0,
    ways: int = 1,
    task: str = "semantic",
) -> dict:
    """Evaluate ``model`` on ``dataset`` and write the run to ``out_dir``; returns the summary dict.

    Args:
        model: an object with ``clear_reference()``, ``set_reference(image, mask)`` and
            ``segment(target) -> (H, W) bool`` (segmentation), or
            ``match(points, target, reference_image=...) -> (N, 2)`` (keypoints), such as
            :class:`insid3lab.INSID3`.
        dataset: a benchmark from :func:`insid3lab.eval.datasets.build_dataset`.
        out_dir: the run folder (created). One run writes into it at a time: a second
            fails with "run folder ... is in use by process N".
        episodes: None (the benchmark's standard count), a count, a list of
            :class:`Episode`, or the path of an episodes JSON file.
        seed: episode ``i`` is drawn from ``(seed, i)`` alone.
        shots: must equal ``dataset.shots`` when given (the benchmark is built for it).
        resume: continue the run in ``out_dir``, skipping finished episodes; without it a
            folder that already holds a run is an error. Episodes recorded as bad are
            evaluated again (the files may have been fixed).
        skip_bad: count and list episodes with an unusable sample instead of stopping.
        settings: extra JSON-serialisable facts to record (model source, device, ...).
        progress: show a tqdm bar (process 0 only).
        protocol: ``"native"`` scores each prediction at the target's own size;
            ``"paper"`` scores as the authors' evaluation does: the prediction at S x S
            (the model's ``resize_to_orig_size`` is set to False for the run) and the
            ground truth resized to it with nearest-neighbour. Recorded; a resumed run
            must use the same.
        ignore_value: the ground-truth mask value whose pixels count in neither
            intersection nor union (255, the benchmarks' ignore label); None: ignore nothing.
        num_threads: torch intra-op threads for the run (default: see
            :func:`insid3lab.eval.run.threads.eval_num_threads`); restored afterwards.
        bootstrap: resamples of the 95% bootstrap interval in the summary (0: none).
        bootstrap_seed: seed of the resampling.
        ways: classes per episode (N-way K-shot, :mod:`insid3lab.eval.run.nway`); 1: the 1-way
            protocol. Part of the run's identity when > 1.
        task: ``"semantic"`` (the benchmark's own task: masks, or keypoints for spair) or
            ``"instances"`` (COCO mask AP of ``segment_instances``, for benchmarks with
            instance annotations: :mod:`insid3lab.eval.run.instances`; no bootstrap interval).

    Returns:
        The summary (also written to ``out_dir/summary.json``); every process returns it.
    """
    if shots is not None and int(shots) != dataset.shots:
        raise ValueError(
            f"shots={shots} but the dataset was built with shots={dataset.shots}; build it with the same shots"
        )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be an integer >= 0")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: allowed: {', '.join(PROTOCOLS)}")
    if ignore_value is not None and (
        isinstance(ignore_value, bool)
        or not isinstance(ignore_value, (int, np.integer))
        or not 2 <= ignore_value <= 255
    ):
        raise ValueError(f"ignore_value={ignore_value!r}: must be None or an integer 2..255 (0 and 1 are the classes)")
    if task not in ("semantic", "instances"):
        raise ValueError(f"task={task!r}: allowed: semantic, instances")
    if task == "instances":
        check_instances(dataset, ways)
    threads = eval_num_threads(num_threads)
    task = "instances" if task == "instances" else getattr(dataset, "task", "segmentation")
    if protocol == "paper" and task != "keypoints" and not hasattr(model, "resize_to_orig_size"):
        raise ValueError(
            "protocol='paper' scores the prediction at S x S; the model has no resize_to_orig_size "
            "to ask for it (use an insid3lab.INSID3 model or protocol='native')"
        )
    previous_resize = getattr(model, "resize_to_orig_size", None)
    # torch's own default is already one thread per usable core: the pool is touched only to change that
    # (resizing it costs, and a process forked from one that used it must not touch it needlessly)
    previous_threads = torch.get_num_threads() if threads_requested(num_threads) else None
    if previous_threads is not None and previous_threads != threads:
        torch.set_num_threads(threads)
    if protocol == "paper" and task != "keypoints":
        model.resize_to_orig_size = False
    _, rank, _ = dist_info()
    lock = RunLock(out_dir) if rank == 0 else None
    try:
        return _run(
            model,
            dataset,
            Path(out_dir),
            task=task,
            ways=int(ways),
            episodes=episodes,
            seed=int(seed),
            resume=resume,
            skip_bad=skip_bad,
            settings=settings,
            progress=progress,
            protocol=protocol,
            ignore_value=None if ignore_value is None else int(ignore_value),
            threads=threads,
            lock=lock,
            bootstrap=int(bootstrap),
            bootstrap_seed=int(bootstrap_seed),
        )
    finally:
        if lock is not None:
            lock.release()
        if previous_threads is not None and previous_threads != threads:
            torch.set_num_threads(previous_threads)
        if previous_resize is not None:
            model.resize_to_orig_size = previous_resize


def _prepare_folder(out: Path, identity: dict, eps: list[Episode], resume: bool, started: str, lock: RunLock) -> dict:
    """Lock the run folder and make it ready; on resume, repair the records' tails and check their settings.

    Returns what the resume found: ``{"retried": number of bad records that will be evaluated again}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    lock.acquire()
    run_file = out / "run.json"
    existing = run_file.exists() or any(out.glob("results*.jsonl"))
    if existing and not resume:
        raise RunExistsError(out)
    if resume and run_file.exists():
        old = read_run_file(run_file).get("identity", {})
        diff = {k: (old.get(k), identity.get(k)) for k in set(old) | set(identity) if old.get(k) != identity.get(k)}
        if diff:
            lines = "; ".join(f"{k}: stored {a!r}, now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {str(out)!r}: the stored run differs ({lines})")
    retried = 0
    if resume:
        files = sorted(out.glob("results*.jsonl"))
        for f in files:
            repair_tail(f)
        problems: list[str] = []
        records = read_records(out, problems=problems)
        if problems:
            _set_aside(out, records, problems)
        digest = identity_digest(identity)
        foreign = sorted(i for i, r in records.items() if r.get("run", digest) != digest)
        if foreign:
            raise ValueError(
                f"cannot resume {str(out)!r}: {len(foreign)} record(s) (episodes {foreign[:5]}...) were written with "
                f"other run settings (digest {records[foreign[0]]['run']}, this run {digest}); two runs wrote into "
                "this folder, so its numbers cannot be trusted: start again in a new folder"
            )
        retried = sum("bad" in r for r in records.values())  # evaluated again below; the newer record counts
    if not run_file.exists():
        write_json(run_file, {"identity": identity, "created": started})
    save_episodes(out / "episodes.json", eps, meta={k: identity.get(k, 1) for k in ("dataset", "fold", "shots", "ways",
                                                                                     "seed")})  # fmt: skip
    return {"retried": retried}


def _set_aside(out: Path, records: dict[int, dict], problems: list[str]) -> None:
    """Name every record line that cannot be trusted, and keep only the sound records (their episodes
    are evaluated again)."""
    warn(f"resuming {out}: {len(problems)} line(s) of its records are set aside and their episodes evaluated "
         f"again: {'; '.join(problems)}")  # fmt: skip
    write_atomic(out / RESULTS, "".join(json_line(records[idx]) for idx in sorted(records)))
    for f in out.glob("results.rank*.jsonl"):
        f.unlink()


def identity_digest(identity: dict) -> str:
    """The settings digest every record of a run carries."""
    return settings_digest(identity)


def _run(
    model,
    dataset,
    out: Path,
    *,
    task,
    ways,
    episodes,
    seed,
    resume,
    skip_bad,
    settings,
    progress,
    protocol,
    ignore_value,
    threads,
    lock,
    bootstrap,
    bootstrap_seed,
) -> dict:
    dist, rank, world = dist_info()
    started, t0 = now(), time.perf_counter()

    eps = resolve_episodes(dataset, episodes, seed, ways)
    by_index = {e.index: e for e in eps}
    msettings = model_settings(model)
    identity = {
        "task": task,
        "dataset": dataset.name,
        "fold": dataset.fold,
        "shots": dataset.shots,
        "seed": seed,
        "episodes": len(eps),
        "episodes_digest": episodes_digest(eps),
        "protocol": protocol,
        "ignore_value": ignore_value,
        "model": msettings,
        **({"ways": ways} if ways > 1 else {}),  # absent for 1-way: runs made before ways existed resume
    }
    digest = identity_digest(identity)

    # ── the run folder: locked by process 0 for the run's life ──
    error, found = None, {"retried": 0}
    if rank == 0:
        try:
            found = _prepare_folder(out, identity, eps, resume, started, lock)
        except Exception as e:  # noqa: BLE001  (reported on every process below)
            error = e
    if dist is not None:
        flag = [None if error is None else f"{type(error).__name__}: {error}", found]
        dist.broadcast_object_list(flag, src=0)
        if flag[0] is not None and error is None:
            raise RuntimeError(f"process 0 could not prepare {str(out)!r}: {flag[0]}")
        found = flag[1]
    if error is not None:
        raise error

    # ── what is already done (bad records were set aside: they are evaluated again) ──
    done = {i: r for i, r in read_records(out).items() if "bad" not in r} if resume else {}
    for idx, rec in done.items():
        if idx in by_index and rec.get("episode") != by_index[idx].digest():
            raise ValueError(
                f"cannot resume {str(out)!r}: the stored result of episode {idx} belongs to a different episode"
            )
    mine = [e for e in eps if e.index % world == rank]
    todo = [e for e in mine if e.index not in done]
    resumed = len(mine) - len(todo)
    if dist is not None:
        dist.barrier()  # every process has read the old files before anyone appends

    live = out / (RESULTS if world == 1 else f"results.rank{rank}.jsonl")
    repair_tail(live)

    # ── evaluate ──
    records: dict[int, dict] = {e.index: done[e.index] for e in mine if e.index in done}
    meter = {"segmentation": SegmentationMeter, "keypoints": KeypointMeter}.get(task, list)(list(dataset.class_names))
    for rec in records.values():
        add_record(meter, rec, task)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(mine),
        initial=resumed,
        disable=not progress or rank != 0,
        desc=f"{dataset.name}" + ("" if world == 1 else f" [rank 0 of {world}]"),
        unit="ep",
        dynamic_ncols=True,
    )
    run_one = {
        "segmentation": nway_episode if ways > 1 else _segment_episode,
        "keypoints": _keypoint_episode,
        "instances": instance_episode,
    }[task]
    with RecordFile(live) as fh, torch.no_grad():
        for ep in todo:
            ts = time.perf_counter()
            base = {
                "index": ep.index,
                "episode": ep.digest(),
                "class_index": ep.class_index,
                "class": ep.class_name,
                "run": digest,
            }
            try:
                rec = {**base, **run_one(model, dataset, ep, ignore_value)}
            except BadSampleError as e:
                if not skip_bad:
                    raise BadSampleError(
                        e.path,
                        f"{e.reason} (episode {ep.index}; pass skip_bad=True / --skip-bad to count and skip such episodes)",
                    ) from e
                rec = {**base, "bad": {"file": e.path, "reason": e.reason}}
            rec["seconds"] = round(time.perf_counter() - ts, 4)
            fh.write(rec)
            records[ep.index] = rec
            add_record(meter, rec, task)
            bar.update(1)
            if task == "segmentation":
                bar.set_postfix_str(f"mIoU(seen classes) {meter.miou_visited():.1f}")
            elif task == "keypoints":
                bar.set_postfix_str(f"PCK@0.10 {meter.pck()['pck@0.10']:.1f}")
    bar.close()

    summary = build_summary(
        records,
        meter,
        dataset,
        task=task,
        ways=ways,
        protocol=protocol,
        identity=identity,
        msettings=msettings,
        settings=settings,
        skip_bad=skip_bad,
        threads=threads,
        episodes=len(eps),
        resumed=resumed,
        retried=int(found["retried"]),
        started=started,
        t0=t0,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
    )

    if dist is not None:
        dist.barrier()  # all per-process files are complete
    if rank == 0:
        _finalise_files(out, summary, dataset, task)
    if dist is not None:
        dist.barrier()
    return summary


def _finalise_files(out: Path, summary: dict, dataset, task: str) -> None:
    records = read_records(out)
    write_atomic(out / RESULTS, "".join(json_line(records[idx]) for idx in sorted(records)))
    for f in out.glob("results.rank*.jsonl"):
        f.unlink()
    write_json(out / "summary.json", summary)
    figure = plot_run(summary, dataset)
    write_file(out / "per_class.png", lambda tmp: figure.savefig(tmp, dpi=110))
