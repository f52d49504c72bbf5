"""INSID3's stages: one pure function per step, tensors in and tensors out.

Use them one by one from a notebook, in the order of the method:

1. :mod:`~insid3lab.stages.features` — ``extract_features``, ``l2_normalize``
2. :mod:`~insid3lab.stages.subspace` — ``positional_svd``, ``clamp_components``, ``complement_projector``, ``debias``
3. :mod:`~insid3lab.stages.prototype` — ``downsample_mask``, ``shot_prototypes``, ``reference_prototype``
4. :mod:`~insid3lab.stages.matching` — ``forward_similarity``, ``forward_mask``, ``backward_votes``,
   ``backward_mask``, ``candidates``
5. :mod:`~insid3lab.stages.clustering` — ``cosine_distances``, ``agglomerative_clustering``, ``CLUSTERERS``,
   ``register_clusterer``; :mod:`~insid3lab.stages.clustering.tree` — ``linkage_tree``, ``cut_tree`` (one tree, any τ)
6. :mod:`~insid3lab.stages.aggregation` — ``cluster_prototypes``, ``seed_and_scores``, ``aggregate``
7. :mod:`~insid3lab.stages.upsampling` — ``upsample_mask``; :mod:`~insid3lab.stages.refine` — ``REFINERS``,
   ``register_refiner``, ``get_refiner``; :mod:`~insid3lab.stages.refine.crf` — ``crf_refine`` (the dense CRF on a
   band around the boundary, built on the permutohedral lattice of :mod:`~insid3lab.stages.refine.lattice`)

and :mod:`~insid3lab.stages.correspondence` for keypoint matching.
"""

from insid3lab.stages.aggregation import aggregate, cluster_prototypes, cluster_sizes, seed_and_scores
from insid3lab.stages.clustering import CLUSTERERS, agglomerative_clustering, cosine_distances, register_clusterer
from insid3lab.stages.clustering.tree import cut_tree, linkage_tree
from insid3lab.stages.correspondence import match_keypoints
from insid3lab.stages.features import Encoder, extract_features, l2_normalize
from insid3lab.stages.matching import (
    backward_mask,
    backward_votes,
    candidates,
    forward_mask,
    forward_similarity,
    nearest_reference_cells,
)
from insid3lab.stages.prototype import EmptyMaskError, downsample_mask, reference_prototype, shot_prototypes
from insid3lab.stages.refine import REFINERS, get_refiner, register_refiner
from insid3lab.stages.refine.crf import crf_refine
from insid3lab.stages.subspace import clamp_components, complement_projector, debias, positional_svd
from insid3lab.stages.upsampling import upsample_mask

__all__ = [
    "CLUSTERERS",
    "REFINERS",
    "EmptyMaskError",
    "Encoder",
    "crf_refine",
    "get_refiner",
    "register_clusterer",
    "register_refiner",
    "agglomerative_clustering",
    "aggregate",
    "backward_mask",
    "backward_votes",
    "candidates",
    "clamp_components",
    "cluster_prototypes",
    "cluster_sizes",
    "complement_projector",
    "cosine_distances",
    "cut_tree",
    "debias",
    "downsample_mask",
    "extract_features",
    "forward_mask",
    "forward_similarity",
    "l2_normalize",
    "linkage_tree",
    "match_keypoints",
    "nearest_reference_cells",
    "positional_svd",
    "reference_prototype",
    "seed_and_scores",
    "shot_prototypes",
    "upsample_mask",
]
