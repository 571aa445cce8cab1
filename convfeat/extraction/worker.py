"""Decoding worker: one item → model windows (and MFCC), or a failure reason.

Kept free of torch so that worker processes start in a fraction of a second.
"""
from __future__ import annotations

import numpy as np

from .. import audio
from ..constants import SAMPLE_RATE, WINDOW_SAMPLES
from ..models.mfcc import mfcc_feature


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


def decode_item(job: tuple) -> dict:
    """``(item, policy, want_mfcc)`` → dict with ``id``, ``status``, ``reason``,
    ``duration``, ``source_sr``, ``channels``, ``windows`` and, when ok, ``x``
    (``(windows, 348000)`` float32 at 12 kHz) and ``mfcc`` (``(120,)``)."""
    item, policy, want_mfcc = job
    out = {"id": item["id"], "status": "ok", "reason": "", "duration": float("nan"),
           "source_sr": 0, "channels": 0, "windows": 0}
    try:
        max_seconds = WINDOW_SAMPLES / SAMPLE_RATE if policy.long == "first" else None
        seg = segment_of(item)
        y, info = audio.read_resampled(item["source"], SAMPLE_RATE, max_seconds=max_seconds, offset=seg[0],
                                       duration=seg[1])
        out.update(info)
        if y.size == 0:
            raise audio.AudioDecodeError(f"{item['source']}: empty audio (0 samples)")
        hop = int(round(policy.hop_seconds * SAMPLE_RATE))
        wins = audio.split_windows(y, WINDOW_SAMPLES, hop, policy.long, policy.short)
        out["windows"] = int(wins.shape[0])
        out["x"] = wins
        if want_mfcc:
            out["mfcc"] = np.mean([mfcc_feature(w, SAMPLE_RATE) for w in wins], axis=0).astype(np.float32)
    except audio.AudioDecodeError as exc:
        out.update(status="failed", reason=str(exc).replace(item["source"], item["path"]))
    except Exception as exc:  # a decoder crashing on one file must not stop the run
        out.update(status="failed", reason=f"{item['path']}: {type(exc).__name__}: {exc}")
    return out
