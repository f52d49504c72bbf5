"""The notebook lab: the explorer widgets, the mask painter, their controls and the explorer's cluster cache."""

from insid3lab.lab.cluster_cache import TargetClusters
from insid3lab.lab.concept_explorer import ConceptExplorer
from insid3lab.lab.explorer import Explorer
from insid3lab.lab.mask_painter import MaskPainter

__all__ = ["ConceptExplorer", "Explorer", "MaskPainter", "TargetClusters"]
