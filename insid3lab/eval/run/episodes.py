"""Episodes: which target and which references one evaluation step uses.

Episode ``i`` of a run with seed ``s`` is drawn with ``numpy.random.default_rng([s, i])``
and nothing else, so the set of episodes does not depend on the order in which they are
evaluated, on the number of workers or processes, or on a run being resumed. Episodes
can be written to JSON and read back to rerun exactly the same set.

N-way episodes (``ways`` = N > 1, the N-way K-shot protocol of the few-shot segmentation
literature) are drawn from the same generator, through the benchmark's own ``sample``:

1. ``dataset.sample(rng, i)`` gives the episode's first class (way 0), its target and its K
   references, exactly the 1-way episode, so the target holds at least that class;
2. N - 1 further classes are drawn uniformly without replacement among the others;
3. each gets K references from further draws of ``dataset.sample`` (indices ``i + 1, i + 2,
   ...``, same generator) until one returns that class; its references are taken when none is
   the target's image and none is already a reference of the episode (where after
   ``REDRAWS`` draws per class none is free of other ways' references, the first one that avoids
   the target is used; where none avoids it, the episode cannot be drawn: a ValueError).

The classes' order is the ways' order; ``references`` holds K items per way, way after way.
``ways=1`` draws exactly the episodes of a 1-way run, with the same JSON and digests.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from insid3lab.core.files import json_text
from insid3lab.eval.datasets.base import leaves_folder
from insid3lab.eval.run.files import write_atomic

__all__ = [
    "Episode",
    "check_paths",
    "episode_rng",
    "episodes_digest",
    "load_episodes",
    "resolve_episodes",
    "sample_episode",
    "sample_episodes",
    "save_episodes",
]

EPISODES_FORMAT = "insid3lab-episodes/1"
REDRAWS = 200  # draws of the benchmark's sampler per further way, times its number of classes


@dataclass(frozen=True)
class Episode:
    """One evaluation episode.

    index: position in the run (also the sharding key across processes).
    class_index / class_name: the class, as a position in the benchmark's class set.
    target: the item to segment (or match into), a dict of file names relative to the
        benchmark root and sampling choices; see :mod:`insid3lab.eval.datasets`.
    references: the ``shots`` reference items (never the target's image); for N ways, ``shots``
        items per way, way after way.
    ways: empty for a 1-way episode; else the N ways' ``(class_index, class_name)``, the first
        being ``(class_index, class_name)`` (the class the target was drawn for).
    """

    index: int
    class_index: int
    class_name: str
    target: dict
    references: tuple = field(default_factory=tuple)
    ways: tuple = field(default_factory=tuple)

    @property
    def classes(self) -> list[tuple[int, str]]:
        """The ways' ``(class_index, class_name)`` (one for a 1-way episode)."""
        return [tuple(w) for w in self.ways] if self.ways else [(self.class_index, self.class_name)]

    def references_of(self, way: int) -> list[dict]:
        """The reference items of way ``way``."""
        k = len(self.references) // len(self.classes)
        return list(self.references[way * k : (way + 1) * k])

    def to_json(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.references)
        if self.ways:
            d["ways"] = [[int(c), str(n)] for c, n in self.ways]
        else:
            del d["ways"]  # a 1-way episode's JSON (and digest) as before ways existed
        return d

    @classmethod
    def from_json(cls, d: dict) -> Episode:
        try:
            ways = tuple((int(c), str(n)) for c, n in d.get("ways", ()))
            return cls(
                int(d["index"]),
                int(d["class_index"]),
                str(d["class_name"]),
                dict(d["target"]),
                tuple(dict(r) for r in d["references"]),
                ways,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not an episode record: {d!r} ({e})") from e

    def digest(self) -> str:
        """Short hash of the episode's content (to check that a stored result belongs to it)."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of episode ``index`` in a run with ``seed`` (both >= 0)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed={seed}, index={index}: both must be >= 0")
    return np.random.default_rng([int(seed), int(index)])


def check_ways(dataset, ways) -> int:
    """``ways`` as an int, checked against the benchmark (a ValueError naming what is allowed)."""
    if isinstance(ways, bool) or not isinstance(ways, (int, np.integer)) or ways < 1:
        raise ValueError(f"ways={ways!r}: must be an integer >= 1")
    if ways > 1:
        if getattr(dataset, "task", "segmentation") != "segmentation":
            raise ValueError(f"ways={ways}: N-way episodes are for segmentation benchmarks, not {dataset.name}")
        if not getattr(dataset, "loads_any_class", False):
            raise ValueError(
                f"ways={ways}: {dataset.name} cannot give the mask of another class in a target image "
                "(its items name one class's mask); N-way episodes need coco, lvis, isaid or coco_json"
            )
        if ways > len(dataset.class_names):
            raise ValueError(f"ways={ways}: {dataset!r} has only {len(dataset.class_names)} classes")
    return int(ways)


def sample_episode(dataset, seed: int, index: int, ways: int = 1) -> Episode:
    """Draw episode ``index`` of ``dataset`` for ``seed`` (``ways`` classes); a function of (seed, index) alone."""
    rng = episode_rng(seed, index)
    class_index, target, refs = dataset.sample(rng, index)
    key = dataset.item_key(target)
    if any(dataset.item_key(r) == key for r in refs):
        raise RuntimeError(f"{dataset!r}: episode {index} drew its target {key!r} as a reference")
    name = dataset.class_names[class_index]
    if ways == 1:
        return Episode(int(index), int(class_index), name, target, tuple(refs))
    others = [c for c in range(len(dataset.class_names)) if c != class_index]
    chosen = [int(class_index)] + [others[int(k)] for k in rng.choice(len(others), size=ways - 1, replace=False)]
    all_refs, used = list(refs), {dataset.item_key(r) for r in refs}
    for c in chosen[1:]:
        picked = _references_for(dataset, rng, index, c, key, used)
        all_refs += picked
        used |= {dataset.item_key(r) for r in picked}
    classes = tuple((c, dataset.class_names[c]) for c in chosen)
    return Episode(int(index), int(class_index), name, target, tuple(all_refs), classes)


def _references_for(dataset, rng, index: int, class_index: int, target_key: str, used: set) -> list[dict]:
    """K references of ``class_index`` from further draws of the benchmark's sampler (rule in the module docstring)."""
    fallback = None
    for j in range(1, REDRAWS * len(dataset.class_names) + 1):
        c, t, refs = dataset.sample(rng, index + j)
        if c != class_index:
            continue
        keys = [dataset.item_key(r) for r in refs]
        if target_key in keys:
            continue
        if not used.intersection(keys):
            return list(refs)
        fallback = fallback or list(refs)
    if fallback is None:
        raise ValueError(
            f"{dataset!r}: episode {index}: no {dataset.shots}-shot references of class "
            f"{dataset.class_names[class_index]!r} apart from the target's image could be drawn"
        )
    return fallback


def sample_episodes(dataset, count: int | None = None, seed: int = 0, ways: int = 1) -> list[Episode]:
    """Episodes ``0 .. count-1`` (``count`` defaults to the benchmark's standard number) of ``ways`` classes."""
    n = dataset.default_episodes if count is None else int(count)
    if n < 1:
        raise ValueError(f"episodes={count!r}: must be >= 1")
    ways = check_ways(dataset, ways)
    return [sample_episode(dataset, seed, i, ways) for i in range(n)]


def episodes_digest(episodes: list[Episode]) -> str:
    h = hashlib.sha1()
    for e in episodes:
        h.update(e.digest().encode())
    return h.hexdigest()[:16]


def save_episodes(path: str | os.PathLike, episodes: list[Episode], *, meta: dict | None = None) -> Path:
    """Write episodes (and optional ``meta``: dataset, fold, shots, seed) to a JSON file."""
    path = Path(path)
    doc = {
        "format": EPISODES_FORMAT,
        "meta": meta or {},
        "digest": episodes_digest(episodes),
        "episodes": [e.to_json() for e in episodes],
    }
    write_atomic(path, json_text(doc, indent=1))
    return path


def load_episodes(path: str | os.PathLike) -> tuple[list[Episode], dict]:
    """Read episodes written by :func:`save_episodes`: (episodes, meta)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"episodes file {str(path)!r} does not exist") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"episodes file {str(path)!r} is not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != EPISODES_FORMAT:
        raise ValueError(f"episodes file {str(path)!r} is not in the {EPISODES_FORMAT!r} format")
    episodes = [Episode.from_json(d) for d in doc["episodes"]]
    indices = [e.index for e in episodes]
    if len(set(indices)) != len(indices) or min(indices, default=0) < 0:
        raise ValueError(f"episodes file {str(path)!r}: episode indices must be distinct and >= 0")
    return episodes, dict(doc.get("meta", {}))


def check_paths(episodes: list[Episode], where: str, advice: str) -> None:
    """Refuse an episode whose items name a file outside the benchmark's folder (an absolute path or one with
    ``..``, :func:`~insid3lab.eval.datasets.base.leaves_folder`), with one line naming it, before any file is read.

    Items hold file names relative to the benchmark's folder, taken from its split files (sampled episodes)
    or from an episodes file: either could name any file on the machine. ``where`` names the source.
    """
    for e in episodes:
        for role, item in [("target", e.target), *((f"reference {k}", r) for k, r in enumerate(e.references))]:
            for key, value in item.items():
                if isinstance(value, str) and leaves_folder(value):
                    raise ValueError(f"{where}: episode {e.index}: its {role} names {key} {value!r}, which leaves the "
                                     f"benchmark's folder (an absolute path or '..'); {advice}")  # fmt: skip


def resolve_episodes(dataset, episodes, seed: int, ways: int = 1) -> list[Episode]:
    """The episodes of a run: None (standard count), a count, a list of Episode or an episodes JSON file.

    Every item must name files inside the benchmark's folder (:func:`check_paths`)."""
    if episodes is None or isinstance(episodes, (int, np.integer)):
        eps = sample_episodes(dataset, None if episodes is None else int(episodes), seed, ways)
        check_paths(eps, repr(dataset), "the name comes from the benchmark's split files: correct them")
        return eps
    ways = check_ways(dataset, ways)
    where = "episodes"
    if isinstance(episodes, (str, os.PathLike)):
        where = f"episodes file {str(episodes)!r}"
        episodes, _ = load_episodes(episodes)
    eps = list(episodes)
    if not eps or not all(isinstance(e, Episode) for e in eps):
        raise TypeError(
            "episodes: expected None, a count, a path to an episodes JSON file or a non-empty list of Episode"
        )
    for e in eps:
        for ci, cname in e.classes:
            if not 0 <= ci < len(dataset.class_names) or dataset.class_names[ci] != cname:
                raise ValueError(
                    f"episode {e.index} is of class {cname!r} (#{ci}), which is not that class of {dataset!r}; "
                    "were the episodes drawn from another benchmark or fold?"
                )
        if len(e.classes) != ways:
            raise ValueError(f"episode {e.index} has {len(e.classes)} way(s) but the run is set to ways={ways}")
        if e.ways and (e.ways[0] != (e.class_index, e.class_name) or len(set(e.ways)) != len(e.ways)):
            raise ValueError(f"episode {e.index}: its ways must be distinct classes, the first its class_index")
        if len(e.references) != dataset.shots * ways:
            raise ValueError(
                f"episode {e.index} has {len(e.references)} references but the benchmark is set to "
                f"shots={dataset.shots}" + (f" and ways={ways}" if ways > 1 else "")
            )
    if len({e.index for e in eps}) != len(eps):
        raise ValueError("episodes: indices must be distinct")
    check_paths(eps, where, "file names in episodes are relative to the benchmark's folder")
    return eps
