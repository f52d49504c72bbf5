"""The positional-basis cache: keyed on every weight, entries verified on load, its own files only."""

from __future__ import annotations

import os
import pathlib
import stat
import warnings

import pytest
import torch

from insid3lab.backbone import random_backbone
from insid3lab.model import basis_cache as cache
from insid3lab.model.insid3 import INSID3

S = 64


@pytest.fixture
def bb():
    return random_backbone("tiny", seed=3)


def _fresh_basis(encoder) -> dict:
    return INSID3(encoder, image_size=S, basis_cache=False, progress=False).positional.svd()


def _cached_basis(encoder) -> dict:
    return INSID3(encoder, image_size=S, basis_cache=True, progress=False).positional.svd()


# ----------------------------------------------------------------- the key
def test_swapping_two_weights_changes_the_fingerprint(bb):
    w = bb.model.model.layer[0].mlp.up_proj.weight  # 256 x 64 = 16384 entries
    flat = w.detach().view(-1)
    before = cache.weights_fingerprint(bb)
    assert before == bb.fingerprint()
    with torch.no_grad():
        a, b = flat[1].clone(), flat[2].clone()  # neither on a 1-in-4 sample; the sum is unchanged
        flat[1], flat[2] = b, a
    after = cache.weights_fingerprint(bb)
    assert after != before and after == bb.fingerprint()
    with torch.no_grad():
        flat[1], flat[2] = a, b
    assert cache.weights_fingerprint(bb) == before


def test_in_place_changes_give_a_new_fingerprint(bb):
    before = cache.weights_fingerprint(bb)
    other = random_backbone("tiny", seed=4)
    bb.load_state_dict(other.state_dict())
    assert cache.weights_fingerprint(bb) == cache.weights_fingerprint(other) != before
    bb.load_state_dict(random_backbone("tiny", seed=3).state_dict())
    assert cache.weights_fingerprint(bb) == before
    p = bb.model.model.layer[1].attention.o_proj.weight
    p.data.copy_(p.data * 1.0000001 + 1e-6)  # does not even bump the tensor's version counter
    assert cache.weights_fingerprint(bb) != before


def test_rope_periods_and_dtype_are_part_of_the_key(bb):
    before = cache.weights_fingerprint(bb)
    bb.set_rope_periods(bb.rope_periods * 1.5)
    assert cache.weights_fingerprint(bb) != before


def test_a_model_whose_unsampled_weights_differ_gets_its_own_basis(isolated_cache):
    a = random_backbone("tiny", seed=5)
    b = random_backbone("tiny", seed=5)
    w = b.model.model.layer[2].mlp.down_proj.weight.detach().view(-1)
    with torch.no_grad():
        w[1::4] = w[1::4][torch.randperm(w[1::4].numel(), generator=torch.Generator().manual_seed(0))]
    basis_a = _cached_basis(a)
    basis_b = _cached_basis(b)
    assert len(list(isolated_cache.glob("*.pt"))) == 2
    assert torch.equal(basis_b["U"], _fresh_basis(b)["U"]) and torch.equal(basis_a["U"], _fresh_basis(a)["U"])
    assert not torch.equal(basis_a["mean"], basis_b["mean"])


# ---------------------------------------------------------- entries on load
def test_a_cached_basis_is_identical_to_a_fresh_one(bb, isolated_cache):
    first = _cached_basis(bb)
    (entry,) = isolated_cache.glob("*.pt")
    assert entry.name == f"{bb.fingerprint()}-s{S}-v{cache._FORMAT}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _cached_basis(bb)
    fresh = _fresh_basis(bb)
    for k in ("U", "S", "mean"):
        assert torch.equal(first[k], fresh[k]) and torch.equal(again[k], fresh[k])


