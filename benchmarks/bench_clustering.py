"""Time every exact clustering path on the same features and check that they agree.

Feature sets: the target-cell features of a random-weight ViT-S/16 on a synthetic scene at
S = 512 and 1024 (N = 1024, 4096 cells), random unit vectors, and "blobs" (unit vectors
scattered around a few hundred centres, a stand-in for features that form many groups).
For each set and tau the script prints the best-of-R time of each path, its ratio to
``scipy`` (one linkage of all N cells), whether its labels equal ``scipy``'s, and the sizes
of the connected components of the threshold graph (what the ``components`` path gains
from), the cost of the distances (full matrix, and condensed from half the product as the CPU
paths compute them), of the whole average-linkage tree and of one cut of it (what a new tau
costs in the explorers).

    PYTHONPATH=. python benchmarks/bench_clustering.py [--repeats 3] [--sizes 512 1024] [--methods ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from insid3lab.backbone import random_backbone
from insid3lab.core.preprocess import preprocess_image
from insid3lab.stages.clustering import CLUSTERERS, agglomerative_clustering, cosine_distances
from insid3lab.stages.clustering.components import cosine_asymmetry_bound, threshold_components
from insid3lab.stages.clustering.distances import Workspace, condensed_cosine_distances
from insid3lab.stages.clustering.tree import cut_tree, linkage_tree
from insid3lab.stages.features import extract_features, l2_normalize
from insid3lab.synthetic import sample_scene


def vit_features(size: int, seed: int = 0) -> torch.Tensor:
    """(N, 384) L2-normalised target features of a random ViT-S/16 on a synthetic scene."""
    image, _ = sample_scene(seed, size=(480, 640))
    x, _ = preprocess_image(image, size)
    feats = l2_normalize(extract_features(random_backbone("vits16", seed=seed), x))[0]
    return feats.reshape(feats.shape[0], -1).T.contiguous()


def blobs(n: int, c: int, centres: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(centres, c, generator=g)
    return F.normalize(mu[torch.randint(0, centres, (n,), generator=g)] + noise * torch.randn(n, c, generator=g), dim=1)


def best_time(fn, *args, repeats: int, **kwargs):
    """Best-of-``repeats`` wall time of ``fn(*args, **kwargs)`` and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t)
    return best, out


def component_summary(X: torch.Tensor, tau: float) -> str:
    comp = threshold_components(cosine_distances(X).numpy(), 1 - tau, asymmetry=cosine_asymmetry_bound(X))
    sizes = np.bincount(comp)
    share = (sizes.astype(np.float64) ** 2).sum() / X.shape[0] ** 2  # pairs left to the linkage
    return (
        f"components {sizes.size} (singletons {int((sizes == 1).sum())}, pairs {int((sizes == 2).sum())}, "
        f"largest {int(sizes.max())}); linkage work {100 * share:.1f}% of the full matrix"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--taus", type=float, nargs="+", default=[0.6, 0.8])
    p.add_argument("--methods", nargs="+", default=["scipy", "components", "torch", "sklearn"])
    args = p.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, registry {list(CLUSTERERS)}")

    sets = {f"vits16 S={s}": vit_features(s) for s in args.sizes}
    for n in sorted({(s // 16) ** 2 for s in args.sizes}):
        sets[f"random N={n}"] = F.normalize(torch.randn(n, 384, generator=torch.Generator().manual_seed(n)), dim=1)
        sets[f"blobs N={n}"] = blobs(n, 384, centres=max(4, n // 20), noise=0.6, seed=n)

    for name, X in sets.items():
        for tau in args.taus:
            print(f"\n{name} (N={X.shape[0]}, C={X.shape[1]}), tau={tau}: {component_summary(X, tau)}")
            t_ref, ref = best_time(agglomerative_clustering, X, tau, method="scipy", repeats=args.repeats)
            print(f"  {'scipy':>10s} {1000 * t_ref:8.1f} ms  x1.00  K={int(ref.max()) + 1}")
            for method in args.methods:
                if method == "scipy":
                    continue
                t, labels = best_time(agglomerative_clustering, X, tau, method=method, repeats=args.repeats)
                same = "equal" if torch.equal(labels, ref) else "DIFFERENT"
                print(f"  {method:>10s} {1000 * t:8.1f} ms  x{t_ref / t:.2f}  labels {same}")
            t_d, _ = best_time(cosine_distances, X, repeats=args.repeats)
            t_c, _ = best_time(condensed_cosine_distances, X, workspace=Workspace(), repeats=args.repeats)
            print(
                f"  (distances alone: full matrix {1000 * t_d:.1f} ms, condensed from half the product "
                f"{1000 * t_c:.1f} ms in a workspace, as the clusterers compute them)"
            )
            t_z, Z = best_time(linkage_tree, X, repeats=args.repeats)
            t_cut, _ = best_time(cut_tree, Z, tau, repeats=args.repeats)
            print(f"  (the whole tree {1000 * t_z:.1f} ms, then a cut at any tau {1000 * t_cut:.2f} ms)")


if __name__ == "__main__":
    main()
