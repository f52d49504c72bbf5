"""What the command line says on stderr: status lines, one-line warnings and errors.

Every line starts with ``insid3lab:``; errors with ``insid3lab: error:`` and warnings with
``insid3lab: warning:``. Status lines (what is being done before a progress bar starts)
are silenced by ``--quiet``; warnings and errors never are. Every line starts a line of its
own, also while a progress bar is drawn (the bar is cleared, the line written, the bar drawn
again), so ``grep '^insid3lab: error'`` finds every error. An operating-system error becomes
the path and what to do (:func:`error_line`), not its errno text.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from contextlib import contextmanager

__all__ = ["Console", "OneLineParser", "emit", "error_line", "one_line", "plain_warnings"]

#: What an operating-system error means for the user, by errno.
_ADVICE = {
    errno.EEXIST: "already exists; remove it or choose another path",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "is a folder; give a file",
    errno.ENOENT: "no such file or folder",
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "over the disk quota; free some space or write elsewhere",
    errno.EACCES: "permission denied; choose a path you may write to",
    errno.EPERM: "permission denied; choose a path you may write to",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


def one_line(text: object) -> str:
    """``text`` with its lines joined: every message of the command line is one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error_line(err: BaseException) -> str:
    """One line for an error: an operating-system error as ``PATH: what happened; what to do`` (no
    ``[Errno N]``), any other error as its own message on one line."""
    if isinstance(err, OSError) and err.errno is not None:
        said = _ADVICE.get(err.errno) or (err.strerror or "").lower() or one_line(err)
        return f"{err.filename}: {said}" if err.filename else said
    return one_line(err) or type(err).__name__


def emit(text: str, stream=None) -> None:
    """Write one line on a line of its own: through tqdm while a bar is drawn, so the bar does not take its start."""
    stream = stream or sys.stderr
    try:
        from tqdm import tqdm

        bars = bool(getattr(tqdm, "_instances", None))
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bars = False
    if bars:
        tqdm.write(text, file=stream)
        stream.flush()
    else:
        print(text, file=stream, flush=True)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``insid3lab: error: COMMAND: ...``, pointing to ``--help``
    (exit status 2), instead of the whole usage block; its sub-command parsers are of this class too."""

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{command}: " if command else ""
        self.exit(2, f"insid3lab: error: {where}{one_line(message)} (see {self.prog} --help)\n")


class Console:
    """Status lines (unless ``quiet``), warnings and errors, each one line on stderr."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream

    def _print(self, text: str) -> None:
        emit(text, self.stream)

    def status(self, message: str) -> None:
        """What is being done now (silenced by ``--quiet``)."""
        if not self.quiet:
            self._print(f"insid3lab: {one_line(message)}")

    def note(self, message: str) -> None:
        """Something the user must know even with ``--quiet`` (a replaced file, a summary of failures)."""
        self._print(f"insid3lab: {one_line(message)}")

    def warning(self, message: str) -> None:
        self._print(f"insid3lab: warning: {one_line(message)}")

    def error(self, message: str) -> None:
        self._print(f"insid3lab: error: {one_line(message)}")


@contextmanager
def plain_warnings():
    """Within the block, Python warnings print as ``insid3lab: warning: MESSAGE`` (no file, line or source)."""
    with warnings.catch_warnings():

        def show(message, category, filename, lineno, file=None, line=None):
            emit(f"insid3lab: warning: {one_line(message)}", file)

        warnings.showwarning = show
        yield