def test_flipped_bits_are_detected_and_the_basis_recomputed(bb, isolated_cache):
    _cached_basis(bb)
    (entry,) = isolated_cache.glob("*.pt")
    data = torch.load(entry, weights_only=True)
    raw = data["U"].view(torch.int32)
    raw[3, 2] ^= 1 << 12  # one bit of one mantissa: still finite, same shapes
    torch.save(data, entry)
    with pytest.warns(UserWarning, match="checksum does not match") as rec:
        got = _cached_basis(bb)
    assert len([w for w in rec if "cached positional basis" in str(w.message)]) == 1
    fresh = _fresh_basis(bb)
    assert all(torch.equal(got[k], fresh[k]) for k in ("U", "S", "mean"))
    # The entry was rewritten and is sound again.
    assert torch.equal(cache.load_basis(bb.fingerprint(), S)["U"], fresh["U"])


def test_flipped_bytes_in_the_file_are_detected(bb, isolated_cache):
    _cached_basis(bb)
    (entry,) = isolated_cache.glob("*.pt")
    blob = bytearray(entry.read_bytes())
    for i in range(len(blob) // 3, len(blob) // 3 + 64):
        blob[i] ^= 0xFF
    entry.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="cached positional basis"):
        got = _cached_basis(bb)
    assert torch.equal(got["U"], _fresh_basis(bb)["U"])


def _sound_entry(bb) -> dict:
    b = _fresh_basis(bb)
    U, S_, mean = (b[k].cpu() for k in ("U", "S", "mean"))
    return {
        "format": cache._FORMAT,
        "fingerprint": bb.fingerprint(),
        "image_size": S,
        "U": U,
        "S": S_,
        "mean": mean,
        "checksum": cache._checksum(U, S_, mean),
    }


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda e: e["U"].__setitem__((0, 0), float("nan")), "NaN"),
        (lambda e: e.__setitem__("U", e["U"][:, :-1].contiguous()), "shapes"),
        (lambda e: e.__setitem__("S", e["S"].double()), "float32"),
        (lambda e: e.__setitem__("U", [1, 2, 3]), "tensors"),
        (lambda e: e.pop("checksum"), "lacks"),
        (lambda e: e.__setitem__("fingerprint", "0" * 24), "other weights"),
    ],
)
def test_invalid_entries_are_refused_without_a_crash(bb, isolated_cache, damage, reason):
    entry = _sound_entry(bb)
    damage(entry)
    path = cache.basis_cache_path(bb.fingerprint(), S)
    path.parent.mkdir(parents=True)
    torch.save(entry, path)
    with pytest.warns(UserWarning, match=reason):
        assert cache.load_basis(bb.fingerprint(), S) is None
    assert not path.exists()


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04garbage"])
def test_garbage_files_are_refused_without_a_crash(bb, isolated_cache, content):
    path = cache.basis_cache_path(bb.fingerprint(), S)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="cannot be read"):
        assert cache.load_basis(bb.fingerprint(), S) is None


def test_a_list_saved_as_an_entry_is_refused(bb, isolated_cache):
    path = cache.basis_cache_path(bb.fingerprint(), S)
    path.parent.mkdir(parents=True)
    torch.save([1, 2, 3], path)
    with pytest.warns(UserWarning, match="holds a list"):
        assert cache.load_basis(bb.fingerprint(), S) is None


def test_channels_are_checked_when_given(bb, isolated_cache):
    cache.save_basis(bb.fingerprint(), S, *(_fresh_basis(bb)[k] for k in ("U", "S", "mean")))
    assert cache.load_basis(bb.fingerprint(), S, channels=bb.embed_dim) is not None
    with pytest.warns(UserWarning, match="channels"):
        assert cache.load_basis(bb.fingerprint(), S, channels=bb.embed_dim + 1) is None


