"""The options every command shares, written once: the model, the method's hyper-parameters, image limits.

Defaults and help of the hyper-parameters come from :class:`insid3lab.method.params.Params`; the model
source string is turned into a backbone by :func:`load_model_source`; :func:`build_pipeline`
makes the :class:`~insid3lab.INSID3` a command works with.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
from contextlib import contextmanager
from typing import Any

from insid3lab.method.params import BASIS_IMAGES, Params, check_param, describe

__all__ = [
    "CORRESPONDENCE_SVD_COMPONENTS",
    "DEFAULT_MODEL",
    "DTYPES",
    "CLIError",
    "add_hyperparameter_arguments",
    "add_image_arguments",
    "add_model_arguments",
    "build_pipeline",
    "check_choices",
    "load_model_source",
    "pipeline_kwargs",
    "pixel_limit",
]

DEFAULT_MODEL = "facebook/dinov3-vitl16-pretrain-lvd1689m"
#: r for keypoint correspondence (``match``, SPair-71k), as in the paper.
CORRESPONDENCE_SVD_COMPONENTS = 20
#: The dtypes ``--dtype`` (weights) and ``--autocast`` (compute) accept.
DTYPES = ("float32", "bfloat16", "float16")
#: Environment variable holding PIL's pixel limit for the command line (0: no limit).
PIXEL_LIMIT_ENV = "INSID3LAB_MAX_IMAGE_PIXELS"

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Params)}


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

    ``default=None`` makes ``--model`` required; otherwise ``$INSID3LAB_WEIGHTS`` or ``default``.
    """
    g = p.add_argument_group("model")
    src = "DINOv3 weights: a hub id, a transformers folder, a Meta .pth/.safetensors file, or random:ARCH[:SEED] "
    if default is None:
        g.add_argument("--model", required=True, help=src + "for random weights")
    else:
        g.add_argument("--model", default=os.environ.get("INSID3LAB_WEIGHTS", default),
                       help=src + "for random weights (default: $INSID3LAB_WEIGHTS or %(default)s)")  # fmt: skip
    g.add_argument("--arch", default=None, help="architecture override for Meta files (vits16, vitb16, vitl16, ...)")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", default=None, choices=DTYPES, help="dtype the weights are stored in (default float32)")
    g.add_argument("--autocast", default=None, choices=DTYPES,
                   help="compute dtype of the backbone: bfloat16/float16 is the fast mode (backbone under autocast, "
                        "every other stage in float32); default float32, the exact mode")  # fmt: skip
    g.add_argument("--rope-periods", default="auto", choices=["auto", "checkpoint", "bf16", "fp32"],
                   help="RoPE periods (see load_backbone)")  # fmt: skip
    g.add_argument("--no-cache", action="store_true", help="do not read or write the positional-basis disk cache")


def _param_type(name: str, convert):
    def parse(text: str):
        try:
            return check_param(name, convert(text))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).replace(f"{name}=", "", 1)) from None

    parse.__name__ = name
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
        from insid3lab.method.params import registered

        listed = ", ".join(f"{n} ({e.help})" if e.help else n for n, e in registered(self.registry).items())
        return f"{self.text}; one of: {listed}".replace("%", "%%")

    @help.setter
    def help(self, value) -> None:  # argparse.Action.__init__ assigns it; the text is built when shown
        pass

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)


def add_hyperparameter_arguments(p: argparse.ArgumentParser, *, svd_note: str = "") -> None:
    """``--image-size``, ``--svd-components``, ``--tau``, ``--merge-threshold``, ``--clustering``, ``--no-debias``,
    ``--refine``, ``--basis-image``: defaults and help from :class:`~insid3lab.method.params.Params`.

    ``--svd-components`` defaults to None (the command's own default, see ``svd_note``).
    """
    g = p.add_argument_group("method (defaults: insid3lab.method.params.Params)")
    for name, convert in (("image_size", int), ("tau", float), ("merge_threshold", float)):
        g.add_argument("--" + name.replace("_", "-"), type=_param_type(name, convert), default=_DEFAULTS[name],
                       help=describe(name))  # fmt: skip
    g.add_argument("--svd-components", type=_param_type("svd_components", int), default=None,
                   help=describe("svd_components") + svd_note)  # fmt: skip
    g.add_argument("--clustering", default=_DEFAULTS["clustering"], action=_RegistryChoice, registry="clustering",
                   metavar="NAME", text=describe("clustering"))  # fmt: skip
    g.add_argument("--refine", default=None, action=_RegistryChoice, registry="refine", metavar="NAME",
                   text=describe("refine"))  # fmt: skip
    g.add_argument("--no-debias", action="store_true", help="keep the positional subspace (ablation)")
    g.add_argument("--basis-image", default=_DEFAULTS["basis_image"], choices=BASIS_IMAGES,
                   help=describe("basis_image"))  # fmt: skip


