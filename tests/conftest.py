"""Shared test fixtures.

Tests that need the reference material (published weights, real audio) find it
through ONE setting, ``$CONVFEAT_SHARED`` (default ``../shared`` beside the
project root), and skip with a clear reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One test process per core (``make test`` runs ``-n 2``): one math thread each, or the
    # processes fight over the cores.  Set before any test module imports torch.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONVFEAT_SHARED", PROJECT_ROOT.parent / "shared")).expanduser()
SR = 12000


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (set CONVFEAT_SHARED to the shared/ folder; absent here)")
    return path


@pytest.fixture(scope="session")
def theano_weights() -> Path:
    return shared_path("models", "choi2017", "weights_theano.hdf5")


@pytest.fixture(scope="session")
def tf_weights() -> Path:
    return shared_path("models", "choi2017", "weights_tensorflow.hdf5")


@pytest.fixture(scope="session")
def k2_weights() -> Path:
    return shared_path("models", "choi2017-keras2", "model_best.hdf5")


@pytest.fixture(scope="session")
def example_clip() -> np.ndarray:
    return np.load(shared_path("models", "choi2017", "example_clip_12k.npy"))


@pytest.fixture(autouse=True)
def _isolated_weight_dirs(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real cache or weights dir."""
    monkeypatch.setenv("CONVFEAT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("CONVFEAT_WEIGHTS_DIR", raising=False)


# -- generated audio -----------------------------------------------------------
def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    return (amp * np.sin(phase)).astype(np.float32)


def noise(seconds: float, sr: int = SR, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(round(seconds * sr)))).astype(np.float32)


def clicks(seconds: float, sr: int = SR, every: float = 0.5) -> np.ndarray:
    y = np.zeros(int(round(seconds * sr)), dtype=np.float32)
    y[:: int(every * sr)] = 1.0
    return y
