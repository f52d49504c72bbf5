"""What a weights source says of itself: the ``random:ARCH[:SEED]`` scheme of random weights.

Kept apart from :mod:`insid3lab.backbone` (which builds the models) so that any layer can ask
whether weights are random without importing transformers.
"""

from __future__ import annotations

__all__ = ["RANDOM_SCHEME", "is_random"]

#: The prefix of a random-weights source (``random:vits16``, ``random:tiny:3``).
RANDOM_SCHEME = "random:"


def is_random(weights) -> bool:
    """Whether ``weights`` are random: a ``random:ARCH[:SEED]`` source string, or a backbone (or any
    object) whose ``source`` is one (what ``random_backbone`` and ``load_backbone("random:...")`` build)."""
    source = weights if isinstance(weights, str) else getattr(weights, "source", None)
    return isinstance(source, str) and source.strip().lower().startswith(RANDOM_SCHEME)