def add_image_arguments(p: argparse.ArgumentParser) -> None:
    """``--max-image-pixels``: PIL's decompression-bomb limit, raised knowingly."""
    p.add_argument("--max-image-pixels", type=int, default=None, metavar="N",
                   help="PIL's decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS): images above N pixels warn, "
                        f"above 2N are refused; 0: no limit; default ${PIXEL_LIMIT_ENV} or PIL's 89478485. "
                        "Raise it only for files you trust")  # fmt: skip


@contextmanager
def pixel_limit(args: argparse.Namespace):
    """PIL's pixel limit set from ``--max-image-pixels`` or ``$INSID3LAB_MAX_IMAGE_PIXELS`` while the command runs."""
    from PIL import Image

    value = getattr(args, "max_image_pixels", None)
    if value is None and os.environ.get(PIXEL_LIMIT_ENV):
        try:
            value = int(os.environ[PIXEL_LIMIT_ENV])
        except ValueError:
            raise CLIError(f"${PIXEL_LIMIT_ENV}={os.environ[PIXEL_LIMIT_ENV]!r}: must be an integer") from None
    old = Image.MAX_IMAGE_PIXELS
    if value is not None:
        Image.MAX_IMAGE_PIXELS = value if value > 0 else None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def bomb_message(path: str, err: Exception) -> str:
    """One line for an image over PIL's pixel limit, saying how to raise the limit knowingly."""
    from PIL import Image

    m = re.search(r"\((\d+) pixels\)", str(err))
    size = f" has {int(m.group(1)):,} pixels and" if m else ""
    return (f"{path}:{size} exceeds PIL's pixel limit (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,}); "
            f"if you trust the file, raise it with --max-image-pixels N or ${PIXEL_LIMIT_ENV}=N (0: no limit)")  # fmt: skip


def _registry(module: str, name: str) -> dict | None:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def check_choices(args: argparse.Namespace) -> None:
    """``--clustering`` and ``--refine`` against the library's registries (where this version has them)."""
    clusterers = _registry("insid3lab.stages.clustering", "CLUSTERERS")
    if clusterers is not None and args.clustering != "auto" and args.clustering not in clusterers:
        raise CLIError(f"--clustering {args.clustering}: allowed auto, {', '.join(sorted(clusterers))}")
    refine = getattr(args, "refine", None)
    if refine is not None and refine != _DEFAULTS["refine"]:
        refiners = _registry("insid3lab.stages.refine", "REFINERS")
        allowed = sorted(refiners) if refiners is not None else [_DEFAULTS["refine"]]
        if refine not in allowed:
            raise CLIError(f"--refine {refine}: allowed {', '.join(allowed)}")


def pipeline_kwargs(args: argparse.Namespace, *, svd_components: int | None = None) -> dict[str, Any]:
    """Keyword arguments of :class:`~insid3lab.INSID3` from the shared options.

    ``svd_components``: the command's default r when ``--svd-components`` is not given.
    ``autocast_dtype`` and ``refine`` are passed only when asked for.
    """
    r = args.svd_components if args.svd_components is not None else (svd_components or _DEFAULTS["svd_components"])
    kw: dict[str, Any] = {
        "image_size": args.image_size, "svd_components": r, "tau": args.tau, "merge_threshold": args.merge_threshold,
        "clustering": args.clustering, "debias": not args.no_debias, "basis_cache": not args.no_cache,
        "basis_image": getattr(args, "basis_image", _DEFAULTS["basis_image"]),
    }  # fmt: skip
    if getattr(args, "autocast", None) not in (None, "float32"):
        kw["autocast_dtype"] = args.autocast
    if getattr(args, "refine", None) not in (None, _DEFAULTS["refine"]):
        kw["refine"] = args.refine
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
    """The :class:`~insid3lab.INSID3` the options describe (``status`` receives what is being done)."""
    import warnings

    import insid3lab

    check_choices(args)
    if status:
        status(f"loading the weights: {args.model}")
    with _loading_bars(shown=not getattr(args, "quiet", False)):
        backbone = load_model_source(args.model, device=device or args.device, dtype=args.dtype, arch=args.arch,
                                     rope_periods=args.rope_periods)  # fmt: skip
    kw = pipeline_kwargs(args, svd_components=svd_components)
    model = insid3lab.INSID3(backbone, **kw, progress=False)
    if warn is not None:
        explain_clamp(model, kw["svd_components"], warn)
        warnings.filterwarnings("ignore", message=r"svd_components=\d+ exceeds")
    return model
