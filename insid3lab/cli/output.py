"""Output files of ``segment`` and ``match`` (and the safe write ``track`` shares): names unique by construction,
never replacing an input.

Naming rule: a target's outputs are named after its path relative to the folder that holds
all of the call's targets, with a suffix appended to the whole file name (extension kept)::

    segment a.png b.jpg --out o         ->  o/a.png.pred.png  o/a.png.overlay.png  o/b.jpg.pred.png ...
    segment x/a.png y/a.png a-1.png     ->  o/x/a.png.pred.png  o/y/a.png.pred.png  o/a-1.png.pred.png
    segment --label cat ... a.png       ->  o/a.png.labels.png  o/a.png.instances.json  o/a.png.overlay.png

Distinct targets have distinct relative paths, and the suffixes differ from each other, so two
outputs of one call never share a name. An output that would replace an input of the call is
refused even with ``--overwrite``; an existing file is replaced only with ``--overwrite`` (and
each replacement is reported). The folder is checked for writing before any work starts, and
every file is written to a temporary name first and renamed
(:func:`insid3lab.core.files.write_atomic`), so an interrupted run leaves only complete files; a
target whose files could not all be written (a full disk) keeps none of them, so that a rerun
writes it without ``--overwrite``. Commands with fixed output names (``report``, ``compare``,
``samples``) follow the same rule through :func:`check_outputs`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from insid3lab.cli.options import CLIError
from insid3lab.core import files

__all__ = ["OUTPUT_SUFFIXES", "OutputFolder", "check_outputs", "expand_targets", "relative_names", "write_atomic"]

#: Every suffix the command line appends to a target's name.
OUTPUT_SUFFIXES = (".pred.png", ".overlay.png", ".labels.png", ".instances.json", ".matches.json", ".matches.png")


def _image_extensions() -> set[str]:
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def expand_targets(targets: Sequence[str], *, folders: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Targets as given, a folder replaced by its image files (sorted by name) when ``folders``.

    Within a folder, hidden files and the command line's own outputs (:data:`OUTPUT_SUFFIXES`)
    are skipped. The same file given twice is kept once.

    Returns:
        (paths, problems): the paths to process in order, and (target, reason) for those that
        cannot be (missing, a folder where folders are not accepted, an empty folder).
    """
    paths, problems, seen = [], [], set()
    exts = None
    for t in targets:
        p = Path(t)
        if p.is_dir():
            if not folders:
                problems.append((t, "is a folder; give image files"))
                continue
            exts = exts or _image_extensions()
            found = [str(f) for f in sorted(p.iterdir(), key=lambda f: f.name)
                     if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in exts
                     and not f.name.endswith(OUTPUT_SUFFIXES)]  # fmt: skip
            if not found:
                problems.append((t, "no image files in this folder"))
            candidates = found
        elif not p.exists():
            problems.append((t, "no such file"))
            continue
        else:
            candidates = [t]
        for c in candidates:
            key = os.path.abspath(c)
            if key not in seen:
                seen.add(key)
                paths.append(c)
    return paths, problems


def relative_names(paths: Sequence[str]) -> list[str]:
    """Each path relative to the deepest folder holding them all: distinct paths give distinct names."""
    if not paths:
        return []
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    return [os.path.relpath(a, root) for a in absolute]


class OutputFolder:
    """The output folder of one call: planned names, checks before the work, safe writes.

    Args:
        folder: ``--out``.
        targets: the call's targets (after :func:`expand_targets`).
        suffixes: the outputs of each target.
        inputs: every file the call reads (targets, references, masks, points).
        overwrite: ``--overwrite``.
        report: called with one line per replaced file.
    """

    def __init__(self, folder: str, targets: Sequence[str], suffixes: Sequence[str], inputs: Sequence[str], *,
                 overwrite: bool, report: Callable[[str], None]):  # fmt: skip
        self.folder = Path(folder)
        self.overwrite = overwrite
        self.report = report
        names = relative_names(targets)
        self.paths = {t: {s: self.folder / (n + s) for s in suffixes} for t, n in zip(targets, names)}
        self._inputs = {os.path.realpath(p): p for p in inputs}
        self._written: dict[str, list[Path]] = {}

    def check(self) -> None:
        """Refuse before any work: an unwritable folder, an output that is an input, existing files without --overwrite."""
        f = self.folder
        if f.exists() and not f.is_dir():
            raise CLIError(f"--out {f}: is a file; give a folder")
        try:
            f.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=f, prefix=".insid3lab-", suffix=".tmp"):
                pass
        except OSError as e:
            raise CLIError(f"--out {f}: cannot write there ({e.strerror or e})") from None
        check_outputs([p for outs in self.paths.values() for p in outs.values()], self._inputs.values(),
                      overwrite=self.overwrite, where="--out")  # fmt: skip

    def write(self, target: str, suffix: str, save: Callable[[object], None]) -> Path:
        """Write one output of ``target``: ``save(file_object)`` fills a temporary file that is then renamed."""

        def fill(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                save(fh)

        path = write_atomic(self.paths[target][suffix], fill, self.report)
        self._written.setdefault(target, []).append(path)
        return path

    def discard(self, target: str) -> list[Path]:
        """Remove the files of ``target`` this call wrote (its other output failed): a failed target leaves none."""
        gone = self._written.pop(target, [])
        for p in gone:
            p.unlink(missing_ok=True)
        return gone


def check_outputs(outputs: Sequence[Path], inputs: Iterable[str | os.PathLike], *, overwrite: bool,
                  where: str = "--out") -> list[Path]:  # fmt: skip
    """Refuse, before any work, outputs that would replace an input (even with ``--overwrite``) or a
    folder, and existing outputs without ``overwrite``; returns the outputs that exist (to be replaced).

    Each refusal is one :class:`CLIError` naming the file(s); ``where`` names the option that chose them.
    """
    read = {os.path.realpath(p): str(p) for p in inputs}
    existing = []
    for p in outputs:
        src = read.get(os.path.realpath(p))
        if src is not None:
            raise CLIError(f"output {p} would replace the input {src}; choose another {where}")
        if Path(p).is_dir():
            raise CLIError(f"output {p} is a folder; choose another {where}")
        if Path(p).exists():
            existing.append(Path(p))
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more output file(s): {_names(existing[1:])})" if len(existing) > 1 else ""
        raise CLIError(f"{existing[0]} exists{more}; pass --overwrite to replace, or choose another {where}")
    return existing


def _names(paths: Sequence[Path], limit: int = 3) -> str:
    return ", ".join(str(p) for p in paths[:limit]) + (", ..." if len(paths) > limit else "")


def write_atomic(path: Path, save_to: Callable[[Path], None], report: Callable[[str], None]) -> Path:
    """Write ``path`` whole or not at all (:func:`insid3lab.core.files.write_atomic`): ``save_to(tmp)`` writes a
    temporary file beside it with its extension (writers choosing the format by it work); a replaced file is
    reported."""
    replaced = Path(path).exists()
    files.write_atomic(path, save_to)
    if replaced:
        report(f"replaced {path}")
    return Path(path)
