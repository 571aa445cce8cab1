"""Weight registry: fetch (copy, verify, atomic install), resolution order, status.

Everything but the last test runs on small HDF5 files generated here and a fake
registry entry whose "canonical URL" is a ``file://`` URL: nothing touches the
network.  The autouse fixture in conftest points $CONVFEAT_CACHE_DIR at a temp
dir and unsets $CONVFEAT_WEIGHTS_DIR.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

import convfeat.models.weights as W
from convfeat.models.keras_import import WeightFileError, check_hdf5
from convfeat.models.weights import FetchError, WeightSpec, WeightsNotFound

from conftest import shared_path

HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n"


def make_hdf5(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h:
        g = h.create_group("ConvBNEluDr")
        g.create_dataset("convolution2d_1_W", data=rng.standard_normal((4, 1, 3, 3)).astype(np.float32))
        g.create_dataset("convolution2d_1_b", data=rng.standard_normal(4).astype(np.float32))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def good(tmp_path) -> Path:
    """The 'published' file of the fake registry entry."""
    src = tmp_path / "src"
    src.mkdir()
    return make_hdf5(src / "published.hdf5", seed=0)


@pytest.fixture
def other(tmp_path) -> Path:
    """A different, perfectly valid HDF5 file (wrong checksum)."""
    return make_hdf5(tmp_path / "src" / "other.hdf5", seed=1)


@pytest.fixture
def spec(good, monkeypatch) -> WeightSpec:
    s = WeightSpec(name="fake", model="choi2017", filename="fake.hdf5", subdir="fake",
                   sha256=sha(good), url=good.as_uri(), licence="test", note="test")
    monkeypatch.setitem(W.WEIGHTS, "fake", s)
    return s


@pytest.fixture
def cache() -> Path:
    return Path(os.environ["CONVFEAT_CACHE_DIR"]) / "weights"


@pytest.fixture
def target(cache) -> Path:
    return cache / "fake" / "fake.hdf5"


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- 1, 2: successful fetches ---------------------------------------------------
def test_cache_dir_follows_env(cache):
    assert W.cache_dir() == cache


@pytest.mark.parametrize("how", [
    "path", "str", "file_url"])
def test_fetch_installs_identical_copy(how, spec, good, target, cache):
    source = {"path": good, "str": str(good), "file_url": good.as_uri()}[how]
    got = W.fetch("fake", source=source)
    assert got == target
    assert target.read_bytes() == good.read_bytes()
    assert files_under(cache) == [target]  # no leftover .part file
    assert W.resolve("fake") == target


def test_second_fetch_is_noop_unless_forced(spec, good, target):
    W.fetch("fake", source=str(good))
    old = target.stat().st_mtime_ns - 10_000_000_000
    os.utime(target, ns=(old, old))  # make any rewrite visible regardless of clock resolution
    assert W.fetch("fake", source=str(good)) == target
    assert target.stat().st_mtime_ns == old
    # even an unusable source is not touched when a verified copy is installed
    assert W.fetch("fake", source=str(good.parent / "missing.hdf5")) == target
    assert target.stat().st_mtime_ns == old
    assert W.fetch("fake", source=str(good), force=True) == target
    assert target.stat().st_mtime_ns != old
    assert target.read_bytes() == good.read_bytes()


def test_fetch_without_source_uses_spec_url(spec, good, target):
    assert spec.url.startswith("file://")
    assert W.fetch("fake") == target
    assert target.read_bytes() == good.read_bytes()


def test_fetch_replaces_corrupted_installed_copy(spec, good, target):
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    assert W.fetch("fake", source=str(good)) == target  # no force needed: it does not verify
    assert target.read_bytes() == good.read_bytes()


def test_unknown_name(spec):
    with pytest.raises(KeyError, match="fake"):
        W.fetch("no-such-weights")


# -- 3: refusals install nothing -------------------------------------------------
def _bad_source(kind: str, tmp_path: Path, good: Path, other: Path) -> tuple[str, str]:
    """(source, word expected in the FetchError message)."""
    if kind == "wrong_checksum":
        return str(other), "sha256"
    if kind == "truncated":
        p = tmp_path / "truncated.hdf5"
        data = good.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return str(p), "sha256"
    if kind == "truncated_url":
        p = tmp_path / "truncated2.hdf5"
        data = good.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p.as_uri(), "truncated"
    if kind == "html":
        p = tmp_path / "page.hdf5"
        p.write_bytes(HTML)
        return str(p), "HTML"
    if kind == "pickle":
        p = tmp_path / "weights.pkl"
        p.write_bytes(pickle.dumps({"conv": np.zeros(3).tolist()}))
        return str(p), "pickle"
    if kind == "empty":
        p = tmp_path / "empty.hdf5"
        p.write_bytes(b"")
        return str(p), "empty"
    if kind == "missing_path":
        return str(tmp_path / "nope" / "missing.hdf5"), "not found"
    if kind == "missing_url":
        return (tmp_path / "missing.hdf5").as_uri(), "could not read"
    if kind == "directory":
        return str(tmp_path / "src"), "directory"
    if kind == "ftp":
        return "ftp://example.invalid/fake.hdf5", "unsupported"
    raise AssertionError(kind)


BAD = ["wrong_checksum", "truncated", "truncated_url", "html", "pickle", "empty",
       "missing_path", "missing_url", "directory", "ftp"]


@pytest.mark.parametrize("kind", BAD)
def test_fetch_refusals_install_nothing(kind, spec, good, other, tmp_path, target, cache):
    source, word = _bad_source(kind, tmp_path, good, other)
    with pytest.raises(FetchError) as info:
        W.fetch("fake", source=source)
    msg = str(info.value)
    assert word.lower() in msg.lower(), msg
    if word in ("sha256", "HTML", "pickle", "truncated", "empty"):
        assert "sha256" in msg and "nothing installed" in msg
    assert not target.exists()
    assert files_under(cache) == []  # no .part temp files either
    with pytest.raises(WeightsNotFound):
        W.resolve("fake")


@pytest.mark.parametrize("kind", BAD)
def test_failed_forced_fetch_keeps_good_copy(kind, spec, good, other, tmp_path, target, cache):
    W.fetch("fake", source=str(good))
    source, _ = _bad_source(kind, tmp_path, good, other)
    with pytest.raises(FetchError):
        W.fetch("fake", source=source, force=True)
    assert target.read_bytes() == good.read_bytes()
    assert files_under(cache) == [target]
    assert W.resolve("fake") == target


def test_failed_default_url_fetch(spec, good, monkeypatch, target, cache):
    """A canonical URL that serves the wrong thing is refused too."""
    page = good.parent / "page.html"
    page.write_bytes(HTML)
    monkeypatch.setitem(W.WEIGHTS, "fake", WeightSpec(**{**spec.__dict__, "url": page.as_uri()}))
    with pytest.raises(FetchError, match="HTML"):
        W.fetch("fake")
    assert files_under(cache) == []


# -- 4: resolution order ---------------------------------------------------------
def test_resolve_explicit_path_wins(spec, good, other, tmp_path, monkeypatch):
    W.fetch("fake", source=str(good))
    env = tmp_path / "env"
    (env / "fake").mkdir(parents=True)
    (env / "fake" / "fake.hdf5").write_bytes(good.read_bytes())
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(env))
    # an explicit path is the user's own file: no checksum required
    assert W.resolve("fake", weights=other) == other
    assert W.resolve("fake", weights=str(other)) == other
    with pytest.raises(WeightsNotFound, match="not found"):
        W.resolve("fake", weights=tmp_path / "missing.hdf5")


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_resolve_env_dir_wins_over_cache(layout, spec, good, tmp_path, monkeypatch, target):
    W.fetch("fake", source=str(good))
    env = tmp_path / "env"
    where = env / "fake" / "fake.hdf5" if layout == "nested" else env / "fake.hdf5"
    where.parent.mkdir(parents=True)
    where.write_bytes(good.read_bytes())
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(env))
    assert W.resolve("fake") == where
    row = next(r for r in W.status() if r["name"] == "fake")
    assert row["path"] == str(where) and row["verified"] is True
    # an env dir without the file falls through to the cache
    where.unlink()
    assert W.resolve("fake") == target


def test_resolve_env_nested_before_flat(spec, good, tmp_path, monkeypatch):
    env = tmp_path / "env"
    (env / "fake").mkdir(parents=True)
    (env / "fake" / "fake.hdf5").write_bytes(good.read_bytes())
    (env / "fake.hdf5").write_bytes(good.read_bytes())
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(env))
    assert W.resolve("fake") == env / "fake" / "fake.hdf5"


@pytest.mark.parametrize("where", ["env", "cache"])
def test_resolve_corrupted_file_raises(where, spec, other, tmp_path, monkeypatch, target):
    if where == "env":
        env = tmp_path / "env"
        env.mkdir()
        bad = env / "fake.hdf5"
        monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(env))
    else:
        bad = target
        bad.parent.mkdir(parents=True)
    bad.write_bytes(other.read_bytes())  # valid HDF5, wrong checksum
    with pytest.raises(WeightFileError) as info:
        W.resolve("fake")
    msg = str(info.value)
    assert "sha256" in msg and "convfeat weights fetch fake" in msg and str(bad) in msg


def test_resolve_nothing_installed(spec):
    with pytest.raises(WeightsNotFound) as info:
        W.resolve("fake")
    assert "convfeat weights fetch fake" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


# -- 5: status -------------------------------------------------------------------
def test_status_rows(spec, good, target):
    def row():
        rows = {r["name"]: r for r in W.status()}
        assert set(rows) == set(W.WEIGHTS)
        return rows["fake"]

    r = row()
    assert r["path"] is None and r["verified"] is None
    assert r["model"] == "choi2017" and r["licence"] == "test" and r["note"] == "test"
    W.fetch("fake", source=str(good))
    r = row()
    assert r["path"] == str(target) and r["verified"] is True
    with open(target, "r+b") as f:  # flip one byte past the signature
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    r = row()
    assert r["path"] == str(target) and r["verified"] is False


# -- 6: check_hdf5 ---------------------------------------------------------------
def test_check_hdf5_classifies(good, tmp_path):
    check_hdf5(good)  # no error
    check_hdf5(str(good))
    cases = {
        "pickle": (pickle.dumps({"w": [1.0, 2.0]}), "pickle"),
        "html": (HTML, "HTML"),
        "html_lower": (b"\n  <html><body>404</body></html>", "HTML"),
        "empty": (b"", "empty"),
        "text": (b"hello, not a weight file", "not HDF5"),
    }
    for name, (data, word) in cases.items():
        p = tmp_path / f"{name}.bin"
        p.write_bytes(data)
        with pytest.raises(WeightFileError, match=word):
            check_hdf5(p)
    with pytest.raises(WeightFileError, match="not found"):
        check_hdf5(tmp_path / "missing.hdf5")


# -- 7: the real published file (needs ../shared) --------------------------------
def test_fetch_real_published_file(cache):
    theano = shared_path("models", "choi2017", "weights_theano.hdf5")
    spec = W.WEIGHTS["choi2017"]
    got = W.fetch("choi2017", source=str(theano))
    assert got == cache / spec.subdir / spec.filename
    assert W.sha256_of(got) == spec.sha256
    assert W.resolve("choi2017") == got
    assert next(r for r in W.status() if r["name"] == "choi2017")["verified"] is True

    k2 = W.WEIGHTS["choi2017-k2"]
    with pytest.raises(FetchError, match="sha256"):
        W.fetch("choi2017-k2", source=str(theano))
    k2_dir = cache / k2.subdir
    assert not (k2_dir / k2.filename).exists()
    assert files_under(k2_dir) == []
    assert files_under(cache) == [got]


# -- 8: --from is always verified; offline errors point at --from -------------------------------
def test_from_is_verified_even_with_an_installed_copy(spec, good, other, target, cache):
    W.fetch("fake", source=str(good))
    old = target.stat().st_mtime_ns - 10_000_000_000
    os.utime(target, ns=(old, old))
    with pytest.raises(FetchError) as info:
        W.fetch("fake", source=str(other))            # another model's file: refused
    msg = str(info.value)
    assert "sha256 mismatch" in msg and "nothing installed" in msg and "is unchanged" in msg
    assert W.fetch("fake", source=str(good)) == target  # the published file verifies: nothing rewritten
    assert target.stat().st_mtime_ns == old and target.read_bytes() == good.read_bytes()
    assert files_under(cache) == [target]
    # the command line wants the --from file read and verified, whatever is installed
    with pytest.raises(FetchError, match="not found"):
        W.fetch("fake", source=str(good.parent / "missing.hdf5"), strict_source=True)
    assert files_under(cache) == [target]


def test_cli_fetch_from_another_models_file_fails_with_an_installed_copy(spec, good, other, target):
    from typer.testing import CliRunner

    from convfeat.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["weights", "fetch", "fake", "--from", str(good)])
    assert res.exit_code == 0 and "installed fake" in res.output
    for source in (str(other), str(good.parent / "missing.hdf5")):
        res = runner.invoke(app, ["weights", "fetch", "fake", "--from", source])
        assert res.exit_code == 2, res.output
        assert "installed fake" not in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1 and res.output.startswith("error: ")
    assert target.read_bytes() == good.read_bytes()


def test_unreachable_url_suggests_from(spec, monkeypatch, cache):
    monkeypatch.setitem(W.WEIGHTS, "fake", WeightSpec(**{**spec.__dict__, "url": "http://nonexistent.invalid/x"}))
    with pytest.raises(FetchError) as info:
        W.fetch("fake")
    msg = str(info.value)
    assert "could not read http://nonexistent.invalid/x" in msg
    assert "convfeat weights fetch fake --from PATH_OR_URL" in msg and "nothing installed" in msg
    assert "\n" not in msg
    assert files_under(cache) == []

    from typer.testing import CliRunner

    from convfeat.cli import app

    res = CliRunner().invoke(app, ["weights", "fetch", "fake"])
    assert res.exit_code == 2 and "--from PATH_OR_URL" in res.output and "Traceback" not in res.output


def test_fetch_gives_the_umask_permissions(spec, good, target):
    old = os.umask(0o027)
    try:
        W.fetch("fake", source=str(good))
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o640


def test_explicit_truncated_weights_refused_at_resolve(spec, good, tmp_path):
    data = good.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=r"cut\.hdf5 is not a readable HDF5 file.*truncated"):
        W.resolve("fake", weights=cut)
    page = tmp_path / "page.hdf5"
    page.write_bytes(HTML)
    with pytest.raises(WeightFileError, match="HTML"):
        W.resolve("fake", weights=page)
