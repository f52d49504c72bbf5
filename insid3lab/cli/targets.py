"""A batch of targets where one failure does not stop the others.

Each failure is reported as one line (``insid3lab: error: TARGET: reason``) as it happens;
the command goes on with the next target (or stops with ``--fail-fast``) and exits non-zero
at the end when any target failed.
"""

from __future__ import annotations

from .console import Console, one_line
from .options import bomb_message

__all__ = ["Batch", "read_problem"]


def read_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as an image (one line), or None when it can (header only, cheap)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - the header is parsed
    except Image.DecompressionBombError as e:
        return bomb_message(path, e)[len(path) + 2 :]
    except IsADirectoryError:
        return "is a folder; give image files"
    except FileNotFoundError:
        return "no such file"
    except UnidentifiedImageError:
        return "cannot be read as an image (not a format PIL knows)"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return None


def reason(err: BaseException) -> str:
    """One line for an exception raised by the library while processing a target."""
    from PIL import Image

    if isinstance(err, Image.DecompressionBombError):
        return bomb_message("image", err)
    return one_line(err) or type(err).__name__


class Batch:
    """Counts of one run over targets and the failure policy.

    Args:
        console: where failures go.
        fail_fast: stop at the first failure.
        total: number of targets.
    """

    class Stop(Exception):
        """Raised by :meth:`fail` under ``--fail-fast``."""

    def __init__(self, console: Console, *, fail_fast: bool, total: int):
        self.console = console
        self.fail_fast = fail_fast
        self.total = total
        self.failed = 0
        self.done = 0

    def fail(self, target: str, why: str) -> None:
        self.failed += 1
        self.console.error(f"{target}: {why}")
        if self.fail_fast:
            raise Batch.Stop

    def finish(self, what: str, folder) -> int:
        """The closing line and the exit status (1 when a target failed)."""
        if self.failed:
            self.console.note(f"{self.failed} of {self.total} target(s) failed; {self.done} {what} written to {folder}")
            return 1
        self.console.status(f"{self.done} {what} written to {folder}")
        return 0