def test_a_corrupt_entry_in_a_read_only_folder_is_skipped_with_one_warning(bb, isolated_cache, monkeypatch):
    _cached_basis(bb)
    (entry,) = isolated_cache.glob("*.pt")
    entry.write_bytes(b"corrupt")
    os.chmod(isolated_cache, 0o555)
    if os.geteuid() == 0:  # root ignores permissions: make the folder refuse writes the way it would
        real_unlink, real_open = pathlib.Path.unlink, os.open

        def unlink(self, missing_ok=False):
            if self.parent == isolated_cache:
                raise PermissionError(13, "Permission denied", str(self))
            return real_unlink(self, missing_ok=missing_ok)

        def create(path, flags, *a, **k):
            if flags & os.O_CREAT and pathlib.Path(path).parent == isolated_cache:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *a, **k)

        monkeypatch.setattr(pathlib.Path, "unlink", unlink)
        monkeypatch.setattr(os, "open", create)
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            got = _cached_basis(bb)
            again = _cached_basis(bb)
    finally:
        os.chmod(isolated_cache, 0o755)
    messages = [str(w.message) for w in rec]
    assert len(messages) == 1 and "read-only" in messages[0] and str(entry) in messages[0], messages
    fresh = _fresh_basis(bb)
    assert torch.equal(got["U"], fresh["U"]) and torch.equal(again["U"], fresh["U"])
    assert entry.read_bytes() == b"corrupt"


# ------------------------------------------------------------ info and clear
def test_info_and_clear_touch_only_the_caches_own_files(bb, isolated_cache):
    _cached_basis(bb)
    isolated_cache.joinpath(f"{'ab' * 12}-s96-v2.pt").write_bytes(b"an older format's entry")
    isolated_cache.joinpath(f"{'cd' * 12}-s64-v3.pt.x1y2_z.tmp").write_bytes(b"left over")
    isolated_cache.joinpath(f".{'cd' * 12}-s64-v3.pt.0a1b2c3d.tmp.pt").write_bytes(b"left over by a killed write")
    keep = ["notes.txt", "model.pt", "basis-s64.pt"]
    for name in keep:
        isolated_cache.joinpath(name).write_text("the user's")
    info = cache.cache_info()
    assert info["folder"] == isolated_cache and info["entries"] == 2 and info["stale"] == 1
    entry = next(isolated_cache.glob(f"*-v{cache._FORMAT}.pt"))
    assert info["bytes"] == entry.stat().st_size + len(b"an older format's entry")
    assert cache.clear_cache() == 2
    assert sorted(p.name for p in isolated_cache.iterdir()) == sorted(keep)
    assert cache.cache_info()["entries"] == 0


def test_clear_removes_an_emptied_folder(bb, isolated_cache):
    _cached_basis(bb)
    assert cache.clear_cache() == 1
    assert not isolated_cache.exists()
    assert cache.clear_cache() == 0 and cache.cache_info()["entries"] == 0


def test_a_model_whose_weights_change_in_place_recomputes_its_basis(isolated_cache):
    enc = random_backbone("tiny", seed=3)
    other = random_backbone("tiny", seed=4)
    model = INSID3(enc, image_size=S, basis_cache=True, progress=False)
    before = model.positional.svd()["U"].clone()
    enc.load_state_dict(other.state_dict())
    after = model.positional.svd()["U"]
    assert not torch.equal(before, after)
    assert torch.equal(after, _fresh_basis(other)["U"])


# ------------------------------------------------------------ writing the cache
def test_a_cache_that_cannot_be_written_is_a_warning_and_the_job_goes_on(bb, isolated_cache, monkeypatch):
    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half an entry")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 512 vs 448")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match=r"could not write the basis cache .*inline_container.*; continuing"):
        got = _cached_basis(bb)
    assert torch.equal(got["U"], _fresh_basis(bb)["U"])
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []  # nothing half-written left behind


def test_cache_entries_get_the_permissions_of_the_umask(bb, isolated_cache):
    old = os.umask(0o022)
    try:
        _cached_basis(bb)
    finally:
        os.umask(old)
    (entry,) = isolated_cache.iterdir()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o644
