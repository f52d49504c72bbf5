"""Video object segmentation: the DAVIS and YouTube-VOS layouts, J and F, the sequence runner.

* :mod:`.registry` — :data:`VIDEO_BENCHMARKS`, filled by :func:`register_video_benchmark` on each
  layout class; :func:`build_video_dataset` builds one by name.
* :mod:`.layouts` — :class:`VideoLayout` (what is given where, what is scored), the DAVIS 2017
  layout (``davis2017``) and the YouTube-VOS layout (``youtube_vos``).
* :mod:`.scores` — J and F as the DAVIS toolkit computes them; :mod:`.runner` — the resumable,
  shardable sequence runner; :mod:`.evaluate` — tracking with INSID3 through the runner.
"""

from insid3lab.eval.video.layouts import DavisDataset, VideoLayout, YouTubeVOSDataset
from insid3lab.eval.video.registry import (
    VIDEO_BENCHMARKS,
    VideoBenchmarkEntry,
    build_video_dataset,
    register_video_benchmark,
)

__all__ = [
    "VIDEO_BENCHMARKS",
    "DavisDataset",
    "VideoBenchmarkEntry",
    "VideoLayout",
    "YouTubeVOSDataset",
    "build_video_dataset",
    "register_video_benchmark",
]
