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


# -- xdist scheduling ----------------------------------------------------------------------------
# Under `make test` (-n 2 with --dist loadgroup --no-loadscope-reorder, pyproject.toml) the two
# processes are handed work in collection order, a module marked ``xdist_group`` as one unit.  The
# longest units go first (longest processing time first), so that the short ones fill in at the end
# and both processes finish together.  Rough CPU seconds on the 2-core reference machine.
SLOWEST_FIRST = (
    "tests/test_install.py::test_wheel_install_carries_the_shipped_model",  # 15: wheel, venv, 7 subprocesses
    "tests/test_port.py",                                                   # 12: group "port"
    "tests/test_study.py::test_emomusic_arousal_12345_is_0650",             # 9: 320 SVR fits
    "tests/test_pretrain.py",                                               # 5: group "pretrain"
    "tests/test_study.py::test_gtzan_genre_12345_is_0898",                  # 4.5
    "tests/test_shipped.py",                                                # 4
    "tests/test_experiment.py::test_every_evaluation_setting_reaches_the_evaluation",  # 3.5
    "tests/test_extract.py::test_sigkill_mid_run_leaves_valid_file_and_rerun_completes",  # 3
    "tests/test_experiment.py::test_run_reports_and_skips_current_steps",   # 2.5
)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return                       # a serial run keeps the files' order

    def rank(item) -> int:
        return next((i for i, prefix in enumerate(SLOWEST_FIRST) if item.nodeid.startswith(prefix)),
                    len(SLOWEST_FIRST))

    items.sort(key=rank)             # stable: the rest keep their order


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


@pytest.fixture(scope="session")
def _shared_kernels(request, tmp_path_factory) -> Path:
    """One folder for the compiled inference kernels (convfeat.models.fast) that every test, both
    xdist processes and every subprocess a test starts use: pytest's cache folder
    (.pytest_cache/d/convfeat-kernels, kept between runs), or without the cache plugin one folder
    for the run.  The kernels are keyed by their source, the compiler and the CPU and written
    atomically, so sharing them is safe; each test's fresh cache folder would otherwise compile
    them again (seconds of CPU per test process and per subprocess)."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        try:
            return Path(cache.mkdir("convfeat-kernels"))
        except OSError:              # a read-only checkout: one folder for the run instead
            pass
    base = tmp_path_factory.getbasetemp()
    kernels = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "convfeat-kernels"
    kernels.mkdir(exist_ok=True)
    return kernels


@pytest.fixture(autouse=True)
def _isolated_weight_dirs(tmp_path_factory, monkeypatch, _shared_kernels):
    """No test reads or writes the user's real cache or weights dir (each test gets an empty cache
    folder; only its ``kernels`` entry points to the run's shared compiled kernels)."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "kernels").symlink_to(_shared_kernels, target_is_directory=True)
    monkeypatch.setenv("CONVFEAT_CACHE_DIR", str(cache))
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


def write_clips(folder: Path, clips: dict) -> Path:
    """``clips`` (``{file name: (samples, sample rate)}``) written as float WAV files into
    ``folder`` (made); returns ``folder``."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for name, (y, sr) in clips.items():
        sf.write(folder / name, y, sr, subtype="FLOAT")
    return folder
