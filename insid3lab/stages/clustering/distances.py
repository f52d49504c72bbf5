"""The target's cell distances: the cosine-distance matrix, and the condensed form scipy's linkage reads.

:func:`cosine_distances` is the (N, N) matrix ``D = 1 - clamp(X Xᵀ, -1, 1)`` on the features'
device (the matrix every clustering path reads the strict upper triangle of);
:func:`condensed_matrix` copies that triangle out as float64, and :func:`cosine_condensed`
gives the same vector the fastest way on each device.

Average linkage on the CPU reads the strict upper triangle of the cosine-distance matrix
``D = 1 - clamp(X Xᵀ, -1, 1)`` as a float64 vector, row by row (scipy's *condensed* form).
:func:`condensed_cosine_distances` computes exactly that vector without the full N x N
product: the rows are taken in blocks, and block ``[s, e)`` multiplies its rows only with
the columns from ``s + 1`` on, so about half of the product is computed (at N = 4096,
256-row blocks: 53%). The same ``clamp``, ``neg`` and ``+ 1`` follow as in
:func:`cosine_distances`.

Each entry is the same length-C float32 dot product as in the full product, but a BLAS is
free to sum it in an order that depends on the shape of the product. The float32 kernels of
the BLAS that the x86 CPU builds of torch use (MKL) sum identically for blocks of 64 rows or
more (measured; blocks of 1 or 7 rows, and float64 at any size, do not), so the vector equals
the strict upper triangle of the full product entry for entry (the tests check this at the
grid sizes of the method; a BLAS that summed differently would be caught there). Blocks are
therefore never smaller than :data:`MIN_BLOCK_ROWS`, and float64, float16 and bfloat16
features and small N take the full product, whose strict upper triangle is then copied out
the same way.

On the side, the same blocks give the threshold graph of
:mod:`~insid3lab.stages.clustering.components` ("distance below the threshold"), from which
its connected components are found. Each block contributes its rows of the adjacency matrix
and, transposed, the matching columns, compared with the margin of
:func:`~insid3lab.stages.clustering.components.cosine_asymmetry_bound`: the square where a
block's rows and columns overlap holds a few entries from below the diagonal, and the margin
makes every edge of the strict upper triangle appear in both of its directions whichever
value landed there. Extra edges only join components, which never changes the clusters.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BLOCK_ROWS",
    "MIN_BLOCK_ROWS",
    "CellDistances",
    "Workspace",
    "as_numpy_distances",
    "condensed_cosine_distances",
    "condensed_matrix",
    "condensed_subset",
    "cosine_condensed",
    "cosine_distances",
    "strict_upper",
    "thread_workspace",
]

#: Rows of the distance matrix per matrix product (the block's product is BLOCK_ROWS x N).
BLOCK_ROWS = 256

#: The fewest rows in a block (a smaller last block joins the one before it); features with
#: fewer than two blocks' worth of cells take the full product.
MIN_BLOCK_ROWS = 64

#: Components up to this size gather their pair distances in one vectorised index; larger
#: ones row by row (the index array would cost n**2 int64).
VECTOR_GATHER_MAX = 1024


def cosine_distances(X: Tensor) -> Tensor:
    """Pairwise cosine distances of L2-normalised rows.

    Args:
        X: (N, C) floating tensor of L2-normalised features.

    Returns:
        (N, N) tensor ``1 - clamp(X @ Xᵀ, -1, 1)`` in X's dtype and on X's device. Values
        lie in [0, 2]. The diagonal is close to, not necessarily exactly, 0, and the matrix
        need not be exactly symmetric (the two triangles come from separate dot products);
        every clustering path reads only the strict upper triangle.
    """
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D (N, C) tensor of features, got shape {tuple(X.shape)}")
    # In place on the fresh product: -s + 1 rounds exactly like 1 - s, without two more N x N buffers.
    return (X @ X.T).clamp_(-1, 1).neg_().add_(1)


@functools.lru_cache(maxsize=4)
def strict_upper(n: int) -> np.ndarray:
    """(n, n) bool mask of the strict upper triangle (cached: the grid size rarely changes)."""
    return np.triu(np.ones((n, n), dtype=bool), 1)


def as_numpy_distances(D: Tensor) -> np.ndarray:
    """D on the CPU as a numpy array (bfloat16, which numpy lacks, widened exactly to float32)."""
    if D.dtype not in (torch.float16, torch.float32, torch.float64):
        D = D.to(torch.float32)
    return D.detach().cpu().numpy()


def condensed_matrix(D: Tensor) -> np.ndarray:
    """The strict upper triangle of a distance matrix, row-major, as float64 (what scipy's linkage reads).

    Args:
        D: (N, N) distance matrix on any device (read on the CPU; bfloat16 widened exactly).

    Returns:
        (N (N - 1) / 2,) float64 numpy array.
    """
    Dn = as_numpy_distances(D)
    return np.asarray(Dn[strict_upper(Dn.shape[0])], dtype=np.float64)


def cosine_condensed(X: Tensor) -> np.ndarray:
    """The float64 condensed cosine distances of X's rows, the vector scipy's linkage reads.

    On the CPU from half the product (:func:`condensed_cosine_distances`), in this thread's
    workspace (valid until the thread's next clustering: hand it to scipy, which copies it);
    elsewhere from :func:`cosine_distances` on the device. Equal values either way (see the
    module docstring).

    Args:
        X: (N, C) floating tensor of L2-normalised features, N >= 2.
    """
    if X.device.type == "cpu":
        return condensed_cosine_distances(X, workspace=thread_workspace()).condensed
    return condensed_matrix(cosine_distances(X))


@dataclass(frozen=True)
class CellDistances:
    """Cosine distances among N cells, condensed, with the threshold graph's adjacency.

    Attributes:
        n: the number of cells N.
        condensed: (N (N - 1) / 2,) float64, ``D[i, j]`` for i < j in row-major order.
        adjacency: (N, N) bool, a superset of the edges ``D[i, j] < threshold`` (i < j) in both
            directions (see the module docstring); None when no threshold was given.
    """

    n: int
    condensed: np.ndarray
    adjacency: np.ndarray | None = None


class Workspace:
    """Buffers that :func:`condensed_cosine_distances` fills again on every call, instead of fresh memory.

    Fresh memory costs its first-touch page faults (about 25 ms for the 64 MB of N = 4096 cells,
    measured); a workspace keeps the last condensed vector and adjacency matrix of each size
    it was asked for, each up to ``max_bytes`` (the default covers 64 x 64 cells: 64 MB and
    16 MB; larger ones are fresh every time). What was computed into a workspace is
    overwritten by its next use, so it belongs to one caller that uses each result before the
    next call (see :func:`thread_workspace`).
    """

    def __init__(self, max_bytes: int = 128 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._condensed: np.ndarray | None = None
        self._adjacency: Tensor | None = None

    def condensed(self, size: int) -> np.ndarray:
        """A (size,) float64 buffer (torch's allocator, see :func:`condensed_cosine_distances`)."""
        if self._condensed is None or self._condensed.size != size:
            self._condensed = None  # free the old one before allocating
            buf = torch.empty(size, dtype=torch.float64).numpy()
            if 8 * size > self.max_bytes:
                return buf
            self._condensed = buf
        return self._condensed

    def adjacency(self, n: int) -> Tensor:
        """An (n, n) bool buffer (contents undefined)."""
        if self._adjacency is None or self._adjacency.shape[0] != n:
            self._adjacency = None
            buf = torch.empty((n, n), dtype=torch.bool)
            if n * n > self.max_bytes:
                return buf
            self._adjacency = buf
        return self._adjacency


_THREAD = threading.local()


def thread_workspace() -> Workspace:
    """This thread's :class:`Workspace` (created on first use)."""
    ws = getattr(_THREAD, "workspace", None)
    if ws is None:
        ws = _THREAD.workspace = Workspace()
    return ws


def _at_least(value: float, dtype: torch.dtype) -> Tensor:
    """The smallest value of ``dtype`` (float32 or float64) that is >= ``value``, as a 0-d tensor."""
    bound = torch.tensor(value, dtype=dtype)
    if float(bound) < value:
        bound = torch.nextafter(bound, torch.tensor(float("inf"), dtype=dtype))
    return bound


def _row_blocks(N: int, block_rows: int) -> list[tuple[int, int]]:
    """Row ranges [s, e) covering rows 0 .. N - 2, each at least MIN_BLOCK_ROWS long."""
    bounds = list(range(0, N - 1, block_rows)) + [N - 1]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < MIN_BLOCK_ROWS:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def condensed_cosine_distances(
    X: Tensor, *, edge_bound: float | None = None, block_rows: int = BLOCK_ROWS, workspace: Workspace | None = None
) -> CellDistances:
    """The strict upper triangle of ``1 - clamp(X Xᵀ, -1, 1)``, condensed, from half the product.

    Args:
        X: (N, C) floating tensor of L2-normalised features on the CPU, N >= 2.
        edge_bound: when given, also build the adjacency ``D < edge_bound`` (as compared in
            float32, or in float64 for float64 features; the bound is rounded up, never
            down). Pass the threshold plus the asymmetry margin.
        block_rows: rows per block, >= :data:`MIN_BLOCK_ROWS`.
        workspace: fill this :class:`Workspace`'s buffers (valid until its next use) instead of
            fresh arrays.

    Returns:
        :class:`CellDistances` whose ``condensed`` equals
        ``cosine_distances(X)[i, j], i < j`` in row-major order, widened exactly to float64.
    """
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"X must be a 2-D (N, C) tensor with N >= 2, got shape {tuple(X.shape)}")
    if X.device.type != "cpu":
        raise ValueError(f"X must be on the CPU, got device {X.device}")
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < MIN_BLOCK_ROWS:
        raise ValueError(f"block_rows must be an int >= {MIN_BLOCK_ROWS}, got {block_rows!r}")
    X = X.detach()
    N = X.shape[0]
    # Allocated by torch, in ordinary pages: numpy asks the kernel for transparent huge pages
    # for large arrays, and where memory is fragmented (after a backbone pass) the kernel then
    # compacts memory on the spot, which measured 50-150 ms per call at N = 4096.
    ws = workspace or Workspace(max_bytes=0)
    condensed = ws.condensed(N * (N - 1) // 2)
    adjacency = bound = None
    compare_dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    if edge_bound is not None:
        adj = ws.adjacency(N)  # every entry off the diagonal is written below
        adjacency = adj.numpy()
        bound = _at_least(edge_bound, compare_dtype)
    halves = X.dtype == torch.float32 and N - 1 >= 2 * MIN_BLOCK_ROWS
    offset = 0
    for s, e in _row_blocks(N, block_rows) if halves else [(0, N - 1)]:
        # The same operations as cosine_distances, on rows [s, e) and columns [s + 1, N).
        product = X[s:e] @ X[s + 1 :].T if halves else (X @ X.T)[:-1, 1:]
        sub = product.clamp_(-1, 1).neg_().add_(1)  # (e - s, N - s - 1)
        values = sub.numpy() if sub.dtype != torch.bfloat16 else sub.float().numpy()
        for r in range(e - s):  # row s + r holds columns s + r + 1 .. N - 1: sub[r, r:]
            n = N - s - 1 - r
            condensed[offset : offset + n] = values[r, r:]
            offset += n
        if adjacency is not None:
            edges = sub.to(compare_dtype) < bound
            adj[s:e, s + 1 :] = edges
            adj[s + 1 :, s:e] = edges.T
    if adjacency is not None:
        adj.diagonal().fill_(False)  # no self-loops (and nothing left from an earlier use)
    return CellDistances(n=N, condensed=condensed, adjacency=adjacency)


def condensed_subset(condensed: np.ndarray, n: int, idx: np.ndarray) -> np.ndarray:
    """The condensed distances among the cells ``idx``, taken from the condensed vector of all n.

    Args:
        condensed: (n (n - 1) / 2,) condensed distances of n cells.
        n: the number of cells.
        idx: (m,) strictly increasing int cell indices, m >= 2.

    Returns:
        (m (m - 1) / 2,) array of the same dtype: ``D[idx[a], idx[b]]`` for a < b, row-major.
    """
    idx = np.asarray(idx, dtype=np.int64)
    m = idx.size
    # The pair (i, j), i < j, sits at i (2n - i - 1) / 2 + (j - i - 1) = row_base[i] + j.
    row_base = idx * (2 * n - idx - 1) // 2 - idx - 1
    if m <= VECTOR_GATHER_MAX:
        a, b = np.triu_indices(m, 1)
        return condensed[row_base[a] + idx[b]]
    return np.concatenate([condensed[row_base[a] + idx[a + 1 :]] for a in range(m - 1)])
