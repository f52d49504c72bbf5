"""ipywidgets apps: :class:`Explorer` (turn the knobs, see every stage change) and :class:`MaskPainter`
(in :mod:`insid3lab.lab.mask_painter`, importable from here).

Both work with plain ipywidgets in JupyterLab (no extra frontend extension).

The explorer's image panels are one table, :data:`EXPLORER_PANELS`: each row names a panel of
:data:`insid3lab.viz.story.PANELS`, says how it is drawn and which controls redraw it. A new panel
is one row (and, for a panel :func:`insid3lab.viz.story.draw_panel` does not know, its drawing there).

DOM contract of the explorer (a browser test relies on it): every image panel is an
``ipywidgets.Image`` with CSS class ``insid3lab-panel``, the ``prediction`` panel also has
``insid3lab-mask``; every control has ``insid3lab-control-<name>`` with names ``tau`` (a
``FloatSlider``), ``svd``, ``merge`` (sliders), ``size``, ``layer``, ``debias``, ``clustering``, ``refine``
(dropdowns).

Several concepts at once (a label map, per-concept scores, instances):
:class:`~insid3lab.lab.concept_explorer.ConceptExplorer`, also importable from here.
"""

from __future__ import annotations

import dataclasses
import html
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ipywidgets as widgets
import numpy as np
import torch

from insid3lab.core.preprocess import denormalize
from insid3lab.lab.cluster_cache import TargetClusters
from insid3lab.lab.concept_explorer import ConceptExplorer
from insid3lab.lab.controls import METHOD_CONTROLS, apply_control, method_controls, png_panels, wire
from insid3lab.lab.mask_painter import MaskPainter
from insid3lab.method import pipeline as method
from insid3lab.stages.features import extract_features, l2_normalize
from insid3lab.viz.common import as_mask, as_numpy, empty_figure, iou, to_png, wrap_text
from insid3lab.viz.story import PANELS as STORY_PANELS
from insid3lab.viz.story import draw_panel, settings_line

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["CONTROL_NAMES", "EXPLORER_PANELS", "PANEL_NAMES", "ConceptExplorer", "Explorer", "MaskPainter", "Panel"]

#: Names of the explorer's controls (CSS class ``insid3lab-control-<name>``): the method's, then its own.
CONTROL_NAMES = (*METHOD_CONTROLS, "size", "layer")


@dataclass(frozen=True)
class Panel:
    """One image panel of the explorer.

    Attributes:
        name: a name of :data:`insid3lab.viz.story.PANELS`.
        draw: ``draw(explorer, ax, name)`` draws it into a matplotlib axis.
        redrawn_by: the controls (:data:`CONTROL_NAMES`) whose change redraws it.
        size: the figure's (width, height) in inches.
    """

    name: str
    draw: Callable[[Explorer, Axes, str], None]
    redrawn_by: tuple[str, ...]
    size: tuple[float, float] = (3.2, 3.0)

    def __post_init__(self) -> None:
        if self.name not in STORY_PANELS:
            raise ValueError(f"panel {self.name!r}: allowed {', '.join(STORY_PANELS)} (insid3lab.viz.story.PANELS)")
        unknown = [c for c in self.redrawn_by if c not in CONTROL_NAMES]
        if unknown:
            raise ValueError(f"panel {self.name!r} is redrawn by {unknown}: allowed {', '.join(CONTROL_NAMES)}")


def _story_panel(ex: Explorer, ax, name: str) -> None:
    """A panel of the current trace as :func:`insid3lab.viz.story.draw_panel` draws it."""
    draw_panel(ax, ex.trace, name)


def _pca_panel(ex: Explorer, ax, name: str) -> None:
    """The joint PCA of the reference's and the target's features at the block the ``layer`` control picks."""
    layer = int(ex.controls["layer"].value)
    ref, tgt = ex._layer_maps_for(layer)
    draw_panel(ax, dataclasses.replace(ex.trace, reference_features_norm=ref[None], target_features_norm=tgt), name)
    ax.set_title(f"PCA, block {layer}: " + ("reference" if name == "pca_reference" else "target (same fit)"),
                 fontsize=9)  # fmt: skip


