"""Audio in: decoding, mono mix-down, resampling and fitting to the model window.

Pure functions over NumPy arrays (float32 unless stated).  A mono signal is
``(samples,)``; a multichannel signal is 2-D with channels on the *shorter*
axis, so both librosa's ``(channels, samples)`` and soundfile's
``(samples, channels)`` are accepted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SHORT_POLICIES = ("repeat", "pad")


class AudioDecodeError(ValueError):
    """A file could not be decoded by any available decoder."""


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average the channels of ``y`` → ``(samples,)`` float32."""
    y = np.asarray(y)
    if y.ndim == 1:
        return y.astype(np.float32, copy=False)
    if y.ndim != 2:
        raise ValueError(f"audio must be 1-D or 2-D, got shape {y.shape}")
    axis = 0 if y.shape[0] <= y.shape[1] else 1
    return y.mean(axis=axis, dtype=np.float64).astype(np.float32)


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono ``y`` from ``sr_in`` to ``sr_out`` Hz (soxr, high quality)."""
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    y = np.asarray(y, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return y
    import soxr

    return soxr.resample(y, int(sr_in), int(sr_out), quality="HQ").astype(np.float32, copy=False)


def fit_window(y: np.ndarray, n: int, short: str = "repeat") -> np.ndarray:
    """The first ``n`` samples of ``y``; a shorter signal is repeated (``"repeat"``,
    the study's policy) or zero-padded (``"pad"``) up to ``n``."""
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"fit_window expects mono audio, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("cannot fit an empty signal to a window")
    if y.size >= n:
        return y[:n]
    if short == "repeat":
        return np.tile(y, -(-n // y.size))[:n]
    return np.pad(y, (0, n - y.size))


def load(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file → (mono float32 signal, native sample rate).

    libsndfile (via soundfile) first: wav, flac, ogg, mp3, aiff, au…; then
    librosa's audioread fallback (ffmpeg, when installed) for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    import soundfile as sf

    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
        return y.mean(axis=1, dtype=np.float64).astype(np.float32), int(sr)
    except (sf.LibsndfileError, RuntimeError, TypeError) as first:
        reason = str(first)
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=True)
        return np.asarray(y, dtype=np.float32), int(sr)
    except Exception as exc:  # audioread raises several unrelated types
        raise AudioDecodeError(f"{path}: cannot decode ({reason}; fallback: {type(exc).__name__}"
                               f"{': ' + str(exc) if str(exc) else ''})") from None
