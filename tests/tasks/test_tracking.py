"""Tracking through a sequence: one encoding per frame, the memory rule, several objects, DAVIS scores, the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from helpers.cli import tiny_model_args
from helpers.synthetic import ColourPositionEncoder
from PIL import Image

from insid3lab import INSID3, Tracker
from insid3lab.cli.track import ANIMATION, MASKS_DIR, first_mask_objects
from insid3lab.cli.track import add_parser as add_track_parser
from insid3lab.eval.video.evaluate import evaluate_davis
from insid3lab.eval.video.layouts import read_label_map as read_png_labels
from insid3lab.stages.prototype import EmptyMaskError
from insid3lab.synthetic import grid_scene
from insid3lab.synthetic.video import moving_object_sequence, write_davis_sequence
from insid3lab.viz import iou

pytestmark = pytest.mark.usefixtures("isolated_cache")

RED, YELLOW = (230, 30, 30), (240, 230, 40)
BACKGROUND = (90, 110, 140)


@pytest.fixture(scope="module")
def sequence():
    """8 frames (96 x 128) of two textured objects moving, turning, partly hidden; (T, H, W) label maps."""
    return moving_object_sequence(8, (96, 128), seed=0, objects=2)


def colour_model(**kw):
    enc = ColourPositionEncoder()
    model = INSID3(enc, image_size=256, svd_components=16, basis_cache=False, progress=False, **kw)
    model.positional.svd()  # the basis's own encoder call, before counting
    enc.calls = 0
    return model, enc


# ---------------------------------------------------------------- one encoding per frame
@pytest.mark.parametrize("labels", [False, True], ids=["one object", "two objects"])
def test_every_frame_is_encoded_once(sequence, labels):
    frames, maps = sequence
    model, enc = colour_model()
    first = maps[0] if labels else maps[0] == 1
    tr = Tracker(model, memory=4)
    out = list(tr.track(frames, first, labels=labels))
    assert enc.calls == len(frames) == len(out)
    # memory shots are the frames' own target encodings: the same tensors, not copies
    for mem in tr.memories.values():
        assert len(mem.recent) == 4 and [s.frame for s in mem.recent] == [4, 5, 6, 7]
        for s in mem.recent:
            assert s.encoded.features.shape == (enc.embed_dim, 16, 16)
            assert s.features_deb.data_ptr() != mem.first.features_deb.data_ptr()
    if labels:  # the objects' memories hold the same frame encodings, not one per object
        m1, m2 = tr.memories[1], tr.memories[2]
        assert all(a.features_deb is b.features_deb for a, b in zip(m1.shots, m2.shots))
        assert all(a.encoded.features is b.encoded.features for a, b in zip(m1.shots, m2.shots))
    shots = [r.shots[tr.ids[0]] for r in tr.records]
    assert shots == [0, 1, 2, 3, 4, 5, 5, 5]  # every frame remembered here, the memory holds 4


def test_colour_encoder_follows_the_object(sequence):
    frames, maps = sequence
    model, _ = colour_model()
    out = [m.numpy() for m in model.track(frames, maps[0] == 1, memory=4)]
    assert np.array_equal(out[0], maps[0] == 1)
    assert min(iou(o, m == 1) for o, m in zip(out, maps)) > 0.6


# ---------------------------------------------------------------- memory 0, the rule, the user's references
def test_memory_zero_equals_segmenting_against_the_first_frame(tiny, sequence):
    frames, maps = sequence
    model = INSID3(tiny, image_size=128, svd_components=16, progress=False)
    other = np.full((64, 64, 3), 200, np.uint8)
    model.set_reference(other, np.eye(64, dtype=bool))  # the user's own reference
    refs_before = list(model.references)
    user_mask = model.segment(frames[3])
    tracked = list(model.track(frames, maps[0] == 1, memory=0))
    assert model.references == refs_before and all(a is b for a, b in zip(model.references, refs_before))
    assert torch.equal(model.segment(frames[3]), user_mask)

    alone = INSID3(tiny, image_size=128, svd_components=16, progress=False)
    alone.set_reference(frames[0], maps[0] == 1)
    for t in range(1, len(frames)):
        assert torch.equal(tracked[t], alone.segment(frames[t])), t
    # an unreachable confidence remembers nothing: the same masks
    never = list(model.track(frames, maps[0] == 1, memory=4, min_confidence=2.0))
    assert all(torch.equal(a, b) for a, b in zip(tracked, never))


def test_memory_changes_the_prediction(tiny, sequence):
    frames, maps = sequence
    model = INSID3(tiny, image_size=128, svd_components=16, progress=False)
    off = list(model.track(frames, maps[0] == 1, memory=0))
    on = list(model.track(frames, maps[0] == 1, memory=4, min_confidence=-1.0))
    assert not all(torch.equal(a, b) for a, b in zip(off, on))


def test_an_empty_prediction_is_not_remembered():
    a, ma = grid_scene([(32, 32, 96, 112, RED), (160, 160, 224, 224, YELLOW)])
    b, _ = grid_scene([(48, 64, 112, 144, RED)])
    blank = np.zeros_like(a)
    blank[:] = BACKGROUND  # no object at all
    model, _ = colour_model()
    tracker = Tracker(model, memory=2)
    out = list(tracker.track([a, blank, b, b], ma[RED]))
    rec = tracker.records
    assert not bool(out[1].any())
    assert rec[1].confidence[1] == 0.0 and rec[1].remembered[1] is False
    assert rec[2].shots[1] == 1 and rec[2].remembered[1] is True  # frame 1 left no shot behind
    assert rec[3].shots[1] == 2
    assert [s.frame for s in tracker.memories[1].recent] == [2, 3]
    # the rule by hand: mean <deb(x), p0> over the predicted cells over the first frame's own mean
    mem = tracker.memories[1]
    shot = mem.recent[0]
    p0, deb0, low0 = mem.first_prototype, mem.first.features_deb, mem.first.encoded.mask_low
    want = float((p0 @ shot.features_deb[:, shot.encoded.mask_low]).mean() / (p0 @ deb0[:, low0]).mean())
    assert rec[2].confidence[1] == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------- several objects
def test_two_objects_are_disjoint_and_one_id_equals_one_object(tiny, sequence):
    frames, maps = sequence
    model = INSID3(tiny, image_size=128, svd_components=16, progress=False)
    multi = [m.numpy() for m in model.track(frames, maps[0], memory=2, labels=True)]
    assert multi[0].dtype == np.uint8 and np.array_equal(multi[0], maps[0])
    assert all(set(np.unique(m)) <= {0, 1, 2} for m in multi)
    single = list(model.track(frames, maps[0] == 1, memory=2))
    one_id = list(model.track(frames, (maps[0] == 1).astype(np.uint8) * 7, memory=2, labels=True))
    for s, o in zip(single, one_id):
        assert torch.equal(s, o == 7)


def test_overlap_goes_to_the_more_confident_object(tiny, sequence):
    frames, maps = sequence
    # a negative merge threshold: each object's own prediction claims the whole frame
    model = INSID3(tiny, image_size=128, svd_components=16, merge_threshold=-0.3, progress=False)
    alone, conf = {}, {}
    for i in (1, 2):  # each object tracked on its own: its raw prediction and confidence
        tracker = Tracker(model, memory=1)
        alone[i] = list(tracker.track(frames[:2], maps[0] == i))[1].numpy()
        conf[i] = tracker.records[1].confidence[1]
    both = alone[1] & alone[2]
    assert both.any() and conf[1] != conf[2]
    tracker = Tracker(model, memory=1)
    out = list(tracker.track(frames[:2], maps[0], labels=True))[1].numpy()
    rec = tracker.records[1]
    assert rec.confidence == pytest.approx(conf)
    winner, loser = sorted(conf, key=conf.get, reverse=True)
    want = np.where(alone[1], 1, 0) + np.where(alone[2] & ~alone[1], 2, 0)
    want[both] = winner
    assert np.array_equal(out, want)
    # the loser's resolved mask is what its memory would hold: here nothing is left, so nothing is remembered
    assert not (out == loser).any() and rec.remembered[loser] is False


# ---------------------------------------------------------------- bad input
def test_bad_input_one_line_each(tiny, sequence, tmp_path):
    frames, maps = sequence
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    cases = [
        (lambda: next(model.track(frames, np.zeros((96, 128), bool))), EmptyMaskError, "first mask is empty"),
        (lambda: next(model.track(frames, maps[0][:50] == 1)), ValueError, "50x128 but the first frame is 96x128"),
        (lambda: next(model.track(tmp_path, maps[0] == 1)), ValueError, "is empty"),
        (lambda: next(model.track(frames, maps[0] == 1, memory=-1)), ValueError, "memory=-1"),
        (lambda: next(model.track(frames, np.zeros((96, 128), np.uint8), labels=True)), ValueError, "no object id"),
    ]
    for call, exc, words in cases:
        with pytest.raises(exc) as e:
            call()
        assert words in str(e.value) and "\n" not in str(e.value)


def test_a_mask_kept_among_the_frames_is_not_a_frame_and_each_frame_keeps_its_size(tiny, sequence, tmp_path):
    frames, maps = sequence
    d = tmp_path / "seq"
    d.mkdir()
    for t in range(3):
        Image.fromarray(frames[t]).save(d / f"{t:05d}.png")
    Image.fromarray(frames[3]).resize((64, 48)).save(d / "00003.png")  # a frame of another size
    Image.fromarray((maps[0] == 1).astype(np.uint8) * 255).save(d / "0-mask.png")  # sorts before 00000.png
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    masks = [m.cpu().numpy() for m in model.track(d, d / "0-mask.png")]
    assert [m.shape for m in masks] == [(96, 128)] * 3 + [(48, 64)]
    assert np.array_equal(masks[0], maps[0] == 1)


# ---------------------------------------------------------------- evaluation
def test_davis_evaluation_end_to_end_and_resume(tiny, tmp_path):
    root = tmp_path / "DAVIS"
    for i in range(2):
        f, lab = moving_object_sequence(5, (48, 64), seed=i, objects=2)
        write_davis_sequence(root, f"moving-{i}", f, lab)
    model = INSID3(tiny, image_size=64, svd_components=8, progress=False)
    first = evaluate_davis(model, root, tmp_path / "run", memory=2, progress=False)
    assert first["sequences"] == 2 and first["objects"] == 4
    assert 0.0 <= first["J&F-Mean"] <= 1.0
    assert first["settings"]["memory"] == 2
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["sequence"] for x in lines] == ["moving-0", "moving-1"]
    again = evaluate_davis(model, root, tmp_path / "run", memory=2, progress=False)
    assert again["resumed"] == 2
    drop = ("time", "resumed")
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in first.items() if k not in drop}
    # a fresh run recomputes the same numbers
    fresh = evaluate_davis(model, root, tmp_path / "run2", memory=2, progress=False)
    assert fresh["J&F-Mean"] == first["J&F-Mean"] and fresh["resumed"] == 0
    with pytest.raises(ValueError, match="differs in settings"):
        evaluate_davis(model, root, tmp_path / "run", memory=3, progress=False)


# ---------------------------------------------------------------- command line
def parse(argv):
    p = argparse.ArgumentParser(prog="insid3lab")
    add_track_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["track", *tiny_model_args(), "--quiet", *argv])


@pytest.fixture()
def clip(tmp_path, sequence):
    frames, maps = sequence
    d = tmp_path / "clip"
    d.mkdir()
    for t in range(4):
        Image.fromarray(frames[t]).save(d / f"frame{t + 1}.png")
    Image.fromarray((maps[0] == 1).astype(np.uint8) * 255).save(tmp_path / "first.png")
    pal = Image.fromarray(maps[0])
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    pal.save(tmp_path / "first_labels.png")
    return tmp_path


def test_cli_writes_masks_and_animation_and_refuses_to_overwrite(clip):
    out = clip / "out"
    args = parse(["--frames", str(clip / "clip"), "--mask", str(clip / "first.png"), "--out", str(out)])
    assert args.func(args) == 0
    names = sorted(p.name for p in (out / MASKS_DIR).iterdir())
    assert names == ["frame1.png", "frame2.png", "frame3.png", "frame4.png"]
    first = np.asarray(Image.open(out / MASKS_DIR / "frame1.png"))
    assert set(np.unique(first)) == {0, 255} and np.array_equal(
        first > 0, np.asarray(Image.open(clip / "first.png")) > 0
    )
    with Image.open(out / ANIMATION) as gif:
        assert gif.n_frames == 4 and gif.width == 128 and gif.height > 96  # random weights: a note under the frames
    with pytest.raises(FileExistsError, match="--overwrite"):
        args.func(args)
    again = parse(["--frames", str(clip / "clip"), "--mask", str(clip / "first.png"), "--out", str(out), "--overwrite"])
    assert again.func(again) == 0


def test_cli_several_objects_write_palette_pngs(clip, sequence):
    assert first_mask_objects(clip / "first_labels.png") == [1, 2]
    assert first_mask_objects(clip / "first.png") == [1]
    out = clip / "multi"
    args = parse(
        [
            "--frames",
            str(clip / "clip"),
            "--mask",
            str(clip / "first_labels.png"),
            "--out",
            str(out),
            "--no-animation",
            "--memory",
            "1",
        ]
    )
    assert args.func(args) == 0
    with Image.open(out / MASKS_DIR / "frame1.png") as im:
        assert im.mode == "P"
    assert np.array_equal(read_png_labels(out / MASKS_DIR / "frame1.png"), sequence[1][0])
    assert not (out / ANIMATION).exists()


def test_cli_bad_input(clip, tmp_path):
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((96, 128), np.uint8)).save(tmp_path / "blank.png")
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    frames, mask = str(clip / "clip"), str(clip / "first.png")
    cases = [
        (["--frames", str(tmp_path / "empty"), "--mask", mask], "is empty"),
        (["--frames", frames, "--mask", str(tmp_path / "blank.png")], "first mask is empty"),
        (["--frames", frames, "--mask", str(tmp_path / "small.png")], "40x40 but the first frame is 96x128"),
        (["--frames", frames, "--mask", str(tmp_path / "nope.png")], "no such file"),
        (["--frames", str(tmp_path / "broken.mp4"), "--mask", mask], "broken.mp4"),
    ]
    for i, (argv, words) in enumerate(cases):
        argv = [*argv, "--out", str(tmp_path / f"out{i}")]
        args = parse(argv)
        with pytest.raises((ValueError, OSError)) as e:
            args.func(args)
        assert words in str(e.value) and "\n" not in str(e.value), (argv, str(e.value))


def test_cli_never_writes_into_the_frames_folder(clip):
    inside = clip / "seq" / MASKS_DIR  # frames in a folder named like the masks folder of --out
    inside.mkdir(parents=True)
    Image.fromarray(np.asarray(Image.open(clip / "clip" / "frame1.png"))).save(inside / "a.png")
    args = parse(
        ["--frames", str(inside), "--mask", str(clip / "first.png"), "--out", str(clip / "seq"), "--overwrite"]
    )
    with pytest.raises(ValueError, match="frames folder"):
        args.func(args)
    assert sorted(p.name for p in inside.iterdir()) == ["a.png"]
