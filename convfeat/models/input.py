"""Input preprocessing of a mel spectrogram before a tagging convnet (SPEC §6).

The study compares twelve ways of turning a mel power spectrogram into network
input, all of them ending in per-excerpt standardisation:

* magnitude: ``"log"`` (decibels, ``10 log10(max(P, 1e-10))``) or ``"linear"``
  (the mel power itself);
* frequency weighting: ``"per-frequency"`` (each mel band standardised with a
  mean and standard deviation estimated over the training set's frames:
  spectral whitening), ``"a-weighting"`` (the IEC 61672 A-curve at each band's
  centre frequency, added in dB or multiplied as a power gain) or ``"none"``;
* per-excerpt standardisation over frequency and time (on in every study
  configuration; an option here);
* scaling of the result by ``scale`` (the study: ×1 or ×10).

Order: magnitude → weighting → excerpt standardisation → scaling.

Spectrograms are ``(batch, 1, n_mels, frames)`` tensors (the network layout)
or any array whose second-to-last axis is the mel band.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..constants import AMIN, FMAX, FMIN, N_MELS, SAMPLE_RATE
from ..errors import InputError

MAGNITUDES = ("log", "linear")
WEIGHTINGS = ("per-frequency", "a-weighting", "none")
STD_FLOOR = 1e-8


def a_weighting_db(f_hz) -> np.ndarray:
    """A-weighting gain in dB at frequencies ``f_hz`` (IEC 61672-1:2003, Annex E).

    ``R_A(f) = f_4² f⁴ / ((f² + f_1²) √((f² + f_2²)(f² + f_3²)) (f² + f_4²))`` with
    the pole frequencies f_1 = 20.598997 Hz, f_2 = 107.65265 Hz, f_3 = 737.86223 Hz,
    f_4 = 12194.217 Hz, and ``A(f) = 20 log10 R_A(f) + A_1000`` where A_1000 =
    2.0 dB normalises the curve to 0 dB at 1 kHz.  0 Hz gives -inf.
    """
    f = np.asarray(f_hz, dtype=np.float64)
    f1, f2, f3, f4 = 20.598997, 107.65265, 737.86223, 12194.217
    f2_ = f * f
    with np.errstate(divide="ignore"):
        ra = (f4 ** 2 * f2_ ** 2) / ((f2_ + f1 ** 2) * np.sqrt((f2_ + f2 ** 2) * (f2_ + f3 ** 2))
                                     * (f2_ + f4 ** 2))
        return 20.0 * np.log10(ra) + 2.0


def mel_band_centres(sr: int = SAMPLE_RATE, n_mels: int = N_MELS,
                     fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """Centre frequency (Hz) of each triangle of :func:`convfeat.models.frontend.mel_filterbank`,
    ``(n_mels,)`` float64: the inner ``n_mels`` of ``n_mels + 2`` points equally
    spaced on the Slaney mel scale from ``fmin`` to ``fmax`` (Hz).  ``sr`` is
    unused (the points depend on ``fmin`` and ``fmax`` only); it is kept for
    symmetry with the filterbank."""
    from .frontend import mel_points

    return mel_points(n_mels + 2, fmin, fmax)[1:-1]


@dataclass(frozen=True)
class InputConfig:
    """One input-preprocessing configuration (see the module docstring)."""

    magnitude: str = "log"
    weighting: str = "per-frequency"
    standardize: bool = True
    scale: float = 1.0

    def __post_init__(self):
        if self.magnitude not in MAGNITUDES:
            raise InputError(f"magnitude must be one of {', '.join(MAGNITUDES)}, got {self.magnitude!r}")
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise InputError(f"scale must be a positive number, got {self.scale!r}")

    @property
    def name(self) -> str:
        """Short label, e.g. ``log-perfreq-x10``."""
        w = {"per-frequency": "perfreq", "a-weighting": "aweight", "none": "bypass"}[self.weighting]
        s = "" if self.standardize else "-nostd"
        return f"{self.magnitude}-{w}{s}-x{self.scale:g}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputConfig":
        return cls(magnitude=str(d["magnitude"]), weighting=str(d["weighting"]),
                   standardize=bool(d["standardize"]), scale=float(d["scale"]))


def study_configs() -> list[InputConfig]:
    """The study's twelve configurations: magnitude × weighting × scale, all standardised."""
    return [InputConfig(m, w, True, s) for m in MAGNITUDES for w in WEIGHTINGS for s in (10.0, 1.0)]


