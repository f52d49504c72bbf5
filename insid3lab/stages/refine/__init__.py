"""Stage 7b: boundary refinement of the upsampled mask, a registry of refiners.

A refiner takes the bilinearly upsampled mask and the target image it belongs to and
returns a refined mask of the same size::

    fn(mask: Tensor (S, S) bool, image: Tensor (3, S, S) float in [0, 1]) -> Tensor (S, S) bool

``image`` is the network input before ImageNet normalisation. ``"bilinear"`` returns the
mask unchanged: the method without refinement (the authors' ``mask_refiner="bilinear"``);
``"crf"`` is the authors' dense-CRF refinement of a band around the boundary
(:func:`insid3lab.stages.refine.crf.crf_refiner`, pure torch, any device). A refiner may carry a
``band`` attribute, ``band(mask) -> (S, S) bool``: the pixels it may change, kept in the trace.
Add one with :func:`register_refiner`; :data:`REFINERS` is the one list of choices, used
both to validate a name and to report the choices.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from insid3lab.stages.refine.crf import crf_refiner

__all__ = ["REFINERS", "Refiner", "bilinear", "get_refiner", "register_refiner"]

Refiner = Callable[[Tensor, Tensor], Tensor]


def bilinear(mask: Tensor, image: Tensor) -> Tensor:
    """No refinement: the bilinearly upsampled mask as it is. (S, S) bool -> (S, S) bool."""
    return mask


#: Refiners by name.
REFINERS: dict[str, Refiner] = {"bilinear": bilinear, "crf": crf_refiner}


def register_refiner(name: str, fn: Refiner, *, overwrite: bool = False) -> Refiner:
    """Make ``fn`` available as ``refine=name`` (returns ``fn``, so it also works as a decorator's body).

    Raises:
        ValueError: the name is taken (pass ``overwrite=True`` to replace it) or ``fn`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"refiner name {name!r}: must be a non-empty string")
    if not callable(fn):
        raise TypeError(
            f"refiner {name!r}: {fn!r} is not callable; expected fn(mask (S, S) bool, image (3, S, S)) -> mask"
        )
    if name in REFINERS and not overwrite and REFINERS[name] is not fn:
        raise ValueError(f"refiner {name!r} is already registered; pass overwrite=True to replace it")
    REFINERS[name] = fn
    return fn


def get_refiner(name_or_fn: str | Refiner) -> Refiner:
    """The refiner registered under a name, or the callable itself.

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return REFINERS[name_or_fn]
    except (KeyError, TypeError):
        raise ValueError(
            f"refine={name_or_fn!r} is not a known refiner. Try one of {', '.join(map(repr, REFINERS))}, "
            "or pass a callable fn(mask, image) -> mask"
        ) from None
