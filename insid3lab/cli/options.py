"""The options every command shares, written once: the model, the method's hyper-parameters, image limits.

The method's options are generated from the fields of :class:`insid3lab.method.params.Params` (flag,
default, range or choices, help: :func:`add_hyperparameter_arguments`), so a new field needs no edit
here; the model source string (``--model``, else ``$INSID3LAB_WEIGHTS``) is turned into a backbone by
:func:`load_model_source`; :func:`build_pipeline` makes the :class:`~insid3lab.INSID3` every command
works with.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from contextlib import contextmanager
from typing import Any

from insid3lab.core.imageio import MAX_PIXELS_ENV
from insid3lab.method.params import Params, check_value, choices, describe, kind, registered

__all__ = [
    "CORRESPONDENCE_SVD_COMPONENTS",
    "DEFAULT_MODEL",
    "DTYPES",
    "WEIGHTS_ENV",
    "CLIError",
    "add_hyperparameter_arguments",
    "add_image_arguments",
    "bomb_message",
    "add_model_arguments",
    "build_pipeline",
    "check_choices",
    "flag_value",
    "load_model_source",
    "method_flag",
    "method_params",
    "pipeline_kwargs",
    "pixel_limit",
]

DEFAULT_MODEL = "facebook/dinov3-vitl16-pretrain-lvd1689m"
#: r for keypoint correspondence (``match``, SPair-71k), as in the paper.
CORRESPONDENCE_SVD_COMPONENTS = 20
#: The dtypes ``--dtype`` (weights) and ``--autocast`` (compute) accept.
DTYPES = ("float32", "bfloat16", "float16")

#: Environment variable naming the weights ``--model`` falls back to.
WEIGHTS_ENV = "INSID3LAB_WEIGHTS"


class CLIError(Exception):
    """An error reported as one line."""


def load_model_source(
    spec: str, *, device: str = "auto", dtype: str | None = None, arch: str | None = None, rope_periods: str = "auto"
):
    """A backbone from a command-line ``--model`` value: anything :func:`insid3lab.load_backbone` reads,
    ``random:ARCH[:SEED]`` included."""
    from insid3lab.backbone import load_backbone

    return load_backbone(spec, device=device, dtype=dtype, arch=arch, rope_periods=rope_periods)


def add_model_arguments(p: argparse.ArgumentParser, *, default: str | None = DEFAULT_MODEL) -> None:
    """``--model``, ``--arch``, ``--device``, ``--dtype`` (weights), ``--autocast`` (compute), ``--rope-periods``, ``--no-cache``.

    ``--model`` defaults to ``$INSID3LAB_WEIGHTS``, else to ``default``; ``default=None`` makes it
    required when the variable is not set.
    """
    g = p.add_argument_group("model")
    src = "DINOv3 weights: a hub id, a transformers folder, a Meta .pth/.safetensors file, or random:ARCH[:SEED] "
    fallback = os.environ.get(WEIGHTS_ENV) or default
    if fallback is None:
        g.add_argument(
            "--model", required=True, help=src + f"for random weights (required unless ${WEIGHTS_ENV} is set)"
        )
    else:
        g.add_argument("--model", default=fallback,
                       help=src + f"for random weights (default: ${WEIGHTS_ENV} or {default or 'required'})")  # fmt: skip
    g.add_argument("--arch", default=None, help="architecture override for Meta files (vits16, vitb16, vitl16, ...)")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", default=None, choices=DTYPES, help="dtype the weights are stored in (default float32)")
    g.add_argument("--autocast", default=None, choices=DTYPES,
                   help="compute dtype of the backbone: bfloat16/float16 is the fast mode (backbone under autocast, "
                        "every other stage in float32); default float32, the exact mode")  # fmt: skip
    g.add_argument("--rope-periods", default="auto", choices=["auto", "checkpoint", "bf16", "fp32"],
                   help="RoPE periods (see load_backbone)")  # fmt: skip
    g.add_argument("--no-cache", action="store_true", help="do not read or write the positional-basis disk cache")


def method_flag(f: dataclasses.Field) -> str:
    """The command-line flag of a field of :class:`~insid3lab.method.params.Params`: its ``flag`` metadata, else
    ``--field-name`` (``--no-field-name`` for a ``bool`` that is true by default)."""
    dashed = "--" + f.name.replace("_", "-")
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    return "--no-" + dashed[2:] if kind(f) == "bool" and f.default else dashed


def _dest(f: dataclasses.Field) -> str:
    return method_flag(f)[2:].replace("-", "_")


def _param_type(f: dataclasses.Field):
    """Parse and check one value of ``f``; argparse prints the record's message after the flag."""
    convert = {"int": int, "float": float}.get(kind(f), str)

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = text  # the check says what is allowed
        try:
            return check_value(f, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).replace(f"{f.name}=", "", 1)) from None

    parse.__name__ = f.name
    return parse


