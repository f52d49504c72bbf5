"""Grid runs: every setting of a :class:`~insid3lab.SettingsGrid` scored in one pass over the episodes.

``run_evaluation(model, dataset, out, grid={"tau": [0.5, 0.6], ...})`` (``insid3lab eval --grid``)
evaluates every setting on the same episodes. Per episode the references and the target are
encoded once per image size and every setting is decoded from that shared work
(:func:`insid3lab.segment_grid`, :func:`insid3lab.segment_labels_grid`,
:func:`insid3lab.segment_instances_grid`); each setting's counts equal those of a run with
that setting alone.

The run folder is the one of a single run (the same lock, ``run.json``, records, resume and
sharding across processes), with these differences:

* ``run.json``'s identity holds the grid (``grid``: its axes and settings), so a resumed run must
  have the same grid (:func:`grid_difference` names what differs);
* a record holds the episode's shared facts (``target``, ``references``; ``size`` and ``gt`` for
  instances) and ``grid``: one entry per setting, in the grid's order, each naming its setting
  (``setting``: ``{axis: value}``) with that setting's own fields (``intersection``, ``union``,
  ``iou``; ``ways``; ``pred``). :func:`setting_record` gives the record of one setting;
* ``grid.json``: ``{"axes", "base", "primary", "configs": [{"params": {axis: value}, ...}]}``, each
  config with the keys of ``summary.json`` for that setting;
* ``summary.json`` is the summary of the *primary* setting: the base setting (the model's own
  ``params``) when the grid holds it, else the grid's first setting; its ``grid`` entry says which.

Benchmarks whose predictions cannot share one encoding are refused (:func:`check_grid_run`).
"""

from __future__ import annotations

from typing import Any

import insid3lab
from insid3lab.eval.reports.summary import build_summary
from insid3lab.eval.run.episodes import Episode
from insid3lab.eval.run.files import GRID_FILE, plain
from insid3lab.eval.run.instances import instance_predictions, instance_truth
from insid3lab.eval.run.nway import label_map_counts, nway_truth, set_nway_shots
from insid3lab.eval.run.segment import mask_counts, set_shots

__all__ = [
    "GRID_FILE",
    "check_grid_run",
    "grid_difference",
    "grid_document",
    "grid_entry",
    "grid_episode",
    "grid_of",
    "grid_summaries",
    "primary_setting",
    "setting_models",
    "setting_record",
]


def grid_of(model, grid) -> insid3lab.SettingsGrid:
    """``grid`` as a :class:`~insid3lab.SettingsGrid` on the model's ``params``, its image sizes checked against the
    model; a ValueError (one line) for a grid that cannot run."""
    params = getattr(model, "params", None)
    if not isinstance(params, insid3lab.Params):
        raise ValueError("grid: a grid run needs an insid3lab.INSID3 model (its params are the grid's base setting)")
    g = insid3lab.SettingsGrid.from_spec(grid, params)
    patch = int(getattr(model, "patch_size", 1))
    bad = sorted({p.image_size for p in g.settings if p.image_size % patch})
    if bad:
        raise ValueError(f"grid: image_size={bad[0]}: must be a positive multiple of the patch size {patch}")
    return g


def check_grid_run(dataset, task: str) -> None:
    """A ValueError (one line) for a benchmark or task whose settings cannot share one encoding per episode."""
    if task == "keypoints":
        raise ValueError(
            f"grid: {dataset.name} scores keypoint matching, which reads only image_size, svd_components and debias "
            "(none of the clustering or aggregation a grid shares); evaluate it with one run per setting"
        )


def primary_setting(grid) -> int:
    """The setting ``summary.json`` holds: the base setting when the grid holds it, else the first."""
    i = grid.base_index
    return 0 if i is None else i


def grid_difference(old: dict | None, new: dict | None) -> str:
    """What differs between the grids of two identities (``SettingsGrid.to_json()`` or None), in words."""
    if old is None:
        return "the stored run is not a grid run (run it again without a grid, or in another folder)"
    if new is None:
        return "the stored run is a grid run; give it the same grid to resume"
    parts = []
    oa, na = old.get("axes", {}), new.get("axes", {})
    for name in list(oa) + [n for n in na if n not in oa]:
        if name not in na:
            parts.append(f"axis {name} is stored ({_values(oa[name])}) but not given now")
        elif name not in oa:
            parts.append(f"axis {name} is given now ({_values(na[name])}) but not stored")
        elif oa[name] != na[name]:
            parts.append(f"{name}: stored {_values(oa[name])}, now {_values(na[name])}")
    if not parts and old.get("settings") != new.get("settings"):
        parts.append(f"the settings differ ({len(old.get('settings', []))} stored, {len(new.get('settings', []))} now)")
    return "the stored grid differs: " + "; ".join(parts or ["(order of the axes)"])


def _values(values: list) -> str:
    return "[" + ", ".join(map(str, values)) + "]"


