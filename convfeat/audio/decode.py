"""The one decode path: a file or an array → model windows.

Two steps, used by the extraction worker, :func:`convfeat.api.prepare` and
pretraining alike:

``read_signal``   file → mono 12-kHz signal ``(samples,)``, reading only what
                  the length policy looks at (a file's segment, if given)
``to_windows``    any signal (mono or multichannel, any rate) → model windows
                  ``(k, window_samples)``: mix-down, resampling to 12 kHz, the
                  length policy (:class:`~convfeat.audio.windows.Policy`)
``read_windows``  both, for a file

Torch-free and model-free: features such as the MFCC baseline are computed by
the caller from the windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import SAMPLE_RATE
from ..errors import InputError
from .io import SAMPLE_RATE_LIMITS, AudioDecodeError, all_finite, read_resampled, resample, to_mono
from .windows import Policy, split_windows

__all__ = ["read_signal", "read_windows", "to_windows"]


def to_windows(y: np.ndarray, sr: int, policy: Policy | None = None) -> np.ndarray:
    """A signal → its model windows ``(k, policy.window_samples)`` float32 at 12 kHz.

    y: ``(samples,)`` or 2-D with channels on the shorter axis, any length and
        sample rate ``sr`` (Hz); mixed to mono, resampled to 12 kHz (soxr HQ).
    policy: the length policy (default: the study's, one 29-s window, shorter
        audio repeated).  ``k`` is 1 for ``long="first"`` or a short signal.

    With ``long="first"`` only what the window needs is resampled, plus one
    second of context, which gives exactly (bit for bit) the first window of
    the whole signal resampled.  A 12-kHz mono float32 signal is not copied
    (windows of ``long="mean"`` are a strided view of it).
    Raises :class:`InputError` for an empty signal, NaN / infinite samples, a
    sample rate outside 1 Hz to 10 MHz, or a signal too short to give one sample at
    12 kHz (or that resampling turns non-finite: samples near float32's largest value).
    """
    policy = (policy or Policy()).check()
    y = np.asarray(y)
    if y.size == 0:
        raise InputError("empty signal")
    if not all_finite(y):
        raise InputError("signal contains NaN or infinite samples")
    lo, hi = SAMPLE_RATE_LIMITS
    if not (np.ndim(sr) == 0 and np.isfinite(sr) and float(sr).is_integer() and lo <= int(sr) <= hi):
        raise InputError(f"sample rate {sr!r} Hz is not a whole number from {lo} Hz to {hi // 1_000_000} MHz")
    mono = to_mono(y)
    sr = int(sr)
    if policy.long == "first":
        mono = mono[: int(np.ceil(policy.window_samples * sr / SAMPLE_RATE)) + sr]
    n = mono.size
    mono = resample(mono, sr, SAMPLE_RATE)
    if mono.size == 0:
        raise InputError(f"too short: {n} sample{'' if n == 1 else 's'} at {sr} Hz give{'s' if n == 1 else ''} "
                         f"no sample at {SAMPLE_RATE / 1000:g} kHz")
    if not all_finite(mono):
        raise InputError(f"resampling {sr} Hz -> {SAMPLE_RATE} Hz gave non-finite values (float32 overflow: "
                         "samples near float32's largest value)")
    return split_windows(mono, policy.window_samples, policy.hop_samples, policy.long, policy.short)


def read_signal(path: str | Path, policy: Policy | None = None, offset: float = 0.0,
                duration: float | None = None) -> tuple[np.ndarray, dict]:
    """Decode a file → (mono float32 signal at 12 kHz ``(samples,)``, info dict).

    Only what ``policy`` looks at is decoded (its first window plus one second
    for ``long="first"``; everything for ``long="mean"``, streamed block by
    block).  ``offset`` / ``duration`` (seconds) select a segment of the file,
    then treated as the whole signal.  info: ``duration`` (s, of the file or
    segment), ``source_sr`` (Hz), ``channels``.
    Raises :class:`AudioDecodeError` (undecodable, empty, non-finite samples).
    """
    policy = (policy or Policy()).check()
    y, info = read_resampled(path, SAMPLE_RATE, max_seconds=policy.read_seconds, offset=offset,
                             duration=duration)
    if y.size == 0:
        raise AudioDecodeError(f"{path}: empty audio (0 samples)")
    return y, info


def read_windows(path: str | Path, policy: Policy | None = None, offset: float = 0.0,
                 duration: float | None = None) -> tuple[np.ndarray, dict]:
    """Decode a file → (its model windows ``(k, policy.window_samples)`` float32, info dict):
    :func:`read_signal` then :func:`to_windows`."""
    y, info = read_signal(path, policy, offset, duration)
    return to_windows(y, SAMPLE_RATE, policy), info
