"""The refiners by name: one registry, filled by a decorator in each refiner's module.

A refiner takes the bilinearly upsampled mask and the target image it belongs to and returns a
refined mask of the same size (see :data:`Refiner`). Each module of this package registers its
own with :func:`register_refiner`, and a refiner of one's own is added the same way::

    from insid3lab.stages.refine import register_refiner

    @register_refiner("grow", help="one pixel of dilation")
    def grow(mask, image):
        return torch.nn.functional.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0] > 0

The :class:`RefinerEntry` is what the command lines' ``--refine`` choices and help and the
explorers' refiner dropdown list. A refiner may carry a ``band`` attribute,
``band(mask) -> (S, S) bool``: the pixels it may change, kept in the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

__all__ = ["REFINERS", "Refiner", "RefinerEntry", "get_refiner", "register_refiner"]

#: A refiner: ``fn(mask: Tensor (S, S) bool, image: Tensor (3, S, S) float in [0, 1]) -> Tensor (S, S) bool``;
#: ``image`` is the network input before ImageNet normalisation.
Refiner = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class RefinerEntry:
    """A registered refiner: its ``name`` (``refine=name``, ``--refine name``), ``fn`` (the :data:`Refiner`)
    and ``help`` (one line for the command lines and the explorers)."""

    name: str
    fn: Refiner
    help: str = ""

    def __call__(self, mask: Tensor, image: Tensor) -> Tensor:
        return self.fn(mask, image)


#: Registered refiners by name, in the order they were registered: the one list of choices,
#: used both to validate a name and to report the choices.
REFINERS: dict[str, RefinerEntry] = {}


def register_refiner(name: str, fn: Refiner | None = None, *, help: str = "", overwrite: bool = False):
    """Make a refiner available as ``refine=name``.

    As a decorator, ``@register_refiner("name", help=...)`` registers the function below it and
    returns it unchanged; ``register_refiner("name", fn)`` registers ``fn`` and returns it.

    Raises:
        ValueError: an empty name, or a name taken by another function (pass ``overwrite=True``
            to replace it).
        TypeError: ``fn`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"refiner name {name!r}: must be a non-empty string")

    def add(f: Refiner) -> Refiner:
        if not callable(f):
            raise TypeError(
                f"refiner {name!r}: {f!r} is not callable; expected fn(mask (S, S) bool, image (3, S, S)) -> mask"
            )
        old = REFINERS.get(name)
        if old is not None and not overwrite and old.fn is not f:
            raise ValueError(f"refiner {name!r} is already registered; pass overwrite=True to replace it")
        REFINERS[name] = RefinerEntry(name, f, " ".join(str(help).split()))
        return f

    return add if fn is None else add(fn)


def get_refiner(name_or_fn: str | Refiner) -> Refiner:
    """The refiner registered under a name, or the callable itself.

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return REFINERS[name_or_fn].fn
    except (KeyError, TypeError):
        raise ValueError(
            f"refine={name_or_fn!r} is not a known refiner. Try one of {', '.join(map(repr, REFINERS))}, "
            "or pass a callable fn(mask, image) -> mask"
        ) from None
