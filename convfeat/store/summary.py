"""Summaries of a feature file: :func:`info` (a dict) and :func:`format_info` (text for ``convfeat info``).

Only the items table and the datasets' shapes and attributes are read (read-only).
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import h5py
import numpy as np

from ..fileio import canonical_json, to_plain
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
            }
        meta_columns = list(meta_datasets(h))
    return {"path": str(path), "size_bytes": path.stat().st_size, "attrs": attrs, "n_items": int(len(ids)),
            "status": counts, "failures": failures, "meta_columns": meta_columns, "sets": sets,
            "pending_journal": pending_batches(path)}


def _short(value, limit: int = 60) -> str:
    """``value`` as text (canonical JSON unless a string), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
            if s["config"]:
                text = "config: " + ", ".join(f"{k}={_short(v, 40)}" for k, v in sorted(s["config"].items()))
                lines += textwrap.wrap(text, 100, initial_indent=pad, subsequent_indent=pad + "  ",
                                       break_long_words=False, break_on_hyphens=False)
            if s.get("calibration"):
                lines.append(f"{pad}calibration: {_shapes(s['calibration'])}")
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
