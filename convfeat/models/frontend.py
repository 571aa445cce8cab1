"""Mel-spectrogram front end of the compact tagging convnet.

The published network computes its input inside the graph: a short-time Fourier
transform done as a strided convolution with fixed DFT kernels, the power
spectrum, a 96-band mel filterbank and a decibel scale referenced to the
maximum.  This module reproduces it with an FFT (numerically equivalent to the
stored kernels, see :func:`dft_kernels`) and either the filterbank stored in a
weight file or an identical one computed with librosa.

Shapes follow PyTorch: a batch of signals is ``(batch, samples)``; a batch of
spectrograms is ``(batch, 1, n_mels, frames)`` (channel, frequency, time).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..constants import AMIN, DYNAMIC_RANGE_DB, FMAX, FMIN, HOP, N_FFT, N_MELS, SAMPLE_RATE
from ..errors import InputError


def hann_periodic(n_fft: int = N_FFT) -> np.ndarray:
    """Periodic ("DFT-even") Hann window of length ``n_fft``, float64."""
    n = np.arange(n_fft)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def dft_kernels(n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT kernels as stored in the Keras weight files.

    Returns ``(real, imag)``, each ``(n_fft, n_fft // 2 + 1)`` float64: column k
    holds ``w[n] cos(2 pi k n / n_fft)`` and ``w[n] sin(2 pi k n / n_fft)``.
    A frame ``x`` (length ``n_fft``) maps to ``x @ real`` and ``x @ imag``;
    its power spectrum is the sum of their squares.
    """
    n = np.arange(n_fft)[:, None]
    k = np.arange(n_fft // 2 + 1)[None, :]
    phase = 2.0 * np.pi * n * k / n_fft
    w = hann_periodic(n_fft)[:, None]
    return w * np.cos(phase), w * np.sin(phase)


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, break_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    return np.where(f < break_hz, f / f_sp,
                    break_hz / f_sp + np.log(np.maximum(f, 1e-12) / break_hz) / logstep)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    f_sp, break_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    break_mel = break_hz / f_sp
    return np.where(m < break_mel, m * f_sp, break_hz * np.exp(logstep * (m - break_mel)))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Slaney-style mel filterbank, ``(n_fft // 2 + 1, n_mels)`` float32.

    Triangles between ``n_mels + 2`` points equally spaced on the Slaney mel
    scale from ``fmin`` to ``fmax`` (Hz), each scaled to unit area
    (``2 / bandwidth``).  Same layout as the ``(257, 96)`` matrix stored in
    the weight files (power spectrum ``@`` filterbank = mel power spectrum).
    """
    fft_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    width = np.diff(edges)
    below = (fft_hz[None, :] - edges[:-2, None]) / width[:-1, None]   # rising slopes
    above = (edges[2:, None] - fft_hz[None, :]) / width[1:, None]     # falling slopes
    fb = np.maximum(0.0, np.minimum(below, above)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
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
        self.register_buffer("window", torch.from_numpy(hann_periodic(n_fft).astype(np.float32)))

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
