"""The store and the command line under faults: values that do not fit, files that are not ours,
newer files, leftover temporaries and locks, OS errors as one line, file permissions, NaN in JSON.

Everything runs on small files generated here; no network, no weights, no GPU.
"""
from __future__ import annotations

import errno
import importlib
import json
import math
import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

import convfeat.store.file as store_file
from convfeat import fileio
from convfeat.cli import app
from convfeat.cli.common import friendly_errors
from convfeat.errors import ConvfeatError, InputError, UnknownNameError
from convfeat.store import FeatureFile, StoreError, check_target, export, info, load, merge
from convfeat.store.file import WriteLock, read_state

from conftest import SR, tone

store_merge = importlib.import_module("convfeat.store.merge")   # the package's `merge` is the function

runner = CliRunner()
LAYERS = [f"layer{i}" for i in range(1, 6)]
CONFIG = {"model": "choi2017", "bn_mode": "instance"}
INT32_MAX = 2 ** 31 - 1


def ok_update(item_id: str, seed: int = 0, **values) -> dict:
    rng = np.random.default_rng(seed)
    u = {"id": item_id, "status": "ok", "reason": "", "duration": 3.0, "source_sr": 44100, "channels": 2,
         "windows": 1, "features": {"choi2017": {k: rng.standard_normal(32).astype(np.float32) for k in LAYERS}}}
    u.update(values)
    return u


def build(path: Path, ids=("a.wav", "b.wav"), sets=("choi2017",), attrs=None) -> Path:
    """A small valid feature file: ``ids`` recorded ok in every set of ``sets``."""
    with FeatureFile(path) as f:
        f.add_items([{"id": i, "path": i} for i in ids])
        for name in sets:
            f.ensure_set(name, {k: 32 for k in LAYERS}, {**CONFIG, "name": name}, {})
        updates = []
        for n, i in enumerate(ids):
            u = ok_update(i, n)
            u["features"] = {name: u["features"]["choi2017"] for name in sets}
            updates.append(u)
        f.record(updates)
        f.checkpoint(attrs or {"command": "test"})
    return path


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries and lock files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".lock"))


