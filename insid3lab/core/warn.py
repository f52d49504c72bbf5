"""Warnings that point at the caller's line, not at insid3lab's internals."""

from __future__ import annotations

import os
import sys
import warnings

#: The insid3lab package folder (this module sits in its ``core`` layer).
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first frame outside the insid3lab package."""
    level = 2  # 1 is this function's own call of warnings.warn, 2 its caller
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
