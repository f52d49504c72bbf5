"""The project's own files agree with each other."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _names(reqs):
    return {re.split(r"[<>=!~\[ ;]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs if r.strip()}


def test_environment_yml_installs_what_pyproject_declares():
    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["lab"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = _names(p for p in pip_section if not p.startswith("-e"))
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    assert any(p.startswith("-e") and "[lab]" in p for p in pip_section), (
        "environment.yml installs the package with the lab extra"
    )
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python") for d in conda) and "pip" in conda


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme, re.S)
    assert m, "README.md marks its test command with <!-- test-command -->"
    command = m.group(1).strip()
    assert command in ci, "the README's test command must appear verbatim in .ci/run"


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["insid3lab"] == "insid3lab.cli:main"
    from insid3lab.cli import main

    assert callable(main)


def test_the_top_level_namespace_is_the_exports_alone():
    from types import ModuleType

    import insid3lab
    from insid3lab.method.params import Params

    assert insid3lab.Params is Params
    # submodules become attributes once imported; every other public name is an export
    public = {n for n in dir(insid3lab) if not n.startswith("_") and not isinstance(getattr(insid3lab, n), ModuleType)}
    assert public == set(insid3lab.__all__), public ^ set(insid3lab.__all__)


def _readme_main_command() -> list[list[str]]:
    """The insid3lab parts of the README's main command, as argument lists (weights: a tiny random model)."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- main-command -->\s*```bash\n(.+?)\n```", readme, re.S)
    assert m, "README.md marks its main command with <!-- main-command -->"
    command = re.sub(r'"\$\{INSID3LAB_WEIGHTS:-[^}]*\}"', "random:tiny", m.group(1).strip())
    parts = [shlex.split(p) for p in command.split("&&")]
    return [p[1:] for p in parts if p and p[0] == "insid3lab"]


def test_the_readme_main_command_succeeds_twice_in_a_row(tmp_path, monkeypatch, capsys):
    from insid3lab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))
    steps = _readme_main_command()
    assert [s[0] for s in steps] == ["samples", "segment"]
    for attempt in (1, 2):
        for argv in steps:
            assert main(argv) == 0, (attempt, argv, capsys.readouterr().err)
    err = capsys.readouterr().err
    assert "error" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"target_{i}.png.{kind}.png" for i in (1, 2, 3) for kind in ("overlay", "pred")
    ]
