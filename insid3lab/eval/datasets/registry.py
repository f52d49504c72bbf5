"""The image benchmarks by name: one registry, filled by a decorator on each benchmark's class.

Each benchmark module decorates its class, and a benchmark of one's own is added the same way::

    from insid3lab.eval.datasets import SegmentationBenchmark, register_benchmark

    @register_benchmark("kvasir", help="Kvasir-SEG polyps, one class")
    class Kvasir(SegmentationBenchmark):
        title = "Kvasir-SEG"
        ...

The :class:`BenchmarkEntry` is everything the rest of the package reads about a benchmark:
:func:`build_dataset` validates names against :data:`BENCHMARKS`, and ``insid3lab eval`` reads
its ``--dataset`` choices and help, its ``--fold`` help and fold checks, and which benchmarks
read a COCO-format annotations file, from the entries. The decorator also sets the class's
``name`` and ``folds``, which its instances check a fold against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["BENCHMARKS", "BenchmarkEntry", "build_dataset", "dataset_names", "register_benchmark"]


@dataclass(frozen=True)
class BenchmarkEntry:
    """A registered image benchmark.

    Attributes:
        name: its ``build_dataset`` / ``--dataset`` name.
        cls: the class, built as ``cls(data_root, fold=..., shots=..., **kwargs)``; its ``task``
            (``"segmentation"`` or ``"keypoints"``) and ``loads_any_class`` (N-way episodes
            possible) are read from it.
        folds: the fold numbers, or None for a benchmark without folds.
        help: one line for ``insid3lab eval --help``.
        annotations: it reads a COCO-format annotations file (``--annotations FILE.json``) and
            its image folder (``--images DIR``, in the data root's place) instead of a
            documented folder layout; instance annotations (``--task instances``) come from it.
    """

    name: str
    cls: type
    folds: tuple[int, ...] | None = None
    help: str = ""
    annotations: bool = False

    @property
    def fold_range(self) -> str:
        """``"0-3"`` for folds (0, 1, 2, 3); ``""`` without folds."""
        return "" if self.folds is None else f"{self.folds[0]}-{self.folds[-1]}"


#: Registered image benchmarks by name, in the order they were registered.
BENCHMARKS: dict[str, BenchmarkEntry] = {}


def register_benchmark(name: str, *, folds=None, help: str = "", annotations: bool = False, overwrite: bool = False):
    """Class decorator: register an image benchmark as ``name`` (sets the class's ``name`` and ``folds``).

    Args:
        name: lower case letters, digits and ``_`` (``-`` on the command line reads as ``_``).
        folds: the fold numbers (an iterable of ints), or None.
        help: one line for the command line's help.
        annotations: see :class:`BenchmarkEntry`.
        overwrite: replace an entry of the same name (otherwise a taken name is an error).

    Raises:
        ValueError: a malformed name, a name taken by another class, or empty folds.
    """
    if not isinstance(name, str) or not name or name != name.lower().replace("-", "_"):
        raise ValueError(f"benchmark name {name!r}: must be a non-empty lower-case string without '-'")
    fold_tuple = None if folds is None else tuple(int(f) for f in folds)
    if fold_tuple == ():
        raise ValueError(f"benchmark {name!r}: folds must be None or at least one fold number")

    def add(cls: type) -> type:
        if not isinstance(cls, type):
            raise TypeError(f"benchmark {name!r}: register_benchmark decorates a class, got {type(cls).__name__}")
        old = BENCHMARKS.get(name)
        if old is not None and not overwrite and old.cls is not cls:
            raise ValueError(f"benchmark {name!r} is already registered; pass overwrite=True to replace it")
        cls.name, cls.folds = name, fold_tuple
        BENCHMARKS[name] = BenchmarkEntry(name, cls, fold_tuple, " ".join(str(help).split()), bool(annotations))
        return cls

    return add


def dataset_names() -> list[str]:
    """The names ``build_dataset`` (and ``insid3lab eval --dataset``) accepts."""
    return list(BENCHMARKS)


def build_dataset(name: str, data_root: str | os.PathLike, *, fold: int | None = None, shots: int = 1, **kwargs):
    """Build benchmark ``name`` (see :func:`dataset_names`) from ``data_root``.

    ``data_root`` may be the folder that holds the benchmark's folder (``COCO2014/``,
    ``LVIS/``, ...) as in the authors' ``data/`` layout, or that folder itself. For
    ``folder`` it is the folder with ``images/`` and ``masks/``; for ``coco_json``, the folder
    of the images (with ``annotations=FILE.json``). ``fold`` is required to lie in the
    benchmark's folds (default 0) and must be unset for benchmarks without folds.
    """
    key = str(name).lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"dataset={name!r} is not known; allowed: {', '.join(BENCHMARKS)}")
    entry = BENCHMARKS[key]
    if entry.folds is None and fold == 0:
        fold = None
    return entry.cls(data_root, fold=fold, shots=shots, **kwargs)
