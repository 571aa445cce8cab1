"""Decoding worker: one item → its 12-kHz signal (and MFCC), or a failure reason.

Kept free of torch so that worker processes start in a fraction of a second.
Decoding is :func:`convfeat.audio.read_signal` / :func:`convfeat.audio.to_windows`,
the path every caller shares.  A worker sends back the item's 12-kHz mono
signal (through shared memory where it can, :mod:`.handoff`), not its windows:
the windows of ``long="mean"`` are a strided view of the signal
(:func:`windows_of`, made where they are used), whereas sending them would copy
every overlapping window (3,572 windows of 348,000 samples for an hour at a 1-s
hop: 5 GB).
"""
from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np

from .. import audio
from ..constants import SAMPLE_RATE
from ..errors import InputError
from ..models.mfcc import mfcc_feature

__all__ = ["decode_item", "mfcc_of_clip", "mfcc_of_windows", "not_finite_reason", "segment_of", "watch_parent", "windows_of"]


def watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Initializer of a decode worker process: exit as soon as ``parent_pid`` is no longer
    its parent (a run killed with SIGKILL leaves no one to stop its workers, which would
    otherwise wait for work forever)."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="convfeat-watch-parent", daemon=True).start()


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


def mfcc_of_clip(signal: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """The MFCC baseline of the clip itself (``-m mfcc:window=clip``) → ``(120,)`` float32.

    ``signal``: the item's 12-kHz mono signal; ``windows``: its model windows
    ``(k, samples)``.  A clip at least one window long is what its windows hold
    (:func:`mfcc_of_windows`: no repetition or padding in them); a shorter clip
    is taken as it is, neither repeated nor padded to the 29-s window."""
    if len(signal) >= windows.shape[1]:
        return mfcc_of_windows(windows)
    return mfcc_feature(signal, SAMPLE_RATE)


def not_finite_reason(path: str, what: str, peak: float) -> str:
    """The reason of an item whose feature ``what`` (e.g. ``"mfcc"``,
    ``"choi2017 layer1…layer5"``) is NaN or infinite."""
    return f"{path}: features not finite: {what} ({audio.describe_peak(peak)})"


def windows_of(decoded: dict, policy: audio.Policy) -> np.ndarray:
    """The model windows ``(k, policy.window_samples)`` of a decoded item's 12-kHz
    signal: for ``long="mean"`` a strided view of the signal (no copy)."""
    return audio.to_windows(decoded["signal"], SAMPLE_RATE, policy)


def decode_item(job: tuple) -> dict:
    """``(item, policy, want_mfcc)`` → dict with ``id``, ``path``, ``status``, ``reason``,
    ``duration``, ``source_sr``, ``channels``, ``windows``, ``peak`` (largest absolute
    12-kHz sample) and, when ok, ``signal`` (the mono float32 signal at 12 kHz that
    :func:`windows_of` cuts into ``windows`` model windows) and the MFCC baselines asked
    for, ``(120,)`` each, checked finite: ``want_mfcc`` True or a tuple of
    :data:`~convfeat.models.mfcc.MFCC_WINDOWS` — ``mfcc`` (on the model windows) and/or
    ``mfcc_clip`` (on the clip itself, :func:`mfcc_of_clip`)."""
    item, policy, want_mfcc = job
    out = {"id": item["id"], "path": item["path"], "status": "ok", "reason": "", "duration": float("nan"),
           "source_sr": 0, "channels": 0, "windows": 0, "peak": float("nan")}
    try:
        offset, duration = segment_of(item)
        y, info = audio.read_signal(item["source"], policy, offset, duration)
        out.update(info)
        out["peak"] = audio.signal_peak(y)
        wins = audio.to_windows(y, SAMPLE_RATE, policy)
        out["windows"] = int(wins.shape[0])
        out["signal"] = y
        kinds = ("model",) if want_mfcc is True else tuple(want_mfcc or ())
        for kind in kinds:
            mfcc = None
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")      # overflow warnings: the check below says it
                try:
                    mfcc = mfcc_of_windows(wins) if kind == "model" else mfcc_of_clip(y, wins)
                except ValueError:                   # librosa refuses the inf it computed
                    pass
            if mfcc is None or not np.isfinite(mfcc).all():
                out.pop("signal")
                out.update(status="failed", reason=not_finite_reason(item["path"], "mfcc", out["peak"]))
                break
            out["mfcc" if kind == "model" else f"mfcc_{kind}"] = mfcc
    except audio.AudioDecodeError as exc:
        out.update(status="failed", reason=str(exc).replace(item["source"], item["path"]))
    except InputError as exc:
        out.update(status="failed", reason=f"{item['path']}: {exc}")
    except Exception as exc:  # a decoder crashing on one file must not stop the run
        out.update(status="failed", reason=f"{item['path']}: {type(exc).__name__}: {exc}")
    if out["status"] != "ok":
        out.pop("signal", None)
    return out
