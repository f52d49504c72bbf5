"""Stage 7b: boundary refinement of the upsampled mask, a registry of refiners.

A refiner takes the bilinearly upsampled mask and the target image it belongs to and
returns a refined mask of the same size::

    fn(mask: Tensor (S, S) bool, image: Tensor (3, S, S) float in [0, 1]) -> Tensor (S, S) bool

* :mod:`.registry` — :data:`REFINERS`, the decorator :func:`register_refiner` by which each
  refiner registers itself, and :func:`get_refiner`.
* :mod:`.bilinear` — ``"bilinear"``: the mask unchanged, the method without refinement (the
  authors' ``mask_refiner="bilinear"``).
* :mod:`.crf` — ``"crf"``: the authors' dense-CRF refinement of a band around the boundary
  (:func:`~insid3lab.stages.refine.crf.crf_refiner`, pure torch, any device), built on the
  permutohedral lattice of :mod:`.lattice`.
"""

# isort: off
from insid3lab.stages.refine.registry import REFINERS, Refiner, RefinerEntry, get_refiner, register_refiner

# The built-in refiners register themselves when imported, in the order their names are listed.
from insid3lab.stages.refine.bilinear import bilinear
from insid3lab.stages.refine.crf import crf_refiner

# isort: on

__all__ = ["REFINERS", "Refiner", "RefinerEntry", "bilinear", "crf_refiner", "get_refiner", "register_refiner"]