def one_error_line(result) -> str:
    """The CLI printed exactly one line, ``error: …``, and no traceback; returns it."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def wav_folder(tmp_path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "tone.wav", tone(440, 1.0), SR)
    return folder


# -- 1. a row that cannot be represented does not stop the collection ----------------------------
def test_value_past_its_column_fails_the_item_not_the_run(tmp_path):
    out = tmp_path / "f.h5"
    with FeatureFile(out) as f:
        f.add_items([{"id": i, "path": i} for i in ("a.wav", "huge.wav", "c.wav")])
        f.ensure_set("choi2017", {k: 32 for k in LAYERS}, CONFIG, {})
        refused = f.record([ok_update("a.wav", 1), ok_update("huge.wav", 2, source_sr=2 ** 32),
                            ok_update("c.wav", 3)])
        f.checkpoint()
    assert [i for i, _ in refused] == ["huge.wav"]
    _, items, sets = read_state(out)
    row = items.index()["huge.wav"]
    assert items.columns["status"].tolist() == ["ok", "failed", "ok"]
    reason = items.columns["reason"][row]
    assert reason == refused[0][1]
    assert "source_sr 4294967296" in reason and "source_sr column" in reason and "int32" in reason
    # no half-applied row: nothing of the refused item is stored but the values that fit
    assert items.columns["source_sr"][row] == 0
    assert items.columns["duration"][row] == 3.0 and items.columns["channels"][row] == 2
    assert sets["choi2017"].done.tolist() == [True, False, True]
    assert not sets["choi2017"].datasets["layer1"][row].any()
    # the other items are complete
    np.testing.assert_array_equal(sets["choi2017"].datasets["layer3"][2], ok_update("c.wav", 3)["features"]
                                  ["choi2017"]["layer3"])
    assert info(out)["failures"] == [{"id": "huge.wav", "reason": reason}]


@pytest.mark.parametrize("values, words", [
    ({"channels": 70000}, ["channels 70000", "int16"]),
    ({"windows": -2 ** 40}, ["windows", "int32"]),
    ({"source_sr": float("nan")}, ["source_sr nan"]),
    ({"source_sr": "44100"}, ["source_sr '44100'"]),
    ({"duration": "long"}, ["duration 'long'"]),
    ({"status": "done"}, ["status 'done'"]),
    ({"features": {"choi2017": {"layer1": np.zeros(31, np.float32)}}}, ["choi2017/layer1 has 31 values", "32"]),
    ({"features": {"choi2017": {"layer9": np.zeros(32, np.float32)}}}, ["no dataset 'layer9'"]),
    ({"features": {"choi2017": {"layer1": np.full(32, 1e300)}}}, ["too large for the float32"]),
])
def test_each_kind_of_unfit_value_is_named(tmp_path, values, words):
    out = tmp_path / "f.h5"
    with FeatureFile(out) as f:
        f.add_items([{"id": "x.wav", "path": "x.wav"}])
        f.ensure_set("choi2017", {k: 32 for k in LAYERS}, CONFIG, {})
        refused = f.record([ok_update("x.wav", **values)])
        f.checkpoint()
    _, items, sets = read_state(out)
    assert items.columns["status"].tolist() == ["failed"]
    assert all(w in items.columns["reason"][0] for w in words), items.columns["reason"][0]
    assert refused == [("x.wav", items.columns["reason"][0])]
    assert not sets["choi2017"].done.any()


def test_unfit_item_keeps_a_decoder_reason(tmp_path):
    with FeatureFile(tmp_path / "f.h5") as f:
        f.add_items([{"id": "x.wav", "path": "x.wav"}])
        [(_, reason)] = f.record([{"id": "x.wav", "status": "failed", "reason": "bad header",
                                   "source_sr": 2 ** 31, "channels": 1, "windows": 0, "duration": 1.0}])
    assert "source_sr 2147483648" in reason and "bad header" in reason


def test_rerun_after_unfit_value_goes_on(tmp_path):
    """The collection is not stuck: run after run, the same item fails and the others are stored."""
    out = tmp_path / "f.h5"
    for run in range(2):
        with FeatureFile(out) as f:
            f.add_items([{"id": i, "path": i} for i in ("a.wav", "huge.wav", "z.wav")])
            f.ensure_set("choi2017", {k: 32 for k in LAYERS}, CONFIG, {})
            try:
                f.record([ok_update("huge.wav", source_sr=2 ** 31)])
                f.record([ok_update("z.wav")])
            finally:
                if f.dirty:
                    f.checkpoint()
        _, items, _ = read_state(out)
        assert items.columns["status"].tolist() == ["pending", "failed", "ok"]
        assert (items.columns["source_sr"] == [0, 0, 44100]).all()


def test_unfit_value_in_an_old_journal_is_replayed_as_a_failure(tmp_path):
    """A journal entry holding a value that does not fit (written before the check
    existed) no longer stops every later run at that item."""
    out = build(tmp_path / "f.h5", ids=("a.wav", "b.wav"))
    journal = Path(str(out) + ".journal")
    journal.mkdir()
    good = ok_update("a.wav", 9)
    entry = {"updates": json.dumps([{k: v for k, v in good.items() if k != "features"},
                                    {**{k: v for k, v in ok_update("b.wav").items() if k != "features"},
                                     "source_sr": 2 ** 33}]),
             "configs": json.dumps({"choi2017": {**CONFIG, "name": "choi2017"}}, sort_keys=True)}
    for k in LAYERS:
        entry[f"f0|choi2017|{k}"] = good["features"]["choi2017"][k]
        entry[f"f1|choi2017|{k}"] = np.zeros(32, np.float32)
    np.savez(journal / "00000000000000000001-1-00000001.npz", **entry)
    with FeatureFile(out) as f:
        f.ensure_set("choi2017", {k: 32 for k in LAYERS}, {**CONFIG, "name": "choi2017"}, {})
        f.checkpoint()
    _, items, sets = read_state(out)
    assert items.columns["status"].tolist() == ["ok", "failed"]
    assert "source_sr 8589934592" in items.columns["reason"][1]
    np.testing.assert_array_equal(sets["choi2017"].datasets["layer2"][0], good["features"]["choi2017"]["layer2"])
    assert not journal.exists()


def test_undecodable_file_name_is_stored_escaped(tmp_path):
    """A name decoded from non-UTF-8 bytes (surrogate escapes) cannot be written as
    HDF5 text: it is stored escaped, and the original text still finds its row."""
    name = b"caf\xe9.wav".decode("utf-8", "surrogateescape")
    out = tmp_path / "f.h5"
    with FeatureFile(out) as f:
        f.add_items([{"id": name, "path": "dir/" + name, "meta": {"title": name}}])
        f.ensure_set("choi2017", {k: 32 for k in LAYERS}, CONFIG, {})
        assert f.items.index()[name] == 0
        assert f.record([ok_update(name, reason="")]) == []
        f.checkpoint({"command": f"convfeat extract {name}"})
    ids, X = load(out)
    assert ids.tolist() == ["caf\\xe9.wav"] and X.shape == (1, 160)
    with FeatureFile(out) as f:          # a second run knows the item
        f.add_items([{"id": name, "path": "dir/" + name}])
        assert len(f.items) == 1


def test_extract_goes_on_past_an_unfit_value(tmp_path, wav_folder, monkeypatch):
    """The pipeline's own use of the store: a decoder reporting a sample rate past
    int32 fails that item, the run and a re-run complete."""
    import convfeat.extraction.pipeline as pipeline
    from convfeat.extraction import decoding

    sf.write(wav_folder / "liar.wav", tone(330, 1.0), SR)
    real_decode = pipeline.decode_item

    def decode(job):
        out = real_decode(job)
        if out["id"] == "liar.wav":
            out["source_sr"] = 2 ** 32 + 8000
        return out

    monkeypatch.setattr(decoding, "decode_item", decode)
    out = tmp_path / "f.h5"
    for _ in range(2):
        pipeline.extract([wav_folder], out, sets=[pipeline.SetSpec("mfcc")], workers=0)
        d = info(out)
        assert d["status"] == {"ok": 1, "failed": 1, "pending": 0}
        assert d["failures"][0]["id"] == "liar.wav" and "source_sr 4294975296" in d["failures"][0]["reason"]
    assert load(out, "mfcc")[0].tolist() == ["tone.wav"]
    assert leftovers(tmp_path) == []


# -- 2, 3. never replace a file that is not ours, never downgrade a newer one --------------------
def test_merge_refuses_to_overwrite_a_text_file_or_a_wav(tmp_path):
    s1 = build(tmp_path / "s1.h5", ids=("a.wav",))
    s2 = build(tmp_path / "s2.h5", ids=("b.wav",))
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    wav = tmp_path / "song.wav"
    sf.write(wav, tone(440, 0.5), SR)
    for target in (text, wav):
        before = target.read_bytes()
        with pytest.raises(StoreError, match="is not a convfeat feature file.*not an HDF5 file.*refusing to "
                                             "overwrite it"):
            merge(target, [s1, s2])
        assert target.read_bytes() == before
        line = one_error_line(runner.invoke(app, ["merge", str(target), str(s1), str(s2)]))
        assert str(target) in line and "refusing to overwrite" in line
        assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_merge_refuses_an_existing_feature_file(tmp_path):
    big = build(tmp_path / "big.h5", ids=("x.wav",), sets=[f"set{i}" for i in range(7)])
    before = big.read_bytes()
    s1 = build(tmp_path / "s1.h5", ids=("a.wav",))
    s2 = build(tmp_path / "s2.h5", ids=("b.wav",))
    with pytest.raises(StoreError, match="already exists.*another output path.*delete it first"):
        merge(big, [s1, s2])
    line = one_error_line(runner.invoke(app, ["merge", str(big), str(s1), str(s2)]))
    assert "already exists" in line
    assert big.read_bytes() == before
    assert len(info(big)["sets"]) == 7
    assert leftovers(tmp_path) == []


def test_extract_and_merge_refuse_with_the_same_check(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(StoreError) as by_check:
        check_target(text)
    with pytest.raises(StoreError) as by_writer:
        with FeatureFile(text):
            pass
    with pytest.raises(StoreError) as by_merge:
        merge(text, [build(tmp_path / "s1.h5")])
    assert str(by_check.value) == str(by_writer.value) == str(by_merge.value)
    assert text.read_text() == "not hdf5"
    assert check_target(tmp_path / "new.h5") is False
    assert check_target(build(tmp_path / "ours.h5")) is True


def newer(path: Path) -> Path:
    """A feature file of format version 99 with a column this version does not know."""
    build(path)
    with h5py.File(path, "a") as h:
        h.attrs["format_version"] = 99
        h["items"].create_dataset("loudness", data=np.array([-14.0, -9.0]))
    return path


def test_newer_file_is_never_rewritten(tmp_path, wav_folder):
    f99 = newer(tmp_path / "v99.h5")
    before = f99.read_bytes()
    with pytest.raises(StoreError, match="format version 99, newer than this convfeat writes \\(1\\); "
                                         "upgrade convfeat"):
        with FeatureFile(f99):
            pass
    with pytest.raises(StoreError, match="version 99"):
        merge(tmp_path / "m.h5", [f99])                       # as a shard
    with pytest.raises(StoreError, match="version 99"):
        merge(f99, [build(tmp_path / "s.h5")])                # as the output
    line = one_error_line(runner.invoke(app, ["extract", str(wav_folder), "-o", str(f99), "-m", "mfcc", "-q"]))
    assert "version 99" in line and "upgrade convfeat" in line
    line = one_error_line(runner.invoke(app, ["info", str(f99)]))
    assert "version 99" in line
    assert f99.read_bytes() == before
    assert not (tmp_path / "m.h5").exists() and leftovers(tmp_path) == []


# -- 4. no temporaries and no lock file left behind ------------------------------------------------
def test_stale_temporaries_are_removed_and_only_ours(tmp_path):
    out = build(tmp_path / "f.h5")
    stale = [tmp_path / ".f.h5.k3j_x9a2.tmp", tmp_path / ".f.h5.0a1b2c3d.tmp"]
    others = [tmp_path / ".g.h5.0a1b2c3d.tmp", tmp_path / ".f.h5.x.h5.0a1b2c3d.tmp", tmp_path / ".f.h5.tmp",
              tmp_path / "f.h5.0a1b2c3d.tmp"]
    for p in stale + others:
        p.write_bytes(b"partial")
    assert fileio.stale_temporaries(out) == sorted(stale)
    with FeatureFile(out) as f:
        assert not any(p.exists() for p in stale)           # removed at start, holding the lock
        (tmp_path / ".f.h5.zzzzzzzz.tmp").write_bytes(b"x")
        f.checkpoint()
    assert not (tmp_path / ".f.h5.zzzzzzzz.tmp").exists()   # and at exit
    assert all(p.exists() for p in others)
    assert not Path(str(out) + ".lock").exists()


def test_lock_file_is_removed_on_exit_even_after_an_error(tmp_path):
    out = tmp_path / "f.h5"
    build(out)
    assert not Path(str(out) + ".lock").exists()
    with pytest.raises(StoreError, match="another configuration"):
        with FeatureFile(out) as f:
            f.ensure_set("choi2017", {k: 32 for k in LAYERS}, {"model": "other"}, {})
    assert leftovers(tmp_path) == []
    merge(tmp_path / "m.h5", [out])
    assert leftovers(tmp_path) == []


def test_lock_removed_by_its_holder_is_not_shared(tmp_path, monkeypatch):
    """A run that opened the lock file just before its holder removed it must not
    hold a lock nobody else sees: it locks the file the path names now."""
    path = tmp_path / "f.h5"
    first, second, third = WriteLock(path), WriteLock(path), WriteLock(path)
    real_flock = store_file.fcntl.flock
    calls = []

    def flock(fd, op):
        if op & store_file.fcntl.LOCK_EX and not calls:
            calls.append(fd)
            # between the second's open and its flock, the first takes the lock and lets it go
            first.acquire()
            first.release()
            assert not first.lock_path.exists()
        return real_flock(fd, op)

    monkeypatch.setattr(store_file.fcntl, "flock", flock)
    second.acquire()
    monkeypatch.setattr(store_file.fcntl, "flock", real_flock)
    assert second.held and second.lock_path.exists()
    assert os.fstat(second._fd).st_ino == os.stat(second.lock_path).st_ino
    with pytest.raises(StoreError, match="another convfeat run"):
        third.acquire()
    second.release()
    third.acquire()
    third.release()
    assert not path.with_name("f.h5.lock").exists()


# -- 5. operating-system errors: one line naming the file and what to do ---------------------------
def test_unwritable_folder_is_one_line(tmp_path, wav_folder, monkeypatch):
    real_open = os.open

    def deny(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    shard = build(tmp_path / "s.h5")
    monkeypatch.setattr(store_file.os, "open", deny)
    out = tmp_path / "ro" / "f.h5"
    with pytest.raises(StoreError, match=r"cannot write .*f\.h5: Permission denied.*not writable"):
        with FeatureFile(out):
            pass
    line = one_error_line(runner.invoke(app, ["extract", str(wav_folder), "-o", str(out), "-m", "mfcc", "-q"]))
    assert "not writable" in line and str(out) in line
    line = one_error_line(runner.invoke(app, ["merge", str(out), str(shard)]))
    assert "not writable" in line
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_for_real(tmp_path, wav_folder):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = one_error_line(runner.invoke(app, ["extract", str(wav_folder), "-o", str(ro / "f.h5"),
                                                  "-m", "mfcc", "-q"]))
        assert "not writable" in line
    finally:
        ro.chmod(0o755)


def test_output_under_a_file_is_one_line(tmp_path, wav_folder):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    s = build(tmp_path / "s.h5")
    for out in (blocker / "f.h5", blocker / "sub" / "f.h5"):
        with pytest.raises(StoreError, match="file.txt"):
            with FeatureFile(out):
                pass
        line = one_error_line(runner.invoke(app, ["extract", str(wav_folder), "-o", str(out), "-m", "mfcc",
                                                  "-q"]))
        assert "file.txt" in line and "choose another path" in line
        one_error_line(runner.invoke(app, ["merge", str(out), str(s)]))
        one_error_line(runner.invoke(app, ["export", str(s), "-o", str(out), "--format", "csv"]))
    assert blocker.read_text() == "x"


def test_missing_feature_file_is_one_line(tmp_path):
    for argv in (["info", str(tmp_path / "missing.h5")],
                 ["export", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "x")]):
        line = one_error_line(runner.invoke(app, argv))
        assert line == f"error: no such feature file: {tmp_path / 'missing.h5'}"
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.h5")


def test_truncated_weights_file_is_one_line(tmp_path, wav_folder):
    full = tmp_path / "w.hdf5"
    with h5py.File(full, "w") as h:
        h["x"] = np.zeros(50_000)
    data = full.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    from convfeat.models import weights as W

    with pytest.raises(ConvfeatError, match="truncated"):
        W.resolve("choi2017", weights=cut)
    out = tmp_path / "f.h5"
    line = one_error_line(runner.invoke(app, ["extract", str(wav_folder), "-o", str(out), "-m", "choi2017",
                                              "--weights", str(cut), "-q"]))
    assert str(cut) in line and "truncated" in line
    assert not out.exists()


def _disk_full(real_write_state):
    def write_state(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n half a file")
        raise OSError(errno.ENOSPC, "Unable to synchronously create file (file write failed: filename = "
                                    f"'{path}', errno = 28, error message = 'No space left on device')")
    return write_state


def test_disk_full_at_a_checkpoint_leaves_the_file_and_the_journal(tmp_path, monkeypatch):
    out = build(tmp_path / "f.h5", ids=("a.wav", "b.wav"))
    before = out.read_bytes()
    monkeypatch.setattr(store_file, "write_state", _disk_full(store_file.write_state))
    with pytest.raises(StoreError) as exc:
        with FeatureFile(out) as f:
            f.ensure_set("choi2017", {k: 32 for k in LAYERS}, {**CONFIG, "name": "choi2017"}, {})
            f.record([ok_update("a.wav", 5)])
            f.checkpoint()
    msg = str(exc.value)
    assert "\n" not in msg and f"cannot write {out}" in msg and "disk full" in msg
    assert "left as it was" in msg and "journal" in msg
    assert out.read_bytes() == before
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    with FeatureFile(out) as f:          # space again: the journal is folded in
        f.ensure_set("choi2017", {k: 32 for k in LAYERS}, {**CONFIG, "name": "choi2017"}, {})
        f.checkpoint()
    np.testing.assert_array_equal(load(out)[1][0, :32], ok_update("a.wav", 5)["features"]["choi2017"]["layer1"])


def test_disk_full_in_merge_and_export_is_one_line(tmp_path, monkeypatch):
    s = build(tmp_path / "s.h5")
    monkeypatch.setattr(store_merge, "write_state", _disk_full(store_merge.write_state))
    out = tmp_path / "m.h5"
    line = one_error_line(runner.invoke(app, ["merge", str(out), str(s)]))
    assert "disk full" in line and str(out) in line
    assert not out.exists() and leftovers(tmp_path) == []

    import pandas as pd

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_bytes(b"id,")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    line = one_error_line(runner.invoke(app, ["export", str(s), "-o", str(tmp_path / "t.csv"), "-f", "csv"]))
    assert "disk full" in line and "t.csv" in line
    assert not (tmp_path / "t.csv").exists() and leftovers(tmp_path) == []


def test_error_mapper_one_line_for_os_errors_traceback_for_bugs(capsys):
    def raising(exc):
        @friendly_errors
        def command():
            raise exc
        return command

    expected = {
        OSError(errno.ENOSPC, "No space left on device"): "disk full",
        OSError(errno.ENOSPC, "Can't write data (errno = 28, filename = 'out.h5')"): "out.h5",
        PermissionError(errno.EACCES, "Permission denied", "/data/out.h5"): "/data/out.h5",
        FileExistsError(errno.EEXIST, "File exists", "notes.txt"): "notes.txt exists and is not a folder",
        OSError(errno.EROFS, "Read-only file system", "/mnt/x.h5"): "read-only",
        InputError("got '0/4'"): "got '0/4'",
        UnknownNameError("unknown weights 'vgg'; known: a, b"): "unknown weights 'vgg'; known: a, b",
    }
    for exc, words in expected.items():
        with pytest.raises(typer.Exit) as info_:
            raising(exc)()
        assert info_.value.exit_code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err

    class QuotedKey(ConvfeatError, KeyError):
        pass

    with pytest.raises(typer.Exit):
        raising(QuotedKey("no set 'x'"))()
    assert capsys.readouterr().err == "error: no set 'x'\n"
    for bug in (KeyError("a bug"), OSError("no errno, no file: a bug"), ValueError("bug")):
        with pytest.raises(type(bug)):
            raising(bug)()


# -- 6. messages that say what is wrong ------------------------------------------------------------
def test_hdf5_without_the_layout_says_what_is_missing(tmp_path):
    path = tmp_path / "half.h5"
    with h5py.File(path, "w") as h:
        h.attrs["format"] = "convfeat-features"
        h.create_group("items")
    line = one_error_line(runner.invoke(app, ["info", str(path)]))
    assert "it has no 'features' group" in line and "expected" not in line
    with h5py.File(path, "a") as h:
        h.create_group("features")
        h["items"].create_dataset("id", data=np.array([b"a"]))
    line = one_error_line(runner.invoke(app, ["info", str(path)]))
    assert "its items lack the column(s) 'path'" in line
    with pytest.raises(StoreError, match="lack the column"):
        check_target(path)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h:
        h["x"] = np.zeros(2)
    assert "its 'format' attribute is missing" in one_error_line(runner.invoke(app, ["info", str(other)]))


# -- 7. files get the usual permissions --------------------------------------------------------------
def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_umask_permissions(tmp_path, umask022):
    out = build(tmp_path / "f.h5")
    assert mode(out) == 0o644
    merged = merge(tmp_path / "m.h5", [out])
    assert mode(merged) == 0o644
    for p in export(out, tmp_path / "npy", "npy") + export(out, tmp_path / "t.csv", "csv"):
        assert mode(p) == 0o644, p
    fileio.write_bytes_atomic(tmp_path / "b.bin", b"data")
    assert mode(tmp_path / "b.bin") == 0o644
    os.umask(0o077)
    fileio.write_text_atomic(tmp_path / "private.txt", "x")
    assert mode(tmp_path / "private.txt") == 0o600


def test_rewriting_keeps_the_files_own_permissions(tmp_path, umask022):
    out = build(tmp_path / "f.h5")
    out.chmod(0o640)
    with FeatureFile(out) as f:
        f.record([ok_update("a.wav", 7)])
        f.checkpoint()
    assert mode(out) == 0o640


# -- 9. JSON output is always valid JSON ----------------------------------------------------------------
def test_tag_json_never_prints_nan(tmp_path, monkeypatch):
    import convfeat.api as api

    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, tone(440, 1.0), SR)
    sf.write(bad, tone(660, 1.0), SR)
    real_tag = api.tag
    calls = []

    def tag(y, sr, *args, **kwargs):      # files are tagged in the order given: the second one gets NaN
        probs = real_tag(y, sr, *args, **kwargs)
        calls.append(1)
        return {t: float("nan") for t in probs} if len(calls) == 2 else probs

    monkeypatch.setattr(api, "tag", tag)
    result = runner.invoke(app, ["tag", str(good), str(bad), "--model", "random", "--json", "-k", "3"])
    assert result.exit_code == 1, result.output

    def no_constants(name):
        raise AssertionError(f"invalid JSON constant {name}")

    data = json.loads(result.stdout, parse_constant=no_constants)
    assert list(data["results"]) == [str(good)]
    assert all(math.isfinite(p) for p in data["results"][str(good)].values())
    assert "NaN or infinite" in data["failures"][str(bad)] and "bad.wav" in data["failures"][str(bad)]


def test_json_text_writes_null_for_non_finite():
    from convfeat.cli.common import json_text

    text = json_text({"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": np.int64(3), "d": Path("x")})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 3, "d": "x"}
