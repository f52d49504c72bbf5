"""Frame sources: folders, lists, arrays, video files (GIF through imageio), and their errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from insid3lab.core.video import VIDEO_INSTALL, count_frames, iter_frames, list_frame_files, natural_key, odd_frames


def flat_frames(n: int = 4, hw=(20, 30)) -> np.ndarray:
    """Distinct frames of a few flat colours (exactly representable in a GIF palette)."""
    f = np.zeros((n, *hw, 3), dtype=np.uint8)
    for t in range(n):
        f[t, :, :] = (40 * t, 255 - 40 * t, 7 * t)
        f[t, : hw[0] // 2, : 3 + 5 * t] = (255, 255, 255)
    return f


def write_pngs(folder, frames, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name, fr in zip(names, frames):
        Image.fromarray(fr).save(folder / name)


def test_natural_order():
    names = ["10.jpg", "2.jpg", "1.jpg", "frame_11.png", "frame_9.png", "B1.jpg", "a2.jpg"]
    assert sorted(names, key=natural_key) == [
        "1.jpg",
        "2.jpg",
        "10.jpg",
        "a2.jpg",
        "B1.jpg",
        "frame_9.png",
        "frame_11.png",
    ]


def test_folder_in_natural_order(tmp_path):
    frames = flat_frames(3)
    write_pngs(tmp_path / "seq", frames, ["10.png", "2.png", "1.png"])
    (tmp_path / "seq" / "notes.txt").write_text("not a frame")
    (tmp_path / "seq" / ".hidden.png").write_bytes(b"")
    out = list(iter_frames(tmp_path / "seq"))
    assert [n for n, _ in out] == ["1", "2", "10"]
    for (_, got), want in zip(out, frames[[2, 1, 0]]):
        assert got.dtype == np.uint8 and got.shape == (20, 30, 3)
        assert np.array_equal(got, want)
    assert count_frames(tmp_path / "seq") == 3
    assert [p.name for p in list_frame_files(tmp_path / "seq")] == ["1.png", "2.png", "10.png"]


def test_list_of_paths_keeps_its_order(tmp_path):
    frames = flat_frames(3)
    write_pngs(tmp_path, frames, ["a.png", "b.png", "c.png"])
    paths = [tmp_path / "c.png", str(tmp_path / "a.png")]
    out = list(iter_frames(paths))
    assert [n for n, _ in out] == ["c", "a"]
    assert np.array_equal(out[0][1], frames[2]) and np.array_equal(out[1][1], frames[0])
    assert count_frames(paths) == 2


def test_arrays_and_iterables():
    frames = flat_frames(3)
    out = list(iter_frames(frames))
    assert [n for n, _ in out] == ["00000", "00001", "00002"]
    assert all(np.array_equal(a, b) for (_, a), b in zip(out, frames))
    assert count_frames(frames) == 3
    gray = frames[..., 0]  # (T, H, W)
    out = list(iter_frames(gray))
    assert out[1][1].shape == (20, 30, 3) and np.array_equal(out[1][1][..., 2], gray[1])
    gen = (f for f in frames)  # a generator: consumed lazily, count unknown
    assert count_frames(gen) is None
    assert len(list(iter_frames(gen))) == 3
    pil = [Image.fromarray(f) for f in frames]
    assert np.array_equal(next(iter_frames(pil))[1], frames[0])


def test_frames_keep_their_own_size_or_take_the_first_ones_or_are_refused(tmp_path):
    small = np.full((10, 15, 3), 200, dtype=np.uint8)
    frames = [flat_frames(1)[0], small]
    own = list(iter_frames(frames))
    assert own[1][1].shape == (10, 15, 3) and np.array_equal(own[1][1], small)
    first = list(iter_frames(frames, sizes="first"))
    assert first[1][1].shape == (20, 30, 3) and (first[1][1] == 200).all()
    write_pngs(tmp_path, frames, ["0.png", "1.png"])
    with pytest.raises(ValueError) as e:
        list(iter_frames(tmp_path, sizes="same"))
    assert "1.png' is 10x15 but the first frame is 20x30" in str(e.value)
    assert str(e.value).count("1.png") == 1
    with pytest.raises(ValueError, match="sizes='big'"):
        list(iter_frames(frames, sizes="big"))


def test_an_unreadable_frame_is_named_once(tmp_path):
    write_pngs(tmp_path, flat_frames(1), ["0.png"])
    (tmp_path / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError) as e:
        list(iter_frames(tmp_path))
    assert str(e.value).startswith(f"frame {str(tmp_path / '1.png')!r} cannot be read")
    assert str(e.value).count("1.png") == 1


def test_a_file_left_out_of_a_folder_and_the_images_that_look_unlike_frames(tmp_path):
    frames = flat_frames(4)
    write_pngs(tmp_path, frames, [f"{t:05d}.png" for t in range(4)])
    Image.fromarray(frames[0][..., 0]).save(tmp_path / "first.png")  # a mask kept beside the frames
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "00004.png")  # a thumbnail
    names = [p.name for p in list_frame_files(tmp_path, exclude=[tmp_path / "first.png"])]
    assert names == ["00000.png", "00001.png", "00002.png", "00003.png", "00004.png"]
    with pytest.raises(ValueError, match="holds no image file but the one left out"):
        _only_the_mask(tmp_path)
    files = list_frame_files(tmp_path)
    sizes = {f: Image.open(f).size for f in files}
    assert odd_frames(sizes) == {
        tmp_path / "first.png": "named unlike the others (#.png)",
        tmp_path / "00004.png": "8x8 where the others are 30x20 (width x height)",
    }
    assert odd_frames({f: sizes[f] for f in files[:4]}) == {}
    # no majority: nothing is odd
    assert odd_frames({Path("a.png"): (1, 1), Path("b.png"): (2, 2)}) == {}


def _only_the_mask(tmp_path):
    d = tmp_path / "alone"
    d.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "m.png")
    return list_frame_files(d, exclude=[d / "m.png"])


def test_gif_is_read_as_a_video(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    frames = flat_frames(4)
    path = tmp_path / "clip.gif"
    iio.imwrite(path, frames, plugin="pillow", duration=100, loop=0)
    out = list(iter_frames(path))
    assert [n for n, _ in out] == ["00000", "00001", "00002", "00003"]
    assert np.array_equal(np.stack([f for _, f in out]), frames)
    assert count_frames(path) == 4


def test_unreadable_video_names_the_file(tmp_path):
    pytest.importorskip("imageio.v3")
    bad = tmp_path / "broken.gif"
    bad.write_bytes(b"GIF89a this is not a gif")
    with pytest.raises(ValueError, match=r"video '.*broken\.gif' cannot be read"):
        list(iter_frames(bad))


def test_missing_ffmpeg_reader_says_how_to_install(tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # importing either now raises ImportError
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(ImportError) as info:
        list(iter_frames(clip))
    msg = str(info.value)
    assert "clip.mp4" in msg and "imageio-ffmpeg" in msg and VIDEO_INSTALL in msg
    assert VIDEO_INSTALL == 'pip install "insid3lab[video]"'


def test_missing_imageio_says_how_to_install(tmp_path, monkeypatch):
    clip = tmp_path / "clip.gif"
    clip.write_bytes(b"GIF89a")
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v3", None)
    with pytest.raises(ImportError, match=r"needs imageio.*insid3lab\[video\]"):
        list(iter_frames(clip))


def test_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"'.*empty' is empty"):
        list(iter_frames(tmp_path / "empty"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"'.*docs' holds no image file"):
        list(iter_frames(tmp_path / "docs"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(iter_frames(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes\.txt.*video file"):
        list(iter_frames(tmp_path / "notes.txt"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png.*cannot be read"):
        list(iter_frames([tmp_path / "bad.png"]))
    with pytest.raises(ValueError, match="no frame"):
        list(iter_frames([]))
    with pytest.raises(ValueError, match="shape"):
        list(iter_frames(np.zeros((2, 4, 4, 2), dtype=np.uint8)))
    with pytest.raises(TypeError, match="int"):
        list(iter_frames(3))
