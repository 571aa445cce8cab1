"""The synthetic tagging corpus: determinism, tags vs metadata, timbre claims, resume, CLI."""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from convfeat.training import corpus
from convfeat.cli.pretrain import corpus_app as app

SR = 12000
DUR = 2.0


def _spectrum(x, sr=SR, pad=8):
    X = np.abs(np.fft.rfft(x * np.hanning(len(x)), pad * len(x)))
    return np.fft.rfftfreq(pad * len(x), 1.0 / sr), X


# the documented vocabulary, written out here so the test does not check TAGS against itself
FAMILY_TAGS = ("piano", "organ", "strings", "brass", "woodwind", "guitar", "bass", "synth",
               "mallet", "voice")
STYLE_TAGS = ("chorale", "waltz", "march", "pop", "ambient", "etude", "solo", "canon")
ONE_OF = {"tempo": ("slow", "medium", "fast"), "mode": ("major", "minor"),
          "texture": ("monophonic", "homophonic", "polyphonic"), "room": ("reverb", "dry"),
          "dynamics": ("loud", "soft")}


def test_every_tag_is_rendered_and_tags_follow_metadata():
    assert isinstance(corpus.TAGS, tuple) and len(set(corpus.TAGS)) == len(corpus.TAGS)
    assert set(corpus.TAGS) == set(FAMILY_TAGS) | set(STYLE_TAGS) | {"drums"} | {
        t for options in ONE_OF.values() for t in options}
    produced = set()
    for i in range(80):
        audio, m = corpus.render_clip(i, seed=4, duration=DUR, sr=SR)
        tags = m["tags"].split(";")
        assert len(tags) == len(set(tags)), (i, tags)
        produced.update(tags)
        insts = [f for f in m["instruments"].split(";") if f]
        assert insts and set(insts) == set(tags) & set(FAMILY_TAGS), (i, m)
        bpm = m["tempo_bpm"]
        expected = {"tempo": "slow" if bpm < 90 else ("fast" if bpm > 130 else "medium"),
                    "mode": m["mode"], "texture": m["texture"],
                    "room": "reverb" if m["reverb"] else "dry", "dynamics": m["dynamics"]}
        for group, options in ONE_OF.items():
            assert [t for t in tags if t in options] == [expected[group]], (i, group, m)
        assert [t for t in tags if t in STYLE_TAGS] == [m["style"]], (i, m)
        assert ("drums" in tags) == (m["percussion"] == 1), (i, m)
        drums = {"drums"} if m["percussion"] else set()
        assert set(tags) == set(insts) | set(expected.values()) | {m["style"]} | drums, (i, m)
        # loud / soft is also a fact about the audio: its peak level
        peak = float(np.abs(audio).max())
        lo, hi = (0.6, 0.9) if "loud" in tags else (0.3, 0.55)
        assert lo - 1e-6 <= peak <= hi + 1e-6, (i, peak, m)
    assert produced == set(corpus.TAGS), sorted(set(corpus.TAGS) - produced)


def test_render_clip_is_pure_and_seeded():
    a1, m1 = corpus.render_clip(3, seed=7, duration=DUR, sr=SR)
    a2, m2 = corpus.render_clip(3, seed=7, duration=DUR, sr=SR)
    assert a1.dtype == np.float32 and a1.shape == (int(DUR * SR),)
    assert np.array_equal(a1, a2) and m1 == m2
    b, _ = corpus.render_clip(3, seed=8, duration=DUR, sr=SR)
    c, _ = corpus.render_clip(4, seed=7, duration=DUR, sr=SR)
    assert not np.allclose(a1, b) and not np.allclose(a1, c)
    peak = np.abs(a1).max()
    assert 0.29 <= peak <= 0.91
    assert m1 == corpus.clip_metadata(3, seed=7, duration=DUR)


