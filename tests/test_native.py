"""The compiled libraries' common switch and fallback (convfeat.native)."""
import ctypes
import warnings

import pytest

from convfeat import native
from convfeat.evaluation import svm_solver
from convfeat.models import fast


@pytest.mark.parametrize("module", [fast, svm_solver], ids=["inference kernels", "SVM solver"])
def test_disabled_by_environment(module, monkeypatch):
    for name, value in (("lib", None), ("reason", None), ("warned", False)):
        monkeypatch.setattr(module._LIBRARY, name, value)
    monkeypatch.setenv("CONVFEAT_FAST", "0")
    assert not module.available()
    assert "CONVFEAT_FAST" in module.unavailable_reason()


def test_a_failed_build_warns_once_and_is_not_retried():
    calls = []

    def build():
        calls.append(1)
        raise RuntimeError("no C++ compiler found (simulated)")

    lib = native.Library("test helpers", "using the slow path", build)
    with pytest.warns(RuntimeWarning, match=r"convfeat: test helpers unavailable \(RuntimeError: no C\+\+ compiler "
                                            r"found \(simulated\)\); using the slow path"):
        assert lib.get() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lib.get() is None
    assert calls == [1] and "simulated" in lib.reason


def test_a_built_library_is_loaded_once():
    calls = []
    lib = native.Library("test helpers", "unused", lambda: calls.append(1) or ctypes.CDLL(None))
    assert lib.get() is lib.get() and calls == [1] and lib.reason is None
