"""A grid of settings: the hyper-parameter values an ablation visits, validated by :class:`Params`.

A :class:`SettingsGrid` is a list of :class:`Params` that differ from one *base* setting only in
the grid's *axes*. It is made from axes (their product, the first axis varying slowest), or
from an explicit list of settings, or from text (``"tau=0.4,0.5,0.6"``, one axis per string, as
the command line's ``--grid`` gives them); every value is parsed and checked by
:func:`~insid3lab.method.params.check_param`, so an axis value outside its range fails with the
message :class:`Params` gives, before any work.

A setting is named by its axes' values, ``tau=0.5,merge_threshold=0.2`` (:meth:`SettingsGrid.label`);
:meth:`SettingsGrid.find` reads such a name back (axes left out take the base setting's value).

Every setting of a grid is decoded from one encoding per image (:mod:`insid3lab.method.grid_decode`):
only ``image_size`` changes the encoding (:data:`ENCODING_FIELDS`), and costs one encoding per value.

Example:
    >>> g = SettingsGrid.from_axes({"tau": [0.5, 0.6], "merge_threshold": [0.1, 0.2]})
    >>> len(g), g.label(1)
    (4, 'tau=0.5,merge_threshold=0.2')
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from insid3lab.method.params import Params, check_param, kind

__all__ = ["ENCODING_FIELDS", "FIELDS", "MAX_SETTINGS", "SettingsGrid", "parse_axis", "parse_setting", "parse_value"]

#: The fields a grid may vary: every field of :class:`Params`.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params))
#: The fields that change the encoding of an image: a grid pays one encoding per value of these.
ENCODING_FIELDS: tuple[str, ...] = ("image_size",)
#: The most settings one grid may hold.
MAX_SETTINGS = 10_000

_FIELDS = {f.name: f for f in dataclasses.fields(Params)}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _check_name(name: str) -> str:
    if name not in FIELDS:
        raise ValueError(f"grid axis {name!r} is not a parameter; allowed: {', '.join(FIELDS)}")
    return name


def parse_value(name: str, text: str) -> Any:
    """One value of field ``name`` from text, converted as the field's :func:`~insid3lab.method.params.kind` says
    and checked by :func:`~insid3lab.method.params.check_param` (``"0.5"`` for ``tau``, ``"true"`` for ``debias``).

    Raises:
        ValueError: an unknown field, text that is not of the field's type, a value out of range.
    """
    _check_name(name)
    text = str(text).strip()
    k = kind(_FIELDS[name])
    value: Any = text
    if k == "bool":
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{name}={text!r}: must be true or false")
        value = text.lower() in _TRUE
    elif k in ("int", "float"):
        try:
            value = int(text) if k == "int" else float(text)
        except ValueError:
            raise ValueError(f"{name}={text!r}: must be {'an integer' if k == 'int' else 'a number'}") from None
    return check_param(name, value)


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``"tau=0.4,0.5"`` -> ``("tau", [0.4, 0.5])``: one axis, each value parsed by :func:`parse_value`.

    Raises:
        ValueError: no ``=``, an unknown field, no value, a value given twice, a value out of range.
    """
    name, sep, values = str(text).partition("=")
    name = name.strip().replace("-", "_")
    if not sep:
        raise ValueError(f"grid axis {text!r}: write NAME=V1,V2,... (e.g. tau=0.4,0.5,0.6)")
    _check_name(name)
    parts = [v for v in values.split(",") if v.strip()]
    if not parts:
        raise ValueError(f"grid axis {name!r} is empty: give at least one value ({name}=V1,V2,...)")
    return name, _distinct(name, [parse_value(name, v) for v in parts])


def parse_setting(text: str) -> dict[str, Any]:
    """``"tau=0.5,merge_threshold=0.2"`` -> ``{"tau": 0.5, "merge_threshold": 0.2}`` (values as :func:`parse_value`).

    Raises:
        ValueError: a part without ``=``, an unknown field, a field given twice, a value out of range.
    """
    out: dict[str, Any] = {}
    for part in (p for p in str(text).split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"setting {text!r}: write NAME=VALUE,NAME=VALUE (e.g. tau=0.5,merge_threshold=0.2)")
        _check_name(name)
        if name in out:
            raise ValueError(f"setting {text!r} gives {name} twice")
        out[name] = parse_value(name, value)
    return out


