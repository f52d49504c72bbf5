"""A batch of targets where one failure does not stop the others.

Each failure is reported as one line (``insid3lab: error: TARGET: reason``) as it happens;
the command goes on with the next target (or stops with ``--fail-fast``) and exits non-zero
at the end when any target failed.
"""

from __future__ import annotations

from insid3lab.cli.console import Console, error_line
from insid3lab.cli.options import bomb_message
from insid3lab.cli.output import expand_targets

__all__ = ["Batch", "read_problem", "start_batch"]


def read_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as an image (one line), or None when it can (header only, cheap)."""
    from PIL import Image, UnidentifiedImageError

    from insid3lab.core.imageio import ImageTooLargeError, image_size

    try:
        image_size(path)
    except ImageTooLargeError as e:
        return bomb_message(path, e)[len(path) + 2 :]
    except IsADirectoryError:
        return "is a folder; give image files"
    except FileNotFoundError:
        return "no such file"
    except ValueError:
        try:  # say why in PIL's words
            with Image.open(path) as img:
                img.size  # noqa: B018 - the header is parsed
        except UnidentifiedImageError:
            return "cannot be read as an image (not a format PIL knows)"
        except (OSError, SyntaxError, ValueError) as e:
            return f"cannot be read ({getattr(e, 'strerror', None) or e})"
        return "cannot be read as an image"
    return None


def reason(err: BaseException) -> str:
    """One line for an exception raised by the library while processing a target."""
    from insid3lab.core.imageio import ImageTooLargeError

    if isinstance(err, ImageTooLargeError):
        return bomb_message(err.path, err)
    return error_line(err)


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


def start_batch(console: Console, paths, *, fail_fast: bool, folders: bool) -> tuple[list[str], Batch] | None:
    """The call's targets (folders expanded when ``folders``) and their :class:`Batch`, the unreadable
    ones already reported; None when nothing is left to do (or ``--fail-fast`` stopped at one)."""
    targets, problems = expand_targets(paths, folders=folders)
    batch = Batch(console, fail_fast=fail_fast, total=len(targets) + len(problems))
    try:
        for t, why in problems:
            batch.fail(t, why)
    except Batch.Stop:
        return None
    return (targets, batch) if targets else None