def _prediction_panel(ex: Explorer, ax, name: str) -> None:
    """The prediction with the ground truth outlined; its caption lists every setting."""
    draw_panel(ax, ex.trace, name, ground_truth=ex.ground_truth)
    line = f"{settings_line(ex.trace.settings)}, PCA block {ex.controls['layer'].value}"
    ax.figure.suptitle(wrap_text(line, ax.figure.get_figwidth() - 0.1, 7.5), fontsize=7.5)


#: The explorer's image panels in display order (rows of :data:`PANELS_PER_ROW`). ``size`` redraws
#: every panel; the prediction's caption lists every setting, so every control redraws it.
EXPLORER_PANELS = (
    Panel("reference", _story_panel, ("size",)),
    Panel("pca_reference", _pca_panel, ("size", "layer")),
    Panel("pca_target", _pca_panel, ("size", "layer")),
    Panel("similarity", _story_panel, ("size", "svd", "debias")),
    Panel("clusters", _story_panel, ("size", "tau", "svd", "debias", "clustering")),
    Panel("scores", _story_panel, ("size", "tau", "svd", "debias", "clustering", "merge"), size=(3.8, 3.0)),
    Panel("prediction", _prediction_panel, CONTROL_NAMES, size=(3.2, 3.2)),
)
#: Names of the explorer's image panels, in display order.
PANEL_NAMES = tuple(p.name for p in EXPLORER_PANELS)
#: Panels side by side in one row of the app.
PANELS_PER_ROW = 4


