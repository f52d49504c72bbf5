"""Frame sources: folders, lists, arrays, video files (GIF through imageio), and their errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from insid3lab.core.video import VIDEO_INSTALL, count_frames, iter_frames, list_frame_files, natural_key


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


def test_frames_of_another_size_are_resized_to_the_first_or_refused(tmp_path):
    small = np.full((10, 15, 3), 200, dtype=np.uint8)
    frames = [flat_frames(1)[0], small]
    out = list(iter_frames(frames))
    assert out[1][1].shape == (20, 30, 3) and (out[1][1] == 200).all()
    write_pngs(tmp_path, frames, ["0.png", "1.png"])
    with pytest.raises(ValueError, match=r"1\.png.* is 10x15 but the first frame is 20x30"):
        list(iter_frames(tmp_path, resize=False))


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
