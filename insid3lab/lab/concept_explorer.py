"""An ipywidgets explorer for several concepts at once: the label map, per-concept scores and instances.

DOM contract: image panels are ``ipywidgets.Image`` with CSS class ``insid3lab-concepts-panel``
(the label-map panel also ``insid3lab-labels``); controls have
``insid3lab-concepts-control-<name>`` with names ``tau``, ``svd``, ``merge`` (sliders),
``debias``, ``clustering`` and ``refine`` (dropdowns).
"""

from __future__ import annotations

import html
import time
import traceback
from collections import Counter

import ipywidgets as widgets
import torch

from insid3lab.lab.cluster_cache import TargetClusters
from insid3lab.lab.controls import METHOD_CONTROLS, apply_control, method_controls, png_panels, wire
from insid3lab.method.concepts import split_instances
from insid3lab.model.references import DEFAULT_LABEL
from insid3lab.tasks.concepts import ConceptSegmenter
from insid3lab.viz.common import to_png
from insid3lab.viz.labels import instances as draw_instances
from insid3lab.viz.labels import label_overlay
from insid3lab.viz.labels import labels as draw_labels

__all__ = ["CONCEPT_CONTROL_NAMES", "CONCEPT_PANEL_NAMES", "ConceptExplorer"]

#: Names of the controls (CSS class ``insid3lab-concepts-control-<name>``).
CONCEPT_CONTROL_NAMES = tuple(METHOD_CONTROLS)
#: Names of the image panels, in display order; ``labels`` is the label map with the score bars.
CONCEPT_PANEL_NAMES = ("reference", "labels", "instances")


class ConceptExplorer:
    """Turn τ, the SVD components, the merge threshold, debiasing, the clusterer and the refiner, and watch every concept's share.

    The target is encoded and clustered once (``counts["clustering"]``): a new τ cuts its
    average-linkage tree again (:class:`~insid3lab.lab.cluster_cache.TargetClusters`); every update re-runs the per-concept matching and the competition
    (``counts["decode"]``) through :meth:`~insid3lab.tasks.concepts.ConceptSegmenter.decode`, as ``segment_labels`` does.

    Args:
        model: an :class:`~insid3lab.INSID3`; its references are replaced by the label map's concepts.
        reference_image: the reference image; reference_labels: its label map.
        labels: ``{value: name}`` (or ``"all"``), as for ``set_reference(..., labels=...)``.
        target_image: the image to segment.
        panel_px: width in pixels of a panel.

    Attributes:
        widget, controls, panels, status; ``result`` (the last :class:`~insid3lab.method.trace.ConceptsTrace`),
        ``instances`` (the last instance list), ``last_error``.
    """

    def __init__(self, model, reference_image, reference_labels, labels, target_image, *, panel_px: int = 300):
        self.model = model
        self.panel_px = int(panel_px)
        self.counts: Counter = Counter({"encode": 0, "clustering": 0, "decode": 0})
        self.last_error: BaseException | None = None
        self._clusters = TargetClusters()
        model.clear_reference()
        model.set_reference(reference_image, reference_labels, labels=labels)
        self._reference = (reference_image, reference_labels)
        self._target_image = target_image
        self._target = model.encode(target_image, what="target image")
        self.counts["encode"] += 2
        limit = min(model.embed_dim, (model.image_size // model.patch_size) ** 2)
        model.svd_components = min(model.svd_components, limit)

        c = method_controls(model, limit)
        wire(c, "insid3lab-concepts-control", self._handler)
        self.controls = c
        self.panels = png_panels(CONCEPT_PANEL_NAMES, "insid3lab-concepts-panel", "labels", "insid3lab-labels")
        self.status = widgets.HTML()
        self.widget = widgets.VBox(
            [
                widgets.HBox([c["tau"], c["svd"]]),
                widgets.HBox([c["merge"], c["debias"], c["clustering"], c["refine"]]),
                widgets.HBox([self.panels[n] for n in CONCEPT_PANEL_NAMES]),
                self.status,
            ]
        )
        self.widget.add_class("insid3lab-concept-explorer")
        self.panels["reference"].value = to_png(
            label_overlay(reference_labels_map(model), model.labels, image=reference_image, title="reference concepts"),
            dpi=max(40, round(self.panel_px / 4.0)),
        )
        self._refresh("init")

    def display(self) -> None:
        """Show the app in the notebook."""
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()

    @property
    def label_map(self) -> torch.Tensor:
        """The current (H, W) int64 label map."""
        return self.result.label_map

    def _handler(self, name):
        def on_change(change):
            apply_control(self.model, name, change["new"])
            self._refresh(name)

        return on_change

    def _refresh(self, changed: str) -> None:
        t0 = time.perf_counter()
        m = self.model
        try:
            labels = self._clusters.labels("target", self._target.features_norm, m.params)
            self.counts["clustering"] = self._clusters.runs
            self.result = ConceptSegmenter(m).decode(self._target, labels=labels).cpu()
            self.counts["decode"] += 1
            self.instances = split_instances(self.result)
            dpi = max(40, round(self.panel_px / 4.0))
            self.panels["labels"].value = to_png(
                draw_labels(self.result.label_map, m.labels, self.result.scores, image=self._target_image), dpi=dpi
            )
            self.panels["instances"].value = to_png(
                draw_instances(self._target_image, self.instances, m.labels), dpi=dpi
            )
            self.last_error = None
            shares = ", ".join(
                f"{n} {100 * float((self.result.label_map == i + 1).float().mean()):.1f}%"
                for i, n in enumerate(m.labels)
            )
            self.status.value = (
                f"<span style='font-size:90%'>{html.escape(shares)}; {len(self.instances)} instance(s)"
                f" — updated in {1000 * (time.perf_counter() - t0):.0f} ms</span>"
            )
        except Exception as e:  # noqa: BLE001 - shown in the app; kept in last_error
            self.last_error = e
            tb = html.escape("".join(traceback.format_exception_only(type(e), e)).strip())
            self.status.value = f"<span style='color:#c00'>update after changing {changed} failed: {tb}</span>"


def reference_labels_map(model) -> torch.Tensor:
    """The reference's concepts as one (S, S) label map (from the shots' masks, in label order)."""
    out = None
    for i, name in enumerate(model.labels, start=1):
        for ref in model.references:
            if (ref.label or DEFAULT_LABEL) == name and ref.mask is not None:
                out = torch.zeros(ref.mask.shape, dtype=torch.long) if out is None else out
                out[ref.mask.cpu()] = i
    return out
