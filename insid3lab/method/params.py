"""The method's hyper-parameters: one validated, frozen record and the one home of every default.

:class:`Params` is used by :class:`~insid3lab.INSID3`'s constructor, by the command lines'
options (their defaults and help text come from :func:`describe`) and by the explorer's
sliders (their ranges come from :data:`RANGES`). Change a default here and it changes
everywhere.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BASIS_IMAGES", "RANGES", "Params", "check_param", "choices", "describe", "registered"]

#: The images the positional basis is estimated from: ``"black"`` (the authors' code) or ``"noise"``
#: (the paper's text); see :func:`insid3lab.core.preprocess.basis_images`.
BASIS_IMAGES = ("black", "noise")

#: Allowed range of each numeric hyper-parameter: (low, high, low_inclusive, high_inclusive).
RANGES: dict[str, tuple[float, float | None, bool, bool]] = {
    "image_size": (1, None, True, False),
    "svd_components": (0, None, True, False),
    "tau": (0.0, 1.0, False, True),
    "merge_threshold": (-1.0, 1.0, True, True),
    "basis_noise_images": (1, None, True, False),
    "basis_seed": (0, None, True, False),
}


def _range_text(name: str) -> str:
    lo, hi, lo_in, hi_in = RANGES[name]
    if hi is None:
        return f">= {lo:g}" if lo_in else f"> {lo:g}"
    return f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_param(name: str, value: Any) -> Any:
    """Validate one hyper-parameter and return it as a Python ``int``/``float``/``bool``.

    Numpy scalars are accepted (``np.float32(0.5)`` is a valid τ).

    Raises:
        ValueError: naming the argument, the value and what is allowed.
    """
    if name in ("image_size", "svd_components", "basis_noise_images", "basis_seed"):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: must be an integer {_range_text(name)}")
        value = int(value)
    elif name in ("tau", "merge_threshold"):
        if not _is_number(value) or value != value:
            raise ValueError(f"{name}={value!r}: must be a number {_range_text(name)}")
        value = float(value)
    elif name == "debias":
        if not isinstance(value, (bool, numbers.Integral)):
            raise ValueError(f"debias={value!r}: must be True or False")
        return bool(value)
    elif name == "basis_image":
        if value not in BASIS_IMAGES:
            raise ValueError(f"basis_image={value!r}: allowed {', '.join(map(repr, BASIS_IMAGES))}")
        return value
    elif name in ("clustering", "refine"):
        if callable(value):
            return value
        names = choices(name)
        if value not in names:
            raise ValueError(f"{name}={value!r}: allowed {', '.join(map(repr, names))}, or a callable")
        return value
    else:
        return value
    lo, hi, lo_in, hi_in = RANGES[name]
    ok = (value >= lo if lo_in else value > lo) and (hi is None or (value <= hi if hi_in else value < hi))
    if not ok:
        extra = " (0 removes nothing)" if name == "svd_components" else ""
        raise ValueError(f"{name}={value!r}: must be {_range_text(name)}{extra}")
    return value


def registered(name: str) -> dict:
    """The registry of a pluggable step, ``"clustering"`` or ``"refine"``: name → entry (``help``, ...).

    Read from the registries in :mod:`insid3lab.stages` each time (imported on first use,
    so that the command lines' help does not import torch), so a newly registered clusterer
    or refiner is accepted by name and listed at once
    (:data:`~insid3lab.stages.clustering.registry.CLUSTERERS`,
    :data:`~insid3lab.stages.refine.registry.REFINERS`).
    """
    if name == "clustering":
        from insid3lab.stages.clustering import CLUSTERERS

        return CLUSTERERS
    if name == "refine":
        from insid3lab.stages.refine import REFINERS

        return REFINERS
    raise ValueError(f"{name!r} has no list of choices; the pluggable steps are 'clustering' and 'refine'")


def choices(name: str) -> tuple[str, ...]:
    """The registered names of a pluggable step, ``"clustering"`` or ``"refine"`` (see :func:`registered`)."""
    return tuple(registered(name))


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class Params:
    """INSID3's hyper-parameters (the paper's defaults), validated on construction.

    Attributes:
        image_size: side S of the square network input; a positive multiple of the encoder's
            patch size (checked against the encoder by :class:`~insid3lab.INSID3`).
        svd_components: r, dimensions of the positional subspace removed (clamped to min(C, h*w)).
        tau: τ in (0, 1]; clusters merge while their average cosine distance is below 1 − τ.
        merge_threshold: in [−1, 1]; clusters whose score exceeds it join the mask.
        debias: remove the positional subspace (the method); ``False`` shows what happens without it.
        clustering: a name from :data:`insid3lab.stages.clustering.CLUSTERERS` (``"auto"``, the
            default, among them), or a callable with the clusterer signature.
        refine: a name from :data:`insid3lab.stages.refine.REFINERS`, or a callable with the refiner
            signature; ``"bilinear"`` is the method without refinement.
        basis_image: what the positional basis is estimated from, one of :data:`BASIS_IMAGES`:
            ``"black"``, the normalised all-zero image of the authors' code (``_build_positional_basis``
            in their ``models/insid3.py``), or ``"noise"``, seeded Gaussian noise images as the paper's
            text describes (see :func:`insid3lab.core.preprocess.noise_images`).
        basis_noise_images: how many noise images (``basis_image="noise"`` only); the paper does not
            give a number.
        basis_seed: the seed of the noise images (``basis_image="noise"`` only).

    Example:
        >>> Params(tau=0.5).replace(merge_threshold=0.1).tau
        0.5
    """

    image_size: int = field(default=1024, metadata=_help("network input side S, a multiple of the patch size"))
    svd_components: int = field(default=500, metadata=_help("positional subspace size r removed by debiasing"))
    tau: float = field(default=0.6, metadata=_help("clustering similarity threshold τ in (0, 1]"))
    merge_threshold: float = field(default=0.2, metadata=_help("aggregation score threshold in [-1, 1]"))
    debias: bool = field(default=True, metadata=_help("remove the positional subspace before matching"))
    clustering: Any = field(default="auto", metadata=_help("clustering implementation (all give the same partition)"))
    refine: Any = field(default="bilinear", metadata=_help("boundary refinement after upsampling"))
    basis_image: str = field(
        default="black", metadata=_help("images the positional basis is estimated from: black (code) or noise (paper)")
    )
    basis_noise_images: int = field(default=8, metadata=_help("number of noise images for --basis-image noise"))
    basis_seed: int = field(default=0, metadata=_help("seed of the noise images for --basis-image noise"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_param(f.name, getattr(self, f.name)))

    def replace(self, **changes: Any) -> Params:
        """A copy with some fields changed (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}: allowed {sorted(self.as_dict())}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dictionary (callables shown by name)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if not callable(v) else getattr(v, "__name__", repr(v))
        return out


def describe(name: str) -> str:
    """Help text of a field with its default, for command lines and widgets."""
    f = {f.name: f for f in dataclasses.fields(Params)}[name]
    return f"{f.metadata['help']} (default {f.default})"
