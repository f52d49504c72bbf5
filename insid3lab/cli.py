"""Command line: ``insid3lab segment | match | eval | bench | samples | cache``.

Every subcommand ends with exit status 0 on success; on an error it prints one
line (``insid3lab: error: ...``) to stderr and exits with status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "load_model_source", "add_model_arguments", "add_hyperparameter_arguments"]

DEFAULT_MODEL = "facebook/dinov3-vitl16-pretrain-lvd1689m"


class CLIError(Exception):
    """An error reported as one line."""


def load_model_source(spec: str, *, device: str = "auto", dtype: str | None = None, arch: str | None = None,
                      rope_periods: str = "auto"):
    """A backbone from a command-line ``--model`` value.

    ``random:ARCH[:SEED]`` builds an architecture with random weights (``random:tiny``,
    ``random:vitl16``): masks are meaningless, but timing and the mechanics are real.
    Anything else goes to :func:`insid3lab.load_backbone`.
    """
    from .backbone import load_backbone, random_backbone

    if spec.startswith("random:"):
        parts = spec.split(":")
        arch_name = parts[1] if len(parts) > 1 and parts[1] else "tiny"
        seed = int(parts[2]) if len(parts) > 2 else 0
        return random_backbone(arch_name, seed=seed, device=device, dtype=dtype)
    return load_backbone(spec, arch=arch, device=device, dtype=dtype, rope_periods=rope_periods)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--arch``, ``--device``, ``--dtype``, ``--rope-periods``."""
    p.add_argument("--model", default=os.environ.get("INSID3LAB_WEIGHTS", DEFAULT_MODEL),
                   help="DINOv3 weights: a hub id, a transformers folder, a Meta .pth/.safetensors file, or "
                        "random:ARCH for random weights (default: $INSID3LAB_WEIGHTS or %(default)s)")
    p.add_argument("--arch", default=None, help="architecture override for Meta files (vits16, vitb16, vitl16, ...)")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="float32", help="backbone weights dtype: float32, bfloat16, float16")
    p.add_argument("--rope-periods", default="auto", choices=["auto", "checkpoint", "bf16", "fp32"],
                   help="RoPE periods (see load_backbone)")


def add_hyperparameter_arguments(p: argparse.ArgumentParser, *, svd_default: int = 500) -> None:
    """``--image-size``, ``--svd-components``, ``--tau``, ``--merge-threshold``, ``--clustering``, ``--no-cache``."""
    p.add_argument("--image-size", type=int, default=1024, help="network input side, a multiple of 16 (default 1024)")
    p.add_argument("--svd-components", type=int, default=svd_default, help="positional subspace size (default %(default)s)")
    p.add_argument("--tau", type=float, default=0.6, help="clustering similarity threshold τ in (0, 1] (default 0.6)")
    p.add_argument("--merge-threshold", type=float, default=0.2, help="aggregation threshold in [-1, 1] (default 0.2)")
    p.add_argument("--clustering", default="auto", choices=["auto", "sklearn", "scipy", "torch"])
    p.add_argument("--no-cache", action="store_true", help="do not read or write the positional-basis disk cache")


def _build_pipeline(args, *, svd_components=None):
    from .pipeline import INSID3

    backbone = load_model_source(args.model, device=args.device, dtype=args.dtype, arch=args.arch,
                                 rope_periods=args.rope_periods)
    return INSID3(
        backbone, image_size=args.image_size,
        svd_components=args.svd_components if svd_components is None else svd_components,
        tau=args.tau, merge_threshold=args.merge_threshold, clustering=args.clustering,
        basis_cache=not args.no_cache,
    )


def _stem_names(paths: list[str]) -> list[str]:
    """Output name per target: the file stem, made unique when two targets share one."""
    stems = [Path(p).stem for p in paths]
    seen: dict[str, int] = {}
    out = []
    for s in stems:
        if stems.count(s) > 1:
            seen[s] = seen.get(s, 0) + 1
            out.append(f"{s}-{seen[s]}")
        else:
            out.append(s)
    return out


def cmd_segment(args) -> int:
    import numpy as np
    from PIL import Image

    from .pipeline import SegmentManyError

    if len(args.ref) != len(args.ref_mask):
        raise CLIError(f"give one --ref-mask per --ref (got {len(args.ref)} --ref and {len(args.ref_mask)} --ref-mask)")
    for p in [*args.ref, *args.ref_mask, *args.targets]:
        if not Path(p).is_file():
            raise CLIError(f"{p}: no such file")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = _build_pipeline(args)
    for img, msk in zip(args.ref, args.ref_mask):
        model.set_reference(img, msk, mask_value=args.mask_value)
    names = _stem_names(args.targets)
    try:
        masks = model.segment_many(args.targets, progress=not args.quiet)
        failed = None
    except SegmentManyError as e:
        masks, failed = e.masks, e
    from .preprocess import mask_to_numpy, to_pil_rgb

    written = 0
    for target, name, mask in zip(args.targets, names, masks):
        if mask is None:
            continue
        arr = mask.cpu().numpy()
        Image.fromarray((arr * 255).astype(np.uint8)).save(out / f"{name}_mask.png")
        if not args.no_overlay:
            from .viz import reference_target_overlay

            ref0 = to_pil_rgb(args.ref[0])
            fig = reference_target_overlay(
                ref0, mask_to_numpy(args.ref_mask[0], mask_value=args.mask_value), to_pil_rgb(target), arr,
                title=f"{Path(target).name}",
            )
            fig.savefig(out / f"{name}_overlay.png", dpi=100)
            import matplotlib.pyplot as plt

            plt.close(fig)
        written += 1
    if failed is not None:
        raise CLIError(f"{failed} — {written} mask(s) written to {out}")
    if not args.quiet:
        print(f"wrote {written} mask(s) to {out}", file=sys.stderr)
    return 0


