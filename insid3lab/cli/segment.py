"""``insid3lab segment``: the reference concept in target images, one mask and one overlay per target.

With ``--label NAME`` (one per ``--ref``; shots with the same name pool as k-shot) or ``--labels``
(each ``--ref-mask`` read as a label map), every concept is segmented at once
(:meth:`insid3lab.ConceptSegmenter.labels_and_instances`: one encoding and one clustering per target) and
each target gets a label map, its instances and an overlay with a legend
(:func:`insid3lab.tasks.concept_files.label_files`).
"""

from __future__ import annotations

import argparse

from insid3lab.cli import options
from insid3lab.cli.console import Console
from insid3lab.cli.output import OutputFolder
from insid3lab.cli.targets import Batch, read_problem, reason, start_batch

__all__ = ["LABEL_SUFFIXES", "add_parser", "cmd_segment", "parse_labels"]

PRED, OVERLAY = ".pred.png", ".overlay.png"
#: The suffix of each file of a many-concept prediction (kinds of :data:`insid3lab.tasks.concept_files.LABEL_FILES`).
LABEL_SUFFIXES = {"labels": ".labels.png", "instances": ".instances.json", "overlay": OVERLAY}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "segment", help="segment the reference concept in target images",
        description="Writes OUT/NAME.pred.png (0/255, the target's size) and OUT/NAME.overlay.png per target, NAME "
        "being the target's path (extension kept) relative to the folder holding all targets: a.png -> a.png.pred.png. "
        "A folder target means its image files, sorted by name. Existing files are kept unless --overwrite; inputs "
        "are never replaced. A target that fails is reported and the others are written; the exit status is 1 "
        "when any failed. With --label (one per --ref) or --labels, every concept is segmented at once and each target "
        "gets NAME.labels.png (palette PNG, pixel value i = the i-th concept), NAME.instances.json (COCO-style RLE) "
        "and NAME.overlay.png (with a legend) instead.",
    )  # fmt: skip
    p.add_argument("--ref", action="append", required=True, metavar="IMG", help="reference image (repeat for k shots)")
    p.add_argument("--ref-mask", action="append", required=True, metavar="MASK",
                   help="its mask (foreground > 0), one per --ref")  # fmt: skip
    p.add_argument("--mask-value", type=int, default=None, help="select this label of a label-map mask")
    p.add_argument("--label", action="append", default=None, metavar="NAME",
                   help="the concept of each --ref (repeat once per --ref); shots with the same name pool as k-shot")  # fmt: skip
    p.add_argument("--labels", default=None, type=parse_labels, metavar="SPEC",
                   help="read each --ref-mask as a label map of several concepts: 'all' (every non-zero value, "
                        "named by it) or VALUE=NAME pairs such as 1=cat,2=dog")  # fmt: skip
    p.add_argument("targets", nargs="+", metavar="TARGET", help="target images or folders of images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (each is reported)")
    p.add_argument("--no-overlay", action="store_true", help="write masks only")
    p.add_argument(
        "--batch-size", type=int, default=None, help="targets per backbone pass (default 1 on CPU, 8 on GPU)"
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first target that fails")
    p.add_argument("--quiet", action="store_true", help="no status lines, no progress bar")
    options.add_image_arguments(p)
    options.add_model_arguments(p)
    options.add_hyperparameter_arguments(p)
    p.set_defaults(func=cmd_segment)
    return p


def _references(args, console: Console):
    """(image, mask) arrays of every shot, for the overlays."""
    from insid3lab.core.preprocess import mask_to_numpy, to_display_array

    refs = []
    for img, msk in zip(args.ref, args.ref_mask):
        problem = read_problem(img) or read_problem(msk)
        if problem:
            raise options.CLIError(f"{img if read_problem(img) else msk}: {problem}")
        refs.append((to_display_array(img), mask_to_numpy(msk, mask_value=args.mask_value).astype(bool)))
    return refs


def _write(out: OutputFolder, target: str, mask, refs, args, random_weights: bool) -> None:
    import numpy as np
    from PIL import Image

    arr = mask.cpu().numpy().astype(bool)
    out.write(target, PRED, lambda fh: Image.fromarray(arr.astype(np.uint8) * 255).save(fh, format="PNG"))
    if args.no_overlay:
        return
    from insid3lab.cli.figures import segment_overlay
    from insid3lab.core.preprocess import to_display_array

    image = to_display_array(target)
    if image.shape[:2] != arr.shape:  # the library's mask is at the displayed (EXIF-rotated) size
        image = np.asarray(Image.fromarray(image).resize(arr.shape[::-1]))
    fig = segment_overlay(refs, image, arr, title=str(target), random_weights=random_weights)
    out.write(target, OVERLAY, lambda fh: fig.savefig(fh, format="png", dpi=100))


def parse_labels(text: str):
    """``--labels``: ``all``, or ``VALUE=NAME`` pairs separated by commas -> ``"all"`` or ``{value: name}``."""
    if text.strip().lower() == "all":
        return "all"
    out: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition("=")
        try:
            v = int(value)
        except ValueError:
            v = 0
        if not sep or v == 0 or not name.strip():
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: write all, or VALUE=NAME pairs separated by commas with VALUE a non-zero integer "
                "of the label map (e.g. 1=cat,2=dog)"
            )
        if v in out:
            raise argparse.ArgumentTypeError(f"the value {v} is given twice")
        out[v] = name.strip()
    return out


