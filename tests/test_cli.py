"""The command line: exit codes, output formats, error lines."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import convfeat
from convfeat import audio
from convfeat.cli import app

from conftest import SR, chirp, noise, tone

runner = CliRunner()


@pytest.fixture
def wavs(tmp_path):
    paths = []
    for name, y in {"tone.wav": tone(440, 3.0), "chirp.flac": chirp(100, 5000, 4.0),
                    "noise.wav": noise(2.0)}.items():
        sf.write(tmp_path / name, y, SR)
        paths.append(tmp_path / name)
    return paths


def test_tag_json_matches_library(wavs):
    result = runner.invoke(app, ["tag", *map(str, wavs), "--model", "random", "--json", "-k", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["failures"] == {}
    for path in wavs:
        y, sr = audio.load(path)
        expected = convfeat.tag(y, sr, model="random", top_k=4)
        assert list(data["results"][str(path)]) == list(expected)
        assert data["results"][str(path)] == pytest.approx(expected, abs=1e-6)


def test_tag_table_lists_each_file(wavs):
    result = runner.invoke(app, ["tag", *map(str, wavs), "--model", "random", "-k", "2"])
    assert result.exit_code == 0
    for path in wavs:
        assert path.name in result.stdout
    top = next(iter(convfeat.tag(*audio.load(wavs[0]), model="random", top_k=1)))
    assert top in result.stdout


def test_tag_bad_file_exit_1_others_still_tagged(wavs, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"\x00not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    result = runner.invoke(app, ["tag", str(wavs[0]), str(bad), str(empty), "--model", "random", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert list(data["results"]) == [str(wavs[0])]
    assert set(data["failures"]) == {str(bad), str(empty)}
    assert "broken.mp3" in data["failures"][str(bad)]


def test_tag_batch_mode_depends_on_batch_and_calibrated_does_not(wavs):
    def run(files, mode):
        res = runner.invoke(app, ["tag", *map(str, files), "--model", "random", "--json", "-k", "50",
                                  "--bn-mode", mode])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["results"][str(files[0])]

    alone, together = run(wavs[:1], "batch"), run(wavs, "batch")
    assert max(abs(alone[t] - together[t]) for t in alone) > 1e-3
    instance_alone, instance_together = run(wavs[:1], "instance"), run(wavs, "instance")
    assert instance_alone == pytest.approx(instance_together, abs=1e-5)


def test_missing_weights_is_one_clear_line(wavs):
    result = runner.invoke(app, ["tag", str(wavs[0])])  # choi2017 not installed in the temp cache
    assert result.exit_code == 2
    assert "convfeat weights fetch choi2017" in result.output
    assert "Traceback" not in result.output


def test_k2_rejects_other_bn_modes(wavs, k2_weights):
    result = runner.invoke(app, ["tag", str(wavs[0]), "--model", "choi2017-k2", "--weights",
                                 str(k2_weights), "--bn-mode", "instance"])
    assert result.exit_code == 2 and "stored" in result.output


def test_weights_fetch_and_list(theano_weights):
    result = runner.invoke(app, ["weights", "fetch", "choi2017", "--from", str(theano_weights)])
    assert result.exit_code == 0, result.output
    listing = json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)
    rows = {r["name"]: r for r in listing["weights"]}
    assert rows["choi2017"]["verified"] is True
    assert rows["choi2017-k2"]["path"] is None
    refused = runner.invoke(app, ["weights", "fetch", "choi2017-k2", "--from", str(theano_weights)])
    assert refused.exit_code == 2 and "sha256" in refused.output


def test_weights_fetch_unknown_name():
    result = runner.invoke(app, ["weights", "fetch", "vgg16"])
    assert result.exit_code == 2 and "unknown weights" in result.output


def test_help_documents_bn_modes_and_default():
    result = runner.invoke(app, ["tag", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for word in ("instance", "calibrated", "batch", "stored", "--top-k", "--json", "--weights"):
        assert word in text


def test_extract_info_export_merge_from_the_command_line(wavs, tmp_path):
    folder = wavs[0].parent
    out = tmp_path / "all.h5"
    res = runner.invoke(app, ["extract", str(folder), "-o", str(out), "-m", "random", "-m", "mfcc", "--quiet",
                              "--workers", "0"])
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
    assert info["n_items"] == 3 and set(info["sets"]) == {"random", "mfcc"}
    text = runner.invoke(app, ["info", str(out)]).stdout
    assert "random" in text and "mfcc" in text
    res = runner.invoke(app, ["export", str(out), "-o", str(tmp_path / "npy"), "--features", "random",
                              "--layers", "5"])
    assert res.exit_code == 0, res.output
    X = np.load(tmp_path / "npy" / "X.npy")
    ids, ref = convfeat.load(out, features="random", layers="5")
    np.testing.assert_array_equal(X, ref)
    assert (tmp_path / "npy" / "ids.txt").read_text().split() == list(ids)
    shards = []
    for i in (1, 2):
        shards.append(tmp_path / f"s{i}.h5")
        res = runner.invoke(app, ["extract", str(folder), "-o", str(shards[-1]), "-m", "random", "-m", "mfcc",
                                  "--shard", f"{i}/2", "--quiet", "--workers", "0"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["merge", str(tmp_path / "merged.h5"), *map(str, shards)])
    assert res.exit_code == 0, res.output
    m_ids, m_X = convfeat.load(tmp_path / "merged.h5", features="mfcc+random")
    a_ids, a_X = convfeat.load(out, features="mfcc+random")
    assert list(m_ids) == list(a_ids)
    np.testing.assert_allclose(m_X, a_X, atol=1e-5)
    bad = runner.invoke(app, ["info", str(wavs[0])])
    assert bad.exit_code == 2 and "error:" in bad.output
