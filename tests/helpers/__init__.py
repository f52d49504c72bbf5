"""Plain functions and classes the tests import (``from helpers.cli import segment_argv``); fixtures live in
``conftest.py`` files.

- ``backbones``: what the session's tiny backbone is and how it is saved; comparisons of outputs.
- ``synthetic``: a hand-made encoder of colour and position for grid scenes.
- ``benchmarks``: on-disk replicas of the evaluation benchmarks; ``cocojson``: a small hand-drawn COCO export.
- ``runs``: a colour-matching stand-in for the model and what compares evaluation runs.
- ``processes``: a free port, a gloo process group and the workers started in it.
- ``cli``: the command lines the tests run.
- ``browser``: a notebook run in a real JupyterLab in headless Chromium.
"""