class _RegistryChoice(argparse.Action):
    """A pluggable step's name (``--clustering``, ``--refine``): its help lists the registry's names.

    The help (each name with its entry's one-line help) is read from
    :func:`insid3lab.method.params.registered` when shown, never when the parser is built, so
    building it stays free of the stages' imports and a name registered later is listed;
    :func:`check_choices` checks the name against the same registry.
    """

    def __init__(self, option_strings, dest, *, registry: str, text: str, **kw):
        self.registry, self.text = registry, text
        super().__init__(option_strings, dest, **kw)

    @property
    def help(self) -> str:
        listed = ", ".join(f"{n} ({e.help})" if e.help else n for n, e in registered(self.registry).items())
        return f"{self.text}; one of: {listed}".replace("%", "%%")

    @help.setter
    def help(self, value) -> None:  # argparse.Action.__init__ assigns it; the text is built when shown
        pass

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)


def add_hyperparameter_arguments(
    p: argparse.ArgumentParser, *, own_defaults: dict[str, str] | None = None, record: type[Params] | None = None
) -> None:
    """One flag per field of ``record`` (:class:`~insid3lab.method.params.Params`), generated from the field:
    its flag (:func:`method_flag`), default, range or choices and help.

    Numbers are checked by the parser with the record's message; ``bool`` fields are switches;
    registry names are checked by :func:`check_choices` (so that parsing does not import the stages).

    Args:
        own_defaults: ``{field: note}`` for fields whose default the command picks (the flag defaults
            to None; the note, added to the help, says what the command uses).
        record: :class:`~insid3lab.method.params.Params` (the default) or a subclass with more fields.
    """
    own_defaults, record = own_defaults or {}, record or Params
    g = p.add_argument_group(f"method (defaults: {record.__module__}.{record.__qualname__})")
    for f in dataclasses.fields(record):
        flag, k, help_ = method_flag(f), kind(f), describe(f.name, record)
        default = None if f.name in own_defaults else f.default
        help_ += own_defaults.get(f.name, "")
        if k == "bool":
            help_ = ("do not " if f.default else "") + f.metadata["help"]
            g.add_argument(flag, dest=_dest(f), action="store_true", help=help_)
        elif k == "registry":
            g.add_argument(flag, dest=_dest(f), default=default, action=_RegistryChoice, metavar="NAME",
                           registry=f.metadata["registry"], text=help_)  # fmt: skip
        elif k == "choice":
            g.add_argument(flag, dest=_dest(f), default=default, choices=f.metadata["choices"], help=help_)
        else:
            g.add_argument(flag, dest=_dest(f), type=_param_type(f), default=default, help=help_)


def _pixel_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of pixels >= 0 (0: no limit)")
    return value


def add_image_arguments(p: argparse.ArgumentParser) -> None:
    """``--max-image-pixels``: the pixel limit of every image the command reads (:func:`insid3lab.core.imageio.pixel_limit`)."""
    p.add_argument("--max-image-pixels", type=_pixel_count, default=None, metavar="N",
                   help="images with more than N pixels are refused before they are decoded (a guard against "
                        f"decompression bombs); 0: no limit; default ${MAX_PIXELS_ENV} or PIL's 89,478,485. "
                        "Raise it only for files you trust")  # fmt: skip


@contextmanager
def pixel_limit(args: argparse.Namespace):
    """The pixel limit of ``--max-image-pixels`` while the command runs (else ``$INSID3LAB_MAX_IMAGE_PIXELS``
    or PIL's, checked now so that a bad value is one line before any work)."""
    from insid3lab.core import imageio

    value = getattr(args, "max_image_pixels", None)
    if value is None:
        imageio.pixel_limit()  # a bad $INSID3LAB_MAX_IMAGE_PIXELS is reported here
        yield
        return
    with imageio.pixel_limit_set(value):
        yield


def bomb_message(path: str, err) -> str:
    """One line for an image over the pixel limit (an :class:`~insid3lab.core.imageio.ImageTooLargeError`),
    saying how to raise the limit knowingly."""
    return (f"{path}: has {err.pixels:,} pixels, more than the pixel limit of {err.limit:,} (a guard against "
            f"decompression bombs); if you trust the file, raise the limit with --max-image-pixels N or "
            f"{MAX_PIXELS_ENV}=N (0: no limit)")  # fmt: skip


