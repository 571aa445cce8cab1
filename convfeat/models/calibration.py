"""Calibrated batch normalisation: the sample, the statistics and how they are kept.

``bn_mode="calibrated"`` estimates each block's BN statistics once, over a seeded
random sample of a collection (:func:`calibration_indices`), then freezes them
(:meth:`CompactConvnet.calibrate`).  The sample is drawn from the whole
collection, so every shard of it agrees.

A :class:`Calibration` is the result: the statistics per layer, the ids of the
clips they were estimated on and the record a feature set's configuration keeps.
It converts to and from the flat arrays a feature file stores
(``layerK_mean``, ``layerK_var``, ``ids``) and applies itself to a model.  It
knows no file format beyond those names.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..constants import LAYER_NAMES
from ..errors import InputError

__all__ = ["Calibration", "calibration_indices"]

_STATS = ("mean", "var")


def calibration_indices(n_items: int, max_clips: int = 256, seed: int = 0) -> np.ndarray:
    """Seeded random sample (sorted indices) of up to ``max_clips`` of ``n_items`` items."""
    if n_items <= 0:
        raise InputError("calibration needs at least one clip")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=min(n_items, max_clips), replace=False))


@dataclass(frozen=True)
class Calibration:
    """Frozen BN statistics of a model and where they came from.

    stats: ``{layerK: {"mean": (32,) float32, "var": (32,) float32}}`` for the
        five blocks (what :meth:`CompactConvnet.bn_statistics` returns).
    ids: the ids (str) of the clips the statistics were estimated on, in order.
    record: what a feature set's configuration records, ``{"max_clips",
        "seed", "n_clips", "stats_sha256"}`` (kept verbatim when restored).
    extra: any other arrays of a stored calibration (e.g. ``indices`` of a
        merged file), passed through unchanged by :meth:`to_arrays`.
    """

    stats: dict
    ids: tuple
    record: dict
    extra: dict = field(default_factory=dict)

    @classmethod
    def estimate(cls, model, windows: np.ndarray, ids, max_clips: int, seed: int,
                 batch_size: int = 8) -> "Calibration":
        """Estimate the statistics of ``model`` on ``windows`` (``(n_clips, samples)``
        float32 at 12 kHz, the clips named by ``ids``) with :meth:`CompactConvnet.calibrate`,
        which also leaves ``model`` in ``bn_mode="calibrated"`` with them.
        ``max_clips`` and ``seed`` describe how the sample was drawn (recorded)."""
        ids = tuple(str(i) for i in ids)
        if len(ids) != len(windows):
            raise InputError(f"{len(windows)} calibration windows but {len(ids)} ids")
        stats = model.calibrate(windows, batch_size=batch_size)
        record = {"max_clips": max_clips, "seed": seed, "n_clips": len(ids), "stats_sha256": cls.digest(stats)}
        return cls(stats, ids, record)

    @classmethod
    def from_arrays(cls, arrays: dict, record: dict) -> "Calibration":
        """Restore from a feature set's stored arrays (``layerK_mean``, ``layerK_var``,
        ``ids`` as bytes) and the ``record`` of its configuration."""
        missing = [f"{n}_{k}" for n in LAYER_NAMES for k in _STATS if f"{n}_{k}" not in arrays]
        if missing:
            raise InputError(f"the stored calibration lacks {', '.join(missing)}")
        stats = {n: {k: np.asarray(arrays[f"{n}_{k}"]) for k in _STATS} for n in LAYER_NAMES}
        ids = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(arrays.get("ids", [])).tolist())
        known = {f"{n}_{k}" for n in LAYER_NAMES for k in _STATS} | {"ids"}
        extra = {k: v for k, v in arrays.items() if k not in known}
        return cls(stats, ids, dict(record), extra)

    def to_arrays(self) -> dict:
        """The arrays a feature set stores: ``layerK_mean`` / ``layerK_var`` ``(32,)``
        float32 and ``ids`` (UTF-8 bytes, fixed width), plus :attr:`extra`."""
        arrays = {f"{n}_{k}": self.stats[n][k] for n in LAYER_NAMES for k in _STATS}
        arrays["ids"] = np.array([i.encode() for i in self.ids], dtype="S")
        arrays.update(self.extra)
        return arrays

    def apply(self, model) -> None:
        """Load the statistics into ``model`` and switch it to ``bn_mode="calibrated"``."""
        model.set_bn_statistics(self.stats)
        model.bn_mode = "calibrated"

    @property
    def n_clips(self) -> int:
        return int(self.record["n_clips"])

    @staticmethod
    def digest(stats: dict) -> str:
        """sha256 (hex) of the statistics' bytes: each layer in order, mean then var."""
        return hashlib.sha256(b"".join(np.ascontiguousarray(stats[n][k]).tobytes()
                                       for n in LAYER_NAMES for k in _STATS)).hexdigest()
