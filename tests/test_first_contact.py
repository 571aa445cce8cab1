"""What a new user meets first: tag's default mode and what it says, a run with nothing to do."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import convfeat
from convfeat import api, audio
from convfeat.cli import app

from conftest import SR, chirp, noise, tone

runner = CliRunner()


@pytest.fixture
def wavs(tmp_path):
    paths = []
    for name, y in {"tone.wav": tone(440, 3.0), "chirp.wav": chirp(100, 5000, 4.0),
                    "noise.wav": noise(2.0)}.items():
        sf.write(tmp_path / name, y, SR)
        paths.append(tmp_path / name)
    return paths


def test_tag_calibrates_choi2017_on_the_given_files_by_default_and_says_so(wavs, theano_weights):
    res = runner.invoke(app, ["tag", *map(str, wavs), "--weights", str(theano_weights), "--json", "-k", "5"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["model"], data["bn_mode"], data["calibrated_on"]) == ("choi2017", "calibrated", 3)
    signals = [audio.load(p) for p in wavs]
    net = api.calibrated_model(signals, "choi2017", theano_weights)
    for path, (y, sr) in zip(wavs, signals):
        expected = convfeat.tag(y, sr, model=net, top_k=5)
        assert list(data["results"][str(path)]) == list(expected)
        assert data["results"][str(path)] == pytest.approx(expected, abs=1e-6)
    assert "calibrated on 3 file(s) only" in res.stderr          # few files: the user is told
    instance = json.loads(runner.invoke(app, ["tag", *map(str, wavs), "--weights", str(theano_weights),
                                              "--json", "-k", "5", "--bn-mode", "instance"]).stdout)
    assert instance["bn_mode"] == "instance" and instance["calibrated_on"] is None
    assert instance["results"] != data["results"]


def test_tag_table_names_the_model_and_mode(wavs):
    res = runner.invoke(app, ["tag", *map(str, wavs), "--model", "random", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert "random (bn_mode instance)" in res.stdout


def test_a_run_with_nothing_to_do_says_so(wavs, tmp_path):
    out = tmp_path / "f.h5"
    args = ["extract", str(wavs[0].parent), "-o", str(out), "-m", "mfcc", "--workers", "0"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "3 processed" in first.stderr
    before = out.read_bytes()
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert "nothing to do: all 3 items are already done" in again.stderr and "x real time" not in again.stderr
    assert out.read_bytes() == before


def test_help_reads_as_words_not_python_types():
    import subprocess
    import sys

    code = ("import sys\nfrom convfeat.cli import main\nsys.argv = ['convfeat', 'extract', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "COLUMNS": "160"}).stdout
    assert "--batch-size" in out and "INPUTS" in out and "INTEGER" in out
    for placeholder in ("<bool>", "<list[", "<int>", "<path>", "<float>"):
        assert placeholder not in out, placeholder


def test_info_export_datasets_and_evaluate_run_without_torch(tmp_path):
    import subprocess
    import sys

    from convfeat.store import FeatureFile

    path = tmp_path / "f.h5"
    rng = np.random.default_rng(0)
    with FeatureFile(path) as ff:
        ff.add_items([{"id": f"{c}{i}.wav", "path": f"{c}{i}.wav", "meta": {"label": c}}
                      for c in "ab" for i in range(6)])
        ff.ensure_set("mfcc", {"mfcc": 4}, {"model": "mfcc"}, {})
        ff.record([{"id": item, "status": "ok", "reason": "", "duration": 1.0, "source_sr": SR, "channels": 1,
                    "windows": 1, "features": {"mfcc": {"mfcc": rng.normal(size=4) + 3 * (item[0] == "a")}}}
                   for item in sorted(ff.items.index())])
        ff.checkpoint()
    commands = [["info", str(path)], ["export", str(path), "-o", str(tmp_path / "x"), "--features", "mfcc"],
                ["datasets", "list"],
                ["evaluate", str(path), "--label-column", "label", "-f", "mfcc", "-k", "3", "--inner-folds", "2",
                 "--head", "linear"]]
    for argv in commands:
        code = ("import sys\nfrom convfeat.cli import main\nsys.argv = ['convfeat'] + %r\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
                "assert 'torch' not in sys.modules, 'torch imported'\nprint('NO-TORCH')" % argv)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "NO-TORCH" in res.stdout, (argv, res.stderr[-1500:])


def test_tag_lists_a_file_with_extreme_samples_as_failed_and_tags_the_others(wavs, tmp_path):
    spikes = tmp_path / "spikes.wav"
    sf.write(spikes, (noise(2.0) * 1e20).astype(np.float32), SR, subtype="FLOAT")
    res = runner.invoke(app, ["tag", str(spikes), str(wavs[0]), "--model", "random", "--json", "-k", "1"])
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert list(data["results"]) == [str(wavs[0])]
    assert "not finite" in data["failures"][str(spikes)] and "spikes.wav" in data["failures"][str(spikes)]
