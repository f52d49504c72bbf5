"""Episodes are a function of (seed, index) alone, never reuse the target, and round-trip through JSON."""

from __future__ import annotations

import pytest
from helpers.benchmarks import data_root

from insid3lab.eval.datasets import BENCHMARKS, build_dataset
from insid3lab.eval.run.episodes import (
    Episode,
    episode_rng,
    load_episodes,
    sample_episode,
    sample_episodes,
    save_episodes,
)


@pytest.mark.parametrize("name", [n for n, e in BENCHMARKS.items() if not e.annotations])
def test_episode_depends_on_seed_and_index_only(eval_data, name):
    ds = build_dataset(name, data_root(eval_data, name))
    eps = sample_episodes(ds, 6, seed=5)
    again = sample_episodes(build_dataset(name, data_root(eval_data, name)), 6, seed=5)
    assert eps == again
    # drawn alone and in reverse order: the same episodes
    assert [sample_episode(ds, 5, i) for i in reversed(range(6))] == list(reversed(eps))
    for e in eps:
        assert e.index == eps.index(e)
        assert all(ds.item_key(r) != ds.item_key(e.target) for r in e.references)


@pytest.mark.parametrize("name", ["coco", "lvis", "paco_part", "pascal_part", "isic", "suim", "isaid", "folder"])
def test_two_shots_are_distinct_and_differ_with_seed(eval_data, name):
    ds = build_dataset(name, data_root(eval_data, name), shots=2)
    eps = sample_episodes(ds, 12, seed=0)
    for e in eps:
        keys = [ds.item_key(r) for r in e.references]
        assert len(keys) == 2 and len(set(keys)) == 2 and ds.item_key(e.target) not in keys
    assert sample_episodes(ds, 12, seed=1) != eps


def test_rng_is_keyed_by_seed_and_index():
    a = episode_rng(3, 7).integers(1 << 30, size=4).tolist()
    assert a == episode_rng(3, 7).integers(1 << 30, size=4).tolist()
    assert a != episode_rng(3, 8).integers(1 << 30, size=4).tolist()
    assert a != episode_rng(4, 7).integers(1 << 30, size=4).tolist()
    with pytest.raises(ValueError, match="seed=-1"):
        episode_rng(-1, 0)


def test_json_round_trip(eval_data, tmp_path):
    ds = build_dataset("paco_part", eval_data)
    eps = sample_episodes(ds, 5, seed=2)
    path = save_episodes(tmp_path / "episodes.json", eps, meta={"dataset": "paco_part", "seed": 2})
    back, meta = load_episodes(path)
    assert back == eps and meta == {"dataset": "paco_part", "seed": 2}
    assert [e.digest() for e in back] == [e.digest() for e in eps]
    # the loaded items load the same samples
    a, b = ds.load(eps[0].target, eps[0].class_index), ds.load(back[0].target, back[0].class_index)
    assert (a.mask == b.mask).all() and (a.image == b.image).all()
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="insid3lab-episodes/1"):
        load_episodes(tmp_path / "bad.json")


def test_default_count_and_validation(eval_data):
    ds = build_dataset("isaid", eval_data)
    assert len(sample_episodes(ds, seed=0)) == ds.default_episodes == 7
    with pytest.raises(ValueError, match="episodes=0"):
        sample_episodes(ds, 0)
    with pytest.raises(ValueError, match="not an episode record"):
        Episode.from_json({"index": 0})


# ───────────────────────── paths that leave the benchmark's folder ─────────────────────────


@pytest.mark.parametrize("name", ["../../../../etc/hostname", "/etc/hostname", "ok/../../x.png", "..\\..\\x.png"])
def test_an_episodes_file_cannot_open_files_outside_the_benchmark(eval_data, tmp_path, name):
    import json

    from helpers.runs import FakeModel

    from insid3lab.eval import run_evaluation

    ds = build_dataset("folder", eval_data / "defects")
    path = tmp_path / "episodes.json"
    save_episodes(path, sample_episodes(ds, 3, seed=0))
    doc = json.loads(path.read_text())
    doc["episodes"][1]["references"][0]["image"] = name
    path.write_text(json.dumps(doc))
    model = FakeModel()
    with pytest.raises(ValueError) as err:
        run_evaluation(model, ds, tmp_path / "run", episodes=str(path), progress=False)
    msg = str(err.value)
    assert f"episodes file {str(path)!r}" in msg and "episode 1" in msg and repr(name) in msg
    assert "leaves the benchmark's folder" in msg and model.calls == 0


def test_a_split_file_cannot_open_files_outside_the_benchmark(eval_data, tmp_path):
    import pickle
    import shutil

    from helpers.runs import FakeModel

    from insid3lab.eval import run_evaluation

    shutil.copytree(eval_data / "COCO2014", tmp_path / "COCO2014")
    split = tmp_path / "COCO2014" / "splits" / "val" / "fold0.pkl"
    with open(split, "rb") as fh:
        classwise = pickle.load(fh)
    classwise[0] = [f"val2014/../../../{n.split('/')[-1]}" for n in classwise[0]]  # person: every image escapes
    classwise[4] = [f"/abs/{n}" for n in classwise[4]]
    with open(split, "wb") as fh:
        pickle.dump(classwise, fh)
    model = FakeModel()
    with pytest.raises(ValueError, match=r"episode 0: its target names .* which leaves the benchmark's folder .*"
                       r"split files"):  # fmt: skip
        run_evaluation(model, build_dataset("coco", tmp_path), tmp_path / "run", episodes=4, progress=False)
    assert model.calls == 0
