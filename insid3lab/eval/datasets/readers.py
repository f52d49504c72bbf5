"""Readers the benchmarks share: label maps, COCO-style polygons / RLE, and the pickled split files.

Split and annotation files in the authors' layouts are pickles (COCO-20i folds, LVIS-92i,
PACO-Part) or object arrays saved by numpy (PerMIS masks). They are read with a
restricted unpickler (:func:`load_pickle`, :func:`load_npy`) that builds only builtin
containers and scalars, ``collections`` dicts and numpy arrays / scalars / dtypes, and
refuses any other global (a pickle that would call a function, open a file, ...) with
one line naming the file, before anything is constructed.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile

import numpy as np
from PIL import Image, UnidentifiedImageError

from insid3lab.eval.datasets.base import BadSampleError

__all__ = [
    "SplitFileError",
    "decode_segmentation",
    "load_npy",
    "load_pickle",
    "read_label_map",
    "rle_counts",
    "rle_problem",
]


class SplitFileError(ValueError):
    """A split or annotation file cannot be read safely (garbage, truncated or holding a disallowed object)."""


_BUILTINS = frozenset(
    {
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "str",
        "bytes",
        "bytearray",
        "int",
        "float",
        "complex",
        "bool",
        "slice",
        "range",
    }
)
_NUMPY_MODULES = (
    "numpy",
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.core.numeric",
    "numpy._core.numeric",
)
_NUMPY_NAMES = frozenset({"ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer"})
_COLLECTIONS = frozenset({"OrderedDict", "defaultdict"})


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only the types split files hold; any other global raises :class:`pickle.UnpicklingError`."""

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module == "collections" and name in _COLLECTIONS:
            return super().find_class(module, name)
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            if module.startswith("numpy.core") and hasattr(np, "_core"):
                module = module.replace("numpy.core", "numpy._core", 1)  # files written by numpy 1 under numpy 2
            return super().find_class(module, name)
        if module.startswith("numpy") and module.endswith("dtypes") and name.endswith("DType"):
            return super().find_class(module, name)  # numpy 2's dtype classes
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")


