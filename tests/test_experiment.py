"""`convfeat run EXPERIMENT.toml`: one command, resumable, steps skipped when current."""
from __future__ import annotations

import json

import numpy as np
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
    result = runner.invoke(app, ["run", str(experiment), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    text = json.dumps(report)
    assert "random" in text and "mfcc" in text
    # tones vs noise is trivially separable for both feature sets
    summary = (tmp_path / "report" / "summary.csv").read_text()
    assert "accuracy" in summary
    out = run_experiment(experiment, jobs=1)
    assert out["steps"] == {"manifest": "skipped", "extract1": "skipped", "evaluate": "skipped"}
    # changing the evaluation re-runs only the evaluation
    experiment.write_text(experiment.read_text().replace('head = "linear"', 'head = "svm"'))
    out = run_experiment(experiment, jobs=1)
    assert out["steps"] == {"manifest": "skipped", "extract1": "skipped", "evaluate": "ran"}
    accuracy = {r.feature: r.summary("accuracy")["mean"] for r in out["results"]}
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
