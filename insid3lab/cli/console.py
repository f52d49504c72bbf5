"""What the command line says on stderr: status lines, one-line warnings and errors.

Every line starts with ``insid3lab:``; errors with ``insid3lab: error:`` and warnings with
``insid3lab: warning:``. Status lines (what is being done before a progress bar starts)
are silenced by ``--quiet``; warnings and errors never are.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

__all__ = ["Console", "one_line", "plain_warnings"]


def one_line(text: object) -> str:
    """``text`` with its lines joined: every message of the command line is one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class Console:
    """Status lines (unless ``quiet``), warnings and errors, each one line on stderr."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

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
            print(f"insid3lab: warning: {one_line(message)}", file=file or sys.stderr, flush=True)

        warnings.showwarning = show
        yield
