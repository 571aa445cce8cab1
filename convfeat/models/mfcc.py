"""The study's MFCC baseline feature (SPEC §3): torch-free, so decode workers can compute it."""
from __future__ import annotations

import numpy as np

from ..constants import MFCC_WIDTH, SAMPLE_RATE

__all__ = ["MFCC_WIDTH", "MFCC_WINDOWS", "mfcc_feature"]

# What the MFCC set is computed on (``-m mfcc:window=...``): the model's window ("model", the default and the
# study's: a clip shorter than 29 s repeated or padded to fill it), or the clip itself ("clip").
MFCC_WINDOWS = ("model", "clip")


def mfcc_feature(y: np.ndarray, sr: int = SAMPLE_RATE, n_mfcc: int = 20) -> np.ndarray:
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
