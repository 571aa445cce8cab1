"""Mel-spectrogram front end of the compact tagging convnet.

The published network computes its input inside the graph: a short-time Fourier
transform done as a strided convolution with fixed DFT kernels, the power
spectrum, a 96-band mel filterbank and a decibel scale referenced to the
maximum.  This module reproduces it with an FFT (numerically equivalent to the
stored kernels, see :func:`dft_kernels`) and either the filterbank stored in a
weight file or an identical one computed here (:func:`mel_filterbank`, Slaney's mel scale).

Shapes follow PyTorch: a batch of signals is ``(batch, samples)``; a batch of
spectrograms is ``(batch, 1, n_mels, frames)`` (channel, frequency, time).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..constants import AMIN, DYNAMIC_RANGE_DB, FMAX, FMIN, HOP, N_FFT, N_MELS, SAMPLE_RATE
from ..errors import InputError


def hann_window(n_fft: int = N_FFT) -> torch.Tensor:
    """Periodic ("DFT-even") Hann window, ``(n_fft,)`` float64 tensor (``torch.hann_window``).

    Computed in float64 and cast by the caller, so the float32 window equals
    ``0.5 - 0.5 cos(2 pi n / n_fft)`` rounded once.
    """
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float64)


def dft_kernels(n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT kernels as stored in the Keras weight files.

    Returns ``(real, imag)``, each ``(n_fft, n_fft // 2 + 1)`` float64: column k
    holds ``w[n] cos(2 pi k n / n_fft)`` and ``w[n] sin(2 pi k n / n_fft)``, with
    ``w`` the window of :func:`hann_window`.  A frame ``x`` (length ``n_fft``)
    maps to ``x @ real`` and ``x @ imag``; its power spectrum is the sum of
    their squares.  Used to check a weight file's stored kernels.
    """
    n = np.arange(n_fft)[:, None]
    k = np.arange(n_fft // 2 + 1)[None, :]
    phase = 2.0 * np.pi * n * k / n_fft
    w = hann_window(n_fft).numpy()[:, None]
    return w * np.cos(phase), w * np.sin(phase)


# Slaney's mel scale (Auditory Toolbox): linear below 1 kHz (200/3 Hz per mel), logarithmic
# above it (27 mels per factor 6.4).  Written out here rather than imported from librosa,
# whose filters module takes about a second to import (scipy.signal) in every process that
# builds a model; tests/test_frontend_mel.py checks both functions against librosa.
_MEL_HZ_PER_MEL = 200.0 / 3.0
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL
_MEL_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(f_hz) -> np.ndarray:
    """Frequencies (Hz, any shape) → Slaney mels, float64, same shape."""
    f = np.asarray(f_hz, dtype=np.float64)
    above = f >= _MEL_BREAK_HZ
    logf = np.log(np.where(above, f, _MEL_BREAK_HZ) / _MEL_BREAK_HZ)
    return np.where(above, _MEL_BREAK + logf / _MEL_LOG_STEP, f / _MEL_HZ_PER_MEL)


def mel_to_hz(mels) -> np.ndarray:
    """Slaney mels (any shape) → frequencies in Hz, float64, same shape (inverse of :func:`hz_to_mel`)."""
    m = np.asarray(mels, dtype=np.float64)
    above = m >= _MEL_BREAK
    return np.where(above, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (np.where(above, m, _MEL_BREAK) - _MEL_BREAK)),
                    m * _MEL_HZ_PER_MEL)


def mel_points(n: int, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """``n`` frequencies (Hz, float64) equally spaced on the Slaney mel scale from ``fmin`` to ``fmax``."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Slaney mel filterbank (what ``librosa.filters.mel(htk=False, norm="slaney")``
    computes), transposed to ``(n_fft // 2 + 1, n_mels)`` float32.

    ``sr``, ``fmin`` and ``fmax`` in Hz.  Triangle ``i`` rises from mel point ``i`` to
    ``i + 1`` and falls to ``i + 2`` (:func:`mel_points`, ``n_mels + 2`` of them), scaled
    to unit area per Hz (height ``2 / (f[i+2] - f[i])``).  Same layout as the ``(257, 96)``
    matrix stored in the weight files: power spectrum ``@`` filterbank = mel power
    spectrum.  Computed in float64 and rounded once to float32.
    """
    bins = np.arange(n_fft // 2 + 1, dtype=np.float64) * (sr / n_fft)      # Hz of each FFT bin
    f = mel_points(n_mels + 2, fmin, fmax)
    width = np.diff(f)
    to_bin = f[:, None] - bins[None, :]                                     # (n_mels + 2, bins)
    rising = -to_bin[:-2] / width[:-1, None]
    falling = to_bin[2:] / width[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (f[2:] - f[:-2]))[:, None]
    return np.ascontiguousarray(fb.T, dtype=np.float32)


def same_padding(n_samples: int, n_fft: int = N_FFT, hop: int = HOP) -> tuple[int, int, int]:
    """TensorFlow 'same' padding of a strided frame extraction.

    Returns ``(n_frames, pad_left, pad_right)`` with ``n_frames = ceil(n / hop)``.
    For 348,000 samples: 1360 frames, 208 samples each side.
    """
    n_frames = -(-n_samples // hop)
    total = max((n_frames - 1) * hop + n_fft - n_samples, 0)
    return n_frames, total // 2, total - total // 2


class MelFrontend(nn.Module):
    """Audio ``(batch, samples)`` at 12 kHz → mel power ``(batch, 1, n_mels, frames)``.

    The decibel conversion is separate (:func:`power_to_db`) because its
    reference (the maximum) depends on the normalisation policy.
    """

    def __init__(self, mel_basis: np.ndarray | None = None, n_fft: int = N_FFT, hop: int = HOP):
        super().__init__()
        if mel_basis is None:
            mel_basis = mel_filterbank(n_fft=n_fft)
        mel_basis = np.asarray(mel_basis, dtype=np.float32)
        if mel_basis.shape[0] != n_fft // 2 + 1:
            raise InputError(f"mel basis must have {n_fft // 2 + 1} rows, got {mel_basis.shape}")
        self.n_fft = n_fft
        self.hop = hop
        self.register_buffer("mel_basis", torch.from_numpy(mel_basis.copy()))
        self.register_buffer("window", hann_window(n_fft).float())

    @property
    def n_mels(self) -> int:
        return int(self.mel_basis.shape[1])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        _, left, right = same_padding(y.shape[-1], self.n_fft, self.hop)
        y = nn.functional.pad(y, (left, right))
        spec = torch.stft(y, n_fft=self.n_fft, hop_length=self.hop, win_length=self.n_fft,
                          window=self.window, center=False, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (batch, freq, frames)
        mel = torch.einsum("bft,fm->bmt", power, self.mel_basis)
        return mel.unsqueeze(1)


def power_to_db(mel: torch.Tensor, reference: str = "clip") -> torch.Tensor:
    """Decibels relative to the maximum, floored at -80 dB.

    ``10 log10(max(x, 1e-10))`` minus its maximum, where the maximum is taken
    over the whole batch (``reference="batch"``, as in the published Keras-1
    model) or over each clip alone (``reference="clip"``, batch-invariant).
    """
    db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
    if reference == "batch":
        ref = db.amax()
    elif reference == "clip":
        ref = db.amax(dim=tuple(range(1, db.ndim)), keepdim=True)
    else:
        raise InputError(f"reference must be 'batch' or 'clip', got {reference!r}")
    return torch.clamp(db - ref, min=-DYNAMIC_RANGE_DB)