def test_metadata_and_tags_agree():
    seen_styles, seen_tex = set(), set()
    for i in range(120):
        m = corpus.clip_metadata(i, seed=1, duration=10.0)
        tags = m["tags"].split(";")
        assert all(t in corpus.TAGS for t in tags)
        assert tags == [t for t in corpus.TAGS if t in tags]  # vocabulary order
        assert corpus.tempo_band(m["tempo_bpm"]) in tags
        assert sum(t in tags for t in ("slow", "medium", "fast")) == 1
        assert (m["tempo_bpm"] < 90) == ("slow" in tags) and (m["tempo_bpm"] > 130) == ("fast" in tags)
        assert m["mode"] in tags and ({"major", "minor"} - {m["mode"]}).isdisjoint(tags)
        assert ("drums" in tags) == (m["percussion"] == 1)
        assert m["style"] in tags and m["texture"] in tags
        insts = m["instruments"].split(";")
        assert 1 <= len(insts) <= 4 and set(insts) == set(tags) & set(corpus.FAMILIES)
        assert len(insts) + m["percussion"] <= 4
        if m["style"] == "march":
            assert m["percussion"] == 1
        if m["style"] in ("ambient", "solo", "etude", "canon", "chorale"):
            assert m["percussion"] == 0
        if m["style"] == "solo":
            assert m["texture"] == "monophonic"
        seen_styles.add(m["style"])
        seen_tex.add(m["texture"])
    assert seen_styles == set(corpus.STYLES)
    assert seen_tex == {"monophonic", "homophonic", "polyphonic"}


def test_drum_kit_spectra():
    kit = corpus.drum_kit(SR, np.random.default_rng(0))

    def centroid(x):
        fr, X = _spectrum(x, pad=1)
        return float((fr * X ** 2).sum() / (X ** 2).sum())

    assert centroid(kit["kick"]) < 200 < 1000 < centroid(kit["snare"]) < 3000 < centroid(kit["hat"])


def test_drum_tag_matches_percussion():
    drum = plain = None
    for i in range(60):
        m = corpus.clip_metadata(i, seed=2, duration=DUR)
        if m["percussion"] and drum is None:
            drum = i
        if not m["percussion"] and "synth" not in m["instruments"] and plain is None:
            plain = i
    assert drum is not None and plain is not None
    a, m = corpus.render_clip(drum, seed=2, duration=DUR, sr=SR)
    assert "drums" in m["tags"].split(";") and m["percussion"] == 1
    _, m2 = corpus.render_clip(plain, seed=2, duration=DUR, sr=SR)
    assert "drums" not in m2["tags"].split(";") and m2["percussion"] == 0


def test_organ_note_peak_at_fundamental():
    for f in (130.81, 220.0, 440.0):
        x = corpus.render_note("organ", f, 1.0, sr=SR)
        fr, X = _spectrum(x)
        assert abs(fr[X.argmax()] - f) < 3.0


def test_guitar_karplus_strong_is_in_tune():
    x = corpus.render_note("guitar", 196.0, 1.0, sr=SR, seed=3)
    fr, X = _spectrum(x)
    peaks = [fr[np.argmax(np.where(np.abs(fr - k * 196.0) < 20, X, 0))] for k in (1, 2, 3)]
    for k, p in enumerate(peaks, 1):
        assert abs(p - k * 196.0) < 2.0 * k


def test_register_and_timbre_centroids():
    def centroid(x):
        fr, X = _spectrum(x, pad=1)
        return float((fr * X ** 2).sum() / (X ** 2).sum())

    bass = centroid(corpus.render_note("bass", corpus.midi_to_hz(36), 1.0, sr=SR))
    mallet = centroid(corpus.render_note("mallet", corpus.midi_to_hz(76), 1.0, sr=SR))
    assert bass < mallet / 2
    # brass gets brighter when played louder; clarinet is odd-harmonic
    soft = centroid(corpus.render_note("brass", 220.0, 1.0, sr=SR, velocity=0.3))
    loud = centroid(corpus.render_note("brass", 220.0, 1.0, sr=SR, velocity=1.0))
    assert loud > 1.3 * soft
    x = corpus.render_note("woodwind", 200.0, 1.0, sr=SR, variant=1)
    fr, X = _spectrum(x)

    def level(h):
        return X[np.abs(fr - h * 200.0) < 5].max()

    assert level(3) > 10 * level(2) and level(5) > 10 * level(4)


@pytest.mark.parametrize("family", corpus.FAMILIES)
def test_no_energy_near_nyquist(family):
    x = corpus.render_note(family, corpus.midi_to_hz(84 if family != "bass" else 50), 0.5, sr=SR)
    assert np.isfinite(x).all() and np.abs(x).max() > 0.01
    fr, X = _spectrum(x, pad=1)
    assert (X[fr > 0.47 * SR] ** 2).sum() < 1e-6 * (X ** 2).sum()


