"""`convfeat run EXPERIMENT.toml`: one command, resumable, steps skipped when current."""
from __future__ import annotations

import json

import pytest
import soundfile as sf
from typer.testing import CliRunner

from convfeat.cli import app
from convfeat.experiment import ExperimentError, load_experiment, run_experiment

from conftest import noise, tone

runner = CliRunner()

TOML = """
[experiment]
name = "tiny"
work = "{work}"
report = "{report}"

[dataset]
adapter = "folders"
root = "{root}"

[[extract]]
sets = ["random", "mfcc"]
batch_size = 4

[evaluate]
label = "label"
n_folds = 3
head = "{head}"
protocol = "nested"
inner_folds = 2
baselines = ["mfcc"]
"""


@pytest.fixture
def experiment(tmp_path):
    root = tmp_path / "data"
    for k in range(6):
        (root / "tones").mkdir(parents=True, exist_ok=True)
        (root / "noise").mkdir(parents=True, exist_ok=True)
        sf.write(root / "tones" / f"t{k}.wav", tone(300 + 150 * k, 1.5), 12000)
        sf.write(root / "noise" / f"n{k}.wav", noise(1.5, seed=k), 12000)
    path = tmp_path / "exp.toml"
    path.write_text(TOML.format(work=tmp_path / "work", report=tmp_path / "report", root=root, head="linear"))
    return path


def test_run_reports_and_skips_current_steps(experiment, tmp_path):
    result = runner.invoke(app, ["run", str(experiment), "--jobs", "1", "--workers", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    text = json.dumps(report)
    assert "random" in text and "mfcc" in text
    # tones vs noise is trivially separable for both feature sets
    summary = (tmp_path / "report" / "summary.csv").read_text()
    assert "accuracy" in summary
    out = run_experiment(experiment, jobs=1, workers=0)
    assert out["steps"] == {"manifest": "skipped", "extract1": "skipped", "evaluate": "skipped"}
    # changing the evaluation re-runs only the evaluation
    experiment.write_text(experiment.read_text().replace('head = "linear"', 'head = "svm"'))
    out = run_experiment(experiment, jobs=1, workers=0)
    assert out["steps"] == {"manifest": "skipped", "extract1": "skipped", "evaluate": "ran"}
    # convnet sets are labelled "<set>/<layers>" ("random/12345"), as `convfeat evaluate` labels them
    accuracy = {r.feature.removesuffix("/12345"): r.summary("accuracy")["mean"] for r in out["results"]}
    assert accuracy["random"] == pytest.approx(1.0) and accuracy["mfcc"] >= 0.75  # 12 items, 3 folds


def test_bad_experiment_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment]\nname='x'\n")
    with pytest.raises(ExperimentError, match=r"\[dataset\]"):
        load_experiment(bad)
    bad.write_text("not toml [")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "not valid TOML" in result.output
    result = runner.invoke(app, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "not found" in result.output


def test_unknown_keys_and_bad_values_are_errors_naming_them(experiment, tmp_path):
    text = experiment.read_text()
    cases = [
        (text.replace("n_folds = 3", "n_fold = 3"), r"unknown key 'n_fold' in \[evaluate\]; allowed keys: .*n_folds"),
        (text.replace('name = "tiny"', 'name = "tiny"\nreports = "x"'),
         r"unknown key 'reports' in \[experiment\]; allowed keys: name, work, report"),
        (text.replace("batch_size = 4", "batch_size = 4\nbatchsize = 4"),
         r"unknown key 'batchsize' in \[\[extract\]\]; allowed keys: sets, .*batch_size"),
        (text + "\n[evaluation]\nhead = 'svm'\n",
         r"unknown section \[evaluation\]; allowed sections: experiment, dataset, extract, evaluate"),
        (text.replace('head = "linear"', 'head = "tree"'), r"\[evaluate\] head must be one of svm, linear, got 'tree'"),
        (text.replace("n_folds = 3", "n_folds = '3'"), r"\[evaluate\] n_folds must be a whole number, got '3'"),
        (text.replace("n_folds = 3", "shuffle = 1"), r"\[evaluate\] shuffle must be true or false, got 1"),
    ]
    bad = tmp_path / "bad.toml"
    for content, message in cases:
        bad.write_text(content)
        with pytest.raises(ExperimentError, match=message):
            load_experiment(bad)
    # on the command line: one line, exit code 2, before any step ran
    bad.write_text(cases[0][0])
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "unknown key 'n_fold' in [evaluate]" in result.output
    assert "allowed keys: features, layers, label" in result.output
    assert not (tmp_path / "work").exists()


def test_every_evaluation_setting_reaches_the_evaluation(experiment, tmp_path):
    # scaler, shuffle, seed, max_iter and layers = "all" were once read and silently ignored
    text = experiment.read_text()
    experiment.write_text(text.replace('head = "linear"', 'head = "svm"').replace('protocol = "nested"', (
        'protocol = "study"\nscaler = "both"\nshuffle = true\nseed = 5\nmax_iter = 1\nlayers = "5"')))
    out = run_experiment(experiment, jobs=1, workers=0)
    assert out["steps"]["evaluate"] == "ran"
    meta = json.loads((tmp_path / "report" / "report.json").read_text())["meta"]
    assert meta["splits"] == "stratified 3-fold (shuffled, seed 5)"          # shuffle, seed
    assert meta["grid"] == "64 points (svm head; scaler on/off)"             # scaler (auto: 32 points, off)
    assert any("stopped at max_iter=1 " in n for n in meta["notes"])        # max_iter (default: 1000000)
    assert {r.feature for r in out["results"]} == {"random/5", "mfcc"}       # layers = "5"
    # layers = "all": every subset of the convnet set, mfcc, and mfcc+<set>/12345 (33 feature sets, scored
    # here with the cheapest settings: linear head, study protocol, no figures; the report test has those)
    experiment.write_text(text.replace('protocol = "nested"', 'protocol = "study"\nlayers = "all"\nplots = false'))
    out = run_experiment(experiment, jobs=1, workers=0)
    features = {r.feature for r in out["results"]}
    assert {"random/12345", "random/135", "random/5", "mfcc", "mfcc+random/12345"} <= features  # layers = all
    assert len(features) == 33 and json.loads((tmp_path / "report" / "report.json").read_text())["meta"][
        "experiment"] == "tiny"
