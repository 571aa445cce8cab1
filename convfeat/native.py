"""Compiled helpers: C++ sources shipped in the package, built on first use and cached.

Two users: the fast inference kernels (:mod:`convfeat.models.fast`) and the exact SVM solver
(:mod:`convfeat.evaluation.svm_solver`).  A source is compiled with the system compiler
(``$CXX``, ``g++``, ``c++`` or ``clang++``) into the user cache (``$CONVFEAT_CACHE_DIR/kernels``
or the platform cache dir; the temporary dir when that is not writable), under a name keyed by
the source, the flags, the compiler and the CPU (``-march=native`` code must never be loaded on
another CPU, and a cache dir may be shared), and loaded with ctypes.  Each library exports
``<stem>_abi()``, checked on load so that a stale or foreign file is rebuilt, never called.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["Library", "build", "load", "cache_root", "disabled", "source", "EXACT_FLAGS"]

# Flags of the libraries that must reproduce another program's floating point to the bit (the SVM
# solver, the kernel matrices): no fused multiply-add (libsvm has none), no reassociation.
EXACT_FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off"]


def source(package: str, name: str) -> str:
    """The text of a C++ source shipped as package data."""
    from importlib import resources

    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def disabled() -> bool:
    """``CONVFEAT_FAST=0`` (or false/no/off): every compiled path is off, the reference runs."""
    return os.environ.get("CONVFEAT_FAST", "1").strip().lower() in ("0", "false", "no", "off")


class Library:
    """A compiled library, built and loaded on first use by whichever thread asks first.

    ``build()`` returns the ctypes library or raises.  :meth:`get` returns it, or None when it is
    disabled (:func:`disabled`) or cannot be built; then ``reason`` says why, and the first failure
    warns once: ``"convfeat: <what> unavailable (<reason>); <fallback>"``.
    """

    def __init__(self, what: str, fallback: str, build: Callable[[], ctypes.CDLL]):
        self.what, self.fallback, self._build = what, fallback, build
        self.lib = None
        self.reason: str | None = None
        self.warned = False
        self._lock = threading.Lock()

    def get(self):
        if self.lib is not None or self.reason is not None:
            return self.lib
        with self._lock:
            if self.lib is None and self.reason is None:
                if disabled():
                    self.reason = "disabled by CONVFEAT_FAST=0"
                else:
                    try:
                        self.lib = self._build()
                    except Exception as exc:  # the caller's exact reference path still works
                        self.reason = f"{type(exc).__name__}: {exc}"
                        if not self.warned:
                            self.warned = True
                            warnings.warn(f"convfeat: {self.what} unavailable ({self.reason}); {self.fallback}",
                                          RuntimeWarning, stacklevel=4)
        return self.lib


def cache_root() -> Path:
    """Where compiled libraries are kept."""
    env = os.environ.get("CONVFEAT_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "kernels"
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("convfeat")) / "kernels"
    except Exception:  # pragma: no cover - platformdirs is a dependency
        return Path(tempfile.gettempdir()) / "convfeat-kernels"


def _cpu_identity() -> str:
    parts = [platform.machine(), platform.system()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    parts.append(line.strip())
                if len(parts) > 8:
                    break
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:
        return ""


def load(path: Path, abi_symbol: str, abi: int, signatures: dict | None = None) -> ctypes.CDLL:
    """Load a compiled library, checking that ``abi_symbol()`` returns ``abi`` (OSError otherwise).

    ``signatures``: ``{function name: (argtypes, restype)}``, set on the loaded functions."""
    lib = ctypes.CDLL(str(path))
    if getattr(lib, abi_symbol)() != abi:
        raise OSError("library ABI mismatch")
    for name, (argtypes, restype) in (signatures or {}).items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    return lib


def build(source: str, flags: list[str], stem: str, abi: int,
          loader: Callable[[Path], ctypes.CDLL]) -> tuple[ctypes.CDLL, float]:
    """The library compiled from ``source`` with ``flags``, from the cache or built now.

    ``loader(path)`` loads (and checks) a library file.  → (library, seconds spent compiling: 0.0
    on a cache hit).  Raises RuntimeError when there is no compiler or the build fails.
    """
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (g++, c++ or clang++; or set $CXX)")
    key = hashlib.sha256("\n".join([source, " ".join(flags), _compiler_version(cxx), _cpu_identity(),
                                    str(abi)]).encode()).hexdigest()[:20]
    so_name = f"{stem}_{key}.so"
    candidates = [cache_root(), Path(tempfile.gettempdir()) / "convfeat-kernels"]
    for root in candidates:
        path = root / so_name
        if path.is_file():
            try:
                return loader(path), 0.0
            except Exception:
                pass                      # a corrupt cache entry: rebuilt below
    last_error = None
    seconds = 0.0
    for root in candidates:
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                src = Path(tmp) / f"{stem}.cpp"
                src.write_text(source)
                tmp_so = Path(tmp) / so_name
                t0 = time.perf_counter()
                res = subprocess.run([cxx, *flags, str(src), "-o", str(tmp_so)], capture_output=True,
                                     text=True, timeout=300)
                seconds += time.perf_counter() - t0
                if res.returncode != 0:
                    raise RuntimeError(f"{Path(cxx).name} failed: {res.stderr.strip()[-800:]}")
                os.replace(tmp_so, root / so_name)     # atomic: concurrent builders agree
            return loader(root / so_name), seconds
        except (OSError, subprocess.SubprocessError) as exc:
            last_error = exc
    raise RuntimeError(f"could not build {stem}: {last_error}")
