"""The method's knobs as ipywidgets controls, shared by the explorers (:mod:`insid3lab.lab.explorer`).

One function builds the sliders and dropdowns of the hyper-parameters every explorer has
(τ, SVD components, merge threshold, debiasing, clustering, refinement); each explorer adds its
own (image size, layer) and wires them to what they recompute. The clustering and refinement
dropdowns list the registries' names (:func:`insid3lab.method.params.registered`), so a
clusterer or refiner registered before the explorer is built is offered with no other edit.
"""

from __future__ import annotations

import ipywidgets as widgets

__all__ = ["METHOD_CONTROLS", "apply_control", "method_controls", "png_panels", "registry_options", "wire"]

#: The controls of :func:`method_controls` and the :class:`~insid3lab.method.params.Params` field each sets.
METHOD_CONTROLS = {
    "tau": "tau",
    "svd": "svd_components",
    "merge": "merge_threshold",
    "debias": "debias",
    "clustering": "clustering",
    "refine": "refine",
}


def registry_options(step: str, current) -> list[tuple[str, object]]:
    """A pluggable step's dropdown (label, value) pairs: every registered name of ``step``
    (``"clustering"`` or ``"refine"``), and ``current`` when it is a callable."""
    from insid3lab.method.params import choices

    options = [(name, name) for name in choices(step)]
    if not isinstance(current, str):
        options.append((getattr(current, "__name__", "custom"), current))
    return options


def method_controls(model, svd_limit: int) -> dict[str, widgets.Widget]:
    """``tau``, ``svd``, ``merge``, ``debias``, ``clustering`` and ``refine`` controls at ``model``'s current settings.

    Args:
        model: an :class:`~insid3lab.INSID3` (its ``params`` give the values).
        svd_limit: the largest number of SVD components the slider offers (min(C, h*w)).
    """

    def slider(value, lo, hi, description):
        return widgets.FloatSlider(
            value=value,
            min=lo,
            max=hi,
            step=0.05,
            description=description,
            continuous_update=False,
            readout_format=".2f",
        )

    return {
        "tau": slider(model.tau, 0.05, 1.0, "τ"),
        "svd": widgets.IntSlider(
            value=model.svd_components, min=0, max=svd_limit, step=1, description="SVD r", continuous_update=False
        ),
        "merge": slider(model.merge_threshold, -0.5, 1.0, "merge"),
        "debias": widgets.Dropdown(
            options=[("on", True), ("off", False)], value=bool(model.debias), description="debias"
        ),
        "clustering": widgets.Dropdown(
            options=registry_options("clustering", model.clustering), value=model.clustering, description="clustering"
        ),
        "refine": widgets.Dropdown(
            options=registry_options("refine", model.refine), value=model.refine, description="refine"
        ),
    }


def apply_control(model, name: str, value) -> None:
    """Set the hyper-parameter behind the control ``name`` (a key of :data:`METHOD_CONTROLS`) on ``model`` (validated)."""
    setattr(model, METHOD_CONTROLS[name], value)


def wire(controls: dict[str, widgets.Widget], css_prefix: str, handler) -> None:
    """Give each control the CSS class ``<css_prefix>-<name>`` and call ``handler(name)`` on a new value."""
    for name, w in controls.items():
        w.add_class(f"{css_prefix}-{name}")
        w.observe(handler(name), names="value")


def png_panels(names, css_class: str, marked: str, marked_class: str) -> dict[str, widgets.Image]:
    """One PNG image widget per name, each with ``css_class``; the one named ``marked`` also gets ``marked_class``."""
    panels = {}
    for name in names:
        img = widgets.Image(format="png")
        img.add_class(css_class)
        if name == marked:
            img.add_class(marked_class)
        panels[name] = img
    return panels
