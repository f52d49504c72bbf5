"""The method's hyper-parameters: one validated, frozen record and the one home of every default.

:class:`Params` is used by :class:`~insid3lab.INSID3`'s constructor, by the command lines and by
the explorer. Each field carries what is needed to check it and to offer it (:func:`option`):
its help text, its allowed range or choices and, when it is not ``--field-name``, its
command-line flag; :mod:`insid3lab.cli.options` generates one flag per field from them. Change a
default or a range here and it changes everywhere; a new field needs no other edit to reach the
command lines.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BASIS_IMAGES",
    "RANGES",
    "REGISTRIES",
    "Params",
    "check_param",
    "check_value",
    "choices",
    "describe",
    "kind",
    "option",
    "registered",
]

#: The images the positional basis is estimated from: ``"black"`` (the authors' code) or ``"noise"``
#: (the paper's text); see :func:`insid3lab.core.preprocess.basis_images`.
BASIS_IMAGES = ("black", "noise")

#: The pluggable steps whose names come from a registry (see :func:`choices`).
REGISTRIES = ("clustering", "refine")


def option(
    help: str,  # noqa: A002 - the word argparse uses
    *,
    range: tuple[float, float | None, bool, bool] | None = None,  # noqa: A002
    choices: tuple[str, ...] | None = None,
    registry: str | None = None,
    flag: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """The metadata of one field of :class:`Params` (``field(default=..., metadata=option(...))``).

    The field's type annotation (``int``, ``float``, ``bool``, ``str``, or ``Any`` with a
    ``registry``) says how values are checked and parsed.

    Args:
        help: one line saying what the field is (the default is added by :func:`describe`).
        range: (low, high or None, low inclusive, high inclusive) of a number.
        choices: the allowed strings.
        registry: a name of :data:`REGISTRIES`: registered names (:func:`choices`) or a callable.
        flag: the command-line flag when it is not ``--field-name`` (``bool`` fields default
            to ``--no-field-name`` when true by default, ``--field-name`` when false).
        note: added to the message when a value is out of range.
    """
    if registry is not None and registry not in REGISTRIES:
        raise ValueError(f"registry={registry!r}: allowed {', '.join(map(repr, REGISTRIES))}")
    return {"help": help, "range": range, "choices": choices, "registry": registry, "flag": flag, "note": note}


def kind(f: dataclasses.Field) -> str:
    """How a field's values are checked: ``"int"``, ``"float"``, ``"bool"``, ``"choice"``, ``"registry"`` or ``"any"``."""
    if f.metadata.get("registry"):
        return "registry"
    if f.metadata.get("choices"):
        return "choice"
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return name if name in ("int", "float", "bool") else "any"


def _range_text(lo: float, hi: float | None, lo_in: bool, hi_in: bool) -> str:
    if hi is None:
        return f">= {lo:g}" if lo_in else f"> {lo:g}"
    return f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def check_value(f: dataclasses.Field, value: Any) -> Any:
    """Validate a value of the field ``f`` (from its type and :func:`option` metadata) and return it
    as a Python ``int``/``float``/``bool``/``str`` (numpy scalars are accepted), or the callable.

    Raises:
        ValueError: naming the field, the value and what is allowed.
    """
    name, meta, k = f.name, f.metadata, kind(f)
    bounds = meta.get("range")
    allowed = f" {_range_text(*bounds)}" if bounds else ""
    if k == "int":
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r}: must be an integer{allowed}")
        value = int(value)
    elif k == "float":
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value:
            raise ValueError(f"{name}={value!r}: must be a number{allowed}")
        value = float(value)
    elif k == "bool":
        if not isinstance(value, (bool, numbers.Integral)):
            raise ValueError(f"{name}={value!r}: must be True or False")
        return bool(value)
    elif k == "choice":
        if value not in meta["choices"]:
            raise ValueError(f"{name}={value!r}: allowed {', '.join(map(repr, meta['choices']))}")
        return value
    elif k == "registry":
        if callable(value):
            return value
        names = choices(meta["registry"])
        if value not in names:
            raise ValueError(f"{name}={value!r}: allowed {', '.join(map(repr, names))}, or a callable")
        return value
    if bounds:
        lo, hi, lo_in, hi_in = bounds
        ok = (value >= lo if lo_in else value > lo) and (hi is None or (value <= hi if hi_in else value < hi))
        if not ok:
            note = f" ({meta['note']})" if meta.get("note") else ""
            raise ValueError(f"{name}={value!r}: must be{allowed}{note}")
    return value


def check_param(name: str, value: Any) -> Any:
    """Validate one hyper-parameter of :class:`Params` by name (see :func:`check_value`).

    Raises:
        ValueError: naming the argument, the value and what is allowed.
    """
    fields = {f.name: f for f in dataclasses.fields(Params)}
    if name not in fields:
        raise ValueError(f"{name!r} is not a hyper-parameter: allowed {', '.join(fields)}")
    return check_value(fields[name], value)


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

    image_size: int = field(
        default=1024,
        metadata=option("network input side S, a multiple of the patch size", range=(1, None, True, False)),
    )
    svd_components: int = field(
        default=500,
        metadata=option(
            "positional subspace size r removed by debiasing", range=(0, None, True, False), note="0 removes nothing"
        ),
    )
    tau: float = field(
        default=0.6, metadata=option("clustering similarity threshold τ in (0, 1]", range=(0.0, 1.0, False, True))
    )
    merge_threshold: float = field(
        default=0.2, metadata=option("aggregation score threshold in [-1, 1]", range=(-1.0, 1.0, True, True))
    )
    debias: bool = field(default=True, metadata=option("remove the positional subspace before matching"))
    clustering: Any = field(
        default="auto",
        metadata=option("clustering implementation (all give the same partition)", registry="clustering"),
    )
    refine: Any = field(default="bilinear", metadata=option("boundary refinement after upsampling", registry="refine"))
    basis_image: str = field(
        default="black",
        metadata=option(
            "images the positional basis is estimated from: black (code) or noise (paper)", choices=BASIS_IMAGES
        ),
    )
    basis_noise_images: int = field(
        default=8, metadata=option("number of noise images for --basis-image noise", range=(1, None, True, False))
    )
    basis_seed: int = field(
        default=0, metadata=option("seed of the noise images for --basis-image noise", range=(0, None, True, False))
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_value(f, getattr(self, f.name)))

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


def describe(name: str, record: type[Params] = Params) -> str:
    """Help text of a field with its default, for command lines and widgets."""
    f = {f.name: f for f in dataclasses.fields(record)}[name]
    return f"{f.metadata['help']} (default {f.default})"


#: Allowed range of each numeric hyper-parameter: (low, high, low_inclusive, high_inclusive).
RANGES: dict[str, tuple[float, float | None, bool, bool]] = {
    f.name: f.metadata["range"] for f in dataclasses.fields(Params) if f.metadata.get("range")
}
