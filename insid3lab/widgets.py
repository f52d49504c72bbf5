"""ipywidgets apps: :class:`Explorer` (turn the knobs, see every stage change) and :class:`MaskPainter`.

Both work with plain ipywidgets in JupyterLab (no extra frontend extension).

DOM contract of the explorer (a browser test relies on it): every image panel is an
``ipywidgets.Image`` with CSS class ``insid3lab-panel``, the predicted-mask panel also has
``insid3lab-mask``; every control has ``insid3lab-control-<name>`` with names ``tau`` (a
``FloatSlider``), ``svd``, ``merge`` (sliders), ``size``, ``layer``, ``debias`` (dropdowns).

Several concepts at once (a label map, per-concept scores, instances):
:class:`~insid3lab.concept_explorer.ConceptExplorer`, also importable from here.
"""

from __future__ import annotations

import dataclasses
import html
import time
import traceback
from collections import Counter

import ipywidgets as widgets
import numpy as np
import torch

from . import method
from .concept_explorer import ConceptExplorer
from .preprocess import denormalize
from .stages.features import extract_features, l2_normalize
from .viz.common import REF_COLOR, as_image, as_mask, as_numpy, empty_figure, iou, pca_rgb, resize_nearest, to_png
from .viz.draw import draw_mask, draw_rgb
from .viz.story import draw_panel, settings_line

__all__ = ["CONTROL_NAMES", "PANEL_NAMES", "ConceptExplorer", "Explorer", "MaskPainter"]

#: Names of the explorer's controls (CSS class ``insid3lab-control-<name>``).
CONTROL_NAMES = ("tau", "svd", "merge", "size", "layer", "debias")
#: Names of the explorer's image panels, in display order; ``mask`` is the prediction.
PANEL_NAMES = ("reference", "pca", "similarity", "clusters", "scores", "mask")

# Which panels each control changes (the mask panel's caption lists every setting, so it always changes).
_AFFECTS = {
    "tau": ("clusters", "scores", "mask"),
    "svd": ("similarity", "clusters", "scores", "mask"),
    "debias": ("similarity", "clusters", "scores", "mask"),
    "merge": ("scores", "mask"),
    "layer": ("pca", "mask"),
    "size": PANEL_NAMES,
}