def setting_record(rec: dict, j: int) -> dict:
    """The record of setting ``j`` of a grid record: the shared fields and the setting's own (bad records as they are)."""
    if "grid" not in rec:
        return rec
    out = {k: v for k, v in rec.items() if k != "grid"}
    out.update({k: v for k, v in rec["grid"][j].items() if k != "setting"})
    return out


def _named(grid, fields: list[dict]) -> list[dict]:
    return [{"setting": grid.values(j), **f} for j, f in enumerate(fields)]


def _by_object(items: list, score) -> list:
    """``score(item)`` for each item, once per distinct object (settings with the same prediction share it)."""
    done: dict[int, Any] = {}
    return [done[id(x)] if id(x) in done else done.setdefault(id(x), score(x)) for x in items]


def grid_episode(model, dataset, ep: Episode, ignore_value: int | None, *, grid, task: str, ways: int) -> dict:
    """Predict every setting of ``grid`` on one episode and score each; returns the record's fields."""
    if task == "instances":
        refs, tgt = set_shots(model, dataset, ep, label=ep.class_name)
        found = insid3lab.segment_instances_grid(model, tgt.image, grid)
        sizes = [(p.image_size, p.image_size) if model.resize_to_orig_size is False else tuple(tgt.image.shape[:2])
                 for p in grid.settings]  # fmt: skip
        truth = {s: instance_truth(dataset, ep, s) for s in dict.fromkeys(sizes)}
        shared = {"size": list(sizes[0]), "gt": truth[sizes[0]]} if len(truth) == 1 else {}
        fields = [{"pred": instance_predictions(f, s), **({} if shared else {"size": list(s), "gt": truth[s]})}
                  for f, s in zip(found, sizes)]  # fmt: skip
        return {"target": tgt.image_path, "references": [r.image_path for r in refs], **shared,
                "grid": _named(grid, fields)}  # fmt: skip
    if ways > 1:
        shots = set_nway_shots(model, dataset, ep)
        tgt, labels, ignore = nway_truth(dataset, ep, ignore_value)
        names = list(model.labels)
        maps = [r.label_map for r in insid3lab.segment_labels_grid(model, tgt.image, grid)]
        fields = _by_object(maps, lambda m: label_map_counts(names, ep, m, labels, ignore))
        return {"target": tgt.image_path, "references": [r.image_path for refs in shots for r in refs],
                "grid": _named(grid, fields)}  # fmt: skip
    refs, tgt = set_shots(model, dataset, ep)
    masks = insid3lab.segment_grid(model, tgt.image, grid)
    truths: dict = {}
    fields = _by_object(masks, lambda m: mask_counts(m, tgt, ignore_value, truths=truths))
    return {"target": tgt.image_path, "references": [r.image_path for r in refs], "grid": _named(grid, fields)}


# ───────────────────────── the grid's summaries ─────────────────────────


def setting_models(model, grid, msettings: dict) -> list[dict]:
    """The model's settings under each setting of ``grid`` (``msettings`` with what ``model.settings()`` says while
    ``model.params`` is that setting: the hyper-parameters, the r in use, ...); the model's params are restored."""
    saved = model.params
    try:
        out = []
        for p in grid.settings:
            model.params = p
            out.append({**msettings, **{k: plain(v) for k, v in model.settings().items()}})
        return out
    finally:
        model.params = saved


def grid_summaries(grid, records: dict[int, dict], meters: list, models: list[dict], facts: dict) -> list[dict]:
    """One summary per setting (``build_summary`` of that setting's records and meter, with its model settings from
    :func:`setting_models`), each with ``params``: the setting's axes. Every process returns the same list."""
    out = []
    primary = primary_setting(grid)
    # each setting's summary names its own setting; the whole grid is said once (grid.json's axes, run.json)
    facts = {**facts, "identity": {k: v for k, v in facts["identity"].items() if k != "grid"}}
    for j, meter in enumerate(meters):
        mine = {i: setting_record(r, j) for i, r in records.items()}
        summary = build_summary(mine, meter, msettings=models[j], quiet=j != primary, **facts)
        out.append({"params": grid.values(j), **summary})
    return out


def grid_entry(grid, primary: int) -> dict:
    """``summary.json``'s ``grid`` entry: which setting the summary holds, and where the others are."""
    return {
        "file": GRID_FILE,
        "settings": len(grid),
        "setting": grid.values(primary),
        "label": grid.label(primary),
        "base_in_grid": grid.base_index is not None,
    }


def grid_document(grid, primary: int, configs: list[dict]) -> dict:
    """The content of ``grid.json``: ``axes``, ``base`` (the base setting's value of each axis), ``primary``
    (the index of the setting ``summary.json`` holds), ``product`` and ``configs`` (one summary per setting)."""
    spec = grid.to_json()
    return {"axes": spec["axes"], "base": grid.base_values(), "primary": primary, "product": spec["product"],
            "configs": configs}  # fmt: skip