def _distinct(name: str, values: list) -> list:
    seen = []
    for v in values:
        if any(_same(v, s) for s in seen):
            raise ValueError(f"grid axis {name!r} repeats the value {_text(v)}")
        seen.append(v)
    return seen


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def _text(v) -> str:
    """A value as a setting's name writes it: ``0.5``, ``100``, ``true``, ``crf``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if callable(v):
        return getattr(v, "__name__", repr(v))
    return str(v)


def _plain(v):
    """A value as JSON holds it (a callable by its name)."""
    return _text(v) if callable(v) else v


@dataclasses.dataclass(frozen=True)
class SettingsGrid:
    """Settings that differ from ``base`` in the fields of ``axes`` only.

    Attributes:
        base: the setting every other field is taken from.
        axes: ``{name: (values...)}``: for a product grid its axes; for a list of settings, the fields
            the list sets and their distinct values in order of appearance.
        changes: per setting, ``{name: value}`` for every axis (in axes order).
        product: whether the settings are the product of the axes.
        given: for a list of settings, the settings as given (fields left out take the base's values).
    """

    base: Params
    axes: dict[str, tuple]
    changes: tuple[dict[str, Any], ...]
    product: bool = True
    given: tuple[dict[str, Any], ...] | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_axes(cls, axes: Mapping[str, Sequence] | Sequence[tuple[str, Sequence]], base: Params | None = None):
        """The product of ``axes`` (``{name: [values]}`` or ``[(name, [values]), ...]``), the first varying slowest.

        Raises:
            ValueError: no axis, an unknown field, an axis given twice, an empty axis, a repeated value, a value
                out of range, more than :data:`MAX_SETTINGS` settings (the count is given).
        """
        base = base or Params()
        pairs = list(axes.items()) if isinstance(axes, Mapping) else [tuple(a) for a in axes]
        if not pairs:
            raise ValueError("grid: give at least one axis (e.g. tau=0.4,0.5,0.6)")
        checked: dict[str, tuple] = {}
        for name, values in pairs:
            name = _check_name(str(name).replace("-", "_"))
            if name in checked:
                raise ValueError(f"grid axis {name!r} is given twice; give each axis once with all its values")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                values = [values]
            if not values:
                raise ValueError(f"grid axis {name!r} is empty: give at least one value")
            checked[name] = tuple(_distinct(name, [check_param(name, v) for v in values]))
        count = math.prod(len(v) for v in checked.values())
        if count > MAX_SETTINGS:
            sizes = " x ".join(str(len(v)) for v in checked.values())
            raise ValueError(f"grid of {count:,} settings ({sizes}) is refused: at most {MAX_SETTINGS:,}")
        names = list(checked)
        changes = tuple(dict(zip(names, combo)) for combo in itertools.product(*checked.values()))
        return cls(base, checked, changes, True)

    @classmethod
    def from_settings(cls, settings: Sequence[Mapping[str, Any]], base: Params | None = None):
        """An explicit list of settings, each ``{name: value}`` (fields left out take ``base``'s value).

        Raises:
            ValueError: an empty list, a setting that is not a mapping, an unknown field, a value out of range,
                the same setting twice, more than :data:`MAX_SETTINGS` settings.
        """
        base = base or Params()
        if isinstance(settings, Mapping) or not isinstance(settings, Sequence) or not settings:
            raise ValueError("grid: an explicit grid is a non-empty list of settings ({name: value, ...})")
        if len(settings) > MAX_SETTINGS:
            raise ValueError(f"grid of {len(settings):,} settings is refused: at most {MAX_SETTINGS:,}")
        given = []
        for k, s in enumerate(settings):
            if not isinstance(s, Mapping):
                raise ValueError(f"grid setting {k}: expected {{name: value, ...}}, got {type(s).__name__}")
            given.append({_check_name(str(n).replace("-", "_")): check_param(str(n).replace("-", "_"), v)
                          for n, v in s.items()})  # fmt: skip
        names = list(dict.fromkeys(n for s in given for n in s))  # in order of first appearance
        if not names:
            raise ValueError("grid: the settings set no parameter")
        axes: dict[str, list] = {n: [] for n in names}
        changes = []
        for s in given:
            full = {n: s.get(n, getattr(base, n)) for n in names}
            for n, v in full.items():
                if not any(_same(v, x) for x in axes[n]):
                    axes[n].append(v)
            changes.append(full)
        grid = cls(base, {n: tuple(v) for n, v in axes.items()}, tuple(changes), False, tuple(given))
        labels = [grid.label(i) for i in range(len(grid))]
        dup = next((lab for i, lab in enumerate(labels) if lab in labels[:i]), None)
        if dup is not None:
            raise ValueError(f"grid: the setting {dup} is given twice")
        return grid

    @classmethod
    def parse(cls, axes: Sequence[str], base: Params | None = None):
        """From text, one axis per string: ``["tau=0.4,0.5", "merge_threshold=0.1,0.2"]`` (see :func:`parse_axis`)."""
        return cls.from_axes([parse_axis(a) for a in axes], base)

    @classmethod
    def from_file(cls, path: str | os.PathLike, base: Params | None = None):
        """An explicit list from a JSON file: ``[{name: value, ...}, ...]`` or ``{"settings": [...]}``;
        or axes: ``{"axes": {name: [values]}}``.

        Raises:
            ValueError: a file that cannot be read or is not such JSON (named), or the grid's own errors.
        """
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            raise ValueError(f"grid file {str(p)!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"grid file {str(p)!r} is not valid JSON ({e})") from None
        try:
            if isinstance(doc, dict) and set(doc) == {"axes"} and isinstance(doc["axes"], dict):
                return cls.from_axes(doc["axes"], base)
            if isinstance(doc, dict) and set(doc) == {"settings"}:
                doc = doc["settings"]
            if not isinstance(doc, list):
                raise ValueError(
                    'expected a list of settings [{"tau": 0.5}, ...], {"settings": [...]} or {"axes": {...}}'
                )
            return cls.from_settings(doc, base)
        except ValueError as e:
            raise ValueError(f"grid file {str(p)!r}: {e}") from None

    @classmethod
    def from_spec(cls, spec, base: Params | None = None):
        """A grid from what :func:`~insid3lab.eval.run_evaluation` accepts: a :class:`SettingsGrid` (rebased on
        ``base``), ``{name: [values]}`` axes, a list of ``{name: value}`` settings, or ``NAME=V1,V2`` strings."""
        if isinstance(spec, SettingsGrid):
            return spec if base is None or spec.base == base else spec.rebase(base)
        if isinstance(spec, Mapping):
            return cls.from_axes(spec, base)
        if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)) and all(isinstance(s, str) for s in spec):
            return cls.parse(spec, base)
        if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
            return cls.from_settings(spec, base)
        raise ValueError(f"grid={spec!r}: expected {{name: [values]}}, a list of {{name: value}} or NAME=V1,V2 strings")

    def rebase(self, base: Params) -> SettingsGrid:
        """The same axes (or the same list of settings, fields left out taken from ``base``) on another base."""
        if self.given is not None:
            return SettingsGrid.from_settings(list(self.given), base)
        return dataclasses.replace(self, base=base)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[Params]:
        return iter(self.settings)

    def __getitem__(self, i: int) -> Params:
        return self.base.replace(**self.changes[i])

    @property
    def settings(self) -> list[Params]:
        """Every setting, in order."""
        return [self[i] for i in range(len(self))]

    def label(self, i: int) -> str:
        """The name of setting ``i``: ``tau=0.5,merge_threshold=0.2`` (its axes' values)."""
        return ",".join(f"{n}={_text(v)}" for n, v in self.changes[i].items())

    def values(self, i: int) -> dict[str, Any]:
        """Setting ``i``'s axes as JSON holds them: ``{name: value}``."""
        return {n: _plain(v) for n, v in self.changes[i].items()}

    def base_values(self) -> dict[str, Any]:
        """The base setting's value of every axis."""
        return {n: _plain(getattr(self.base, n)) for n in self.axes}

    @property
    def base_index(self) -> int | None:
        """The index of the setting equal to the base setting, or None when the grid does not hold it."""
        return next((i for i, c in enumerate(self.changes) if self[i] == self.base), None)

    def find(self, setting: str | Mapping[str, Any]) -> int:
        """The index of a setting named as :meth:`label` names it (axes left out: the base setting's values).

        Raises:
            ValueError: a field that is not an axis of the grid, or a setting the grid does not hold (its axes
                and their values are listed).
        """
        given = parse_setting(setting) if isinstance(setting, str) else {
            _check_name(n): check_param(n, v) for n, v in setting.items()}  # fmt: skip
        extra = [n for n in given if n not in self.axes]
        if extra:
            raise ValueError(f"setting {_describe(given)}: {', '.join(extra)} is not an axis of the grid "
                             f"(axes: {', '.join(self.axes)})")  # fmt: skip
        want = {n: given.get(n, getattr(self.base, n)) for n in self.axes}
        for i, c in enumerate(self.changes):
            if all(_same(c[n], want[n]) for n in self.axes):
                return i
        raise ValueError(f"setting {_describe(want)} is not in the grid; its settings: {self.describe_axes()}")

    def describe_axes(self) -> str:
        """The axes and their values in words: ``tau in 0.4, 0.5; merge_threshold in 0.1, 0.2``."""
        return "; ".join(f"{n} in {', '.join(map(_text, v))}" for n, v in self.axes.items())

    def encodings(self) -> int:
        """How many encodings of each image the grid costs (one per distinct value of :data:`ENCODING_FIELDS`)."""
        return len({tuple(getattr(p, f) for f in ENCODING_FIELDS) for p in self.settings})

    def to_json(self) -> dict[str, Any]:
        """``{"axes": {name: [values]}, "product": bool, "settings": [{name: value}, ...]}`` (JSON-ready)."""
        return {
            "axes": {n: [_plain(v) for v in vs] for n, vs in self.axes.items()},
            "product": self.product,
            "settings": [self.values(i) for i in range(len(self))],
        }


def _describe(values: Mapping[str, Any]) -> str:
    return ",".join(f"{n}={_text(v)}" for n, v in values.items())