def _check_shots(args) -> bool:
    """One line for --ref/--ref-mask/--label counts that do not match; True when concepts are named."""
    if len(args.ref) != len(args.ref_mask):
        raise options.CLIError(
            f"give one --ref-mask per --ref (got {len(args.ref)} --ref and {len(args.ref_mask)} --ref-mask)"
        )
    if args.label is not None and args.labels is not None:
        raise options.CLIError("give --label (one per --ref) or --labels (label-map masks), not both")
    if args.label is not None and len(args.label) != len(args.ref):
        raise options.CLIError(f"give one --label per --ref (got {len(args.ref)} --ref and {len(args.label)} --label)")
    if args.labels is not None and args.mask_value is not None:
        raise options.CLIError("--labels reads every value of the label map and --mask-value one of them: give one")
    return args.label is not None or args.labels is not None


#: The concepts a palette label map (``NAME.labels.png``) can hold: values 1..255.
MAX_CONCEPTS = 255


def _check_concepts(args) -> None:
    """Before any weights: every ``--labels`` value in every map, at most :data:`MAX_CONCEPTS` concepts."""
    from insid3lab.model.references import check_label, label_values

    if args.label is not None:
        names = list(dict.fromkeys(check_label(n, "--label") for n in args.label))
        where = "--label"
    else:
        names, where = [], "--labels"
        for m in args.ref_mask:
            try:
                pairs = label_values(m, args.labels, what=f"--ref-mask {m}", option="--labels")
            except ValueError as e:
                raise options.CLIError(str(e)) from None
            names += [n for _, n in pairs if n not in names]
            where = f"--labels {'all' if args.labels == 'all' else '...'} (--ref-mask {m})"
    if len(names) > MAX_CONCEPTS:
        raise options.CLIError(f"{where} gives {len(names)} concepts; a palette label map (NAME.labels.png) holds at "
                               f"most {MAX_CONCEPTS}: give fewer concepts")  # fmt: skip


def _set_references(model, args) -> None:
    for i, (img, msk) in enumerate(zip(args.ref, args.ref_mask)):
        if args.labels is not None:
            model.set_reference(img, msk, labels=args.labels)
        else:
            model.set_reference(img, msk, mask_value=args.mask_value, label=args.label[i] if args.label else None)


