"""Decoding worker: one item → model windows (and MFCC), or a failure reason.

Kept free of torch so that worker processes start in a fraction of a second.
Decoding is :func:`convfeat.audio.read_windows`, the path every caller shares.
"""
from __future__ import annotations

import numpy as np

from .. import audio
from ..constants import SAMPLE_RATE
from ..models.mfcc import mfcc_feature

__all__ = ["decode_item", "mfcc_of_windows", "segment_of"]


def segment_of(item: dict) -> tuple[float, float | None]:
    """``(offset, duration)`` in seconds from an item's ``segment_start`` /
    ``segment_end`` metadata (manifest columns); ``(0, None)``: the whole file."""
    meta = item.get("meta") or {}
    start, end = meta.get("segment_start", ""), meta.get("segment_end", "")
    offset = float(start) if str(start).strip() else 0.0
    if str(end).strip():
        if float(end) <= offset:
            raise audio.AudioDecodeError(f"{item['source']}: segment_end {end} is not after segment_start {offset}")
        return offset, float(end) - offset
    return offset, None


def mfcc_of_windows(windows: np.ndarray) -> np.ndarray:
    """The MFCC baseline of an item: :func:`mfcc_feature` of each 12-kHz window
    ``(k, samples)``, averaged over the windows → ``(120,)`` float32."""
    return np.mean([mfcc_feature(w, SAMPLE_RATE) for w in windows], axis=0).astype(np.float32)


def decode_item(job: tuple) -> dict:
    """``(item, policy, want_mfcc)`` → dict with ``id``, ``status``, ``reason``,
    ``duration``, ``source_sr``, ``channels``, ``windows`` and, when ok, ``x``
    (``(windows, policy.window_samples)`` float32 at 12 kHz) and ``mfcc`` (``(120,)``)."""
    item, policy, want_mfcc = job
    out = {"id": item["id"], "status": "ok", "reason": "", "duration": float("nan"),
           "source_sr": 0, "channels": 0, "windows": 0}
    try:
        offset, duration = segment_of(item)
        y, info = audio.read_signal(item["source"], policy, offset, duration)
        out.update(info)
        wins = audio.to_windows(y, SAMPLE_RATE, policy)
        out["windows"] = int(wins.shape[0])
        out["x"] = wins
        if want_mfcc:
            out["mfcc"] = mfcc_of_windows(wins)
    except audio.AudioDecodeError as exc:
        out.update(status="failed", reason=str(exc).replace(item["source"], item["path"]))
    except Exception as exc:  # a decoder crashing on one file must not stop the run
        out.update(status="failed", reason=f"{item['path']}: {type(exc).__name__}: {exc}")
    return out