def magnitude(mel_power: torch.Tensor, kind: str) -> torch.Tensor:
    """``"log"``: ``10 log10(max(P, 1e-10))`` dB; ``"linear"``: ``P`` unchanged."""
    if kind == "log":
        return 10.0 * torch.log10(torch.clamp(mel_power, min=AMIN))
    if kind == "linear":
        return mel_power
    raise InputError(f"magnitude must be one of {', '.join(MAGNITUDES)}, got {kind!r}")


def standardize_excerpt(x: torch.Tensor) -> torch.Tensor:
    """Each excerpt (first axis) to zero mean and unit standard deviation over all
    its other axes (frequency and time).  A constant excerpt becomes zeros."""
    dims = tuple(range(1, x.ndim))
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return (x - mean) / torch.sqrt(var).clamp_min(STD_FLOOR)


class InputTransform(nn.Module):
    """Mel power ``(batch, 1, n_mels, frames)`` → network input of the same shape.

    Per-frequency weighting needs band statistics: :meth:`fit` estimates them
    from training spectrograms (or load them with the state dict).
    """

    def __init__(self, config: InputConfig, n_mels: int = N_MELS):
        super().__init__()
        self.config = config
        a_db = a_weighting_db(mel_band_centres(n_mels=n_mels)).astype(np.float32)
        # (n_mels, 1): broadcasts over frames for (..., n_mels, frames) inputs.
        self.register_buffer("a_weight_db", torch.from_numpy(a_db)[:, None])
        self.register_buffer("band_mean", torch.zeros(n_mels, 1))
        self.register_buffer("band_std", torch.ones(n_mels, 1))
        self.fitted = config.weighting != "per-frequency"

    def band_statistics(self) -> dict:
        return {"mean": self.band_mean[:, 0].cpu().numpy().copy(),
                "std": self.band_std[:, 0].cpu().numpy().copy()}

    def set_band_statistics(self, mean, std) -> None:
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1, 1)
        std = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1, 1)
        if mean.shape != self.band_mean.shape or std.shape != self.band_std.shape:
            raise InputError(f"band statistics need {self.band_mean.shape[0]} values per band")
        self.band_mean.copy_(mean)
        self.band_std.copy_(std.clamp_min(STD_FLOOR))
        self.fitted = True

    @torch.no_grad()
    def fit(self, mel_powers) -> "InputTransform":
        """Estimate per-band mean and standard deviation of the magnitude-transformed
        spectrograms over every frame of ``mel_powers`` (an iterable of
        ``(..., n_mels, frames)`` tensors or arrays).  Float64 running sums."""
        n = 0
        total = torch.zeros(self.band_mean.shape[0], dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        for p in mel_powers:
            m = magnitude(torch.as_tensor(p), self.config.magnitude).double()
            m = m.reshape(-1, m.shape[-2], m.shape[-1])          # (k, n_mels, frames)
            total += m.sum(dim=(0, 2))
            total_sq += m.square().sum(dim=(0, 2))
            n += m.shape[0] * m.shape[2]
        if n == 0:
            raise InputError("fit() needs at least one spectrogram frame")
        mean = total / n
        std = torch.sqrt(torch.clamp(total_sq / n - mean.square(), min=0.0))
        self.set_band_statistics(mean.float().numpy(), std.float().numpy())
        return self

    def forward(self, mel_power: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x = magnitude(mel_power, cfg.magnitude)
        if cfg.weighting == "a-weighting":
            x = x + self.a_weight_db if cfg.magnitude == "log" else x * torch.pow(10.0, self.a_weight_db / 10.0)
        elif cfg.weighting == "per-frequency":
            if not self.fitted:
                raise RuntimeError("per-frequency weighting needs band statistics: call fit() first")
            x = (x - self.band_mean) / self.band_std
        if cfg.standardize:
            x = standardize_excerpt(x)
        return x * cfg.scale if cfg.scale != 1.0 else x
