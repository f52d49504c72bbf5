"""Deterministic sample scenes (``insid3lab samples``): the names of :mod:`insid3lab.scenes` they were first published under."""

from .scenes import sample_scene, write_samples

__all__ = ["sample_scene", "write_samples"]
