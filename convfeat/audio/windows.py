"""The length policy: cutting a mono 12-kHz signal into model windows.

A window is ``Policy.window_seconds`` long (29 s, the study's, unless told
otherwise).  A clip shorter than a window is repeated (``short="repeat"``, the
study) or zero-padded (``"pad"``); a longer one gives its first window
(``long="first"``, the study) or every full window at a hop (``"mean"``: their
pooled features are averaged).  Pure functions over NumPy arrays; torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..constants import LONG_POLICIES, SAMPLE_RATE, SHORT_POLICIES, WINDOW_SECONDS
from ..errors import InputError

__all__ = ["Policy", "fit_window", "split_windows", "SHORT_POLICIES", "LONG_POLICIES"]


@dataclass
class Policy:
    """Length policy of a model input.

    short: ``"repeat"`` (the study) or ``"pad"``: how audio shorter than a window fills it.
    long: ``"first"`` (the study: the first window only) or ``"mean"`` (every full
        window at ``hop_seconds``; the caller averages their features).
    hop_seconds: seconds between window starts for ``long="mean"``.
    window_seconds: the window length in seconds (default the study's 29 s =
        348,000 samples at 12 kHz).  Models with the published time pooling need
        at least ~27.3 s; the extraction refuses shorter windows for them.
    """

    short: str = "repeat"
    long: str = "first"
    hop_seconds: float = 29.0
    window_seconds: float = WINDOW_SECONDS

    @property
    def window_samples(self) -> int:
        """Samples per window at 12 kHz (348,000 for 29 s)."""
        return int(round(self.window_seconds * SAMPLE_RATE))

    @property
    def hop_samples(self) -> int:
        """Samples between window starts at 12 kHz (``long="mean"``)."""
        return int(round(self.hop_seconds * SAMPLE_RATE))

    @property
    def read_seconds(self) -> float | None:
        """Seconds of audio the policy looks at: one window for ``long="first"``,
        else ``None`` (all of it)."""
        return self.window_samples / SAMPLE_RATE if self.long == "first" else None

    def check(self) -> "Policy":
        """Raise :class:`InputError` for an unknown policy name or a non-positive window or hop; → self."""
        if self.short not in SHORT_POLICIES:
            raise InputError(f"short must be one of {SHORT_POLICIES}, got {self.short!r}")
        if self.long not in LONG_POLICIES:
            raise InputError(f"long must be one of {LONG_POLICIES}, got {self.long!r}")
        if not (math.isfinite(self.window_seconds) and self.window_samples >= 1):
            raise InputError(f"the window must be at least one sample long, got {self.window_seconds} s")
        if not self.hop_seconds > 0:
            raise InputError(f"hop_seconds must be positive, got {self.hop_seconds}")
        return self

    def to_dict(self) -> dict:
        """What a feature set records as its ``length_policy`` (JSON-ready)."""
        return {"short": self.short, "long": self.long, "hop_seconds": self.hop_seconds,
                "window_samples": self.window_samples, "sample_rate": SAMPLE_RATE}


def fit_window(y: np.ndarray, n: int, short: str = "repeat") -> np.ndarray:
    """The first ``n`` samples of mono ``y`` → ``(n,)`` float32; a shorter signal is
    repeated (``"repeat"``, the study's policy) or zero-padded (``"pad"``) up to ``n``."""
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
    """Cut a mono 12-kHz signal ``(samples,)`` into model windows → ``(k, n)`` float32.

    Shorter than ``n``: one window, repeated or padded (``short``).
    ``long="first"``: the first window only (the study's policy).
    ``long="mean"``: every full window starting at 0, hop, 2·hop, … samples
    (the caller averages their pooled features); a tail shorter than a window
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
