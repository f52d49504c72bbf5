"""The clusterers by name: one registry, filled by a decorator in each algorithm's module.

A clusterer is ``fn(X, threshold) -> labels`` (see :data:`Clusterer`). Each algorithm's module
of this package registers its own with :func:`register_clusterer`, and a clusterer of one's own
is added the same way, from anywhere::

    from insid3lab.stages.clustering import register_clusterer

    @register_clusterer("halves", help="first half of the cells, then the second")
    def halves(X, threshold):
        return (torch.arange(X.shape[0]) >= X.shape[0] // 2).long()

Its :class:`ClustererEntry` carries everything the rest of the package reads about it: the
command lines' ``--clustering`` choices and help, and the explorers' clustering dropdown, list
the registered names with their help; ``tree=True`` says that its partition at every τ is a cut
of the average-linkage tree (:mod:`~insid3lab.stages.clustering.tree`), so the explorers build
the tree once per target and cut it when τ moves instead of clustering again
(:class:`insid3lab.lab.cluster_cache.TargetClusters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

__all__ = ["CLUSTERERS", "Clusterer", "ClustererEntry", "register_clusterer", "resolve_clusterer"]

#: A clusterer: ``fn(X, threshold) -> labels``.
#:
#: * ``X``: (N, C) floating tensor of L2-normalised features, N >= 2, finite, on any device;
#: * ``threshold``: Python float ``1 - tau`` in [0, 1); clusters merge while their average
#:   linkage cosine distance is strictly below it;
#: * ``labels``: (N,) integer tensor of cluster ids, any numbering, on any device.
#:
#: :func:`~insid3lab.stages.clustering.partition.agglomerative_clustering` checks the shape,
#: renumbers canonically and moves the labels to X's device, so every clusterer's output is
#: compared and used in one form.
Clusterer = Callable[[Tensor, float], Tensor]


@dataclass(frozen=True)
class ClustererEntry:
    """A registered clusterer and what the rest of the package needs to know about it.

    Attributes:
        name: the name it is selected by (``Params(clustering=name)``, ``--clustering name``).
        fn: the :data:`Clusterer`.
        tree: its partition at every τ is the cut of the average-linkage tree at ``1 - τ``
            (:func:`~insid3lab.stages.clustering.tree.cut_tree`; up to exact ties between
            competing linkages), so one tree answers every τ.
        help: one line for the command lines' help and the explorers.
    """

    name: str
    fn: Clusterer
    tree: bool = False
    help: str = ""

    def __call__(self, X: Tensor, threshold: float) -> Tensor:
        return self.fn(X, threshold)


#: Registered clusterers by name, in the order they were registered.
CLUSTERERS: dict[str, ClustererEntry] = {}


def register_clusterer(
    name: str, fn: Clusterer | None = None, *, tree: bool = False, help: str = "", overwrite: bool = False
):
    """Make a clusterer selectable as ``clustering=name``.

    As a decorator, ``@register_clusterer("name", tree=..., help=...)`` registers the function
    below it and returns it unchanged; ``register_clusterer("name", fn)`` registers ``fn`` and
    returns it.

    Args:
        name: a non-empty string.
        fn: a :data:`Clusterer`, ``fn(X (N, C), threshold) -> (N,) labels``.
        tree: its partition at every τ is a cut of the average-linkage tree (see
            :class:`ClustererEntry`); leave False unless it is.
        help: one line shown by the command lines and the explorers.
        overwrite: replace an entry of the same name (otherwise a taken name is an error).

    Raises:
        ValueError: an empty name, or a name already taken by another function.
        TypeError: ``fn`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"clusterer name must be a non-empty string, got {name!r}")

    def add(f: Clusterer) -> Clusterer:
        if not callable(f):
            raise TypeError(f"clusterer {name!r} must be callable fn(X, threshold) -> labels, got {type(f).__name__}")
        old = CLUSTERERS.get(name)
        if old is not None and not overwrite and old.fn is not f:
            raise ValueError(f"clusterer {name!r} is already registered; pass overwrite=True to replace it")
        CLUSTERERS[name] = ClustererEntry(name, f, bool(tree), " ".join(str(help).split()))
        return f

    return add if fn is None else add(fn)


def resolve_clusterer(method: str | Clusterer) -> Clusterer:
    """The clusterer for a registered name or a callable.

    Raises:
        ValueError: for an unknown name, listing the registered ones.
    """
    if callable(method):
        return method
    if isinstance(method, str) and method in CLUSTERERS:
        return CLUSTERERS[method].fn
    raise ValueError(f"unknown clustering method {method!r}. Try one of {', '.join(map(repr, CLUSTERERS))}")