def flag_value(f: dataclasses.Field, value: Any) -> str:
    """How ``value`` of the field ``f`` is written on a command line (``--no-debias``, ``--tau 0.5``)."""
    return method_flag(f) if kind(f) == "bool" else f"{method_flag(f)} {value}"


def check_choices(args: argparse.Namespace, record: type[Params] | None = None) -> None:
    """The registry-named options (``--clustering``, ``--refine``) against the library's registries."""
    for f in dataclasses.fields(record or Params):
        value = getattr(args, _dest(f), None)
        if kind(f) != "registry" or value is None or value == f.default:
            continue
        names = choices(f.metadata["registry"])
        if value not in names:
            allowed = [f.default, *sorted(n for n in names if n != f.default)]
            raise CLIError(f"{flag_value(f, value)}: allowed {', '.join(allowed)}")


def method_params(args: argparse.Namespace, *, record: type[Params] | None = None, **defaults: Any) -> Params:
    """The ``record`` (default :class:`~insid3lab.method.params.Params`) the options of
    :func:`add_hyperparameter_arguments` describe; ``defaults`` fill the options left unset (None)."""
    record, values = record or Params, {}
    for f in dataclasses.fields(record):
        value = getattr(args, _dest(f))
        if kind(f) == "bool":
            value = (not f.default) if value else f.default
        values[f.name] = value if value is not None else defaults.get(f.name, f.default)
    return record(**values)


def pipeline_kwargs(args: argparse.Namespace, *, svd_components: int | None = None) -> dict[str, Any]:
    """Keyword arguments of :class:`~insid3lab.INSID3` from the shared options: every field of
    :class:`~insid3lab.method.params.Params`, ``basis_cache`` and, when asked for, ``autocast_dtype``.

    ``svd_components``: the command's default r when ``--svd-components`` is not given.
    """
    own = {} if svd_components is None else {"svd_components": svd_components}
    params = method_params(args, **own)
    kw: dict[str, Any] = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    kw["basis_cache"] = not args.no_cache
    if getattr(args, "autocast", None) not in (None, "float32"):
        kw["autocast_dtype"] = args.autocast
    return kw


def explain_clamp(model, requested: int, say) -> None:
    """One line when r exceeds what the model and size allow: why, and the r used."""
    h, w = model.grid
    channels = model.embed_dim
    limit = min(channels, h * w)
    if requested <= limit:
        return
    name = getattr(model.encoder, "arch_name", None)
    who = f"{name} has" if name else "the model has"
    if channels <= h * w:
        say(f"{who} {channels} channels; using {limit} positional components (--svd-components {requested})")
    else:
        say(f"{model.image_size} px gives {h * w} cells; using {limit} positional components (--svd-components "
            f"{requested})")  # fmt: skip


@contextmanager
def _loading_bars(shown: bool):
    """transformers' own progress bars while loading, off under ``--quiet``."""
    if shown:
        yield
        return
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def build_pipeline(args: argparse.Namespace, *, device: str | None = None, svd_components: int | None = None,
                   status=None, warn=None):  # fmt: skip
    """The :class:`~insid3lab.INSID3` the options describe: the one way a command builds its model.

    Args:
        args: the options of :func:`add_model_arguments` and :func:`add_hyperparameter_arguments`.
        device: overrides ``--device`` (a process's own device when sharded).
        svd_components: the command's default r when ``--svd-components`` is not given.
        status: receives what is being done; warn: receives a clamped r (then the library's warning is silenced).
    """
    import warnings

    import insid3lab

    check_choices(args)
    kw = pipeline_kwargs(args, svd_components=svd_components)
    if status:
        status(f"loading the weights: {args.model}")
    quiet = getattr(args, "quiet", False) or getattr(args, "no_progress", False)
    with _loading_bars(shown=not quiet):
        backbone = load_model_source(args.model, device=device or args.device, dtype=args.dtype, arch=args.arch,
                                     rope_periods=args.rope_periods)  # fmt: skip
    model = insid3lab.INSID3(backbone, **kw, progress=False)
    if warn is not None:
        if kw["svd_components"] != Params.svd_components:  # the default means "as many as the model allows"
            explain_clamp(model, kw["svd_components"], warn)
        warnings.filterwarnings("ignore", message=r"svd_components=\d+ exceeds")
    return model
