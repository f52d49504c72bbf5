"""Command lines of the tests: the tiny model's options, ``segment`` and ``match`` on the sample files, ``eval``.

``folder`` is the ``workdir`` fixture of ``tests/cli/conftest.py``: ``samples/`` (written by
:func:`insid3lab.synthetic.write_samples`) and ``model/`` (the tiny backbone as a transformers folder).
"""

from __future__ import annotations

from pathlib import Path


def tiny_model_args(model: str | Path = "random:tiny") -> list[str]:
    """A tiny model on the CPU at 64 px with 8 positional components."""
    return ["--model", str(model), "--device", "cpu", "--image-size", "64", "--svd-components", "8"]


def segment_argv(folder: Path, targets, out, *extra, ref_mask=None) -> list[str]:
    """``segment`` of ``targets`` with the sample reference (and ``ref_mask``, else its mask) into ``out``."""
    s = folder / "samples"
    return ["segment", *tiny_model_args(folder / "model"), "--ref", str(s / "reference.png"),
            "--ref-mask", str(ref_mask or s / "reference_mask.png"), *map(str, targets), "--out", str(out),
            *map(str, extra)]  # fmt: skip


def match_argv(folder: Path, points, targets, out, *extra, model: str | Path | None = None) -> list[str]:
    """``match`` of the points in the file ``points`` from the sample reference to ``targets``, at 64 px."""
    model = model or folder / "model"
    return ["match", "--model", str(model), "--device", "cpu", "--image-size", "64",
            "--ref", str(folder / "samples" / "reference.png"), "--points", str(points), *map(str, targets),
            "--out", str(out), *map(str, extra)]  # fmt: skip


def eval_argv(data_root, dataset: str, out, *extra, model: str | Path = "w") -> list[str]:
    """``eval`` of benchmark ``dataset`` under ``data_root`` into ``out``, on the CPU without a progress bar."""
    return ["eval", "--dataset", dataset, "--data-root", str(data_root), "--model", str(model), "--device", "cpu",
            "--no-progress", "--out", str(out), *map(str, extra)]  # fmt: skip


def tiny_eval_argv(saved, data_root, dataset: str, out, *extra) -> list[str]:
    """:func:`eval_argv` with the saved tiny backbone ``saved`` (``tiny_saved``) at 64 px, r = 8, no basis cache."""
    return eval_argv(data_root, dataset, out, "--image-size", "64", "--svd-components", "8", "--no-cache", *extra,
                     model=saved.hf_dir)  # fmt: skip
