"""The method options of every command are generated from :class:`insid3lab.method.params.Params`:
one flag per field, its default, range and help from the record; ``--model`` falls back to
``$INSID3LAB_WEIGHTS`` in every command that builds a model."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field

import pytest

import insid3lab.cli.options
from insid3lab.cli import build_parser, main
from insid3lab.cli.options import (
    CORRESPONDENCE_SVD_COMPONENTS,
    add_hyperparameter_arguments,
    method_flag,
    method_params,
    pipeline_kwargs,
)
from insid3lab.method.params import Params, describe, kind, option
from insid3lab.synthetic import write_folder_dataset

#: Every command that takes the method's options, with its required arguments, and the r it uses by default.
COMMANDS = {
    "segment": (["--ref", "r.png", "--ref-mask", "m.png", "t.png", "--out", "o"], Params.svd_components),
    "match": (["--ref", "r.png", "--points", "p.json", "t.png", "--out", "o"], CORRESPONDENCE_SVD_COMPONENTS),
    "track": (["--frames", "f", "--mask", "m.png", "--out", "o"], Params.svd_components),
    "eval": (["--dataset", "folder", "--data-root", "d", "--model", "w", "--out", "o"], Params.svd_components),
    "bench": ([], Params.svd_components),
}
FIELDS = dataclasses.fields(Params)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def _parse(command: str, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args([command, *COMMANDS[command][0], *extra])


def _out_of_range(f: dataclasses.Field) -> list:
    """Values just outside the field's range (as the type the field holds)."""
    lo, hi, lo_in, hi_in = f.metadata["range"]
    step = 1 if kind(f) == "int" else 0.5
    bad = [lo - step if lo_in else lo]
    if hi is not None:
        bad.append(hi + step if hi_in else hi)
    return [int(b) if kind(f) == "int" else float(b) for b in bad]


