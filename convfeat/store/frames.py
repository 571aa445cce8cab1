"""Frame-level features in a feature file: a ragged per-item array (``convfeat extract --frames``).

Layout, inside a convnet feature set's group (readable with plain h5py)::

    /features/<set>/frames/     attrs: hop_seconds (f8: seconds between frames),
                                columns (str: "layer1,…,layer5", 32 values each)
        data        f4 (total_frames, 160)   every item's frames, item after item (gzip)
        offsets     i8 (N + 1,)              item i's frames are data[offsets[i]:offsets[i + 1]]
                                             (none for items without them: failed, pending)

Frame ``t`` of an item is centred at ``(t + 0.5) * hop_seconds`` s (see
:mod:`convfeat.frames`).  Without convfeat::

    g = h5py.File("f.h5", "r")["features/choi2017/frames"]
    o = g["offsets"][()];  X_i = g["data"][o[i]:o[i + 1]]

In memory a set's frames are ``{row: (T, 160) float32}`` (:class:`~convfeat.store.layout.FeatureSet`
``.frames``); torch-free.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError

__all__ = ["write_frames", "read_frames", "load_frames", "checked_frames"]


def write_frames(sg, frames: dict, n_items: int, info: dict) -> None:
    """Write ``frames`` (``{row: (T, D)}``) of a set with ``n_items`` rows into group ``sg``."""
    fg = sg.create_group("frames")
    fg.attrs["hop_seconds"] = float(info["hop_seconds"])
    fg.attrs["columns"] = ",".join(info["columns"])
    width = 32 * len(info["columns"])
    counts = np.zeros(n_items, np.int64)
    for row, arr in frames.items():
        counts[row] = len(arr)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    data = (np.concatenate([frames[r] for r in sorted(frames)]) if frames
            else np.zeros((0, width), np.float32)).astype(np.float32)
    fg.create_dataset("data", data=data, chunks=(max(1, min(len(data), 4096)), width) if len(data) else None,
                      compression="gzip" if len(data) else None, maxshape=(None, width))
    fg.create_dataset("offsets", data=offsets)


def read_frames(fg) -> dict:
    """The frames of group ``fg`` → ``{row: (T, D) float32}`` (rows that have some)."""
    offsets = fg["offsets"][()]
    data = fg["data"][()]
    return {i: data[offsets[i]:offsets[i + 1]].astype(np.float32)
            for i in range(len(offsets) - 1) if offsets[i + 1] > offsets[i]}


def checked_frames(arr, width: int) -> tuple[np.ndarray | None, str | None]:
    """``arr`` as ``(T, width)`` float32 with T >= 1 and finite values, or (None, why not)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf" or a.ndim != 2 or a.shape[1] != width or a.shape[0] < 1:
        return None, f"frames of shape {a.shape} ({a.dtype}); the set holds (T >= 1, {width}) float32"
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        return None, "frames not finite in float32"
    return a, None


def load_frames(path, features: str = "choi2017", ids=None) -> tuple[list, list, list]:
    """Frame-level features of the usable items of a feature file (``convfeat extract --frames``).

    path: the feature file; features: a convnet feature set stored with frames; ids: only
    these item ids (in this order; default every item whose status is ok and whose set is done).
    Returns ``(ids, timestamps, frames)``: lists of the ids, of ``(T_i,)`` float64 seconds
    (frame centres) and of ``(T_i, 32 * 5)`` float32 arrays (layer1 … layer5).
    Raises :class:`InputError` when the set has no frames or an id is not usable.
    """
    with h5py.File(Path(path), "r") as h:
        if features not in h.get("features", {}):
            raise InputError(f"{path} has no feature set {features!r}")
        sg = h["features"][features]
        if "frames" not in sg:
            raise InputError(f"feature set {features!r} of {path} has no frames; extract it with --frames")
        fg = sg["frames"]
        all_ids = [x.decode() if isinstance(x, bytes) else x for x in h["items/id"][()]]
        status = [x.decode() if isinstance(x, bytes) else x for x in h["items/status"][()]]
        done = sg["done"][()].astype(bool)
        offsets = fg["offsets"][()]
        usable = {i: r for r, i in enumerate(all_ids) if status[r] == "ok" and done[r] and offsets[r + 1] > offsets[r]}
        if ids is None:
            rows = sorted(usable.values())
        else:
            missing = [i for i in ids if i not in usable]
            if missing:
                raise InputError(f"{len(missing)} id(s) have no frames in {path} (e.g. {missing[0]!r}): "
                                 "unknown, failed, or not extracted with --frames")
            rows = [usable[i] for i in ids]
        hop = float(fg.attrs["hop_seconds"])
        data = fg["data"]
        frames = [data[offsets[r]:offsets[r + 1]].astype(np.float32) for r in rows]
    return [all_ids[r] for r in rows], [(np.arange(len(f)) + 0.5) * hop for f in frames], frames
