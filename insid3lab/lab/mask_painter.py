"""Paint a reference mask inside the notebook with plain ipywidgets (:class:`MaskPainter`)."""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from insid3lab.viz.common import as_image, as_mask, resize_nearest

__all__ = ["MaskPainter"]


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
                b = widgets.Button(
                    description="",
                    tooltip=f"row {r}, col {c}",
                    layout=widgets.Layout(width=f"{bw}px", height=f"{bh}px", padding="0", margin="0", border="0"),
                )
                b.on_click(self._cell_handler(r, c))
                self.buttons.append(b)
        grid = widgets.GridBox(
            self.buttons, layout=widgets.Layout(grid_template_columns=f"repeat({cells}, {bw}px)", grid_gap="0px")
        )
        grid.add_class("insid3lab-painter-grid")
        self.preview = widgets.Image(format="png", layout=widgets.Layout(width=f"{panel_px}px"))
        self.preview.add_class("insid3lab-painter-preview")
        self.polygon = widgets.Text(
            placeholder="x,y x,y x,y ... (pixels)",
            description="polygon",
            layout=widgets.Layout(width=f"{max(panel_px, 300)}px"),
        )
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
        self.widget = widgets.VBox(
            [
                widgets.HBox([grid, self.preview]),
                widgets.HBox([self.polygon, add, erase]),
                widgets.HBox([invert, clear, self.status]),
            ]
        )
        self._cell_means = np.array(
            [
                [
                    self.image[self._rows[r] : self._rows[r + 1], self._cols[c] : self._cols[c + 1]]
                    .reshape(-1, 3)
                    .mean(0)
                    for c in range(cells)
                ]
                for r in range(cells)
            ]
        )
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
        block = self._mask[self._rows[row] : self._rows[row + 1], self._cols[col] : self._cols[col + 1]]
        return bool(block.size and block.mean() >= 0.5)

    def toggle(self, row: int, col: int) -> None:
        """Fill the cell if it is not filled, else clear it (what a click does)."""
        value = not self.cell_filled(row, col)
        self._mask[self._rows[row] : self._rows[row + 1], self._cols[col] : self._cols[col + 1]] = value
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
        self.status.value = (
            f"{'erased' if erase else 'added'} a polygon of {len(pts)} vertices ({int(inside.sum())} px)"
        )
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
            raise ValueError(
                f"polygon: need at least 3 (x, y) vertices; got {len(arr) if arr.ndim == 2 else arr.shape}"
            )
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
