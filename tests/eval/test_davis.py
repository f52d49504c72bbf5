"""The DAVIS and YouTube-VOS layouts, palette PNGs and generated sequences."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from insid3lab.core.palette import davis_palette, read_label_map, save_palette_png
from insid3lab.eval.video.layouts import DavisDataset, YouTubeVOSDataset
from insid3lab.synthetic.video import (
    moving_object_sequence,
    write_davis_sequence,
    write_moving_sequences,
    write_youtube_vos_sequence,
)


def test_palette_by_the_bit_interleaving_rule():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[:9].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [128, 128, 0],
        [0, 0, 128],
        [128, 0, 128],
        [0, 128, 128],
        [128, 128, 128],
        [64, 0, 0],
    ]
    assert pal[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_palette_png_round_trip(tmp_path):
    labels = np.zeros((12, 16), dtype=np.int64)
    labels[2:6, 3:9] = 1
    labels[7:, 10:] = 2
    labels[0, 0] = 255
    path = save_palette_png(labels, tmp_path / "sub" / "00000.png")
    with Image.open(path) as img:
        assert img.mode == "P"
        assert img.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    back = read_label_map(path)
    assert back.dtype == np.uint8 and np.array_equal(back, labels)
    with pytest.raises(ValueError, match="0..255"):
        save_palette_png(labels + 300, tmp_path / "x.png")
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png' is a RGB image"):
        read_label_map(tmp_path / "rgb.png")


def test_moving_object_sequence():
    frames, labels = moving_object_sequence(frames=8, size=(96, 128), seed=0, objects=2)
    assert frames.shape == (8, 96, 128, 3) and frames.dtype == np.uint8
    assert labels.shape == (8, 96, 128) and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == {0, 1, 2}
    again = moving_object_sequence(frames=8, size=(96, 128), seed=0, objects=2)
    assert np.array_equal(again[0], frames) and np.array_equal(again[1], labels)
    other = moving_object_sequence(frames=8, size=(96, 128), seed=1, objects=2)
    assert not np.array_equal(other[0], frames)
    # both objects visible in every frame; object 1 moves right, object 2 left
    xs = {k: [np.argwhere(labels[t] == k)[:, 1].mean() for t in range(8)] for k in (1, 2)}
    assert all((labels == k).any(axis=(1, 2)).all() for k in (1, 2))
    assert xs[1][-1] - xs[1][0] > 30 and xs[2][0] - xs[2][-1] > 30
    # the post splits object 1 in some middle frame (its columns are not contiguous), never in the first
    split = [ndimage.label((labels[t] == 1).any(axis=0))[1] > 1 for t in range(8)]
    assert not split[0] and any(split[1:-1])
    # the object is textured: many distinct colours inside its mask
    assert len(np.unique(frames[0][labels[0] == 1], axis=0)) >= 3
    one = moving_object_sequence(frames=3, seed=0, objects=1)[1]
    assert set(np.unique(one).tolist()) == {0, 1}
    with pytest.raises(ValueError, match="objects=3"):
        moving_object_sequence(objects=3)


def test_davis_layout_round_trip(tmp_path):
    names = write_moving_sequences(tmp_path, 2, frames=5, size=(48, 64), objects=2)
    assert names == ["moving-0", "moving-1"]
    assert (tmp_path / "ImageSets" / "2017" / "val.txt").read_text() == "moving-0\nmoving-1\n"
    write_moving_sequences(tmp_path, 1, frames=5, size=(48, 64), objects=2)  # listed once only
    assert (tmp_path / "ImageSets" / "2017" / "val.txt").read_text() == "moving-0\nmoving-1\n"
    ds = DavisDataset(tmp_path)
    assert ds.sequences == names and len(ds) == 2 and ds.name == "davis2017"
    for i, name in enumerate(names):
        frames, labels = moving_object_sequence(5, (48, 64), seed=i, objects=2)
        assert [p.name for p in ds.frame_paths(name)] == [f"{t:05d}.jpg" for t in range(5)]
        assert np.array_equal(ds.label_maps(name), labels)
        assert np.array_equal(ds.first_label_map(name), labels[0])
        assert ds.num_objects(name) == 2
        read = np.stack(list(ds.frames(name)))
        assert read.shape == frames.shape
        err = np.abs(read.astype(int) - frames)
        assert err.mean() < 4  # JPEG, quality 95, of a noisy texture
        # and in order: every frame read is nearest to the frame written at its index
        d = np.abs(read[:, None].astype(int) - frames[None].astype(int)).mean(axis=(2, 3, 4))
        assert (d.argmin(axis=1) == np.arange(5)).all()
    assert DavisDataset(tmp_path, sequences="moving-1").sequences == ["moving-1"]


def test_void_in_the_first_annotation_is_background(tmp_path):
    frames, labels = moving_object_sequence(3, (40, 48), seed=0)
    labels[0, :2, :2] = 255
    write_davis_sequence(tmp_path, "v", frames, labels)
    ds = DavisDataset(tmp_path)
    assert ds.label_maps("v")[0, 0, 0] == 255
    assert ds.first_label_map("v")[0, 0] == 0 and ds.num_objects("v") == 1


def test_davis_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        DavisDataset(tmp_path)
    frames, labels = moving_object_sequence(3, (40, 48), seed=0)
    write_davis_sequence(tmp_path, "a", frames, labels)
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*split 'test'"):
        DavisDataset(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match="sequence.*ghost"):
        DavisDataset(tmp_path, sequences=["a", "ghost"])
    (tmp_path / "Annotations" / "480p" / "a" / "00001.png").unlink()
    ds = DavisDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'a': no annotation for frame\(s\) 00001"):
        ds.label_maps("a")
    with pytest.raises(KeyError, match="nope"):
        ds.frame_paths("nope")
    with pytest.raises(ValueError, match="label_maps"):
        write_davis_sequence(tmp_path, "b", frames, labels[:2])


def test_youtube_vos_layout_with_sparse_annotations(tmp_path):
    frames, labels = moving_object_sequence(5, (40, 48), seed=0, objects=2)
    first = np.where(labels[0] == 2, 0, labels[0])  # object 2 appears in frame 3
    seq_img, seq_ann = tmp_path / "JPEGImages" / "clip", tmp_path / "Annotations" / "clip"
    seq_img.mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(seq_img / f"{5 * t:05d}.jpg")
    save_palette_png(first, seq_ann / "00000.png")
    save_palette_png(labels[3], seq_ann / "00015.png")
    ds = YouTubeVOSDataset(tmp_path)
    assert ds.sequences == ["clip"] and ds.name == "youtube_vos" and ds.split == "train"
    assert [p.stem for p in ds.frame_paths("clip")] == ["00000", "00005", "00010", "00015", "00020"]
    assert list(ds.annotation_paths("clip")) == ["00000", "00015"]
    assert np.array_equal(ds.first_label_map("clip"), first)
    assert ds.object_frames("clip") == {1: "00000", 2: "00015"}
    assert ds.num_objects("clip") == 2
    assert len(list(ds.frames("clip"))) == 5 and len(list(ds.frames("clip", 3))) == 2
    # what a runner reads: the annotated frames, what is given where, what is scored
    assert ds.annotated_frames("clip") == [0, 3]
    assert np.array_equal(ds.label_maps("clip"), np.stack([first, labels[3]]))
    given = ds.given("clip")
    assert list(given) == [0, 3] and np.array_equal(given[0], first)
    assert np.array_equal(given[3], np.where(labels[3] == 2, 2, 0))  # only the object new there
    assert ds.scored_frames("clip") == {1: [3]}  # object 2 is given at the last annotated frame: nothing to score
    ds.check_scorable()


def test_youtube_vos_download_layout_and_hidden_splits(tmp_path):
    frames, labels = moving_object_sequence(11, (40, 48), seed=0, objects=1)
    write_youtube_vos_sequence(tmp_path, "clip", frames, labels)
    write_youtube_vos_sequence(tmp_path, "clip", frames, labels, split="valid")
    assert sorted(p.name for p in (tmp_path / "train" / "JPEGImages" / "clip").iterdir()) == [
        "00000.jpg",
        "00005.jpg",
        "00010.jpg",
    ]
    assert len(list((tmp_path / "train_all_frames" / "JPEGImages" / "clip").iterdir())) == 11
    ds = YouTubeVOSDataset(tmp_path)  # the download's folder: the train split by default
    assert ds.split == "train" and ds.annotated_frames("clip") == [0, 1, 2]
    assert ds.scored_frames("clip") == {1: [1, 2]}
    every = YouTubeVOSDataset(tmp_path, all_frames=True)  # every frame tracked, every fifth scored
    assert len(every.frame_paths("clip")) == 11 and every.annotated_frames("clip") == [0, 5, 10]
    assert every.scored_frames("clip") == {1: [5, 10]}
    assert np.array_equal(every.label_maps("clip"), labels[[0, 5, 10]])
    assert every.describe()["all_frames"] is True
    assert YouTubeVOSDataset(tmp_path / "train").split == "train"  # a split folder itself
    for valid in (YouTubeVOSDataset(tmp_path, "valid"), YouTubeVOSDataset(tmp_path / "valid")):
        assert valid.split == "valid" and list(valid.given("clip")) == [0]  # readable, to predict
        with pytest.raises(ValueError, match="ground truth of the valid split is not public"):
            valid.check_scorable()
    with pytest.raises(FileNotFoundError, match="test"):
        YouTubeVOSDataset(tmp_path, "test")


def test_eval_davis2017_skip_bad_names_and_skips_bad_sequences(tmp_path, capsys, monkeypatch):
    from insid3lab.cli import main
    from insid3lab.synthetic.video import write_moving_sequences

    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "DAVIS"
    write_moving_sequences(root, 1, frames=4, size=(48, 64), objects=1)
    frames, labels = moving_object_sequence(3, (48, 64), seed=3)
    labels[0] = 0
    write_davis_sequence(root, "no-object", frames, labels)
    argv = ["eval", "--dataset", "davis2017", "--data-root", str(root), "--model", "random:tiny", "--image-size", "64",
            "--svd-components", "8", "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "sequence 'no-object': its first annotation holds no object" in err[0]
    assert "--skip-bad" in err[0]
    assert main([*argv, "--skip-bad", "--resume"]) == 0
    out = capsys.readouterr()
    assert "sequence 'no-object' skipped" in out.err and "(sequences 1, objects 1, skipped 1)" in out.out
