"""Calibrated batch normalisation: which clips form the calibration sample.

``bn_mode="calibrated"`` estimates each block's BN statistics once, over a seeded
random sample of a collection, then freezes them (:meth:`CompactConvnet.calibrate`).
The sample is drawn from the whole collection, so every shard of it agrees.
"""
from __future__ import annotations

import numpy as np
from ..errors import InputError

__all__ = ["calibration_indices"]


def calibration_indices(n_items: int, max_clips: int = 256, seed: int = 0) -> np.ndarray:
    """Seeded random sample (sorted indices) of up to ``max_clips`` of ``n_items`` items."""
    if n_items <= 0:
        raise InputError("calibration needs at least one clip")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=min(n_items, max_clips), replace=False))