def _unpickle(fh, path) -> object:
    try:
        return _RestrictedUnpickler(fh).load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refusing"):
            raise SplitFileError(
                f"{path}: {e}; split files may hold only builtin containers, scalars and numpy arrays"
            ) from None
        raise SplitFileError(f"{path}: truncated or not a pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, ImportError) as e:
        raise SplitFileError(f"{path}: truncated or not a pickle ({type(e).__name__}: {e})") from None


def load_pickle(path: str | os.PathLike) -> object:
    """The object of a pickled split / annotation file, built with the restricted unpickler.

    Raises :class:`FileNotFoundError` when it is missing and :class:`SplitFileError` (one line
    naming the file) when it is garbage, truncated or holds anything but the allowed types.
    """
    with open(path, "rb") as fh:
        return _unpickle(fh, path)


def _read_npy(fh, path) -> np.ndarray:
    try:
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported; save it with numpy.save")
        shape, fortran, dtype = read_header[version](fh)
    except (ValueError, EOFError, SyntaxError) as e:
        raise SplitFileError(f"{path}: not a numpy .npy file ({e})") from None
    if dtype.hasobject:
        arr = _unpickle(fh, path)
        if not isinstance(arr, np.ndarray):
            raise SplitFileError(f"{path}: holds a {type(arr).__name__}, not an array")
        return arr
    count = int(np.prod(shape))
    data = fh.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise SplitFileError(f"{path}: truncated ({len(data)} of {count * dtype.itemsize} data bytes)")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def load_npy(path: str | os.PathLike) -> np.ndarray | dict[str, np.ndarray]:
    """A ``.npy`` array, or the arrays of a ``.npz`` archive by name; object arrays through the restricted unpickler.

    This is ``numpy.load(path, allow_pickle=True)`` without running arbitrary code.
    """
    with open(path, "rb") as fh:
        magic = fh.read(6)
        fh.seek(0)
        if magic.startswith(b"PK"):
            try:
                with zipfile.ZipFile(fh) as zf:
                    out = {}
                    for member in sorted(zf.namelist()):
                        key = member.removesuffix(".npy")
                        out[key] = _read_npy(io.BytesIO(zf.read(member)), f"{path}[{member}]")
                    return out
            except (zipfile.BadZipFile, EOFError, OSError) as e:
                raise SplitFileError(f"{path}: not a readable .npz archive ({e})") from None
        return _read_npy(fh, path)


def read_label_map(path: str | os.PathLike, *, gray: bool = False) -> np.ndarray:
    """(H, W) integer array of a mask file: palette indices / gray levels (``gray``: convert to L)."""
    try:
        with Image.open(path) as im:
            if gray:
                im = im.convert("L")
            arr = np.asarray(im).copy()
    except FileNotFoundError as e:
        raise BadSampleError(path, "mask file does not exist") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(path, f"cannot be read as a mask ({type(e).__name__}: {e})") from e
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and not (
            np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            raise BadSampleError(path, f"expected a single-channel label map; got a colour image of shape {arr.shape}")
        arr = arr[..., 0]
    return arr


def _coco_mask_api():
    try:
        import pycocotools.mask as mask_api
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pycocotools is needed to decode this benchmark's polygon / RLE annotations: pip install pycocotools"
        ) from e
    return mask_api


def rle_counts(counts: str | bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, checked).

    Each run is written in 5-bit groups (characters ``'0'`` + 0..63, bit 5 set while more groups
    follow, bit 4 of the last the sign), from the third run on as the difference to the run two
    before. Raises ``ValueError`` for a string that is not one: a character out of range, a run
    cut off at the end, or a negative run length.
    """
    text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
    out: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("the string ends inside a run length")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[p]!r} at {p} is not one of an RLE ('0' to 'o')")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if x < 0:
            raise ValueError(f"run {len(out)} has the negative length {x}")
        out.append(x)
    return out


def rle_problem(rle: dict, height: int, width: int) -> str | None:
    """Why an RLE object cannot be decoded into a (height, width) mask, or None.

    Its ``size`` must be ``[height, width]`` and its ``counts`` (a compressed string or an
    uncompressed list) non-negative run lengths summing to exactly ``height * width``: shorter
    counts make pycocotools read past their end (a different mask on every read), longer ones
    are refused by it without a word of where.
    """
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        return f"RLE size is {size!r}; expected [height, width]"
    if list(size) != [height, width]:
        return f"RLE size is {size[0]}x{size[1]} (height x width) but the image is {height}x{width}"
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            return "uncompressed RLE counts must be integers >= 0"
        runs, kind = counts, "uncompressed"
    elif isinstance(counts, (str, bytes)) and counts:
        try:
            runs, kind = rle_counts(counts), "compressed"
        except ValueError as e:
            return f"RLE counts are not a compressed RLE ({e})"
    else:
        return "RLE counts must be a non-empty string (compressed) or a list of integers"
    total = sum(runs)
    if total != height * width:
        return f"{kind} RLE counts sum to {total}, not {height}*{width} = {height * width} pixels"
    return None


def decode_segmentation(segm, height: int, width: int, *, where: str | None = None) -> np.ndarray:
    """A COCO-style segmentation as an (height, width) bool mask (see :func:`_decode_segmentation`).

    Every RLE is checked first (:func:`rle_problem`, its size against ``height`` x ``width``): one
    that cannot be decoded raises :class:`BadSampleError` naming ``where`` (the file and entry it
    comes from).
    """
    rles = [segm] if isinstance(segm, dict) else segm if isinstance(segm, (list, tuple)) else []
    for s in rles:
        if isinstance(s, dict):
            problem = rle_problem(s, int(height), int(width))
            if problem is not None:
                raise BadSampleError(where or "segmentation", problem)
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips numpy 2's __array__(copy=...) deprecation; harmless
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return _decode_segmentation(segm, height, width)


def _decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """A COCO-style segmentation as an (height, width) bool mask.

    segm: a list of polygons ``[x0, y0, x1, y1, ...]``, an RLE dict (``size``, ``counts``
    as a compressed string/bytes or an uncompressed list), a list of RLE dicts, or an
    (H, W) array. Polygons and RLE are decoded with pycocotools, as the benchmarks' own
    evaluation code does.
    """
    if isinstance(segm, np.ndarray):
        if segm.ndim != 2:
            raise ValueError(f"segmentation array must be 2-D; got shape {segm.shape}")
        return segm > 0
    mask_api = _coco_mask_api()
    if isinstance(segm, dict):
        segm = [segm]
    if isinstance(segm, (list, tuple)):
        if len(segm) == 0:
            return np.zeros((height, width), dtype=bool)
        if all(isinstance(s, dict) for s in segm):
            rles = []
            for s in segm:
                counts = s["counts"]
                h, w = (int(v) for v in s["size"])
                if isinstance(counts, list):
                    rles.extend(mask_api.frPyObjects([{"size": [h, w], "counts": counts}], h, w))
                else:
                    rles.append(
                        {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
                    )
            return mask_api.decode(rles).sum(axis=2) > 0
        polys = [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in segm]
        polys = [p for p in polys if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = mask_api.merge(mask_api.frPyObjects(polys, height, width))
        return mask_api.decode(rle).astype(bool)
    raise ValueError(f"unsupported segmentation of type {type(segm).__name__}; expected polygons, RLE or an array")