def _default_sizes(size: int, patch: int) -> list[int]:
    cand = {size, size // 2, (size * 3) // 2}
    out = sorted({max(4 * patch, (c // patch) * patch) for c in cand})
    return out


class Explorer:
    """Turn INSID3's knobs and watch each stage change, recomputing only what a knob affects.

    What each control re-runs:

    * ``size`` (image side S): encodes the target (cached per S), re-encodes the reference
      (cached per S), then every stage after the backbone.
    * ``tau`` (τ): the clusters (a cut of the target's average-linkage tree, built once per S;
      see :class:`~insid3lab.lab.cluster_cache.TargetClusters`) and the stages after them.
    * ``clustering`` (the clusterer, choices from :data:`insid3lab.stages.clustering.CLUSTERERS`): the
      clusters as for ``tau`` (cut from the same tree when the clusterer's entry says ``tree=True``).
    * ``svd`` (components r), ``debias``: matching, seed and scores, reusing the cached encodings
      and cluster labels.
    * ``merge`` (merge threshold): only the final aggregation and upsampling.
    * ``refine`` (the refiner, choices from :data:`insid3lab.stages.refine.REFINERS`): only the
      upsampling and refinement of the same coarse mask (:func:`insid3lab.method.pipeline.upsample`).
    * ``layer``: the features of that block for the PCA panels (cached per (S, block)).

    ``counts`` records how many times each stage ran: ``encode`` (backbone passes for the
    target or a reference), ``layer_features`` (backbone passes for the PCA panels),
    ``clustering`` (trees built or labels computed; a cut at a new τ is not one), ``decode`` (matching + seed/scores), ``aggregation`` (merge-threshold-only
    updates), ``refinement`` (refiner-only updates); ``renders`` counts redraws per panel.

    Args:
        model: an :class:`~insid3lab.model.insid3.INSID3`. The explorer drives it: its references are
            replaced by this one and its settings follow the controls.
        reference_image, reference_mask: the shot (anything ``set_reference`` accepts).
        target_image: the image to segment.
        ground_truth: optional (H, W) target mask: outlined on the prediction, IoU in its title.
        sizes: image sides offered (default S/2, S, 3S/2 rounded to the patch size).
        panel_px: width in pixels of a square panel (wider panels scale with it).

    Attributes:
        widget: the root ``ipywidgets.VBox`` (display it, or the explorer itself).
        controls: ``{name: widget}`` for the names in :data:`CONTROL_NAMES`.
        panels: ``{name: ipywidgets.Image}`` for the panels of :data:`EXPLORER_PANELS`, in its order.
        trace: the :class:`~insid3lab.method.trace.Trace` behind the panels.
        last_error: the last exception raised while updating (shown in the status line), or None.
    """

    def __init__(
        self,
        model,
        reference_image,
        reference_mask,
        target_image,
        *,
        ground_truth=None,
        sizes=None,
        panel_px: int = 260,
    ):
        self.model = model
        self.ground_truth = None if ground_truth is None else as_mask(ground_truth, "ground_truth")
        self.panel_px = int(panel_px)
        stages = ("encode", "layer_features", "clustering", "decode", "aggregation", "refinement")
        self.counts: Counter = Counter({k: 0 for k in stages})
        self._panels = EXPLORER_PANELS
        names = tuple(p.name for p in self._panels)
        self.renders: Counter = Counter({k: 0 for k in names})
        self.last_error: BaseException | None = None
        self.trace = None
        self._target_source = target_image
        self._targets: dict[int, object] = {}
        self._references: dict[int, list] = {}
        self._clusters = TargetClusters()
        self._layer_maps: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._syncing = False

        patch = model.patch_size
        sizes = _default_sizes(model.image_size, patch) if sizes is None else sorted({int(s) for s in sizes})
        for s in sizes:
            if s <= 0 or s % patch:
                raise ValueError(
                    f"sizes contains {s}: every image size must be a positive multiple of the patch size {patch}"
                )
        if model.image_size not in sizes:
            sizes = sorted(set(sizes) | {model.image_size})

        model.clear_reference()
        model.set_reference(reference_image, reference_mask)
        self.counts["encode"] += 1
        self._references[model.image_size] = list(model.references)

        n_blocks = int(getattr(model.encoder, "n_blocks", 1))
        limit = self._svd_limit(model.image_size)
        model.svd_components = min(model.svd_components, limit)

        c = method_controls(model, limit)
        c["size"] = widgets.Dropdown(options=[(str(s), s) for s in sizes], value=model.image_size, description="size S")
        c["layer"] = widgets.Dropdown(
            options=[(f"block {i}" + (" (used)" if i == n_blocks - 1 else ""), i) for i in range(n_blocks)],
            value=n_blocks - 1,
            description="PCA of",
        )
        wire(c, "insid3lab-control", self._handler)
        self.controls = c
        self.panels = png_panels(names, "insid3lab-panel", "prediction", "insid3lab-mask")
        self.status = widgets.HTML()
        rows = [names[i : i + PANELS_PER_ROW] for i in range(0, len(names), PANELS_PER_ROW)]
        self.widget = widgets.VBox(
            [
                widgets.HBox([c["tau"], c["svd"], c["merge"]]),
                widgets.HBox([c["size"], c["debias"], c["layer"], c["clustering"], c["refine"]]),
                *[widgets.HBox([self.panels[n] for n in row]) for row in rows],
                self.status,
            ]
        )
        self.widget.add_class("insid3lab-explorer")
        self._refresh("size")

    # ------------------------------------------------------------- display
    def display(self) -> None:
        """Show the app in the notebook."""
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()

    # ------------------------------------------------------------- state
    @property
    def mask(self) -> np.ndarray:
        """The current prediction, (H, W) bool."""
        return as_numpy(self.trace.mask).astype(bool)

    def _svd_limit(self, size: int) -> int:
        h = size // self.model.patch_size
        return min(self.model.embed_dim, h * h)

    def _handler(self, name):
        def on_change(change):
            if self._syncing:
                return
            self._apply(name, change["new"])
            self._refresh(name)

        return on_change

    def _apply(self, name: str, value) -> None:
        m = self.model
        if name in METHOD_CONTROLS:
            apply_control(m, name, value)
        elif name == "size":
            m.image_size = int(value)
            limit = self._svd_limit(m.image_size)
            self._syncing = True
            try:
                svd = self.controls["svd"]
                svd.value = min(svd.value, limit)
                svd.max = limit
            finally:
                self._syncing = False
            m.svd_components = int(self.controls["svd"].value)

    # ------------------------------------------------------------- stages
    def _target(self):
        S = self.model.image_size
        if S not in self._targets:
            self._targets[S] = self.model.encode(self._target_source, what="target image")
            self.counts["encode"] += 1
        return self._targets[S]

    def _use_references(self) -> None:
        m = self.model
        S = m.image_size
        if S in self._references:
            if any(r.size != S for r in m.references):
                m.references = list(self._references[S])
        else:
            self.counts["encode"] += sum(1 for r in m.references if r.size != S)

    def _decode(self):
        m = self.model
        S = m.image_size
        enc = self._target()
        self._use_references()
        labels = self._clusters.labels(S, enc.features_norm, m.params)
        self.counts["clustering"] = self._clusters.runs
        _, trace = m.decode(enc, return_trace=True, labels=labels)
        self._references[S] = list(m.references)
        self.counts["decode"] += 1
        return trace

    def _reaggregate(self, trace):
        """The trace with only the merge threshold changed: :func:`insid3lab.method.pipeline.finalize` again."""
        m = self.model
        settings = dict(trace.settings, merge_threshold=m.merge_threshold)
        if trace.cluster_labels is None:
            return dataclasses.replace(trace, settings=settings)
        new = dataclasses.replace(trace, settings=settings)
        method.finalize(
            trace.cluster_labels,
            trace.cluster_score,
            m.merge_threshold,
            m.params,
            image=denormalize(trace.target_image),
            out_size=trace.target_size if m.resize_to_orig_size else None,
            recorder=method.Recorder(new),
        )
        self.counts["aggregation"] += 1
        return new

    def _refine(self, trace):
        """The trace with only the refiner changed: :func:`insid3lab.method.pipeline.upsample` of the same coarse mask."""
        m = self.model
        new = dataclasses.replace(trace, settings=dict(trace.settings, refine=m.settings()["refine"]),
                                  mask_refined=None, refine_band=None)  # fmt: skip
        if trace.mask_low is None:
            return new
        method.upsample(
            trace.mask_low,
            m.params,
            image=denormalize(trace.target_image),
            out_size=trace.target_size if m.resize_to_orig_size else None,
            recorder=method.Recorder(new),
        )
        self.counts["refinement"] += 1
        return new

    def _layer_maps_for(self, layer: int):
        m = self.model
        S = m.image_size
        key = (S, int(layer))
        if key not in self._layer_maps:
            tgt = self._target()
            ref = m.references[0]
            n_blocks = int(getattr(m.encoder, "n_blocks", 1))
            if layer == n_blocks - 1:
                maps = (ref.features_norm, tgt.features_norm)
            else:
                x = torch.cat([ref.image, tgt.image]).to(m.device)
                f = l2_normalize(extract_features(m.encoder, x, layer=int(layer)), dim=1)
                maps = (f[0], f[1])
                self.counts["layer_features"] += 1
            self._layer_maps[key] = maps
        return self._layer_maps[key]

    # ------------------------------------------------------------- drawing
    def _render(self, panel: Panel) -> bytes:
        fig = empty_figure(*panel.size)
        panel.draw(self, fig.add_subplot(1, 1, 1), panel.name)
        self.renders[panel.name] += 1
        return to_png(fig, dpi=max(40, round(self.panel_px / 3.2)))

    def _refresh(self, changed: str) -> None:
        t0 = time.perf_counter()
        try:
            if changed == "merge" and self.trace is not None:
                self.trace = self._reaggregate(self.trace)
            elif changed == "refine" and self.trace is not None:
                self.trace = self._refine(self.trace)
            elif changed != "layer" or self.trace is None:
                self.trace = self._decode().cpu()
            for panel in self._panels:
                if changed in panel.redrawn_by:
                    self.panels[panel.name].value = self._render(panel)
            self.last_error = None
            msg = f"{html.escape(settings_line(self.trace.settings))}; mask {100 * self.mask.mean():.1f}% of the target"
            if self.ground_truth is not None:
                msg += f"; IoU {iou(self.mask, self.ground_truth):.3f}"
            msg += f" — updated in {1000 * (time.perf_counter() - t0):.0f} ms"
            self.status.value = f"<span style='font-size:90%'>{msg}</span>"
        except Exception as e:  # noqa: BLE001 - shown in the app; kept in last_error
            self.last_error = e
            tb = html.escape("".join(traceback.format_exception_only(type(e), e)).strip())
            self.status.value = f"<span style='color:#c00'>update after changing {changed} failed: {tb}</span>"
