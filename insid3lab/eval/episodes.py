"""Episodes: which target and which references one evaluation step uses.

Episode ``i`` of a run with seed ``s`` is drawn with ``numpy.random.default_rng([s, i])``
and nothing else, so the set of episodes does not depend on the order in which they are
evaluated, on the number of workers or processes, or on a run being resumed. Episodes
can be written to JSON and read back to rerun exactly the same set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .runfiles import write_atomic

__all__ = ["Episode", "episode_rng", "episodes_digest", "load_episodes", "resolve_episodes", "sample_episode", "sample_episodes", "save_episodes"]

EPISODES_FORMAT = "insid3lab-episodes/1"


@dataclass(frozen=True)
class Episode:
    """One evaluation episode.

    index: position in the run (also the sharding key across processes).
    class_index / class_name: the class, as a position in the benchmark's class set.
    target: the item to segment (or match into), a dict of file names relative to the
        benchmark root and sampling choices; see :mod:`insid3lab.eval.datasets`.
    references: the ``shots`` reference items (never the target's image).
    """

    index: int
    class_index: int
    class_name: str
    target: dict
    references: tuple = field(default_factory=tuple)

    def to_json(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.references)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Episode:
        try:
            return cls(int(d["index"]), int(d["class_index"]), str(d["class_name"]), dict(d["target"]),
                       tuple(dict(r) for r in d["references"]))
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


def sample_episode(dataset, seed: int, index: int) -> Episode:
    """Draw episode ``index`` of ``dataset`` for ``seed``; a function of (seed, index) alone."""
    class_index, target, refs = dataset.sample(episode_rng(seed, index), index)
    key = dataset.item_key(target)
    if any(dataset.item_key(r) == key for r in refs):
        raise RuntimeError(f"{dataset!r}: episode {index} drew its target {key!r} as a reference")
    return Episode(int(index), int(class_index), dataset.class_names[class_index], target, tuple(refs))


def sample_episodes(dataset, count: int | None = None, seed: int = 0) -> list[Episode]:
    """Episodes ``0 .. count-1`` (``count`` defaults to the benchmark's standard number)."""
    n = dataset.default_episodes if count is None else int(count)
    if n < 1:
        raise ValueError(f"episodes={count!r}: must be >= 1")
    return [sample_episode(dataset, seed, i) for i in range(n)]


def episodes_digest(episodes: list[Episode]) -> str:
    h = hashlib.sha1()
    for e in episodes:
        h.update(e.digest().encode())
    return h.hexdigest()[:16]


def save_episodes(path: str | os.PathLike, episodes: list[Episode], *, meta: dict | None = None) -> Path:
    """Write episodes (and optional ``meta``: dataset, fold, shots, seed) to a JSON file."""
    path = Path(path)
    doc = {"format": EPISODES_FORMAT, "meta": meta or {}, "digest": episodes_digest(episodes),
           "episodes": [e.to_json() for e in episodes]}
    write_atomic(path, json.dumps(doc, indent=1))
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


def resolve_episodes(dataset, episodes, seed: int) -> list[Episode]:
    """The episodes of a run: None (standard count), a count, a list of Episode or an episodes JSON file."""
    if episodes is None or isinstance(episodes, (int, np.integer)):
        return sample_episodes(dataset, None if episodes is None else int(episodes), seed)
    if isinstance(episodes, (str, os.PathLike)):
        episodes, _ = load_episodes(episodes)
    eps = list(episodes)
    if not eps or not all(isinstance(e, Episode) for e in eps):
        raise TypeError("episodes: expected None, a count, a path to an episodes JSON file or a non-empty list of Episode")
    for e in eps:
        if not 0 <= e.class_index < len(dataset.class_names) or dataset.class_names[e.class_index] != e.class_name:
            raise ValueError(
                f"episode {e.index} is of class {e.class_name!r} (#{e.class_index}), which is not that class of {dataset!r}; "
                "were the episodes drawn from another benchmark or fold?"
            )
        if len(e.references) != dataset.shots:
            raise ValueError(f"episode {e.index} has {len(e.references)} references but the benchmark is set to shots={dataset.shots}")
    if len({e.index for e in eps}) != len(eps):
        raise ValueError("episodes: indices must be distinct")
    return eps
