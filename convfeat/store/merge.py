"""Merging shard files (``convfeat extract --shard I/N``) into one feature file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..fileio import atomic_path, canonical_json, describe_os_error, one_line, remove_stale_temporaries
from .file import (ITEM_COLUMNS, FeatureSet, Items, StoreError, WriteLock, check_target, pending_batches, read_state,
                   timestamp, write_state)

__all__ = ["config_difference", "merge"]


def config_difference(a: dict, b: dict) -> list[str]:
    """The keys in which two feature-set configurations differ (sorted; empty when they are the
    same): the one rule by which merge, and a cluster run meeting its earlier parts, refuse shards."""
    if canonical_json(a) == canonical_json(b):
        return []
    return sorted(k for k in set(a) | set(b) if canonical_json(a.get(k)) != canonical_json(b.get(k))) or ["?"]


def _same_row(a: tuple, b: tuple, items, sets, set_names) -> bool:
    """Whether row a=(shard, row) and row b hold the same item data and features."""
    (sa, ra), (sb, rb) = a, b
    for c in ITEM_COLUMNS:
        va, vb = items[sa].columns[c][ra], items[sb].columns[c][rb]
        if c == "duration":
            if not (va == vb or (np.isnan(va) and np.isnan(vb))):
                return False
        elif va != vb:
            return False
    for k in set(items[sa].meta) | set(items[sb].meta):
        va = items[sa].meta[k][ra] if k in items[sa].meta else ""
        vb = items[sb].meta[k][rb] if k in items[sb].meta else ""
        if va != vb:
            return False
    for name in set_names:
        fa, fb = sets[sa][name], sets[sb][name]
        if fa.done[ra] != fb.done[rb]:
            return False
        if fa.done[ra] and any(not np.array_equal(fa.datasets[d][ra], fb.datasets[d][rb]) for d in fa.datasets):
            return False
    return True


def _is_empty(sr: tuple, items, sets, set_names) -> bool:
    """A pending row with no feature done: it carries nothing."""
    s, r = sr
    return items[s].columns["status"][r] == "pending" and not any(sets[s][n].done[r] for n in set_names)


def merge(out, shards: Sequence, *, attrs: dict | None = None, allow_pending_journal: bool = False) -> Path:
    """Combine shard files (``convfeat extract --shard I/N``) into one feature file.

    Parameters
    ----------
    out : str or Path
        The merged file, written to a temporary file in its directory and
        renamed into place (holding ``<out>.lock`` meanwhile).  It must not
        exist: merge writes a new file and never replaces one (not a file of
        another kind, not a feature file, whose sets and items it would drop,
        not an earlier merge; delete that first to redo it).
    shards : sequence of str or Path
        The shard files (at least one, each named once).
    attrs : dict, optional
        Extra file attributes for the merged file (e.g. ``{"command": ...}``).
    allow_pending_journal : bool
        Merge even when a shard has journaled batches not yet folded into it
        (they are then left out of the merged file).

    Returns
    -------
    Path
        ``out``.  Its items are those of all shards, sorted by id; its file
        attributes are the first shard's (less ``shard``, ``command``,
        ``created``, ``updated``), plus ``created``/``updated`` (now),
        ``merged_from`` (the shard file names, a JSON list) and ``attrs``.
        Each feature set keeps the first shard's provenance and the (shared)
        calibration group; an ``indices`` array in it (rows of ``/items``) is
        re-pointed at the merged rows when every shard's indices name the same
        items, and kept as stored otherwise (``ids`` need no change).

    Raises
    ------
    StoreError
        A shard is not a feature file; shards from different ``--shard I/N``
        splits (different N); a feature set missing from a shard, or made with
        another configuration (the message names the set and the differing
        config keys) or other datasets; calibration groups that differ; an
        item id in several shards with different data (a row that is still
        ``pending`` with no feature done yields to the others, identical rows
        are kept once); a shard with pending journal batches or of a newer
        format version; ``out`` is a shard, exists already (the message says
        what it is: not a feature file, a newer one, or a feature file), is
        being written, has a journal of its own, or cannot be written (its
        folder not writable, disk full: one line; nothing is left behind).
    """
    out = Path(out)
    paths = [Path(s) for s in shards]
    if not paths:
        raise StoreError("merge needs at least one shard file")
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise StoreError("a shard file is named twice: " + ", ".join(str(p) for p in paths))
    for p in paths:
        if not p.exists():
            raise StoreError(f"no such shard file: {p}")
        if out.resolve() == p.resolve() or (out.exists() and os.path.samefile(out, p)):
            raise StoreError(f"the merge output {out} is one of the shards; write to another file")
    _refuse_existing(out)
    if pending_batches(out):
        raise StoreError(f"{out} has a journal ({out}.journal) of batches from another run; "
                         "remove it or merge into another file")
    for p in paths:
        pending = pending_batches(p)
        if pending and not allow_pending_journal:
            raise StoreError(f"shard {p} has {pending} journaled batch(es) not yet folded into it (its run "
                             "was interrupted or is still going); run the same `convfeat extract` command "
                             "again to finish it, or merge without them (allow_pending_journal=True)")

    all_attrs, items, sets = [], [], []
    for p in paths:
        try:
            a, it, st = read_state(p)
        except OSError as exc:
            raise StoreError(f"shard {p} is not a readable HDF5 file ({one_line(exc)})") from None
        all_attrs.append(a)
        items.append(it)
        sets.append(st)

    labels = [(p, a["shard"]) for p, a in zip(paths, all_attrs) if a.get("shard") not in (None, "")]
    totals = {str(lab).split("/")[-1].strip() for _, lab in labels}
    if len(totals) > 1:
        raise StoreError("the shards come from different splits: "
                         + ", ".join(f"{p.name} is shard {lab}" for p, lab in labels))

    # feature sets: same names, configs, datasets and calibration everywhere
    first = sets[0]
    names = list(first)
    for p, st in zip(paths[1:], sets[1:]):
        for name in set(names) ^ set(st):
            where, missing = (p, paths[0]) if name in st else (paths[0], p)
            raise StoreError(f"feature set {name!r} is in {where.name} but not in {missing.name}; "
                             "all shards must hold the same feature sets")
        for name in names:
            a, b = first[name], st[name]
            diff = config_difference(a.config, b.config)
            if diff:
                raise StoreError(f"feature set {name!r} was made with another configuration in {p.name} "
                                 f"than in {paths[0].name} (differs in: {', '.join(diff)})")
            widths_a = {k: v.shape[1] for k, v in a.datasets.items()}
            widths_b = {k: v.shape[1] for k, v in b.datasets.items()}
            if widths_a != widths_b:
                raise StoreError(f"feature set {name!r} holds other datasets in {p.name} ({widths_b}) "
                                 f"than in {paths[0].name} ({widths_a})")
            ca, cb = a.calibration or {}, b.calibration or {}
            if set(ca) != set(cb) or any(not np.array_equal(np.asarray(ca[k]), np.asarray(cb[k])) for k in ca):
                raise StoreError(f"feature set {name!r} was calibrated differently in {p.name} than in "
                                 f"{paths[0].name}; shards of one collection must share the calibration")

    # items: concatenate, sort by id, resolve ids held by several shards
    sources = [(s, r) for s, it in enumerate(items) for r in range(len(it))]
    all_ids = [items[s].columns["id"][r] for s, r in sources]
    order = sorted(range(len(sources)), key=lambda k: all_ids[k])
    chosen = []
    k = 0
    while k < len(order):
        j = k
        while j + 1 < len(order) and all_ids[order[j + 1]] == all_ids[order[k]]:
            j += 1
        group = [sources[order[m]] for m in range(k, j + 1)]
        if len(group) > 1:
            full = [g for g in group if not _is_empty(g, items, sets, names)] or group[:1]
            for g in full[1:]:
                if not _same_row(full[0], g, items, sets, names):
                    raise StoreError(f"item {all_ids[order[k]]!r} is in both {paths[full[0][0]].name} and "
                                     f"{paths[g[0]].name} with different data; shards must hold disjoint "
                                     "items")
            group = full[:1]
        chosen.append(group[0])
        k = j + 1

    n = len(chosen)
    src_shard = np.array([s for s, _ in chosen], dtype=np.int64)
    src_row = np.array([r for _, r in chosen], dtype=np.int64)
    picks = [(s, np.flatnonzero(src_shard == s), src_row[src_shard == s]) for s in range(len(paths))]

    def gather(arrays, dtype, fill=None, width=None):
        shape = (n,) if width is None else (n, width)
        res = np.zeros(shape, dtype) if fill is None else np.full(shape, fill, dtype=dtype)
        for s, dest, src in picks:
            if arrays[s] is not None and len(dest):
                res[dest] = arrays[s][src]
        return res

    columns = {c: gather([it.columns[c] for it in items], items[0].columns[c].dtype,
                         fill=None if c != "id" else "") for c in ITEM_COLUMNS}
    meta_names = list(dict.fromkeys(k for it in items for k in it.meta))
    meta = {k: gather([it.meta.get(k) for it in items], object, fill="") for k in meta_names}
    merged_sets = {}
    for name in names:
        f0 = first[name]
        datasets = {d: gather([st[name].datasets[d] for st in sets], np.float32, width=arr.shape[1])
                    for d, arr in f0.datasets.items()}
        done = gather([st[name].done for st in sets], bool)
        calibration = None
        if f0.calibration:
            calibration = {k: np.asarray(v) for k, v in f0.calibration.items()}
            calibration = _remap_calibration(calibration, items, columns["id"])
        merged_sets[name] = FeatureSet(name, datasets, done, f0.config, f0.provenance, calibration)
        if f0.frames is not None:         # extract --frames: the ragged per-item frames follow their rows
            merged_sets[name].frames = {int(d): sets[s][name].frames[int(r)] for s, dest, src in picks
                                        for d, r in zip(dest, src) if int(r) in (sets[s][name].frames or {})}

    now = timestamp()
    file_attrs = {k: v for k, v in all_attrs[0].items() if k not in ("shard", "created", "updated", "command")}
    file_attrs.update({"created": now, "updated": now, "merged_from": [p.name for p in paths]})
    file_attrs.update(attrs or {})

    with WriteLock(out, advice="merge into another file"):
        try:
            remove_stale_temporaries(out)
            _refuse_existing(out)                 # again, now that no other writer can create it
            with atomic_path(out, fsync=True, fsync_dir=True) as tmp:   # as FeatureFile.checkpoint writes
                write_state(tmp, file_attrs, Items(columns, meta), merged_sets)
        except OSError as exc:
            raise StoreError(f"{describe_os_error(exc, out, 'write')}; {out.name} was not written") from None
        finally:
            remove_stale_temporaries(out)
    return out


def _refuse_existing(out: Path) -> None:
    """Merge writes a new file only: refuse any existing ``out`` (the one check of
    :func:`~convfeat.store.file.check_target` says what a file of another kind or a
    newer version is; a feature file of ours is refused as well)."""
    if check_target(out):
        raise StoreError(f"{out} already exists (a convfeat feature file); merge writes a new file and never "
                         "replaces one: give another output path, or delete it first if it is an earlier "
                         "merge you want to redo")


def _remap_calibration(calibration: dict, items: list, merged_ids: np.ndarray) -> dict:
    """Point ``indices`` (rows of a shard's /items) at the same items' rows of the merged file.

    Possible only when every shard's indices name the same items (shards that
    each list the whole collection); otherwise the indices are kept as stored.
    """
    idx = calibration.get("indices")
    if idx is None:
        return calibration
    idx = np.asarray(idx)
    named = []
    for it in items:
        if idx.size and (idx.min() < 0 or idx.max() >= len(it)):
            return calibration
        named.append(tuple(it.columns["id"][idx].tolist()))
    if len(set(named)) != 1:
        return calibration
    where = {v: i for i, v in enumerate(merged_ids.tolist())}
    if not all(v in where for v in named[0]):
        return calibration
    calibration = dict(calibration)
    calibration["indices"] = np.sort(np.array([where[v] for v in named[0]], dtype=idx.dtype))
    return calibration
