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
every file is written to a temporary name first and renamed, so an interrupted run leaves only
complete files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from insid3lab.cli.options import CLIError

__all__ = ["OUTPUT_SUFFIXES", "OutputFolder", "expand_targets", "relative_names", "write_atomic"]

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
        existing = []
        for outs in self.paths.values():
            for p in outs.values():
                src = self._inputs.get(os.path.realpath(p))
                if src is not None:
                    raise CLIError(f"output {p} would replace the input {src}; choose another --out")
                if p.is_dir():
                    raise CLIError(f"output {p} is a folder; choose another --out")
                if p.exists():
                    existing.append(p)
        if existing and not self.overwrite:
            more = f" (and {len(existing) - 1} more output file(s))" if len(existing) > 1 else ""
            raise CLIError(f"{existing[0]} exists{more}; pass --overwrite to replace, or choose another --out")

    def write(self, target: str, suffix: str, save: Callable[[object], None]) -> Path:
        """Write one output of ``target``: ``save(file_object)`` fills a temporary file that is then renamed."""

        def fill(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                save(fh)

        return write_atomic(self.paths[target][suffix], fill, self.report)


def write_atomic(path: Path, save_to: Callable[[Path], None], report: Callable[[str], None]) -> Path:
    """Write ``path`` whole or not at all: ``save_to(tmp)`` writes a temporary file in the same folder
    (hidden, with ``path``'s extension, so that writers choosing the format by it work) that is then
    renamed over ``path``; a replaced file is reported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replaced = path.exists()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".insid3lab-", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        save_to(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if replaced:
        report(f"replaced {path}")
    return path
