"""Helpers shared by the test files: tiny backbones on disk, hand-made encoders and scenes, benchmark replicas.

Fixtures live in ``tests/conftest.py``; this package holds the plain functions and classes
the tests import (``from helpers.synthetic import ColourPositionEncoder``).
"""
