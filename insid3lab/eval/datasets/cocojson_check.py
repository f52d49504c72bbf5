"""Checks of a COCO-format annotations file against its image folder.

:func:`check_coco_json` lists every problem it finds, each a :class:`Problem` with a
``kind`` (one of :data:`PROBLEM_KINDS`), a location (the image file or the annotation id)
and a one-line message; :func:`format_report` prints them for the command line
(``insid3lab data check``). The checks are cheap (image headers are read, masks are not
decoded), so :class:`insid3lab.eval.datasets.cocojson.CocoJsonDataset` runs them on construction.

Image sizes are compared in stored pixels (EXIF orientation not applied), as the datasets
read images. Polygon coordinates may lie up to :data:`POLYGON_TOLERANCE` pixels outside
the image (rounding in annotation tools); farther out is a problem.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from insid3lab.core.imageio import MAX_PIXELS_ENV, ImageTooLargeError, image_size
from insid3lab.eval.datasets.base import leaves_folder
from insid3lab.eval.datasets.readers import rle_problem

__all__ = [
    "NON_BLOCKING_KINDS",
    "POLYGON_TOLERANCE",
    "PROBLEM_KINDS",
    "Problem",
    "check_coco_json",
    "check_document",
    "format_report",
    "read_coco_json",
    "resolve_image",
]

#: Every kind of problem, with what it means.
PROBLEM_KINDS: dict[str, str] = {
    "not_coco": "the file is not COCO JSON (unreadable, or 'images'/'annotations'/'categories' missing or not lists)",
    "missing_folder": "the image folder does not exist (the images are not checked one by one)",
    "bad_entry": "an image, annotation or category entry lacks a field or has one of the wrong type",
    "duplicate_image_id": "two images share an id",
    "duplicate_annotation_id": "two annotations share an id",
    "duplicate_category_id": "two categories share an id",
    "duplicate_category_name": "two categories share a name (select them by id; results name them 'NAME (id N)')",
    "path_outside": "an image's file_name is absolute or climbs out of the image folder with '..'",
    "missing_image": "an image listed in the file is not in the image folder",
    "unreadable_image": "an image file cannot be opened as an image",
    "image_too_large": "an image has more pixels than the pixel limit (a guard against decompression bombs)",
    "image_size": "an image's size on disk differs from the file's width/height",
    "unknown_image": "an annotation refers to an image id that is not listed",
    "unknown_category": "an annotation refers to a category id that is not listed",
    "polygon_outside": "a polygon has coordinates outside its image",
    "polygon_too_few_points": "a polygon has fewer than 3 points (or an odd number of coordinates)",
    "rle_size": "an RLE's size differs from its image's height/width",
    "bad_segmentation": "a segmentation is neither polygons nor RLE, or its RLE counts do not cover the image",
    "empty_category": "a category has no (non-crowd) instance",
}

#: Kinds that do not make any image unusable: a dataset reports them instead of stopping.
NON_BLOCKING_KINDS = frozenset({"empty_category", "duplicate_annotation_id", "duplicate_category_name"})

#: How far (pixels) polygon coordinates may lie outside [0, width] x [0, height].
POLYGON_TOLERANCE = 1.0


@dataclass(frozen=True)
class Problem:
    """One problem of an annotations file.

    kind: one of :data:`PROBLEM_KINDS`.
    location: where it is, e.g. ``"image 'a.jpg'"`` or ``"annotation 17 (image 'a.jpg')"``.
    message: one line saying what is wrong.
    image: the file name of the image it makes unusable, or None.
    annotation: the annotation id it concerns, or None.
    """

    kind: str
    location: str
    message: str
    image: str | None = None
    annotation: Any = None

    @property
    def blocking(self) -> bool:
        """Whether it stops an evaluation (see :data:`NON_BLOCKING_KINDS`)."""
        return self.kind not in NON_BLOCKING_KINDS

    @property
    def line(self) -> str:
        """``location: message`` on one line."""
        return f"{self.location}: {self.message}"

    def __str__(self) -> str:
        return self.line


def resolve_image(images_dir: str | os.PathLike, file_name: str) -> Path:
    """The path of an image named ``file_name`` in the file: ``images_dir/file_name``, else ``images_dir/<base name>``.

    The fallback covers exports whose ``file_name`` carries a folder of the annotation tool
    (Label Studio writes ``images/NAME`` or an upload path). A name that is absolute or climbs out
    with ``..`` (:func:`~insid3lab.eval.datasets.base.leaves_folder`) raises ``ValueError``: no file
    outside ``images_dir`` is ever opened.
    """
    if leaves_folder(file_name):
        raise ValueError(f"image file_name {file_name!r} leaves the image folder {str(images_dir)!r}")
    root = Path(images_dir)
    direct = root / file_name
    if direct.exists():
        return direct
    base = root / Path(str(file_name).replace("\\", "/")).name
    return base if base.exists() else direct


def read_coco_json(path: str | os.PathLike) -> tuple[Any, Problem | None]:
    """The parsed JSON of ``path`` and None, or None and a ``not_coco`` problem saying why it cannot be read."""
    where = f"annotations {str(path)!r}"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f), None
    except FileNotFoundError:
        return None, Problem("not_coco", where, "file does not exist")
    except (OSError, UnicodeDecodeError) as e:
        return None, Problem("not_coco", where, f"cannot be read ({type(e).__name__}: {e})")
    except json.JSONDecodeError as e:
        return None, Problem("not_coco", where, f"is not valid JSON ({e})")


def check_coco_json(annotations: str | os.PathLike | dict, images_dir: str | os.PathLike) -> list[Problem]:
    """Every problem of a COCO-format annotations file (a path or its parsed dict) against ``images_dir``.

    Returns an empty list when the file is usable. See :data:`PROBLEM_KINDS` for what is checked.
    """
    source = "<dict>"
    if not isinstance(annotations, dict):
        source = str(annotations)
        annotations, problem = read_coco_json(annotations)
        if problem is not None:
            return [problem]
    return check_document(annotations, images_dir, source=source)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _hashable_id(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, str)


def check_document(doc: Any, images_dir: str | os.PathLike, *, source: str = "<dict>") -> list[Problem]:
    """The problems of a parsed COCO document ``doc`` (see :func:`check_coco_json`)."""
    where = f"annotations {source!r}"
    if not isinstance(doc, dict):
        return [
            Problem(
                "not_coco",
                where,
                f"top level is a JSON {type(doc).__name__}, not an object with "
                "'images', 'annotations' and 'categories'",
            )
        ]
    structural = []
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            structural.append(Problem("not_coco", where, f"has no {key!r} list (keys: {sorted(doc)[:8]})"))
        elif not isinstance(doc[key], list):
            structural.append(Problem("not_coco", where, f"{key!r} is a {type(doc[key]).__name__}, not a list"))
    if structural:
        return structural

    problems: list[Problem] = []
    reported: set = set()  # ids of image entries already reported as unusable
    folder = Path(images_dir)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        problems.append(Problem("missing_folder", f"images {str(folder)!r}", f"{what}; no image could be checked"))
    images = _check_images(doc["images"], folder, problems, reported, on_disk=folder.is_dir())
    categories = _check_categories(doc["categories"], problems)
    instances: Counter = Counter()
    seen_ann: dict = {}
    for k, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict) or not _hashable_id(a.get("id")):
            problems.append(Problem("bad_entry", f"annotation #{k}", "is not an object with an integer 'id'"))
            continue
        aid = a["id"]
        if aid in seen_ann:
            problems.append(
                Problem(
                    "duplicate_annotation_id",
                    f"annotation {aid}",
                    f"id also used by annotation #{seen_ann[aid]} of the list",
                    annotation=aid,
                )
            )
            continue
        seen_ann[aid] = k
        if a.get("image_id") not in reported or a.get("image_id") in images:
            _check_annotation(a, images, categories, problems, instances)
    for cid, name in categories.items():
        if instances[cid] == 0:
            problems.append(Problem("empty_category", f"category {cid} ({name!r})", "has no non-crowd instance"))
    return problems


def _check_images(entries: list, images_dir: Path, problems: list[Problem], reported: set, *,
                  on_disk: bool = True) -> dict:  # fmt: skip
    """id -> (file_name, height, width) of the well-formed image entries with a unique id; problems appended.

    ``reported`` receives the ids of malformed or duplicated entries (their annotations are not checked).
    ``on_disk``: look for the files (False when the folder itself is missing: one problem says so).
    """
    images: dict = {}
    duplicated: set = set()
    for k, im in enumerate(entries):
        ok = (
            isinstance(im, dict)
            and _hashable_id(im.get("id"))
            and isinstance(im.get("file_name"), str)
            and isinstance(im.get("width"), int)
            and isinstance(im.get("height"), int)
            and im["width"] > 0
            and im["height"] > 0
        )
        if not ok:
            problems.append(
                Problem(
                    "bad_entry",
                    f"image #{k}",
                    "needs 'id', 'file_name' (string), 'width' and 'height' (positive integers)",
                    image=im.get("file_name") if isinstance(im, dict) else None,
                )
            )
            if isinstance(im, dict) and _hashable_id(im.get("id")):
                reported.add(im["id"])
            continue
        iid, name, h, w = im["id"], im["file_name"], im["height"], im["width"]
        if iid in images or iid in duplicated:
            first = images.pop(iid, None)
            duplicated.add(iid)
            reported.add(iid)
            if first is not None:
                problems.append(
                    Problem(
                        "duplicate_image_id",
                        f"image {first[0]!r}",
                        f"id {iid} is also used by {name!r}",
                        image=first[0],
                    )
                )
            problems.append(
                Problem("duplicate_image_id", f"image {name!r}", f"id {iid} is used by another image too", image=name)
            )
            continue
        images[iid] = (name, h, w)
        if leaves_folder(name):
            problems.append(Problem("path_outside", f"image {name!r}", f"leaves the image folder {str(images_dir)!r} "
                                    "(absolute, or '..'); give a name relative to it", image=name))  # fmt: skip
            continue
        if not on_disk:
            continue
        path = resolve_image(images_dir, name)
        if not path.is_file():
            problems.append(
                Problem("missing_image", f"image {name!r}", f"not found in {str(images_dir)!r}", image=name)
            )
            continue
        try:
            dw, dh = image_size(path)
        except ImageTooLargeError as e:
            problems.append(
                Problem(
                    "image_too_large",
                    f"image {name!r}",
                    f"has {e.pixels:,} pixels, more than the pixel limit of {e.limit:,}; if you trust the file, raise "
                    f"the limit with --max-image-pixels N or {MAX_PIXELS_ENV}=N (0: no limit)",
                    image=name,
                )
            )
            continue
        except (OSError, ValueError):
            why = _pil_reason(path)
            problems.append(Problem("unreadable_image", f"image {name!r}", f"cannot be opened ({why})", image=name))
            continue
        if (dw, dh) != (w, h):
            problems.append(
                Problem(
                    "image_size",
                    f"image {name!r}",
                    f"is {dw}x{dh} (width x height) on disk but {w}x{h} in the annotations",
                    image=name,
                )
            )
    return images


def _pil_reason(path: Path) -> str:
    """Why PIL cannot open ``path``, in its own words (``TypeName: message``)."""
    try:
        with Image.open(path) as pil:
            pil.size  # noqa: B018 - the header is parsed
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"{type(e).__name__}: {e}"
    return "not an image"


def _check_categories(entries: list, problems: list[Problem]) -> dict:
    """id -> name of the category entries; problems appended."""
    cats: dict = {}
    named: dict = {}
    for k, c in enumerate(entries):
        if not (isinstance(c, dict) and _hashable_id(c.get("id")) and isinstance(c.get("name"), str)):
            problems.append(Problem("bad_entry", f"category #{k}", "needs an integer 'id' and a string 'name'"))
            continue
        if c["id"] in cats:
            problems.append(
                Problem(
                    "duplicate_category_id",
                    f"category {c['id']} ({c['name']!r})",
                    f"id also used by category {cats[c['id']]!r}",
                )
            )
            continue
        cats[c["id"]] = c["name"]
        if c["name"] in named:
            problems.append(Problem("duplicate_category_name", f"category {c['id']} ({c['name']!r})",
                                    f"is also the name of category {named[c['name']]}; select it by id "
                                    f"(results call it '{c['name']} (id {c['id']})')"))  # fmt: skip
        else:
            named[c["name"]] = c["id"]
    return cats


def _check_annotation(a: dict, images: dict, categories: dict, problems: list[Problem], instances: Counter) -> None:
    aid = a["id"]
    iid, cid = a.get("image_id"), a.get("category_id")
    if iid not in images:
        problems.append(
            Problem("unknown_image", f"annotation {aid}", f"image_id {iid!r} is not among the images", annotation=aid)
        )
        return
    name, h, w = images[iid]
    loc = f"annotation {aid} (image {name!r})"

    def add(kind: str, message: str) -> None:
        problems.append(Problem(kind, loc, message, image=name, annotation=aid))

    if cid not in categories:
        add("unknown_category", f"category_id {cid!r} is not among the categories")
        return
    crowd = a.get("iscrowd", 0)
    if crowd not in (0, 1, True, False):
        add("bad_entry", f"iscrowd is {crowd!r}; expected 0 or 1")
        return
    segm = a.get("segmentation")
    if segm is None:
        add("bad_entry", "has no 'segmentation'")
        return
    if _check_segmentation(segm, h, w, add) and not crowd:
        instances[cid] += 1


def _check_segmentation(segm, h: int, w: int, add) -> bool:
    """Whether ``segm`` is a well-formed polygon list / RLE for an (h, w) image; problems reported through ``add``."""
    if isinstance(segm, dict):
        return _check_rle(segm, h, w, add)
    if not isinstance(segm, list) or not segm:
        add(
            "bad_segmentation",
            f"segmentation is {type(segm).__name__ if segm != [] else 'an empty list'}; "
            "expected a list of polygons or an RLE object",
        )
        return False
    if all(isinstance(s, dict) for s in segm):
        checked = [_check_rle(s, h, w, add) for s in segm]  # every RLE reported, not only the first bad one
        return all(checked)
    ok = True
    for j, poly in enumerate(segm):
        if not isinstance(poly, list) or not all(_number(v) for v in poly):
            add("bad_segmentation", f"polygon {j} is not a flat list of numbers [x0, y0, x1, y1, ...]")
            ok = False
            continue
        if len(poly) < 6 or len(poly) % 2:
            add(
                "polygon_too_few_points",
                f"polygon {j} has {len(poly)} coordinates; needs an even number >= 6 (3 points)",
            )
            ok = False
            continue
        xs, ys = poly[0::2], poly[1::2]
        t = POLYGON_TOLERANCE
        if min(xs) < -t or max(xs) > w + t or min(ys) < -t or max(ys) > h + t:
            add(
                "polygon_outside",
                f"polygon {j} spans x {min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g}; the image is {w}x{h}",
            )
            ok = False
    return ok


def _check_rle(rle: dict, h: int, w: int, add) -> bool:
    problem = rle_problem(rle, h, w)
    if problem is None:
        return True
    size = rle.get("size")
    well_formed = isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)
    add("rle_size" if well_formed and list(size) != [h, w] else "bad_segmentation", problem)
    return False


def format_report(problems: list[Problem], *, source: str | None = None) -> str:
    """A report for the command line: one line per problem, then the count of each kind."""
    head = f"{source}: " if source else ""
    if not problems:
        return f"{head}no problems found"
    width = max(len(p.kind) for p in problems)
    lines = [f"{head}{len(problems)} problem(s)"]
    lines += [f"  {p.kind:<{width}}  {p.line}" for p in problems]
    counts = Counter(p.kind for p in problems)
    lines.append("by kind: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return "\n".join(lines)
