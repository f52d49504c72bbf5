"""A stand-in for :class:`insid3lab.INSID3` that segments by colour, and what compares evaluation runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


class FakeBackbone:
    dtype = torch.float32

    def fingerprint(self) -> str:
        return "fa4e0000"


class FakeModel:
    """Segments the target pixels whose colour is within ``tol`` of the references' mean foreground colour."""

    def __init__(self, tol: float = 40.0, fail_after: int | None = None):
        self.image_size, self.svd_components, self.tau, self.merge_threshold = 64, 8, 0.6, 0.2
        self.backbone = FakeBackbone()
        self.tol = tol
        self.refs: list[np.ndarray] = []
        self.calls = 0
        self.fail_after = fail_after

    def clear_reference(self) -> None:
        self.refs = []

    def set_reference(self, image, mask) -> None:
        img = np.asarray(image, dtype=np.float64)
        m = np.asarray(mask) > 0
        assert img.shape[:2] == m.shape and m.any()
        self.refs.append(img[m].mean(axis=0))

    def _tick(self):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")

    def segment(self, target) -> torch.Tensor:
        self._tick()
        assert self.refs, "segment() before set_reference()"
        img = np.asarray(target, dtype=np.float64)
        proto = np.mean(self.refs, axis=0)
        return torch.from_numpy(np.linalg.norm(img - proto, axis=2) < self.tol)

    def match(self, points, target, reference_image=None) -> torch.Tensor:
        self._tick()
        sh, sw = np.asarray(reference_image).shape[:2]
        th, tw = np.asarray(target).shape[:2]
        p = torch.as_tensor(points, dtype=torch.float32).clone()
        p[:, 0] *= tw / sw
        p[:, 1] *= th / sh
        return p


def comparable(summary: dict) -> dict:
    """The parts of a summary that must not depend on order, processes or resumption."""
    keep = (
        "task",
        "miou",
        "fb_iou",
        "miou_visited_classes",
        "classes_visited",
        "per_class_iou",
        "per_class_episodes",
        "intersection",
        "union",
        "pck",
        "pck_per_point",
        "per_class_pck",
        "bad_samples",
    )
    out = {k: summary[k] for k in keep if k in summary}
    out["episodes"] = {k: summary["episodes"][k] for k in ("total", "evaluated", "bad")}
    return out


def records_without_time(path: Path) -> list[dict]:
    """The records of a results file without their time (and the digest of their content, which covers it)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for r in rows:
        r.pop("seconds", None)
        r.pop("digest", None)
    return rows