def _default_sizes(size: int, patch: int) -> list[int]:
    cand = {size, size // 2, (size * 3) // 2}
    out = sorted({max(4 * patch, (c // patch) * patch) for c in cand})
    return out


class Explorer:
    """Turn INSID3's knobs and watch each stage change, recomputing only what a knob affects.

    What each control re-runs:

    * ``size`` (image side S): encodes the target (cached per S), re-encodes the reference
      (cached per S), then every stage after the backbone.
    * ``tau`` (τ): clustering (labels cached per (S, τ)) and the stages after it.
    * ``svd`` (components r), ``debias``: matching, seed and scores, reusing the cached encodings
      and cluster labels.
    * ``merge`` (merge threshold): only the final aggregation and upsampling.
    * ``layer``: the features of that block for the PCA panel (cached per (S, block)).

    ``counts`` records how many times each stage ran: ``encode`` (backbone passes for the
    target or a reference), ``layer_features`` (backbone passes for the PCA panel),
    ``clustering``, ``decode`` (matching + seed/scores), ``aggregation`` (merge-threshold-only
    updates); ``renders`` counts redraws per panel.

    Args:
        model: an :class:`~insid3lab.pipeline.INSID3`. The explorer drives it: its references are
            replaced by this one and its settings follow the controls.
        reference_image, reference_mask: the shot (anything ``set_reference`` accepts).
        target_image: the image to segment.
        ground_truth: optional (H, W) target mask: outlined on the prediction, IoU in its title.
        sizes: image sides offered (default S/2, S, 3S/2 rounded to the patch size).
        panel_px: width in pixels of a square panel (wider panels scale with it).

    Attributes:
        widget: the root ``ipywidgets.VBox`` (display it, or the explorer itself).
        controls: ``{name: widget}`` for the names in :data:`CONTROL_NAMES`.
        panels: ``{name: ipywidgets.Image}`` for the names in :data:`PANEL_NAMES`.
        trace: the :class:`~insid3lab.trace.Trace` behind the panels.
        last_error: the last exception raised while updating (shown in the status line), or None.
    """

    def __init__(self, model, reference_image, reference_mask, target_image, *, ground_truth=None,
                 sizes=None, panel_px: int = 260):
        self.model = model
        self.ground_truth = None if ground_truth is None else as_mask(ground_truth, "ground_truth")
        self.panel_px = int(panel_px)
        self.counts: Counter = Counter({k: 0 for k in ("encode", "layer_features", "clustering", "decode", "aggregation")})
        self.renders: Counter = Counter({k: 0 for k in PANEL_NAMES})
        self.last_error: BaseException | None = None
        self.trace = None
        self._target_source = target_image
        self._targets: dict[int, object] = {}
        self._references: dict[int, list] = {}
        self._labels: dict[tuple[int, float], torch.Tensor] = {}
        self._layer_maps: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._syncing = False

        patch = model.patch_size
        sizes = _default_sizes(model.image_size, patch) if sizes is None else sorted({int(s) for s in sizes})
        for s in sizes:
            if s <= 0 or s % patch:
                raise ValueError(f"sizes contains {s}: every image size must be a positive multiple of the patch size {patch}")
        if model.image_size not in sizes:
            sizes = sorted(set(sizes) | {model.image_size})

        model.clear_reference()
        model.set_reference(reference_image, reference_mask)
        self.counts["encode"] += 1
        self._references[model.image_size] = list(model.references)

        n_blocks = int(getattr(model.encoder, "n_blocks", 1))
        limit = self._svd_limit(model.image_size)
        model.svd_components = min(model.svd_components, limit)

        c = {}
        c["tau"] = widgets.FloatSlider(value=model.tau, min=0.05, max=1.0, step=0.05, description="τ",
                                       continuous_update=False, readout_format=".2f")
        c["svd"] = widgets.IntSlider(value=model.svd_components, min=0, max=limit, step=1, description="SVD r",
                                     continuous_update=False)
        c["merge"] = widgets.FloatSlider(value=model.merge_threshold, min=-0.5, max=1.0, step=0.05,
                                         description="merge", continuous_update=False, readout_format=".2f")
        c["size"] = widgets.Dropdown(options=[(str(s), s) for s in sizes], value=model.image_size, description="size S")
        c["layer"] = widgets.Dropdown(
            options=[(f"block {i}" + (" (used)" if i == n_blocks - 1 else ""), i) for i in range(n_blocks)],
            value=n_blocks - 1, description="PCA of")
        c["debias"] = widgets.Dropdown(options=[("on", True), ("off", False)], value=bool(model.debias),
                                       description="debias")
        for name, w in c.items():
            w.add_class(f"insid3lab-control-{name}")
            w.observe(self._handler(name), names="value")
        self.controls = c

        self.panels = {}
        for name in PANEL_NAMES:
            img = widgets.Image(format="png")
            img.add_class("insid3lab-panel")
            if name == "mask":
                img.add_class("insid3lab-mask")
            self.panels[name] = img
        self.status = widgets.HTML()
        self.widget = widgets.VBox([
            widgets.HBox([c["tau"], c["svd"], c["merge"]]),
            widgets.HBox([c["size"], c["debias"], c["layer"]]),
            widgets.HBox([self.panels[n] for n in ("reference", "pca", "similarity")]),
            widgets.HBox([self.panels[n] for n in ("clusters", "scores", "mask")]),
            self.status,
        ])
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
        if name == "tau":
            m.tau = float(value)
        elif name == "svd":
            m.svd_components = int(value)
        elif name == "merge":
            m.merge_threshold = float(value)
        elif name == "debias":
            m.debias = bool(value)
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
        key = (S, round(m.tau, 6))
        labels = self._labels.get(key)
        _, trace = m.decode(enc, return_trace=True, labels=labels)
        self._references[S] = list(m.references)
        self.counts["decode"] += 1
        if labels is None and trace.cluster_labels is not None:
            self.counts["clustering"] += 1
            self._labels[key] = trace.cluster_labels
        return trace

    def _reaggregate(self, trace):
        """The trace with only the merge threshold changed: :func:`insid3lab.method.finalize` again."""
        m = self.model
        settings = dict(trace.settings, merge_threshold=m.merge_threshold)
        if trace.cluster_labels is None:
            return dataclasses.replace(trace, settings=settings)
        new = dataclasses.replace(trace, settings=settings)
        method.finalize(trace.cluster_labels, trace.cluster_score, m.merge_threshold, m.params,
                        image=denormalize(trace.target_image), out_size=trace.target_size if m.resize_to_orig_size else None,
                        recorder=method.Recorder(new))
        self.counts["aggregation"] += 1
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
    def _figure(self, width: float = 3.2, height: float = 3.0):
        fig = empty_figure(width, height)
        return fig, fig.add_subplot(1, 1, 1)

    def _render(self, name: str) -> bytes:
        t = self.trace
        if name == "reference":
            fig, ax = self._figure()
            ref = self.model.references[0]
            draw_mask(ax, ref.image, ref.mask, hw=ref.orig_size, color=REF_COLOR, title="reference + mask")
        elif name == "pca":
            layer = int(self.controls["layer"].value)
            rmap, tmap = self._layer_maps_for(layer)
            rgb_r, rgb_t = pca_rgb([rmap, tmap])
            fig = empty_figure(3.2, 3.0)
            ax1, ax2 = fig.subplots(2, 1)
            draw_rgb(ax1, rgb_r, hw=self.model.references[0].orig_size, title=f"PCA, block {layer}: reference")
            draw_rgb(ax2, rgb_t, hw=t.target_size, title="target (same fit)")
        elif name == "mask":
            fig, ax = self._figure(3.2, 3.2)
            draw_panel(ax, t, "prediction", ground_truth=self.ground_truth)
            parts = settings_line(t.settings).split(", ") + [f"PCA block {self.controls['layer'].value}"]
            half = (len(parts) + 1) // 2
            fig.suptitle(", ".join(parts[:half]) + "\n" + ", ".join(parts[half:]), fontsize=7.5)
        elif name == "scores":
            fig, ax = self._figure(3.8, 3.0)
            draw_panel(ax, t, "scores")
        else:
            fig, ax = self._figure()
            draw_panel(ax, t, name)
        self.renders[name] += 1
        return to_png(fig, dpi=max(40, round(self.panel_px / 3.2)))

    def _refresh(self, changed: str) -> None:
        t0 = time.perf_counter()
        try:
            if changed == "merge" and self.trace is not None:
                self.trace = self._reaggregate(self.trace)
            elif changed != "layer" or self.trace is None:
                self.trace = self._decode().cpu()
            for name in _AFFECTS[changed]:
                self.panels[name].value = self._render(name)
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


class MaskPainter:
    """Paint a reference mask inside the notebook with plain ipywidgets.

    The image is shown as a grid of clickable cells (``cells`` x ``cells`` buttons, each coloured
    with its patch's mean colour): a click fills an empty cell or clears a filled one. For finer
    outlines type polygon vertices ``x,y x,y ...`` in image pixels and press *add polygon* (or
    *erase polygon*). *invert* and *clear* act on the whole mask; a preview shows the image with
    the mask in red.

    Args:
        image: anything ``to_display_array`` accepts.
        cells: buttons per side (the grid covers the whole image).
        mask: optional starting mask (resized to the image).
        panel_px: width of the cell grid and of the preview.

    Attributes:
        mask: (H, W) bool, the painted mask (a copy).
        widget: the root box. ``buttons`` (row-major), ``polygon``, ``preview`` for scripting.
    """

    def __init__(self, image, *, cells: int = 16, mask=None, panel_px: int = 320):
        if not isinstance(cells, int) or isinstance(cells, bool) or not 2 <= cells <= 64:
            raise ValueError(f"cells={cells!r}: must be an integer in [2, 64]")
        self.image = as_image(image)
        H, W = self.image.shape[:2]
        self.cells = cells
        self._mask = np.zeros((H, W), dtype=bool) if mask is None else resize_nearest(as_mask(mask), (H, W)).copy()
        self._rows = np.linspace(0, H, cells + 1).round().astype(int)
        self._cols = np.linspace(0, W, cells + 1).round().astype(int)
        bw = max(10, panel_px // cells)
        bh = max(10, int(round(bw * (H / cells) / (W / cells))))
        self.buttons: list[widgets.Button] = []
        for r in range(cells):
            for c in range(cells):
                b = widgets.Button(description="", tooltip=f"row {r}, col {c}",
                                   layout=widgets.Layout(width=f"{bw}px", height=f"{bh}px", padding="0", margin="0",
                                                         border="0"))
                b.on_click(self._cell_handler(r, c))
                self.buttons.append(b)
        grid = widgets.GridBox(self.buttons, layout=widgets.Layout(
            grid_template_columns=f"repeat({cells}, {bw}px)", grid_gap="0px"))
        grid.add_class("insid3lab-painter-grid")
        self.preview = widgets.Image(format="png", layout=widgets.Layout(width=f"{panel_px}px"))
        self.preview.add_class("insid3lab-painter-preview")
        self.polygon = widgets.Text(placeholder="x,y x,y x,y ... (pixels)", description="polygon",
                                    layout=widgets.Layout(width=f"{max(panel_px, 300)}px"))
        add = widgets.Button(description="add polygon")
        erase = widgets.Button(description="erase polygon")
        invert = widgets.Button(description="invert")
        clear = widgets.Button(description="clear")
        add.on_click(lambda _: self.add_polygon(self.polygon.value))
        erase.on_click(lambda _: self.add_polygon(self.polygon.value, erase=True))
        invert.on_click(lambda _: self._set(~self._mask))
        clear.on_click(lambda _: self._set(np.zeros_like(self._mask)))
        self.actions = {"add": add, "erase": erase, "invert": invert, "clear": clear}
        self.status = widgets.HTML()
        self.widget = widgets.VBox([
            widgets.HBox([grid, self.preview]),
            widgets.HBox([self.polygon, add, erase]),
            widgets.HBox([invert, clear, self.status]),
        ])
        self._cell_means = np.array([[self.image[self._rows[r]:self._rows[r + 1], self._cols[c]:self._cols[c + 1]]
                                      .reshape(-1, 3).mean(0) for c in range(cells)] for r in range(cells)])
        self._sync()

    @property
    def mask(self) -> np.ndarray:
        return self._mask.copy()

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()

    def cell_filled(self, row: int, col: int) -> bool:
        """Whether at least half of the cell's pixels are in the mask."""
        block = self._mask[self._rows[row]:self._rows[row + 1], self._cols[col]:self._cols[col + 1]]
        return bool(block.size and block.mean() >= 0.5)

    def toggle(self, row: int, col: int) -> None:
        """Fill the cell if it is not filled, else clear it (what a click does)."""
        value = not self.cell_filled(row, col)
        self._mask[self._rows[row]:self._rows[row + 1], self._cols[col]:self._cols[col + 1]] = value
        self._sync()

    def _cell_handler(self, r, c):
        return lambda _button: self.toggle(r, c)

    def add_polygon(self, vertices, *, erase: bool = False) -> None:
        """Fill (or erase) a polygon.

        Args:
            vertices: ``"x,y x,y ..."`` (also ``;``-separated) or an (N, 2) sequence of (x, y) pixels, N >= 3.
        """
        from matplotlib.path import Path as MplPath

        try:
            pts = self._parse(vertices)
        except ValueError as e:
            self.status.value = f"<span style='color:#c00'>{html.escape(str(e))}</span>"
            return
        H, W = self._mask.shape
        yy, xx = np.mgrid[0:H, 0:W]
        inside = MplPath(pts).contains_points(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(H, W)
        m = self._mask.copy()
        m[inside] = not erase
        self.status.value = f"{'erased' if erase else 'added'} a polygon of {len(pts)} vertices ({int(inside.sum())} px)"
        self._set(m)

    @staticmethod
    def _parse(vertices) -> np.ndarray:
        if isinstance(vertices, str):
            pts = []
            for tok in vertices.replace(";", " ").split():
                xy = tok.split(",")
                if len(xy) != 2:
                    raise ValueError(f"polygon vertex {tok!r}: write x,y (pixels), vertices separated by spaces")
                try:
                    pts.append((float(xy[0]), float(xy[1])))
                except ValueError:
                    raise ValueError(f"polygon vertex {tok!r}: x and y must be numbers") from None
            arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        else:
            arr = np.asarray(vertices, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3:
            raise ValueError(f"polygon: need at least 3 (x, y) vertices; got {len(arr) if arr.ndim == 2 else arr.shape}")
        return arr

    def _set(self, mask: np.ndarray) -> None:
        self._mask = np.asarray(mask, dtype=bool).copy()
        self._sync()

    def _sync(self) -> None:
        for r in range(self.cells):
            for c in range(self.cells):
                rgb = self._cell_means[r, c]
                if self.cell_filled(r, c):
                    rgb = 0.4 * rgb + 0.6 * np.array([230.0, 30.0, 30.0])
                self.buttons[r * self.cells + c].style.button_color = "#%02x%02x%02x" % tuple(int(v) for v in rgb)
        self.preview.value = self._preview_png()

    def _preview_png(self) -> bytes:
        import io

        from PIL import Image

        img = self.image.astype(np.float32)
        red = np.array([255.0, 30.0, 30.0])
        img[self._mask] = 0.5 * img[self._mask] + 0.5 * red
        buf = io.BytesIO()
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
        return buf.getvalue()