def test_the_flags_are_derived_from_the_fields():
    flags = [method_flag(f) for f in FIELDS]
    assert flags[:4] == ["--image-size", "--svd-components", "--tau", "--merge-threshold"]
    assert {"--no-debias", "--clustering", "--refine", "--basis-image"} <= set(flags)
    assert {"--basis-noise-images", "--basis-seed"} <= set(flags)
    assert len(set(flags)) == len(FIELDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_has_its_flag_help_and_default(command):
    sub = _subparser(build_parser(), command)
    by_flag = {s: a for a in sub._actions for s in a.option_strings}
    for f in FIELDS:
        action = by_flag[method_flag(f)]
        assert f.metadata["help"] in action.help, f.name
        if kind(f) != "bool":
            assert describe(f.name) in action.help, f.name
    args = _parse(command)
    r = COMMANDS[command][1]
    # options left unset are the record's defaults (r: the command's own, 20 for match)
    assert method_params(args, svd_components=r) == Params(svd_components=r)
    for f in FIELDS:
        value = getattr(args, method_flag(f)[2:].replace("-", "_"))
        if kind(f) == "bool":
            assert value is False  # the switch is off: the field keeps its default
        elif f.name == "svd_components" and command in ("match", "eval"):
            assert value is None  # each picks its r when the flag is not given (eval: 20 for spair)
        else:
            assert value == getattr(Params(), f.name), (command, f.name)


@pytest.mark.parametrize("command", COMMANDS)
def test_given_values_reach_the_record(command):
    args = _parse(command, "--tau", "0.5", "--no-debias", "--basis-image", "noise", "--basis-noise-images", "3",
                  "--basis-seed", "7", "--svd-components", "12", "--refine", "crf", "--clustering", "torch")  # fmt: skip
    assert method_params(args) == Params(
        tau=0.5, debias=False, basis_image="noise", basis_noise_images=3, basis_seed=7, svd_components=12,
        refine="crf", clustering="torch",
    )  # fmt: skip


@pytest.mark.parametrize("f", [f for f in FIELDS if f.metadata.get("range")], ids=lambda f: f.name)
def test_ranges_are_enforced_with_the_records_message(f, capsys):
    for bad in _out_of_range(f):
        with pytest.raises(ValueError) as record_error:
            Params(**{f.name: bad})
        message = str(record_error.value).replace(f"{f.name}=", "", 1)
        for command in COMMANDS:
            with pytest.raises(SystemExit) as e:
                _parse(command, f"{method_flag(f)}={bad}")
            assert e.value.code == 2
            err = capsys.readouterr().err
            assert f"argument {method_flag(f)}: {message}" in err, (command, err)
    assert "must be" in message


def test_a_value_of_the_wrong_type_names_what_is_allowed(capsys):
    with pytest.raises(SystemExit):
        _parse("segment", "--basis-noise-images", "2.5")
    assert "argument --basis-noise-images: '2.5': must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse("segment", "--basis-image", "white")
    assert "invalid choice: 'white'" in capsys.readouterr().err


@dataclass(frozen=True)
class MoreParams(Params):
    """The record with two fields more, declared only here."""

    halo: int = field(default=3, metadata=option("cells of halo around the mask", range=(1, 9, True, True)))
    smooth: bool = field(default=False, metadata=option("smooth the mask's boundary"))


def test_a_new_field_gets_its_flag_from_the_record(capsys):
    p = argparse.ArgumentParser()
    add_hyperparameter_arguments(p, record=MoreParams)
    assert method_params(p.parse_args([]), record=MoreParams) == MoreParams()
    args = p.parse_args(["--halo", "5", "--smooth", "--tau", "0.4"])
    assert method_params(args, record=MoreParams) == MoreParams(halo=5, smooth=True, tau=0.4)
    with pytest.raises(SystemExit):
        p.parse_args(["--halo", "10"])
    assert "argument --halo: 10: must be in [1, 9]" in capsys.readouterr().err
    assert "cells of halo around the mask (default 3)" in p.format_help()


def test_a_new_field_reaches_every_command_without_an_edit(monkeypatch, capsys):
    monkeypatch.setattr(insid3lab.cli.options, "Params", MoreParams)
    for command in COMMANDS:
        args = _parse(command, "--halo", "4", "--smooth")
        assert (method_params(args).halo, method_params(args).smooth) == (4, True), command
    # bench takes only what it can compare with the authors' procedure, and says so
    assert main(["bench", "--halo", "4", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "insid3lab: error: bench measures the method against the authors' procedure: --halo 4 does not apply"


@pytest.mark.parametrize(
    ("flags", "shown"),
    [(["--no-debias"], "--no-debias"), (["--basis-seed", "3"], "--basis-seed 3"),
     (["--basis-image", "noise"], "--basis-image noise")],
)  # fmt: skip
def test_bench_refuses_what_the_authors_procedure_lacks(flags, shown, capsys):
    assert main(["bench", *flags, "--quiet"]) == 1
    assert capsys.readouterr().err.strip().endswith(f"{shown} does not apply")


def test_pipeline_kwargs_hold_every_field(monkeypatch):
    args = _parse("segment", "--basis-seed", "2", "--no-cache", "--autocast", "bfloat16")
    kw = pipeline_kwargs(args)
    assert {k: kw[k] for k in (f.name for f in FIELDS)} == dataclasses.asdict(Params(basis_seed=2))
    assert (kw["basis_cache"], kw["autocast_dtype"]) == (False, "bfloat16")


# ----------------------------------------------------------------------------- --model and $INSID3LAB_WEIGHTS
@pytest.mark.parametrize("command", COMMANDS)
def test_model_falls_back_to_the_environment(command, monkeypatch):
    monkeypatch.setenv("INSID3LAB_WEIGHTS", "random:tiny:3")
    argv = [a for a in COMMANDS[command][0] if a not in ("--model", "w")]
    assert build_parser().parse_args([command, *argv]).model == "random:tiny:3"
    assert build_parser().parse_args([command, *argv, "--model", "m"]).model == "m"


def test_eval_without_model_or_environment_says_so(monkeypatch, capsys):
    monkeypatch.delenv("INSID3LAB_WEIGHTS", raising=False)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["eval", "--dataset", "folder", "--data-root", "d", "--out", "o"])
    assert e.value.code == 2 and "the following arguments are required: --model" in capsys.readouterr().err


def test_eval_runs_on_the_weights_of_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("INSID3LAB_WEIGHTS", "random:tiny")
    data = write_folder_dataset(tmp_path / "D", 3, size=64)
    out = tmp_path / "R"
    argv = ["eval", "--dataset", "folder", "--data-root", str(data), "--out", str(out)]
    assert main([*argv, "--image-size", "64", "--episodes", "2", "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["model_source"] == "random:tiny" and summary["episodes"]["evaluated"] == 2
    assert summary["settings"]["model"]["image_size"] == 64
