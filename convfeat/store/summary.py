"""Summaries of a feature file: :func:`info` (a dict) and :func:`format_info` (text for ``convfeat info``).

Only the items table and the datasets' shapes and attributes are read (read-only).
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import h5py
import numpy as np

from ..fileio import to_plain
from .access import feature_datasets, meta_datasets, open_features, strings
from .file import pending_batches

__all__ = ["info", "format_info"]


def info(path) -> dict:
    """Summary of a feature file (nothing is loaded but the items table).

    Returns
    -------
    dict
        ``path`` (str), ``size_bytes``, ``attrs`` (file attributes: format,
        format_version, convfeat_version, created, updated, command, … with
        JSON values decoded), ``n_items``, ``status`` (status -> count; "ok",
        "failed" and "pending" always present), ``failures`` (list of
        ``{"id", "reason"}`` in item order), ``meta_columns`` (list of str),
        ``sets`` (name -> ``{"n_done", "n_usable"`` (done and status ok),
        ``"datasets"`` (dataset -> shape tuple), ``"config"``,
        ``"provenance"`` (dicts), ``"calibration"`` (dataset -> shape, or
        None)``}``) and ``pending_journal`` (number of journaled batches in
        ``<path>.journal/`` that the next run on the file will fold in; 0
        when there is none).
    """
    path = Path(path)
    with open_features(path) as h:
        attrs = {k: to_plain(v, decode_json=True) for k, v in h.attrs.items()}
        status = strings(h["items/status"])
        ids = strings(h["items/id"])
        reasons = strings(h["items/reason"])
        counts = {"ok": 0, "failed": 0, "pending": 0}
        values, n = np.unique(status.astype(str), return_counts=True) if len(status) else ([], [])
        counts.update({str(v): int(c) for v, c in zip(values, n)})
        failed = np.flatnonzero(status == "failed")
        failures = [{"id": str(ids[i]), "reason": str(reasons[i])} for i in failed]
        ok = status == "ok"
        sets = {}
        for name, sg in h["features"].items():
            done = sg["done"][()].astype(bool)
            sets[name] = {
                "n_done": int(done.sum()),
                "n_usable": int((done & ok).sum()),
                "datasets": {d: tuple(int(s) for s in sg[d].shape) for d in feature_datasets(sg)},
                "config": json.loads(sg.attrs.get("config", "{}")),
                "provenance": json.loads(sg.attrs.get("provenance", "{}")),
                "calibration": ({k: tuple(int(s) for s in v.shape) for k, v in sg["calibration"].items()
                                 if isinstance(v, h5py.Dataset)} if "calibration" in sg else None),
                "frames": _frames_summary(sg["frames"]) if "frames" in sg else None,
            }
        meta_columns = list(meta_datasets(h))
    return {"path": str(path), "size_bytes": path.stat().st_size, "attrs": attrs, "n_items": int(len(ids)),
            "status": counts, "failures": failures, "meta_columns": meta_columns, "sets": sets,
            "pending_journal": pending_batches(path)}


def _frames_summary(fg) -> dict:
    """What ``extract --frames`` stored: frame hop, total frames, items that have frames."""
    offsets = fg["offsets"][()]
    return {"hop_seconds": float(fg.attrs["hop_seconds"]), "total_frames": int(offsets[-1]) if len(offsets) else 0,
            "n_items": int((offsets[1:] > offsets[:-1]).sum()), "width": int(fg["data"].shape[1])}


def _shapes(datasets: dict) -> str:
    """``{"layer1": (5, 32), …, "layer5": (5, 32)}`` -> ``"layer1…layer5 5x32 each"``."""
    groups: list[list] = []
    for name, shape in datasets.items():
        if groups and groups[-1][1] == tuple(shape):
            groups[-1][0].append(name)
        else:
            groups.append([[name], tuple(shape)])
    parts = []
    for names, shape in groups:
        dims = "x".join(map(str, shape))
        parts.append(f"{names[0]} {dims}" if len(names) == 1 else
                     f"{', '.join(names)} {dims} each" if len(names) == 2 else f"{names[0]}…{names[-1]} {dims} each")
    return ", ".join(parts)


def _describe_config(config: dict) -> list[str]:
    """A set's recorded config as a few readable lines (``convfeat info --json`` has it all).

    Scalars read ``key=value``; the nested records (length policy, front end, architecture,
    calibration) are summarised in words, and a weight file's sha256 is shortened.
    """
    if not config:
        return []
    plain, lines = [], []
    for key, value in sorted(config.items()):
        if isinstance(value, dict):
            continue
        if key.endswith("sha256") and isinstance(value, str):
            value = value[:12] + "…"
        plain.append(f"{key}={'-' if value is None else value}")
    if plain:
        lines.append(", ".join(plain))
    policy = config.get("length_policy")
    if isinstance(policy, dict):
        window = policy.get("window_samples", 0) / max(policy.get("sample_rate", 1), 1)
        longer = ("first window only" if policy.get("long") == "first"
                  else f"mean of windows every {policy.get('hop_seconds')} s")
        lines.append(f"window {window:g} s at {policy.get('sample_rate')} Hz; shorter audio: "
                     f"{policy.get('short')}; longer: {longer}")
    front = config.get("frontend")
    if isinstance(front, dict):
        lines.append(f"front end: {front.get('n_mels')} mel bands {front.get('fmin', 0):g}-{front.get('fmax', 0):g} Hz, "
                     f"n_fft {front.get('n_fft')}, hop {front.get('hop')}, {front.get('db_range')} dB range, "
                     f"resampler {front.get('resampler')}")
    arch = config.get("architecture")
    if isinstance(arch, dict):
        pools = " ".join(f"({a},{b})" for a, b in arch.get("pools", []))
        lines.append(f"architecture: {len(arch.get('pools', []))} blocks x {arch.get('channels')} channels, "
                     f"pools {pools}, feature {arch.get('feature_point')}"
                     + (", input " + ", ".join(f"{k} {v}" for k, v in arch["input"].items())
                        if isinstance(arch.get("input"), dict) else ""))
    cal = config.get("calibration")
    if isinstance(cal, dict):
        lines.append(f"calibration: {cal.get('n_clips')} clips (seeded sample of up to {cal.get('max_clips')}, "
                     f"seed {cal.get('seed')})")
    return lines


def format_info(d: dict, max_failures: int = 20) -> str:
    """Human-readable multi-line summary of :func:`info`'s dict (``convfeat info``).

    Parameters
    ----------
    d : dict
        The output of :func:`info`.
    max_failures : int
        Failures listed before the rest are counted only.

    Returns
    -------
    str
        Lines without a trailing newline.
    """
    attrs = d.get("attrs", {})
    size = d.get("size_bytes", 0)
    human = next((f"{size / 1024 ** k:.1f} {u}" for k, u in ((3, "GiB"), (2, "MiB"), (1, "KiB"))
                  if size >= 1024 ** k), f"{size} B")
    lines = [f"{d['path']}  ({human}; format v{attrs.get('format_version', '?')}, "
             f"written by convfeat {attrs.get('convfeat_version', '?')})"]
    when = ", ".join(f"{k} {attrs[k]}" for k in ("created", "updated") if attrs.get(k))
    if when:
        lines.append(f"  {when}")
    if attrs.get("command"):
        lines.append(f"  last command: {attrs['command']}")
    if attrs.get("shard"):
        lines.append(f"  shard {attrs['shard']}")
    if "merged_from" in attrs:
        merged = attrs["merged_from"]
        lines.append(f"  merged from: {', '.join(merged) if isinstance(merged, list) else merged}")
    counts = d["status"]
    lines.append(f"  items: {d['n_items']} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")
    if d.get("meta_columns"):
        lines.append(f"  metadata columns: {', '.join(d['meta_columns'])}")
    if d["sets"]:
        lines.append("  feature sets:")
        width = max(len(n) for n in d["sets"])
        for name, s in d["sets"].items():
            shapes = _shapes(s["datasets"])
            lines.append(f"    {name:<{width}}  {s['n_usable']} usable, {s['n_done']}/{d['n_items']} done;"
                         f"  {shapes}")
            pad = " " * (width + 6)
            for text in _describe_config(s["config"]):
                lines += textwrap.wrap(text, 100, initial_indent=pad, subsequent_indent=pad + "  ",
                                       break_long_words=False, break_on_hyphens=False)
            if s.get("calibration"):
                lines.append(f"{pad}calibration: {_shapes(s['calibration'])}")
            if s.get("frames"):
                f = s["frames"]
                lines.append(f"{pad}frames: {f['total_frames']} x {f['width']} for {f['n_items']} items, one every "
                             f"{f['hop_seconds'] * 1000:.1f} ms (convfeat.load_frames)")
    else:
        lines.append("  feature sets: (none)")
    failures = d["failures"]
    if failures:
        lines.append(f"  failures ({len(failures)}):")
        for f in failures[:max_failures]:
            lines.append(f"    {f['id']}: {f['reason']}")
        if len(failures) > max_failures:
            lines.append(f"    … and {len(failures) - max_failures} more")
    if d.get("pending_journal"):
        lines.append(f"  journal: {d['pending_journal']} batch(es) finished since the last checkpoint, "
                     "not in the file yet (the next run on this file folds them in)")
    return "\n".join(lines)
