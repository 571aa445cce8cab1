"""Feature selection helpers: which blocks make up a multi-layer feature."""
from __future__ import annotations

from typing import Iterable

import numpy as np

LAYER_NAMES = ("layer1", "layer2", "layer3", "layer4", "layer5")
UNITS_PER_LAYER = 32


def parse_layers(layers: str | Iterable[int] = "12345") -> list[str]:
    """Layer selection → ordered list of layer names.

    ``"12345"`` (all five blocks, the study's 160-d feature), ``"5"``,
    ``"135"`` or an iterable of 1-based block numbers.  Blocks are returned in
    ascending order, so ``"51"`` and ``"15"`` name the same feature.
    """
    if isinstance(layers, str):
        text = layers.strip().lower()
        if text == "all":
            text = "12345"
        if not text or not text.isdigit():
            raise ValueError(f"layers must be digits 1-5 such as '12345' or '135', got {layers!r}")
        numbers = [int(c) for c in text]
    else:
        numbers = [int(n) for n in layers]
    if not numbers or any(n < 1 or n > 5 for n in numbers) or len(set(numbers)) != len(numbers):
        raise ValueError(f"layers must name distinct blocks among 1-5, got {layers!r}")
    return [LAYER_NAMES[n - 1] for n in sorted(numbers)]


def concat_layers(outputs: dict, layers: str | Iterable[int] = "12345") -> np.ndarray:
    """Concatenate per-layer arrays ``(n, 32)`` of the selected blocks → ``(n, 32 * k)``."""
    names = parse_layers(layers)
    return np.concatenate([np.asarray(outputs[name], dtype=np.float32) for name in names], axis=-1)


MFCC_WIDTH = 120


def mfcc_feature(y: np.ndarray, sr: int = 12000, n_mfcc: int = 20) -> np.ndarray:
    """The study's MFCC baseline (SPEC §3) of a mono signal → ``(120,)`` float32.

    20 MFCCs (librosa defaults: 2048-sample frames, hop 512, 128 mel bands)
    of ``y`` at ``sr`` (12 kHz in convfeat, at most the 29-s window), their
    first and second differences (``librosa.feature.delta``, width 9), and
    for each of the three the mean then the standard deviation over time:
    ``[mean(mfcc), std(mfcc), mean(d), std(d), mean(dd), std(dd)]`` (20 each,
    the column order of the study's stored MFCC features).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc)
    width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))  # delta needs an odd width <= frames
    if width >= 3:
        d1 = librosa.feature.delta(mfcc, width=width, order=1)
        d2 = librosa.feature.delta(mfcc, width=width, order=2)
    else:  # a clip of one or two frames has no meaningful change over time
        d1 = d2 = np.zeros_like(mfcc)
    parts = []
    for m in (mfcc, d1, d2):
        parts += [m.mean(axis=1), m.std(axis=1)]
    return np.concatenate(parts).astype(np.float32)
