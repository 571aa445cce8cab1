"""How convfeat is installed: the shipped model is package data, so every install kind has it.

The slow test builds a wheel, installs it into a fresh virtual environment and runs the
``convfeat`` command from outside the repository, so nothing can come from the checkout.
It is marked ``slow`` (deselect with ``-m "not slow"``) but runs in the normal suite.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "convfeat-synth"
SHIPPED_FOLDER = ROOT / "convfeat" / "models" / "shipped" / SHIPPED
TIMEOUT = 300


def _vocabulary() -> set[str]:
    return set(json.loads((SHIPPED_FOLDER / "model.json").read_text())["tags"])


def _env() -> dict:
    """The test's environment without anything that would point Python at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return env


def _run(argv, cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(), capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert res.returncode == 0, f"{argv}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _venv_bin(venv: Path, name: str) -> Path:
    return venv / "Scripts" / f"{name}.exe" if os.name == "nt" else venv / "bin" / name


# -- the checkout / editable install the suite runs in ----------------------------------------
def test_shipped_model_is_found_inside_the_package():
    import convfeat
    from convfeat.models import shipped_models
    from convfeat.models.trained import SHIPPED_DIR

    assert SHIPPED in shipped_models()
    assert SHIPPED_DIR.resolve() == (Path(convfeat.__file__).parent / "models" / "shipped").resolve()
    assert {p.name for p in (SHIPPED_DIR / SHIPPED).iterdir()} >= {"model.json", "weights.npz", "MODEL_CARD.md"}


def test_demo_fails_loudly_without_the_shipped_model(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import convfeat.models.trained as trained
    from convfeat.cli import app

    monkeypatch.setattr(trained, "SHIPPED_DIR", tmp_path / "empty")
    res = CliRunner().invoke(app, ["demo", "-o", str(tmp_path / "d"), "--clips", "2"])
    assert res.exit_code != 0, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and SHIPPED in errors[0] and "missing" in errors[0], res.output
    assert "reinstall" in errors[0] and "(no shipped model" not in res.output
    assert not (tmp_path / "d" / "corpus").exists(), "failed only after rendering the clips"


# -- a wheel in a fresh virtual environment ---------------------------------------------------
@pytest.mark.slow
def test_wheel_install_carries_the_shipped_model(tmp_path):
    # Build from a copy of the sources: no stale build/ or egg-info of the checkout gets in, and
    # the checkout is left as it was.
    src = tmp_path / "src"
    src.mkdir()
    for p in ROOT.iterdir():
        if p.is_file():
            shutil.copy2(p, src / p.name)
    shutil.copytree(ROOT / "convfeat", src / "convfeat",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", dist], cwd=src)
    (wheel,) = dist.glob("convfeat-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {f"convfeat/models/shipped/{SHIPPED}/{f}" for f in ("model.json", "weights.npz", "MODEL_CARD.md")} <= names
    assert "convfeat/models/fast_kernels.cpp" in names          # the fast path's C++ source
    assert "convfeat/evaluation/svm_solver.cpp" in names      # the exact SVM solver's C++ source
    assert "convfeat/evaluation/pairwise.cpp" in names        # the kernel matrices' C++ source

    # A fresh venv that sees the installed dependencies (torch, ...) through the system
    # site-packages, and the base pip (--without-pip: no seeding, and pip comes from the same
    # place as above).  --force-reinstall: the base environment's convfeat (editable, same
    # version) is visible too and must not count as "already installed".
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=tmp_path)
    python = _venv_bin(venv, "python")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall", wheel], cwd=tmp_path)

    # Imported from outside the repository: the venv's own copy, with its own shipped model.
    work = tmp_path / "work"
    work.mkdir()
    probe = ("import json, sysconfig, convfeat\n"
             "from convfeat.models import fast\n"
             "from convfeat.models.trained import SHIPPED_DIR, shipped_models\n"
             "print(json.dumps({'file': convfeat.__file__, 'site': sysconfig.get_paths()['purelib'],\n"
             "                  'shipped_dir': str(SHIPPED_DIR), 'shipped': shipped_models(),\n"
             "                  'fast': fast.available(), 'fast_reason': fast.unavailable_reason()}))")
    info = json.loads(_run([python, "-c", probe], cwd=work).stdout.strip().splitlines()[-1])
    assert info["fast"] is True, info                          # the installed copy builds its kernels
    site = Path(info["site"]).resolve()
    assert Path(info["file"]).resolve().is_relative_to(site), info
    assert site.is_relative_to(venv.resolve()) and not Path(info["file"]).resolve().is_relative_to(ROOT), info
    assert Path(info["shipped_dir"]).resolve().is_relative_to(site) and SHIPPED in info["shipped"], info

    # The same import from a source checkout (the copy, run from its root) finds the checkout's model.
    info = json.loads(_run([python, "-c", probe], cwd=src).stdout.strip().splitlines()[-1])
    assert Path(info["shipped_dir"]).resolve() == (src / "convfeat" / "models" / "shipped").resolve(), info
    assert SHIPPED in info["shipped"], info

    vocab = _vocabulary()
    convfeat_cmd = _venv_bin(venv, "convfeat")
    out = work / "demo"
    demo = _run([convfeat_cmd, "demo", "-o", out, "--clips", "4"], cwd=work)
    assert "(no shipped model" not in demo.stdout + demo.stderr
    # one line per clip: "ID  true;tags  |  tag 0.91, tag 0.55, ..." (the shipped model's top tags)
    rows = [line.split("  |  ", 1)[1] for line in demo.stdout.splitlines() if "  |  " in line and line[:6].isdigit()]
    assert len(rows) == 4, demo.stdout
    for row in rows:
        predicted = [item.rsplit(" ", 1) for item in row.split(", ")]
        assert predicted and all(t in vocab and 0.0 <= float(p) <= 1.0 for t, p in predicted), row

    clip = out / "corpus" / "audio" / "000000.flac"
    assert clip.is_file()
    tagged = _run([convfeat_cmd, "tag", "--model", SHIPPED, "--json", clip], cwd=work)
    doc = json.loads(tagged.stdout)
    assert not doc["failures"] and list(doc["results"]) == [str(clip)], doc
    probs = doc["results"][str(clip)]
    assert probs and set(probs) <= vocab, probs
    assert all(0.0 <= p <= 1.0 for p in probs.values()), probs
