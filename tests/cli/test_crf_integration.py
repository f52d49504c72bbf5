"""``refine="crf"`` beyond the stage: the commands (segment, eval, bench), the refinement figure, the story.

The tiny random backbone on the sample scene gives a non-empty mask whose boundary the CRF moves,
so every check below compares a refined result with the library's refined mask and with the
unrefined one. Nothing here asserts on time.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.cli import segment_argv
from helpers.runs import comparable
from PIL import Image

from insid3lab import INSID3, load_backbone
from insid3lab.bench import PIPELINE_STAGES
from insid3lab.bench.running import BASELINE_STAGES, stage_names
from insid3lab.cli import build_parser, main
from insid3lab.stages.refine import register_refiner
from insid3lab.viz import REFINEMENT_PANELS, refinement, story

S = 128


def _library_mask(workdir, refine: str, *, trace: bool = False):
    s = workdir / "samples"
    model = INSID3(load_backbone(workdir / "model", device="cpu"), image_size=S, svd_components=8, refine=refine,
                   basis_cache=False, progress=False)  # fmt: skip
    model.set_reference(s / "reference.png", s / "reference_mask.png")
    return model.segment(s / "target_1.png", return_trace=trace)


@pytest.fixture(scope="module")
def traces(workdir):
    """(trace with refine="crf", trace with refine="bilinear") of the sample target."""
    return _library_mask(workdir, "crf", trace=True)[1], _library_mask(workdir, "bilinear", trace=True)[1]


# ───────────────────────── command line ─────────────────────────


def _sub_help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def test_help_lists_the_registered_refiners(registries):
    for command in ("segment", "eval", "bench"):
        assert "one of: bilinear (no refinement), crf (the authors' dense CRF" in " ".join(
            _sub_help(command).split()
        ), command

    @register_refiner("identity_for_help", help="the mask as it is")
    def identity(mask, image):
        return mask

    assert "crf (the authors' dense CRF on a band around the boundary), identity_for_help (the mask as it is)" in (
        " ".join(_sub_help("segment").split())
    )


def test_unknown_refiner_is_a_one_line_error(workdir, tmp_path, capsys):
    s = workdir / "samples"
    rc = main(segment_argv(workdir, [s / "target_1.png"], tmp_path / "o", "--refine", "sharpest", "--quiet"))
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["insid3lab: error: --refine sharpest: allowed bilinear, crf"]


def test_segment_refine_crf_writes_the_librarys_refined_mask(workdir, tmp_path):
    s = workdir / "samples"
    out = tmp_path / "out"
    rc = main(segment_argv(workdir, [s / "target_1.png"], out, "--image-size", S, "--no-cache", "--no-overlay",
                           "--quiet", "--refine", "crf"))  # fmt: skip
    assert rc == 0
    written = np.asarray(Image.open(out / "target_1.png.pred.png")) > 0
    refined = _library_mask(workdir, "crf").numpy()
    plain = _library_mask(workdir, "bilinear").numpy()
    assert np.array_equal(written, refined)
    assert (refined != plain).sum() > 0  # the refinement changed the mask, so the equality above says something


def test_eval_records_the_refiner_and_a_resume_cannot_mix(eval_data, tmp_path, tiny_saved):
    from insid3lab.cli.eval import main as eval_main
    from insid3lab.eval import build_dataset, run_evaluation

    out = tmp_path / "crf"
    argv = ["eval", "--dataset", "isaid", "--data-root", str(eval_data), "--model", str(tiny_saved.hf_dir),
            "--image-size", "64", "--svd-components", "8", "--device", "cpu", "--no-progress", "--no-cache",
            "--episodes", "2", "--out", str(out)]  # fmt: skip
    assert eval_main([*argv, "--refine", "crf"]) == 0
    run = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert run["identity"]["model"]["refine"] == "crf"
    assert summary["settings"]["model"]["refine"] == "crf"
    # the same episodes with the library's refine="crf" give the same numbers
    model = INSID3(tiny_saved.backbone, image_size=64, svd_components=8, refine="crf", basis_cache=False)
    api = run_evaluation(
        model, build_dataset("isaid", eval_data), tmp_path / "api", episodes=2, progress=False, protocol="paper"
    )  # the command's default
    assert comparable(api) == comparable(summary)
    # resuming without the refiner is refused, naming the setting
    with pytest.raises(ValueError, match=r"cannot resume .*'refine': 'crf'"):
        eval_main([*argv, "--resume"])


def test_bench_refine_crf_reports_the_refinements_time_and_memory(workdir, tmp_path, capsys):
    s = workdir / "samples"
    out = tmp_path / "bench.json"
    rc = main(["bench", "--model", str(workdir / "model"), "--image-size", str(S), "--svd-components", "8",
               "--device", "cpu", "--cold-start", "none", "--warmup", "0", "--quiet", "--refine", "crf",
               "--ref", str(s / "reference.png"), "--ref-mask", str(s / "reference_mask.png"),
               "--target", str(s / "target_1.png"), "--out", str(out)])  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["config"]["refine"] == "crf"
    assert list(res["stages"]) == [*PIPELINE_STAGES, "refinement"]
    assert list(res["baseline"]["stages"]) == [*BASELINE_STAGES, "refinement"]
    r = res["refinement"]
    assert r["name"] == "crf" and r["time"]["mean_s"] == res["stages"]["refinement"] > 0
    assert 0 < r["fraction_of_decode"] < 1
    _, trace = _library_mask(workdir, "crf", trace=True)
    assert r["band_pixels"] == int(trace.refine_band.sum()) > 0
    assert r["memory"]["kind"] == "peak_rss_growth"
    assert r["memory"]["bytes"] is None or r["memory"]["bytes"] >= 0
    # both paths refined: the baseline's masks are the pipeline's
    assert res["baseline"]["identical"] == 1
    assert res["mask_pixels"] == [int(_library_mask(workdir, "crf").sum())]
    printed = capsys.readouterr().out
    assert "refinement (crf):" in printed and "refine crf" in printed


def test_bench_stage_names_follow_the_refiner():
    assert stage_names("bilinear") == PIPELINE_STAGES
    assert stage_names("crf") == (*PIPELINE_STAGES, "refinement")
    assert stage_names("crf", baseline=True) == (*BASELINE_STAGES, "refinement")
    assert stage_names(lambda mask, image: mask) == (*PIPELINE_STAGES, "refinement")


# ───────────────────────── figures ─────────────────────────


def test_refinement_figure_shows_before_band_after_and_changes(traces, workdir):
    t, _ = traces
    gt = workdir / "samples" / "target_1_mask.png"
    fig = refinement(t, ground_truth=gt)
    assert len(fig.axes) == 5 - 1  # four panels, no colour bar
    titles = [ax.get_title() for ax in fig.axes]
    for title, name in zip(titles, REFINEMENT_PANELS):
        assert title.startswith(name), (title, name)
    before, after, band = t.mask_upsampled, t.mask_refined, t.refine_band
    assert f"({int(before.sum())} px)" in titles[0] and f"({int(after.sum())} px)" in titles[2]
    assert titles[1] == f"band ({int(band.sum())} px)"
    added, removed = int((after & ~before).sum()), int((before & ~after).sum())
    assert titles[3] == f"changes (+{added} / -{removed} px)" and added + removed > 0
    assert "IoU" in titles[0] and "IoU" in titles[2]
    # every change lies in the band
    assert not bool(((after ^ before) & ~band).any())
    zoomed = refinement(t, zoom=True)
    rows = torch.nonzero(band)[:, 0]
    H = t.target_size[0]
    lo, hi = sorted(zoomed.axes[0].get_ylim())
    assert lo <= int(rows.min()) * H / S and hi >= (int(rows.max()) + 1) * H / S - 1
    assert hi - lo < H  # narrower than the whole image


def test_refinement_figure_without_refinement_says_so(traces):
    _, t = traces
    assert t.mask_refined is None and t.refine_band is None
    fig = refinement(t)
    assert [ax.get_title().split(" (")[0] for ax in fig.axes] == list(REFINEMENT_PANELS)
    for ax in fig.axes[1:]:
        assert any("no refinement in this trace (refine='bilinear')" in x.get_text() for x in ax.texts)
    with pytest.raises(ValueError, match="refinement: the trace has no target_image"):
        refinement(type(t)(mask_upsampled=t.mask_upsampled))


def test_story_shows_the_refined_mask(traces):
    t, plain = traces
    titles = {ax.get_title() for ax in story(t).axes}
    assert "prediction, refined (crf)" in titles
    assert "prediction" in {ax.get_title() for ax in story(plain).axes}
    assert "refine=crf" in story(t)._suptitle.get_text()


def test_cold_start_processes_refine_too(workdir, capsys):
    import time

    from insid3lab.bench import cold_start_child
    from insid3lab.bench.coldstart import CHILD_MARK

    s = workdir / "samples"
    spec = {"model": str(workdir / "model"), "loader": "insid3lab.cli.options:load_model_source", "device": "cpu",
            "weights_dtype": None, "autocast": None, "image_size": S, "svd_components": 8, "tau": 0.6,
            "merge_threshold": 0.2, "clustering": "auto", "refine": "crf", "refs": [str(s / "reference.png")],
            "ref_masks": [str(s / "reference_mask.png")], "target": str(s / "target_1.png")}  # fmt: skip
    pixels = []
    for mode in ("pipeline", "baseline"):
        cold_start_child(time.time(), json.dumps({**spec, "mode": mode}))
        line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(CHILD_MARK)][-1]
        pixels.append(json.loads(line[len(CHILD_MARK) :])["mask_pixels"])
    expected = int(_library_mask(workdir, "crf").sum())
    assert pixels == [expected, expected] and expected != int(_library_mask(workdir, "bilinear").sum())


def test_spatial_lattice_is_shared_by_images_of_one_size_and_equal_to_a_fresh_one():
    from insid3lab.stages.refine.crf import crf_features, spatial_lattice
    from insid3lab.stages.refine.lattice import PermutohedralLattice

    cpu = torch.device("cpu")
    a = spatial_lattice(40, 56, 1.5, cpu)
    assert spatial_lattice(40, 56, 1.5, cpu) is a and spatial_lattice(40, 56, 2.0, cpu) is not a
    spatial, _ = crf_features(torch.rand(3, 40, 56), 4.0, 0.03, 1.5)
    fresh = PermutohedralLattice(spatial)
    assert torch.equal(a.index, fresh.index) and torch.equal(a.weight, fresh.weight)
    values = torch.rand(40 * 56, 1)
    assert torch.equal(a.filter(values), fresh.filter(values))
