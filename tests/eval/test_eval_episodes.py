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