def _read_points(path: str):
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise CLIError(f"{path}: not valid JSON ({e})") from None
    pts = data.get("points") if isinstance(data, dict) else data
    ok = isinstance(pts, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pts) and pts
    if not ok:
        raise CLIError(f'{path}: expected {{"points": [[x, y], ...]}} or [[x, y], ...] with at least one point')
    return [[float(x), float(y)] for x, y in pts]


def cmd_match(args) -> int:
    pts = _read_points(args.points)
    for p in [args.ref, *args.targets]:
        if not Path(p).is_file():
            raise CLIError(f"{p}: no such file")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = _build_pipeline(args)
    model.set_reference(args.ref)
    from tqdm.auto import tqdm

    from .preprocess import to_pil_rgb

    for target, name in tqdm(list(zip(args.targets, _stem_names(args.targets))), desc="match", disable=args.quiet):
        matches = model.match(pts, target, debiased=not args.no_debias).cpu().tolist()
        record = {"reference": str(args.ref), "target": str(target), "points": pts, "matches": matches,
                  "debiased": not args.no_debias, "settings": model.settings()}
        (out / f"{name}_matches.json").write_text(json.dumps(record, indent=2) + "\n")
        if not args.no_overlay:
            import matplotlib.pyplot as plt

            from .viz import keypoint_matches

            fig = keypoint_matches(to_pil_rgb(args.ref), pts, to_pil_rgb(target), matches, title=Path(target).name)
            fig.savefig(out / f"{name}_matches.png", dpi=100)
            plt.close(fig)
    return 0


def cmd_samples(args) -> int:
    from .samples import write_samples

    paths = write_samples(args.out)
    for p in paths:
        print(p)
    return 0


def cmd_cache(args) -> int:
    from . import cache

    if args.action == "clear":
        n = cache.clear_cache()
        print(f"removed {n} cached basis file(s) from {cache.cache_dir()}")
    else:
        d = cache.cache_dir() / "basis"
        files = sorted(d.glob("*.pt")) if d.is_dir() else []
        print(f"{cache.cache_dir()}: {len(files)} cached basis file(s), {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .bench import add_bench_parser
    from .eval.cli import add_eval_parser

    parser = argparse.ArgumentParser(
        prog="insid3lab",
        description="Training-free one-shot in-context segmentation with a frozen DINOv3 backbone (INSID3).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("segment", help="segment the reference concept in target images",
                       description="Writes <target>_mask.png (0/255, original size) and <target>_overlay.png per target.")
    add_model_arguments(p)
    p.add_argument("--ref", action="append", required=True, metavar="IMG", help="reference image (repeat for k shots)")
    p.add_argument("--ref-mask", action="append", required=True, metavar="MASK", help="its mask (foreground > 0), one per --ref")
    p.add_argument("--mask-value", type=int, default=None, help="select this label of a label-map mask")
    p.add_argument("targets", nargs="+", metavar="TARGET", help="target images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--no-overlay", action="store_true", help="write masks only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_hyperparameter_arguments(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("match", help="keypoint correspondence from a reference to target images",
                       description="Writes <target>_matches.json and <target>_matches.png per target.")
    add_model_arguments(p)
    p.add_argument("--ref", required=True, metavar="IMG", help="reference image")
    p.add_argument("--points", required=True, metavar="JSON", help='reference keypoints: {"points": [[x, y], ...]} in pixels')
    p.add_argument("targets", nargs="+", metavar="TARGET", help="target images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--no-debias", action="store_true", help="match with the original (not debiased) features")
    p.add_argument("--no-overlay", action="store_true", help="write JSON only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_hyperparameter_arguments(p, svd_default=20)
    p.set_defaults(func=cmd_match)

    add_eval_parser(sub)
    add_bench_parser(sub)

    p = sub.add_parser("samples", help="write sample images (reference, mask, targets) to a folder")
    p.add_argument("out", metavar="DIR")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("cache", help="inspect or clear the positional-basis cache")
    p.add_argument("action", choices=["info", "clear"])
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``insid3lab`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("insid3lab: interrupted", file=sys.stderr)
        return 130
    except (CLIError, OSError, ValueError, RuntimeError, TypeError) as e:
        print(f"insid3lab: error: {str(e).strip()}", file=sys.stderr)
        if os.environ.get("INSID3LAB_DEBUG"):
            raise
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
