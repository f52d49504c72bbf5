"""Figures of every intermediate of INSID3. Each function returns a matplotlib ``Figure``.

Figures are built without pyplot (``matplotlib.figure.Figure`` on an Agg canvas): nothing
is shown or kept open behind your back. In a notebook the returned figure displays itself
(after ``%matplotlib inline``); elsewhere save it with ``fig.savefig(path)`` or turn it into
PNG bytes with :func:`to_png`.

Features
    :func:`pca_rgb` (arrays), :func:`feature_pca`, :func:`feature_pca_pair`,
    :func:`feature_pca_debiased`, :func:`feature_pca_layers`, :func:`layer_features`
Positional subspace
    :func:`singular_values`, :func:`positional_components`, :func:`component_maps`,
    :func:`black_image_pca`, :func:`positional_subspace`
Similarity
    :func:`similarity_map`, :func:`cell_similarity`, :func:`cell_similarity_map`,
    :func:`backward_votes`, :func:`candidates`
Clusters
    :func:`clusters`, :func:`cluster_scores`
Overlays
    :func:`mask_overlay`, :func:`reference_target_overlay`, :func:`keypoint_matches`,
    :func:`mask_grid`, :func:`score_table`, :func:`iou`
Normalisation
    :func:`token_statistics`, :func:`tokens_statistics`, :func:`normalisation_statistics`
A whole trace
    :func:`story`, :func:`trace_panel`, :data:`PANELS`
Boundary refinement
    :func:`refinement`, :data:`REFINEMENT_PANELS`
"""

from insid3lab.viz.clusters import cluster_scores, clusters
from insid3lab.viz.common import iou, pca_rgb, to_png
from insid3lab.viz.features import (
    feature_pca,
    feature_pca_debiased,
    feature_pca_layers,
    feature_pca_pair,
    layer_features,
)
from insid3lab.viz.normalisation import normalisation_statistics, token_statistics, tokens_statistics
from insid3lab.viz.overlays import keypoint_matches, mask_grid, mask_overlay, reference_target_overlay, score_table
from insid3lab.viz.refinement import REFINEMENT_PANELS, refinement
from insid3lab.viz.similarity import backward_votes, candidates, cell_similarity, cell_similarity_map, similarity_map
from insid3lab.viz.story import PANELS, story, trace_panel
from insid3lab.viz.subspace import (
    black_image_pca,
    component_maps,
    positional_components,
    positional_subspace,
    singular_values,
)

__all__ = [
    "PANELS",
    "REFINEMENT_PANELS",
    "backward_votes",
    "black_image_pca",
    "candidates",
    "cell_similarity",
    "cell_similarity_map",
    "cluster_scores",
    "clusters",
    "component_maps",
    "feature_pca",
    "feature_pca_debiased",
    "feature_pca_layers",
    "feature_pca_pair",
    "iou",
    "keypoint_matches",
    "layer_features",
    "mask_grid",
    "mask_overlay",
    "normalisation_statistics",
    "pca_rgb",
    "positional_components",
    "positional_subspace",
    "reference_target_overlay",
    "refinement",
    "score_table",
    "similarity_map",
    "singular_values",
    "story",
    "to_png",
    "token_statistics",
    "tokens_statistics",
    "trace_panel",
]
