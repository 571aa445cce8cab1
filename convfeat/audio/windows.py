"""The length policy: cutting a mono 12-kHz signal into model windows.

A clip shorter than a window is repeated (``short="repeat"``, the study) or
zero-padded (``"pad"``); a longer one gives its first window (``long="first"``,
the study) or every full window at a hop (``"mean"``: their pooled features are
averaged).  Pure functions over NumPy arrays; torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import LONG_POLICIES, SAMPLE_RATE, SHORT_POLICIES, WINDOW_SAMPLES
from ..errors import InputError

__all__ = ["Policy", "fit_window", "split_windows", "SHORT_POLICIES", "LONG_POLICIES"]


@dataclass
class Policy:
    """Length policy: ``short`` repeat|pad, ``long`` first|mean, ``hop_seconds``."""

    short: str = "repeat"
    long: str = "first"
    hop_seconds: float = 29.0

    def to_dict(self) -> dict:
        return {"short": self.short, "long": self.long, "hop_seconds": self.hop_seconds,
                "window_samples": WINDOW_SAMPLES, "sample_rate": SAMPLE_RATE}


def fit_window(y: np.ndarray, n: int, short: str = "repeat") -> np.ndarray:
    """The first ``n`` samples of ``y``; a shorter signal is repeated (``"repeat"``,
    the study's policy) or zero-padded (``"pad"``) up to ``n``."""
    if short not in SHORT_POLICIES:
        raise InputError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise InputError(f"fit_window expects mono audio, got shape {y.shape}")
    if y.size == 0:
        raise InputError("cannot fit an empty signal to a window")
    if y.size >= n:
        return y[:n]
    if short == "repeat":
        return np.tile(y, -(-n // y.size))[:n]
    return np.pad(y, (0, n - y.size))


def split_windows(y: np.ndarray, n: int, hop: int, long: str = "first", short: str = "repeat") -> np.ndarray:
    """Cut a mono 12-kHz signal into model windows → ``(k, n)`` float32.

    Shorter than ``n``: one window, repeated or padded (``short``).
    ``long="first"``: the first window only (the study's policy).
    ``long="mean"``: every full window starting at 0, hop, 2·hop, … (the
    caller averages their pooled features); a tail shorter than a window
    after the last full one is not used.
    """
    if long not in LONG_POLICIES:
        raise InputError(f"long must be one of {LONG_POLICIES}, got {long!r}")
    if hop <= 0:
        raise InputError("hop must be positive")
    y = np.asarray(y, dtype=np.float32)
    if y.size <= n or long == "first":
        return fit_window(y, n, short)[None]
    # Strided view: no copy of a long signal (rows share memory with y).
    return np.lib.stride_tricks.sliding_window_view(y, n)[::hop]
