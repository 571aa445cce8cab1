"""Dataset adapters: read a dataset's own published layout and metadata and
write a *manifest* CSV (``id``, ``path``, labels or targets, official folds /
splits, groups, metadata) that the rest of convfeat reads.

>>> from convfeat import datasets
>>> [a.name for a in datasets.adapters()]
['gtzan-genre', 'gtzan-music-speech', 'ballroom-extended', 'emomusic', ...]
>>> df = datasets.manifest("esc50", "/data/ESC-50-master")      # pandas DataFrame
>>> datasets.write_manifest("fsdd", "/data/fsdd", "fsdd.csv")   # atomic write

Torch-free: importing this package loads pandas only.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..fileio import atomic_path
from .base import Adapter, DatasetError, MissingFilesError, stratified_folds
from .generic import CSV, Folders
from .music import EmoMusic, ExtendedBallroom, GTZANGenre, GTZANMusicSpeech, JamendoVD
from .sound import ESC50, FreeSpokenDigit, Philharmonia, UrbanSound8K

__all__ = ["Adapter", "DatasetError", "MissingFilesError", "adapters", "get_adapter", "manifest",
           "write_manifest", "summarize", "markdown_table", "stratified_folds", "REGISTRY"]

#: name → adapter class, in the order `convfeat datasets list` shows them.
REGISTRY: dict[str, type[Adapter]] = {cls.name: cls for cls in (
    GTZANGenre, GTZANMusicSpeech, ExtendedBallroom, EmoMusic, JamendoVD,
    UrbanSound8K, ESC50, FreeSpokenDigit, Philharmonia, Folders, CSV)}


def adapters() -> list[Adapter]:
    """One instance of every adapter, in :data:`REGISTRY` order."""
    return [cls() for cls in REGISTRY.values()]


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; :class:`DatasetError` for an unknown name."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r} (known: {', '.join(REGISTRY)})") from None


def manifest(name: str, root: str | Path, allow_missing: bool = False, **options) -> pd.DataFrame:
    """The manifest of dataset ``name`` found at ``root`` as a DataFrame.

    ``df.attrs`` holds ``dataset``, ``task`` and ``warnings`` (e.g. files left
    out under ``allow_missing``).  Raises :class:`DatasetError` when ``root``
    does not look like the dataset and :class:`MissingFilesError` when files
    listed in its metadata are absent (unless ``allow_missing``).
    """
    return get_adapter(name).manifest(root, allow_missing=allow_missing, **options)


def write_manifest(name: str, root: str | Path, out: str | Path, allow_missing: bool = False,
                   **options) -> pd.DataFrame:
    """Build the manifest and write it to ``out`` as CSV, atomically (a temporary
    file in the same folder, fsynced, then renamed over ``out``).  → the DataFrame."""
    df = manifest(name, root, allow_missing=allow_missing, **options)
    with atomic_path(Path(out).expanduser(), fsync=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            df.to_csv(f, index=False)
    return df


def summarize(df: pd.DataFrame) -> str:
    """One line: rows, classes / targets / tags, folds / splits / groups."""
    parts = [f"{len(df)} rows"]
    if "label" in df.columns:
        parts.append(f"{df['label'].nunique()} classes")
    elif "tags" in df.columns:
        tags = {t for v in df["tags"].dropna() for t in str(v).split(";") if t}
        parts.append(f"{len(tags)} tags")
    targets = [c for c in df.attrs.get("targets", []) if c in df.columns]
    if targets:
        parts.append("targets " + ", ".join(targets))
    if "fold" in df.columns and df["fold"].notna().any():
        counts = df["fold"].value_counts().sort_index()
        parts.append(f"{len(counts)} folds (" + " ".join(f"{k}:{v}" for k, v in counts.items()) + ")")
    if "split" in df.columns and (df["split"].astype(str) != "").any():
        counts = df["split"].astype(str).replace("", "-").value_counts()
        order = [s for s in ("train", "valid", "test") if s in counts] + \
            sorted(s for s in counts.index if s not in ("train", "valid", "test"))
        parts.append("splits " + " ".join(f"{s}:{counts[s]}" for s in order))
    if "group" in df.columns:
        parts.append(f"{df['group'].nunique()} groups")
    if "fold" not in df.columns and "split" not in df.columns:
        parts.append("no folds")
    return ", ".join(parts)


def markdown_table() -> str:
    """The adapter table for the README."""
    lines = ["| name | task | expected layout under ROOT | label / target columns | folds / splits |",
             "|---|---|---|---|---|"]
    for a in adapters():
        cells = [f"`{a.name}`", a.task, a.layout, a.columns, a.folds]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