def test_synth_writes_corpus_and_workers_agree(tmp_path):
    d1, d2 = tmp_path / "w1", tmp_path / "w2"
    df = corpus.synth(d1, 6, seed=5, duration=1.5, sr=SR, workers=1)
    df2 = corpus.synth(d2, 6, seed=5, duration=1.5, sr=SR, workers=2)
    assert list(df.columns) == list(corpus.MANIFEST_COLUMNS)
    pd.testing.assert_frame_equal(df, df2)
    on_disk = pd.read_csv(d1 / "manifest.csv", dtype={"id": str})
    assert list(on_disk["id"]) == [f"{i:06d}" for i in range(6)]
    assert set(on_disk["split"]) <= {"train", "valid", "test"}
    params = json.loads((d1 / "corpus.json").read_text())
    assert params["n"] == 6 and params["seed"] == 5 and params["sr"] == SR
    assert params["tags"] == list(corpus.TAGS)
    for i, row in on_disk.iterrows():
        a = (d1 / row["path"]).read_bytes()
        assert a == (d2 / row["path"]).read_bytes()
        y, sr = sf.read(d1 / row["path"], dtype="float32")
        assert sr == SR and y.ndim == 1 and len(y) == int(1.5 * SR)
        ref, meta = corpus.render_clip(i, 5, 1.5, SR)
        assert np.abs(y - ref).max() < 1.0 / 32767 + 1e-6
        assert meta["tags"] == row["tags"]
    assert sf.info(str(d1 / "audio/000000.flac")).subtype == "PCM_16"
    assert not list((d1 / "audio").glob(".*"))


def test_resume_and_parameter_mismatch(tmp_path):
    d = tmp_path / "c"
    corpus.synth(d, 3, seed=1, duration=1.0, sr=SR)
    f0 = d / "audio/000000.flac"
    f2 = d / "audio/000002.flac"
    before = f0.stat().st_mtime_ns
    f2.unlink()
    df = corpus.synth(d, 3, seed=1, duration=1.0, sr=SR)
    assert f0.stat().st_mtime_ns == before and f2.exists()
    assert df.attrs["rendered"] == 1 and df.attrs["skipped"] == 2
    assert len(pd.read_csv(d / "manifest.csv")) == 3
    for kw in ({"seed": 2}, {"duration": 2.0}, {"sr": 16000}):
        args = {"seed": 1, "duration": 1.0, "sr": SR, **kw}
        with pytest.raises(corpus.CorpusError, match="other parameters"):
            corpus.synth(d, 3, **args)
    with pytest.raises(corpus.CorpusError):
        corpus.synth(d, 4, seed=1, duration=1.0, sr=SR)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("hi")
    with pytest.raises(corpus.CorpusError, match="corpus.json"):
        corpus.synth(other, 2)
    for bad in ({"n": 0}, {"n": 2, "duration": 0}, {"n": 2, "sr": 100}, {"n": 2, "workers": 0}):
        with pytest.raises(corpus.CorpusError):
            corpus.synth(tmp_path / "bad", **bad)


def test_cli(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--help"])
    assert r.exit_code == 0
    for opt in ("--out", "--n", "--seed", "--duration", "--sr", "--workers"):
        assert opt in r.output
    d = tmp_path / "cli"
    r = runner.invoke(app, ["synth", "-o", str(d), "--n", "2", "--seed", "3", "--duration", "1"])
    assert r.exit_code == 0, r.output
    assert "2 clips rendered" in r.output and "tag counts" in r.output
    assert (d / "audio/000001.flac").exists() and (d / "manifest.csv").exists()
    r = runner.invoke(app, ["synth", "-o", str(d), "--n", "2", "--seed", "3", "--duration", "1"])
    assert r.exit_code == 0 and "0 clips rendered, 2 skipped" in r.output
    for args in (["--n", "0"], ["--n", "2", "--duration", "0"], ["--n", "2", "--sr", "10"],
                 ["--n", "2", "--seed", "4", "--duration", "1"]):
        r = runner.invoke(app, ["synth", "-o", str(d)] + args)
        assert r.exit_code == 2, (args, r.output)
        assert "error:" in r.output
