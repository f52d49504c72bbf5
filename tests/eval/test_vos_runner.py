"""The sequence evaluation driver: numbers, records, resume after an interruption, two processes, objects given
after the first frame (YouTube-VOS)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.processes import free_port, gloo_group
from helpers.runs import records_without_time

from insid3lab.eval.video.layouts import DavisDataset, YouTubeVOSDataset
from insid3lab.eval.video.runner import evaluate_sequences
from insid3lab.eval.video.scores import evaluate_sequence, summarise
from insid3lab.synthetic.video import moving_object_sequence, write_moving_sequences, write_youtube_vos_sequence


def shift_right(labels: np.ndarray, k: int = 2) -> np.ndarray:
    out = np.zeros_like(labels)
    out[..., k:] = labels[..., :-k]
    return out


class ShiftedTruth:
    """A deterministic fake method: the ground truth shifted 2 px right; can fail at a given sequence."""

    def __init__(self, dataset, fail_at: int | None = None):
        self.dataset, self.fail_at, self.calls = dataset, fail_at, 0

    def __call__(self, frames, first):
        seq = self.dataset.sequences[self.calls]
        self.calls += 1
        if self.fail_at is not None and self.calls - 1 == self.fail_at:
            raise KeyboardInterrupt("stopped")
        assert np.array_equal(first, self.dataset.first_label_map(seq))
        for frame, labels in zip(frames, self.dataset.label_maps(seq)):
            assert frame.shape == (*labels.shape, 3) and frame.dtype == np.uint8
            yield shift_right(labels)


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("time", "resumed")}


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    write_moving_sequences(root, 3, frames=5, size=(48, 64), objects=2)
    return DavisDataset(root)


def test_perfect_predictor_scores_one(davis, tmp_path):
    s = evaluate_sequences(davis, lambda frames, first: _truth(davis, first), tmp_path / "run", progress=False)
    assert s["J&F-Mean"] == 1.0 and s["J-Mean"] == 1.0 and s["F-Mean"] == 1.0 and s["J-Recall"] == 1.0
    assert s["objects"] == 6 and s["sequences"] == 3
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["J&F-Mean"] == 1.0


def _truth(ds, first):
    seq = next(s for s in ds.sequences if np.array_equal(ds.first_label_map(s), first))
    yield from ds.label_maps(seq)


def test_records_hold_the_per_frame_scores(davis, tmp_path):
    s = evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "run", progress=False)
    recs = records_without_time(tmp_path / "run" / "results.jsonl")
    assert [r["index"] for r in recs] == [0, 1, 2] and [r["sequence"] for r in recs] == davis.sequences
    for r, seq in zip(recs, davis.sequences):
        gt = davis.label_maps(seq)
        want = evaluate_sequence(gt, shift_right(gt))
        assert r["frames"] == ["00001", "00002", "00003"] and r["objects"] == 2
        assert r["J"] == want["J"] and r["F"] == want["F"] and r["J_decay"] == want["J_decay"]
        assert 0.5 < np.mean(r["J"]) < 1.0  # a 2 px shift of objects about 15 px across
        assert 0.0 < np.mean(r["F"]) < 1.0  # 48 x 64: tolerance ceil(0.008 * 80) = 1 px, less than the shift
    assert comparable(s) == comparable({**s, **summarise(recs)})


def test_interrupted_run_resumes_to_identical_numbers(davis, tmp_path):
    full = evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        evaluate_sequences(davis, ShiftedTruth(davis, fail_at=1), tmp_path / "part", progress=False)
    assert len(records_without_time(tmp_path / "part" / "results.jsonl")) == 1  # the first sequence is kept
    method = ShiftedTruth(davis)
    method.calls = 1  # the resumed run starts at the second sequence
    resumed = evaluate_sequences(davis, method, tmp_path / "part", progress=False)
    assert method.calls == 3 and resumed["resumed"] == 1
    assert comparable(resumed) == comparable(full)
    assert records_without_time(tmp_path / "part" / "results.jsonl") == records_without_time(
        tmp_path / "full" / "results.jsonl"
    )
    assert comparable(json.loads((tmp_path / "part" / "summary.json").read_text())) == comparable(full)


def test_an_edited_record_is_named_and_its_sequence_run_again(davis, tmp_path):
    full = evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    rec = json.loads(lines[1])
    rec["J_mean"][0] = 1.0  # a better number, typed in by hand
    lines[1] = json.dumps(rec) + "\n"
    path.write_text("".join(lines))
    method = ShiftedTruth(davis)
    method.calls = 1  # the sequence of line 2 is the one run again
    with pytest.warns(UserWarning, match=rf"{path} line 2: its digest does not match its content"):
        again = evaluate_sequences(davis, method, tmp_path / "run", progress=False)
    assert method.calls == 2 and comparable(again) == comparable(full)
    assert records_without_time(path)[1]["J_mean"][0] < 1.0 and len(records_without_time(path)) == 3


def test_run_folder_rules(davis, tmp_path):
    evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "run", progress=False, settings={"memory": 4})
    with pytest.raises(FileExistsError, match="resume=True"):
        evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "run", resume=False, progress=False)
    with pytest.raises(ValueError, match="differs in settings"):
        evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "run", progress=False, settings={"memory": 2})
    shutil.copytree(davis.root, tmp_path / "moved")  # the data moved: the run still resumes
    moved = DavisDataset(tmp_path / "moved")
    again = evaluate_sequences(moved, ShiftedTruth(moved), tmp_path / "run", progress=False, settings={"memory": 4})
    assert again["resumed"] == 3 and again["dataset"]["root"] == str(tmp_path / "moved")


def test_predictions_of_the_wrong_count_or_size(davis, tmp_path):
    def too_few(frames, first):
        return [first] * 2

    with pytest.raises(ValueError, match="2 predicted label maps for 5 frames"):
        evaluate_sequences(davis, too_few, tmp_path / "a", progress=False)

    def wrong_size(frames, first):
        return [first[:10]] * 5

    with pytest.raises(ValueError, match="frame 0.*expected an 48x64 integer label map"):
        evaluate_sequences(davis, wrong_size, tmp_path / "b", progress=False)


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    with gloo_group(rank, world, port):
        ds = DavisDataset(root)
        seen = []

        def method(frames, first):
            seq = next(s for s in ds.sequences if np.array_equal(ds.first_label_map(s), first))
            seen.append(seq)
            for labels in ds.label_maps(seq):
                yield shift_right(labels)

        s = evaluate_sequences(ds, method, out, progress=False)
        Path(out, f"returned.rank{rank}.json").write_text(json.dumps({"summary": comparable(s), "seen": seen}))


def test_two_processes_shard_by_sequence_and_equal_one(davis, tmp_path):
    import torch.multiprocessing as mp

    single = evaluate_sequences(davis, ShiftedTruth(davis), tmp_path / "one", progress=False)
    mp.start_processes(
        _worker, args=(2, free_port(), str(davis.root), str(tmp_path / "two")), nprocs=2, join=True, start_method="fork"
    )
    seqs = davis.sequences
    for rank in (0, 1):
        got = json.loads((tmp_path / "two" / f"returned.rank{rank}.json").read_text())
        assert got["seen"] == seqs[rank::2]  # rank r runs sequences r, r + W, ...
        assert {k: v for k, v in got["summary"].items() if k != "settings"} == {
            k: v for k, v in comparable(single).items() if k != "settings"
        }
        assert got["summary"]["settings"]["world_size"] == 2
    assert records_without_time(tmp_path / "two" / "results.jsonl") == records_without_time(
        tmp_path / "one" / "results.jsonl"
    )
    assert not list((tmp_path / "two").glob("results.rank*.jsonl"))


def test_a_sequence_without_an_object_or_with_under_3_frames_is_named_and_skipped_under_skip_bad(tmp_path):
    from insid3lab.synthetic.video import moving_object_sequence, write_davis_sequence

    root = tmp_path / "davis"
    write_moving_sequences(root, 1, frames=5, size=(48, 64), objects=1)
    frames, labels = moving_object_sequence(4, (48, 64), seed=5)
    labels[0] = 0  # the object appears only later
    write_davis_sequence(root, "empty-first", frames, labels)
    write_moving_sequences(root, 2, frames=5, size=(48, 64), objects=1)  # moving-1 after the bad one
    frames, labels = moving_object_sequence(2, (48, 64), seed=6)
    write_davis_sequence(root, "short", frames, labels)
    ds = DavisDataset(root)
    assert ds.sequences == ["moving-0", "empty-first", "moving-1", "short"]

    def predict(frames, first):
        for frame in frames:
            yield np.zeros(frame.shape[:2], np.uint8)

    with pytest.raises(ValueError) as e:
        evaluate_sequences(ds, predict, tmp_path / "strict", progress=False)
    assert "sequence 'empty-first'" in str(e.value) and "skip_bad" in str(e.value) and "\n" not in str(e.value)

    with pytest.warns(UserWarning) as caught:
        s = evaluate_sequences(ds, predict, tmp_path / "run", progress=False, skip_bad=True)
    assert s["sequences"] == 2 and set(s["per_sequence"]) == {"moving-0", "moving-1"}
    assert s["skipped"] == [
        {"sequence": "empty-first", "reason": "its first annotation holds no object"},
        {"sequence": "short", "reason": "2 frame(s); the scores need at least 3 (the first and last are not scored)"},
    ]
    err = " ".join(str(w.message) for w in caught)
    assert "sequence 'empty-first' skipped: its first annotation holds no object" in err and "'short' skipped" in err
    with pytest.warns(UserWarning, match="skipped"):  # a resumed run tries them again
        again = evaluate_sequences(ds, predict, tmp_path / "run", progress=False, skip_bad=True)
    assert comparable(again) == comparable(s)


@pytest.fixture(scope="module")
def youtube(tmp_path_factory):
    """A YouTube-VOS train sequence of 11 frames, every fifth annotated; object 2 appears at frame 5."""
    root = tmp_path_factory.mktemp("ytvos")
    frames, labels = moving_object_sequence(11, (48, 64), seed=3, objects=2)
    labels[:5][labels[:5] == 2] = 0
    write_youtube_vos_sequence(root, "clip", frames, labels)
    return root, labels


def test_youtube_vos_objects_are_given_where_they_appear_and_scored_after(youtube, tmp_path):
    root, labels = youtube
    ds = YouTubeVOSDataset(root, all_frames=True)
    calls = []

    def method(frames, given):
        start = next(t for t, m in ds.given("clip").items() if np.array_equal(m, given))
        ids = sorted(set(np.unique(given).tolist()) - {0})
        calls.append((start, ids))
        for t, _ in enumerate(frames, start=start):  # object 1 over the whole frame; the later run's truth
            yield np.ones_like(labels[t]) if ids == [1] else np.where(labels[t] == 2, 2, 0).astype(np.uint8)

    s = evaluate_sequences(ds, method, tmp_path / "run", progress=False)
    assert calls == [(0, [1]), (5, [2])]  # one run per frame where objects are first given
    (rec,) = records_without_time(tmp_path / "run" / "results.jsonl")
    assert rec["ids"] == [1, 2] and rec["objects"] == 2 and rec["frames"] == ["00005", "00010"]
    # the later run keeps the pixels it claims: object 1 is everything but object 2's truth
    expected_j1 = [float((labels[t] == 1).sum() / (labels[t] != 2).sum()) for t in (5, 10)]
    assert rec["J"][0] == pytest.approx(expected_j1) and rec["J"][1] == [1.0]  # object 2: frame 10 only
    assert rec["F"][1] == [1.0] and rec["F"][0][0] < 1.0
    assert s["objects"] == 2 and s["sequences"] == 1
    assert s["J-Mean"] == pytest.approx((np.mean(expected_j1) + 1.0) / 2)
    assert list(s["per_object"]) == ["clip_1", "clip_2"]


def test_youtube_vos_truth_scores_one_on_the_split_frames(youtube, tmp_path):
    root, labels = youtube
    ds = YouTubeVOSDataset(root)  # the split's frames, 00000 00005 00010, each annotated

    def truth(frames, given):
        ids = list(set(np.unique(given).tolist()) - {0})
        start = 0 if 1 in ids else 1
        for i, _ in enumerate(frames):
            gt = labels[5 * (start + i)]
            yield np.where(np.isin(gt, ids), gt, 0).astype(np.uint8)

    s = evaluate_sequences(ds, truth, tmp_path / "run", progress=False)
    assert s["J&F-Mean"] == 1.0 and s["objects"] == 2
    (rec,) = records_without_time(tmp_path / "run" / "results.jsonl")
    assert rec["frames"] == ["00005", "00010"] and [len(j) for j in rec["J"]] == [2, 1]


def test_youtube_vos_hidden_split_stops_before_any_work(youtube, tmp_path):
    root, labels = youtube
    shutil.copytree(root / "train", tmp_path / "valid")
    called = []
    with pytest.raises(ValueError, match="valid split is not public"):
        evaluate_sequences(YouTubeVOSDataset(tmp_path, "valid"), lambda f, g: called.append(1), tmp_path / "run")
    assert not called and not (tmp_path / "run").exists()


def test_a_youtube_vos_sequence_with_nothing_to_score_is_named_and_skipped_under_skip_bad(youtube, tmp_path):
    root, labels = youtube
    shutil.copytree(root, tmp_path / "yt")
    frames, late = moving_object_sequence(11, (48, 64), seed=4, objects=1)
    late[:10] = 0  # the object appears only in the last annotated frame
    write_youtube_vos_sequence(tmp_path / "yt", "late", frames, late)
    ds = YouTubeVOSDataset(tmp_path / "yt")
    assert ds.sequences == ["clip", "late"]

    def nothing(frames, given):
        for frame in frames:
            yield np.zeros(frame.shape[:2], np.uint8)

    with pytest.raises(ValueError, match="sequence 'late': no object appears before its last annotated frame"):
        evaluate_sequences(ds, nothing, tmp_path / "strict", progress=False)
    with pytest.warns(UserWarning, match="'late' skipped"):
        s = evaluate_sequences(ds, nothing, tmp_path / "run", progress=False, skip_bad=True)
    assert s["sequences"] == 1 and s["objects"] == 2 and [r["sequence"] for r in s["skipped"]] == ["late"]
