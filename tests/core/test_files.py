"""The one atomic writer: whole files or none, the umask's permissions, the destination named on failure;
strict JSON."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from insid3lab.core.files import json_text, write_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_permissions_the_umask_gives(tmp_path, umask_022):
    assert _mode(write_atomic(tmp_path / "a.txt", "text")) == 0o644
    assert _mode(write_atomic(tmp_path / "b.bin", b"\x00\x01")) == 0o644
    assert _mode(write_atomic(tmp_path / "c.png", lambda tmp: tmp.write_bytes(b"png"))) == 0o644
    os.umask(0o077)
    assert _mode(write_atomic(tmp_path / "d.txt", "private")) == 0o600
    assert (tmp_path / "a.txt").read_text() == "text" and (tmp_path / "c.png").read_bytes() == b"png"


def test_the_writer_sees_the_extension_and_a_hidden_temporary_name(tmp_path):
    seen = []
    write_atomic(tmp_path / "fig.png", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"x")))
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".fig.png.") and seen[0].suffix == ".png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_a_full_disk_leaves_the_old_file_and_no_temporary_one_and_names_the_destination(tmp_path, monkeypatch):
    dest = tmp_path / "summary.json"
    dest.write_text("old")

    def full(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as err:
        write_atomic(dest, full)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(dest)
    assert str(dest) in str(err.value)
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]

    real = os.write

    def write_fails(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write_fails)
    with pytest.raises(OSError, match="No space left on device") as err:
        write_atomic(tmp_path / "new.json", "{}")
    monkeypatch.setattr(os, "write", real)
    assert err.value.filename == str(tmp_path / "new.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_other_errors_of_the_writer_pass_through_after_cleanup(tmp_path):
    def broken(tmp):
        tmp.write_bytes(b"x")
        raise RuntimeError("[enforce fail at inline_container.cc:672]")

    with pytest.raises(RuntimeError, match="enforce fail"):
        write_atomic(tmp_path / "e.pt", broken)
    assert list(tmp_path.iterdir()) == []


def test_json_is_strict_nan_becomes_null():
    text = json_text({"miou": float("nan"), "per_class": {"a": 1.5, "b": float("nan")}, "iv": [float("nan"), 2.0]})
    assert "NaN" not in text and json.loads(text) == {
        "miou": None,
        "per_class": {"a": 1.5, "b": None},
        "iv": [None, 2.0],
    }
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    with pytest.raises(ValueError, match="inf has no JSON form"):
        json_text({"x": float("inf")})
