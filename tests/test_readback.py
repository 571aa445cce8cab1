"""convfeat.store (read, merge): load / load_frame / info / export / merge on small generated files."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from convfeat.store import read as readback
from convfeat.store import FeatureFile, StoreError, export, format_info, info, load, load_frame, merge

CONFIG = {"model": "choi2017", "weights_sha256": "0" * 64, "bn_mode": "instance", "length": "center29"}
MFCC_CONFIG = {"n_mfcc": 20, "sr": 12000}
LAYERS = [f"layer{i}" for i in range(1, 6)]
# item order of the single file: deliberately not sorted
ORDER = ["c.wav", "a.wav", "b.wav", "e.wav", "d.wav"]
FAILED = {"b.wav": "could not decode: truncated file"}
PENDING = {"e.wav"}               # never recorded
CHOI_ONLY = {"d.wav"}             # ok, but the mfcc set was not computed for it


def vecs(item_id: str) -> dict:
    """Known random features of one item (depend on the id only)."""
    rng = np.random.default_rng(zlib.crc32(item_id.encode()))
    return {"choi2017": {name: rng.standard_normal(32).astype(np.float32) for name in LAYERS},
            "mfcc": {"mfcc": rng.standard_normal(120).astype(np.float32)}}


def meta(item_id: str) -> dict:
    return {"label": item_id[0].upper(), "split": "train" if item_id < "c" else "test"}


def update(item_id: str) -> dict:
    if item_id in FAILED:
        return {"id": item_id, "status": "failed", "reason": FAILED[item_id], "duration": float("nan"),
                "source_sr": 0, "channels": 0, "windows": 0}
    feats = vecs(item_id)
    if item_id in CHOI_ONLY:
        feats.pop("mfcc")
    return {"id": item_id, "status": "ok", "reason": "", "duration": 1.0 + ord(item_id[0]) / 100,
            "source_sr": 44100, "channels": 2, "windows": 1, "features": feats}


def build(path, ids, listed=None, config=CONFIG, attrs=None, calibration=None, values=None) -> Path:
    """A feature file whose items are ``listed`` (default ``ids``), of which ``ids`` are recorded."""
    listed = ids if listed is None else listed
    with FeatureFile(path) as f:
        f.add_items([{"id": i, "path": f"audio/{i}", "meta": meta(i)} for i in listed])
        fs = f.ensure_set("choi2017", {name: 32 for name in LAYERS}, config=config,
                          provenance={"model": "choi2017", "time": str(path)})
        if calibration is not None:
            fs.calibration = calibration
        f.ensure_set("mfcc", {"mfcc": 120}, config=MFCC_CONFIG, provenance={"frontend": "librosa"})
        updates = [update(i) for i in ids if i not in PENDING]
        for u in updates:
            if values and u["id"] in values:
                u["features"]["choi2017"]["layer1"] = values[u["id"]]
        f.record(updates)
        f.checkpoint(attrs or {"command": "convfeat extract test"})
    return Path(path)


def expected(ids, sets=("choi2017",), layers=LAYERS):
    rows = []
    for i in ids:
        v = vecs(i)
        parts = [v["mfcc"]["mfcc"] if s == "mfcc" else np.concatenate([v["choi2017"][k] for k in layers])
                 for s in sets]
        rows.append(np.concatenate(parts))
    return np.array(rows, dtype=np.float32)


@pytest.fixture
def full(tmp_path) -> Path:
    return build(tmp_path / "full.h5", ORDER)


USABLE_CHOI = ["c.wav", "a.wav", "d.wav"]     # item order, ok and done
USABLE_BOTH = ["c.wav", "a.wav"]


# -- load -------------------------------------------------------------------------------------
@pytest.mark.parametrize("layers, names", [
    ("12345", LAYERS), ("5", ["layer5"]), ("135", ["layer1", "layer3", "layer5"]),
    ("51", ["layer1", "layer5"]), ([3, 1], ["layer1", "layer3"]), ("all", LAYERS)])
def test_load_layer_subsets(full, layers, names):
    ids, X = load(full, "choi2017", layers)
    assert ids.tolist() == USABLE_CHOI
    assert X.dtype == np.float32 and X.shape == (3, 32 * len(names))
    np.testing.assert_array_equal(X, expected(USABLE_CHOI, layers=names))


def test_load_default_is_all_five_blocks(full):
    ids, X = load(full)
    assert X.shape == (3, 160)
    np.testing.assert_array_equal(X, expected(USABLE_CHOI))


def test_load_mfcc_ignores_layers(full):
    ids, X = load(full, "mfcc", layers="5")
    assert ids.tolist() == USABLE_BOTH
    assert X.shape == (2, 120)
    np.testing.assert_array_equal(X, expected(USABLE_BOTH, sets=("mfcc",)))


def test_load_concatenated_sets_intersect_rows(full):
    ids, X = load(full, "mfcc+choi2017", layers="24")
    assert ids.tolist() == USABLE_BOTH
    assert X.shape == (2, 120 + 64)
    np.testing.assert_array_equal(X, expected(USABLE_BOTH, ("mfcc", "choi2017"), ["layer2", "layer4"]))
    ids2, X2 = load(full, "choi2017 + mfcc", layers="24")
    np.testing.assert_array_equal(X2, expected(USABLE_BOTH, ("choi2017", "mfcc"), ["layer2", "layer4"]))
    assert readback.feature_columns(full, "mfcc+choi2017", "24")[118:122] == [
        "mfcc/118", "mfcc/119", "choi2017/layer2/0", "choi2017/layer2/1"]


def test_load_status_filter(full):
    ids, _ = load(full, status=None)
    assert ids.tolist() == USABLE_CHOI          # the failed item has no features
    ids, X = load(full, status="failed")
    assert ids.tolist() == [] and X.shape == (0, 160) and X.dtype == np.float32


def test_load_errors(full, tmp_path):
    with pytest.raises(ValueError, match=r"no feature set 'vggish'.*available: choi2017, mfcc"):
        load(full, "vggish")
    with pytest.raises(ValueError, match="layers"):
        load(full, layers="16")
    with pytest.raises(ValueError, match="twice"):
        load(full, "mfcc+mfcc")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h:
        h["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a convfeat feature file"):
        load(other)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a convfeat feature file.*HDF5"):
        load(text)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.h5")


def test_readable_with_plain_h5py_and_pandas(full):
    df = pd.DataFrame(h5py.File(full, "r")["features/choi2017/layer1"][()])
    assert df.shape == (5, 32)
    np.testing.assert_array_equal(df.iloc[ORDER.index("a.wav")].to_numpy(), vecs("a.wav")["choi2017"]["layer1"])


def test_reading_does_not_modify(full):
    before = full.read_bytes()
    load(full), load_frame(full), info(full)
    assert full.read_bytes() == before


# -- load_frame --------------------------------------------------------------------------------
def test_load_frame(full):
    df = load_frame(full, "mfcc+choi2017", layers="5")
    item_cols = ["path", "duration", "source_sr", "channels", "windows", "status", "reason"]
    feat_cols = [f"mfcc/{j}" for j in range(120)] + [f"choi2017/layer5/{j}" for j in range(32)]
    assert list(df.columns) == item_cols + ["label", "split"] + feat_cols
    assert df.index.name == "id" and df.index.tolist() == USABLE_BOTH
    assert df["path"].tolist() == ["audio/c.wav", "audio/a.wav"]
    assert df["duration"].tolist() == [1.99, 1.97]
    assert df["source_sr"].tolist() == [44100, 44100] and df["windows"].tolist() == [1, 1]
    assert df["status"].tolist() == ["ok", "ok"] and df["reason"].tolist() == ["", ""]
    assert df["label"].tolist() == ["C", "A"] and df["split"].tolist() == ["test", "train"]
    assert all(df[c].dtype == np.float32 for c in feat_cols)
    np.testing.assert_array_equal(df[feat_cols].to_numpy(), load(full, "mfcc+choi2017", "5")[1])
    assert df.loc["a.wav", "choi2017/layer5/3"] == vecs("a.wav")["choi2017"]["layer5"][3]


# -- info ----------------------------------------------------------------------------------
def test_info_and_pending_journal(full):
    d = info(full)
    assert d["n_items"] == 5
    assert d["status"] == {"ok": 3, "failed": 1, "pending": 1}
    assert d["failures"] == [{"id": "b.wav", "reason": FAILED["b.wav"]}]
    assert d["meta_columns"] == ["label", "split"]
    assert set(d["sets"]) == {"choi2017", "mfcc"}
    choi = d["sets"]["choi2017"]
    assert choi["n_done"] == 3 and choi["n_usable"] == 3
    assert choi["datasets"] == {name: (5, 32) for name in LAYERS}
    assert choi["config"] == CONFIG and choi["provenance"]["model"] == "choi2017"
    assert choi["calibration"] is None
    assert d["sets"]["mfcc"]["n_done"] == 2 and d["sets"]["mfcc"]["datasets"] == {"mfcc": (5, 120)}
    assert d["attrs"]["format"] == "convfeat-features" and d["attrs"]["command"] == "convfeat extract test"
    assert d["pending_journal"] == 0
    json.dumps(d)  # plain data (for `convfeat info --json`)

    # a run that records a batch and is killed before its checkpoint
    with FeatureFile(full) as f:
        f.ensure_set("choi2017", {name: 32 for name in LAYERS}, CONFIG, {})
        f.record([{**update("a.wav"), "id": "e.wav"}])
    d = info(full)
    assert d["pending_journal"] == 1
    assert d["status"]["pending"] == 1                    # not folded in yet
    assert load(full)[0].tolist() == USABLE_CHOI
    text = format_info(d)
    assert "items: 5 (ok 3, failed 1, pending 1)" in text
    assert "b.wav: could not decode" in text
    assert "choi2017" in text and "bn_mode=instance" in text
    assert "journal: 1 batch" in text
    # the next run folds the journal in
    with FeatureFile(full) as f:
        f.ensure_set("choi2017", {name: 32 for name in LAYERS}, CONFIG, {})
        f.checkpoint()
    assert info(full)["pending_journal"] == 0
    assert load(full)[0].tolist() == ["c.wav", "a.wav", "e.wav", "d.wav"]


def test_format_info_truncates_failures(full):
    d = info(full)
    d["failures"] = [{"id": f"x{i}", "reason": "bad"} for i in range(30)]
    text = format_info(d, max_failures=5)
    assert "x4: bad" in text and "x5: bad" not in text and "and 25 more" in text


# -- export --------------------------------------------------------------------------------
def test_export_npy(full, tmp_path):
    written = export(full, tmp_path / "out", "npy", features="mfcc+choi2017", layers="13")
    assert written == [tmp_path / "out" / n for n in ("X.npy", "ids.txt", "columns.txt")]
    ids, X = load(full, "mfcc+choi2017", "13")
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "X.npy"), X)
    assert (tmp_path / "out" / "ids.txt").read_text().splitlines() == ids.tolist()
    cols = (tmp_path / "out" / "columns.txt").read_text().splitlines()
    assert cols == readback.feature_columns(full, "mfcc+choi2017", "13") and len(cols) == X.shape[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["X.npy", "columns.txt", "ids.txt"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_table(full, tmp_path, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"table.{fmt}"
    assert export(full, out, fmt, layers="25") == [out]
    back = pd.read_csv(out, keep_default_na=False) if fmt == "csv" else pd.read_parquet(out)
    ref = load_frame(full, layers="25")
    assert list(back.columns) == ["id"] + list(ref.columns)
    assert back["id"].tolist() == USABLE_CHOI
    for c in ("path", "status", "reason", "label", "split"):
        assert back[c].astype(str).tolist() == ref[c].astype(str).tolist()
    for c in ("duration", "source_sr", "channels", "windows"):
        assert back[c].tolist() == ref[c].tolist()
    feats = [c for c in ref.columns if c.startswith("choi2017/")]
    np.testing.assert_array_equal(back[feats].to_numpy().astype(np.float32), load(full, layers="25")[1])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_export_unknown_format(full, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'xlsx'"):
        export(full, tmp_path / "x.xlsx", "xlsx")


# -- merge ---------------------------------------------------------------------------------
SHARD1 = ["c.wav", "a.wav", "e.wav"]
SHARD2 = ["b.wav", "d.wav"]


def test_merge_equals_single_file(full, tmp_path):
    s1 = build(tmp_path / "s1.h5", SHARD1, attrs={"shard": "1/2"})
    s2 = build(tmp_path / "s2.h5", SHARD2, attrs={"shard": "2/2"})
    assert "shard 1/2" in format_info(info(s1))
    out = merge(tmp_path / "merged.h5", [s1, s2])
    assert out == tmp_path / "merged.h5"
    single = build(tmp_path / "sorted.h5", sorted(ORDER))
    for features, layers in (("choi2017", "12345"), ("mfcc", "1"), ("mfcc+choi2017", "35")):
        ids, X = load(out, features, layers)
        ids_s, X_s = load(single, features, layers)
        assert ids.tolist() == ids_s.tolist() == sorted(ids.tolist())
        np.testing.assert_array_equal(X, X_s)
    ids_f, X_f = load(full)
    order = np.argsort(ids_f)
    np.testing.assert_array_equal(load(out)[1], X_f[order])
    pd.testing.assert_frame_equal(load_frame(out, "mfcc+choi2017"), load_frame(single, "mfcc+choi2017"))
    d = info(out)
    assert d["attrs"]["merged_from"] == ["s1.h5", "s2.h5"] and "shard" not in d["attrs"]
    assert d["status"] == {"ok": 3, "failed": 1, "pending": 1}
    assert d["failures"] == [{"id": "b.wav", "reason": FAILED["b.wav"]}]
    assert d["sets"]["choi2017"]["config"] == CONFIG
    with h5py.File(out, "r") as h:
        assert h["items/id"].asstr()[()].tolist() == sorted(ORDER)
    # the merged file can be appended to like any other
    with FeatureFile(out) as f:
        f.ensure_set("choi2017", {name: 32 for name in LAYERS}, CONFIG, {})
        f.record([{**update("a.wav"), "id": "e.wav"}])
        f.checkpoint()
    assert load(out)[0].tolist() == ["a.wav", "c.wav", "d.wav", "e.wav"]


def test_merge_shards_listing_every_item(full, tmp_path):
    """Shards that list the whole collection (others' items pending) merge too,
    and calibration indices keep naming the same items."""
    cal_ids = ["b.wav", "d.wav"]
    cal = {"indices": np.array([ORDER.index(i) for i in cal_ids]), "layer1_mean": np.arange(32.0),
           "layer1_var": np.ones(32), "ids": np.array(cal_ids, dtype="S")}
    s1 = build(tmp_path / "s1.h5", SHARD1, listed=ORDER, calibration=cal)
    s2 = build(tmp_path / "s2.h5", SHARD2, listed=ORDER, calibration=cal)
    out = merge(tmp_path / "merged.h5", [s2, s1])
    ids, X = load(out)
    assert ids.tolist() == ["a.wav", "c.wav", "d.wav"]
    np.testing.assert_array_equal(X, expected(ids))
    with h5py.File(out, "r") as h:
        merged_ids = h["items/id"].asstr()[()].tolist()
        assert merged_ids == sorted(ORDER)
        idx = h["features/choi2017/calibration/indices"][()]
        np.testing.assert_array_equal(h["features/choi2017/calibration/layer1_mean"][()], np.arange(32.0))
        assert h["features/choi2017/calibration/ids"][()].tolist() == [b"b.wav", b"d.wav"]
    assert info(out)["sets"]["choi2017"]["calibration"]["ids"] == (2,)
    assert [merged_ids[i] for i in idx] == cal_ids


def test_merge_refuses_other_config(tmp_path):
    s1 = build(tmp_path / "s1.h5", SHARD1)
    s2 = build(tmp_path / "s2.h5", SHARD2, config={**CONFIG, "bn_mode": "batch"})
    with pytest.raises(StoreError, match=r"'choi2017'.*differs in: bn_mode"):
        merge(tmp_path / "m.h5", [s1, s2])
    assert not (tmp_path / "m.h5").exists()


def test_merge_duplicates(tmp_path):
    s1 = build(tmp_path / "s1.h5", ["a.wav", "c.wav"])
    same = build(tmp_path / "same.h5", ["c.wav", "d.wav"])
    out = merge(tmp_path / "m.h5", [s1, same])
    assert load(out)[0].tolist() == ["a.wav", "c.wav", "d.wav"]   # identical rows kept once
    other = build(tmp_path / "other.h5", ["c.wav"], values={"c.wav": np.full(32, 7, np.float32)})
    with pytest.raises(StoreError, match=r"'c.wav'.*different data"):
        merge(tmp_path / "m2.h5", [s1, other])


def test_merge_refusals(tmp_path):
    s1 = build(tmp_path / "s1.h5", SHARD1, attrs={"shard": "1/2"})
    s2 = build(tmp_path / "s2.h5", SHARD2, attrs={"shard": "2/3"})
    with pytest.raises(StoreError, match="different splits"):
        merge(tmp_path / "m.h5", [s1, s2])
    s2 = build(tmp_path / "s2b.h5", SHARD2, attrs={"shard": "2/2"})
    with pytest.raises(StoreError, match="one of the shards"):
        merge(s1, [s1, s2])
    with pytest.raises(StoreError, match="named twice"):
        merge(tmp_path / "m.h5", [s1, s1])
    cal = {"ids": np.array([b"a.wav"]), "layer1_mean": np.zeros(32), "layer1_var": np.ones(32)}
    s3 = build(tmp_path / "s3.h5", SHARD2, calibration=cal)
    s4 = build(tmp_path / "s4c.h5", SHARD1, calibration={**cal, "ids": np.array([b"c.wav"])})
    with pytest.raises(StoreError, match="calibrated differently"):
        merge(tmp_path / "m.h5", [s4, s3])
    with pytest.raises(StoreError, match="calibrated differently"):
        merge(tmp_path / "m.h5", [s1, s3])
    with FeatureFile(tmp_path / "s4.h5") as f:
        f.add_items([{"id": "z.wav", "path": "z.wav"}])
        f.ensure_set("choi2017", {name: 32 for name in LAYERS}, CONFIG, {})
        f.checkpoint()
    with pytest.raises(StoreError, match="'mfcc' is in s1.h5 but not in s4.h5"):
        merge(tmp_path / "m.h5", [s1, tmp_path / "s4.h5"])
    with FeatureFile(s2) as f:  # interrupted: a batch journaled, not checkpointed
        f.ensure_set("choi2017", {name: 32 for name in LAYERS}, CONFIG, {})
        f.record([{**update("d.wav"), "id": "b.wav"}])
    with pytest.raises(StoreError, match="journaled batch"):
        merge(tmp_path / "m.h5", [s1, s2])
    assert load(merge(tmp_path / "m.h5", [s1, s2], allow_pending_journal=True))[0].tolist() == ["a.wav", "c.wav",
                                                                                                 "d.wav"]
    assert not (tmp_path / "m2.h5").exists()


def test_load_frame_metadata_names(tmp_path):
    """A metadata column named like an item column is prefixed; one with a '/' keeps its name."""
    with FeatureFile(tmp_path / "m.h5") as f:
        f.add_items([{"id": "a.wav", "path": "a.wav", "meta": {"path": "/data/a.wav", "tags/genre": "rock"}}])
        f.ensure_set("mfcc", {"mfcc": 120}, MFCC_CONFIG, {})
        f.record([{**update("a.wav"), "features": {"mfcc": vecs("a.wav")["mfcc"]}}])
        f.checkpoint()
    df = load_frame(tmp_path / "m.h5", "mfcc")
    assert list(df.columns[:9]) == ["path", "duration", "source_sr", "channels", "windows", "status", "reason",
                                    "meta/path", "tags/genre"]
    assert df.loc["a.wav", "path"] == "a.wav" and df.loc["a.wav", "meta/path"] == "/data/a.wav"
    assert df.loc["a.wav", "tags/genre"] == "rock"
    assert info(tmp_path / "m.h5")["meta_columns"] == ["path", "tags/genre"]


def test_info_summary_reads_as_words_not_cut_json(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureFile(path) as ff:
        ff.add_items([{"id": "a.wav", "path": "a.wav", "meta": {}}])
        config = {"model": "choi2017", "bn_mode": "instance", "weights_sha256": "ab" * 32,
                  "length_policy": {"short": "repeat", "long": "mean", "hop_seconds": 14.5,
                                    "window_samples": 348000, "sample_rate": 12000},
                  "calibration": {"n_clips": 7, "max_clips": 256, "seed": 3, "stats_sha256": "cd" * 32}}
        ff.ensure_set("choi2017", {"layer1": 32}, config, {})
        ff.checkpoint()
    text = format_info(info(path))
    assert "bn_mode=instance" in text and "weights_sha256=abababababab…" in text
    assert "window 29 s at 12000 Hz; shorter audio: repeat; longer: mean of windows every 14.5 s" in text
    assert "calibration: 7 clips (seeded sample of up to 256, seed 3)" in text
    assert '{"' not in text        # no JSON fragments in the human summary
