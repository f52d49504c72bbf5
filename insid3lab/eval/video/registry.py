"""The video benchmarks by name: one registry, filled by a decorator on each layout's class.

A video benchmark is a :class:`~insid3lab.eval.video.layouts.VideoLayout` subclass, built as
``cls(data_root)``; each registers itself, and one of one's own is added the same way::

    from insid3lab.eval.video import VideoLayout, register_video_benchmark

    @register_video_benchmark("mose", help="MOSE, semi-supervised, every frame annotated")
    class MOSE(VideoLayout):
        ...

``insid3lab eval --dataset`` lists the registered names with their help, and tracks and scores
them (J, F, J&F) through :func:`~insid3lab.eval.video.evaluate.evaluate_video`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["VIDEO_BENCHMARKS", "VideoBenchmarkEntry", "build_video_dataset", "register_video_benchmark"]


@dataclass(frozen=True)
class VideoBenchmarkEntry:
    """A registered video benchmark: its ``name`` (``--dataset name``), ``cls`` (a
    :class:`~insid3lab.eval.video.layouts.VideoLayout` subclass, built as ``cls(data_root, **kwargs)``)
    and ``help`` (one line for ``insid3lab eval --help``)."""

    name: str
    cls: type
    help: str = ""


#: Registered video benchmarks by name, in the order they were registered.
VIDEO_BENCHMARKS: dict[str, VideoBenchmarkEntry] = {}


def register_video_benchmark(name: str, *, help: str = "", overwrite: bool = False):
    """Class decorator: register a video layout as benchmark ``name``.

    Args:
        name: lower case letters, digits and ``_`` (``-`` on the command line reads as ``_``).
        help: one line for the command line's help.
        overwrite: replace an entry of the same name (otherwise a taken name is an error).
    """
    if not isinstance(name, str) or not name or name != name.lower().replace("-", "_"):
        raise ValueError(f"video benchmark name {name!r}: must be a non-empty lower-case string without '-'")

    def add(cls: type) -> type:
        if not isinstance(cls, type):
            raise TypeError(f"video benchmark {name!r}: register_video_benchmark decorates a class")
        old = VIDEO_BENCHMARKS.get(name)
        if old is not None and not overwrite and old.cls is not cls:
            raise ValueError(f"video benchmark {name!r} is already registered; pass overwrite=True to replace it")
        VIDEO_BENCHMARKS[name] = VideoBenchmarkEntry(name, cls, " ".join(str(help).split()))
        return cls

    return add


def build_video_dataset(name: str, data_root: str | os.PathLike, **kwargs):
    """The layout of video benchmark ``name`` read from ``data_root`` (``kwargs`` go to its class)."""
    key = str(name).lower().replace("-", "_")
    if key not in VIDEO_BENCHMARKS:
        raise ValueError(f"video benchmark {name!r} is not known; allowed: {', '.join(VIDEO_BENCHMARKS)}")
    return VIDEO_BENCHMARKS[key].cls(data_root, **kwargs)