def cmd_segment(args) -> int:
    console = Console(quiet=args.quiet)
    concepts = _check_shots(args)
    for p in [*args.ref, *args.ref_mask]:
        problem = read_problem(p)
        if problem:
            raise options.CLIError(f"{p}: {problem}")
    started = start_batch(console, args.targets, fail_fast=args.fail_fast, folders=True)
    if started is None:
        return 1
    targets, batch = started
    if concepts:
        _check_concepts(args)
        kinds = [k for k in LABEL_SUFFIXES if k != "overlay" or not args.no_overlay]
        suffixes = tuple(LABEL_SUFFIXES[k] for k in kinds)
    else:
        suffixes = (PRED,) if args.no_overlay else (PRED, OVERLAY)
    out = OutputFolder(args.out, targets, suffixes, [*args.ref, *args.ref_mask, *targets],
                       overwrite=args.overwrite, report=console.note)  # fmt: skip
    out.check()
    refs = None if concepts else _references(args, console)
    model = options.build_pipeline(args, status=console.status, warn=console.warning)
    console.status(f"positional basis at {model.image_size} px")
    model.positional.svd()
    console.status(f"encoding {len(args.ref)} reference shot(s)")
    _set_references(model, args)
    if concepts:
        console.status(f"{len(model.labels)} concept(s): {', '.join(model.labels)}")
    try:
        _run(model, targets, out, refs, args, batch, concepts)
    except Batch.Stop:
        pass
    except KeyboardInterrupt:
        console.note(f"interrupted: {batch.done} target(s) written to {out.folder}")
        raise
    return batch.finish("label map(s)" if concepts else "mask(s)", out.folder)


def _write_labels(out: OutputFolder, target: str, model, args, random_weights: bool) -> None:
    """One pass over the target for every concept; its label map, instances and overlay through ``out``."""
    from insid3lab.cli.figures import RANDOM_WEIGHTS_NOTE
    from insid3lab.tasks.concept_files import label_files
    from insid3lab.tasks.concepts import ConceptSegmenter

    label_map, _, instances = ConceptSegmenter(model).labels_and_instances(target)
    kinds = [k for k in LABEL_SUFFIXES if k != "overlay" or not args.no_overlay]
    title = str(target) + (f"\n{RANDOM_WEIGHTS_NOTE}" if random_weights else "")
    files = label_files(label_map, instances, model.labels, image=target, kinds=kinds, title=title)
    for kind, data in files.items():
        out.write(target, LABEL_SUFFIXES[kind], lambda fh, data=data: fh.write(data))


def _run(model, targets, out, refs, args, batch: Batch, concepts: bool) -> None:
    """Segment in batches and write each target's files as soon as it is done (memory does not grow).

    Many concepts go one target at a time (one encoding and one clustering serve them all).
    """
    from tqdm.auto import tqdm

    bs = 1 if concepts else args.batch_size or (8 if model.device.type == "cuda" else 1)
    from insid3lab.core.weights import is_random

    random_weights = is_random(model.encoder)
    with tqdm(total=len(targets), desc="segment", unit="img", disable=args.quiet) as bar:
        for start in range(0, len(targets), bs):
            chunk = []
            for t in targets[start : start + bs]:
                problem = read_problem(t)
                if problem:
                    bar.update(1)
                    batch.fail(t, problem)
                else:
                    chunk.append(t)
            masks = (
                model.segment_many(chunk, on_error="skip", progress=False) if len(chunk) > 1 else [None] * len(chunk)
            )
            for t, mask in zip(chunk, masks):
                try:
                    if concepts:
                        _write_labels(out, t, model, args, random_weights)
                    else:
                        if mask is None:
                            mask = model.segment(t)  # alone, so that a failure names its own cause
                        _write(out, t, mask, refs, args, random_weights)
                    batch.done += 1
                except Exception as e:  # noqa: BLE001 - reported with the target, the others go on
                    out.discard(t)  # a target that failed keeps no file: its rerun needs no --overwrite
                    batch.fail(t, reason(e))
                finally:
                    bar.update(1)
