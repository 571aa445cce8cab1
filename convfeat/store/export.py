"""Exporting the usable rows of a feature file for other tools: ``.npy`` + text files, CSV, Parquet.

Every file is written through :func:`convfeat.fileio.atomic_path` (a temporary
file beside it, renamed into place), so none is ever left half-written.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..fileio import atomic_path
from .access import frame, open_features, select, strings

__all__ = ["export", "EXPORT_FORMATS"]

EXPORT_FORMATS = ("npy", "csv", "parquet")


def export(path, out, format: str = "npy", features: str | Sequence[str] = "choi2017",
           layers: str | Iterable[int] = "12345", status: str | Iterable[str] | None = "ok") -> list[Path]:
    """Write the usable rows of a feature file in a format other tools read.

    Parameters
    ----------
    path : str or Path
        The feature file.
    out : str or Path
        ``format="npy"``: a directory (created if needed) that receives
        ``X.npy`` (float32, shape (n, d), as :func:`~convfeat.store.read.load`),
        ``ids.txt`` (the n item ids, one per line, UTF-8, same order) and
        ``columns.txt`` (the d feature column names, one per line).
        ``"csv"`` / ``"parquet"``: the table file itself:
        :func:`~convfeat.store.read.load_frame`'s table with the id as its first
        column (``id, path, duration, …, <metadata>, choi2017/layer1/0, …``),
        no index; CSV is UTF-8 with a header row and floats written to
        round-trip exactly to float32.  Parquet needs ``pyarrow``.
    format : {"npy", "csv", "parquet"}
    features, layers, status
        As in :func:`convfeat.store.read.load`.

    Returns
    -------
    list of Path
        The files written.  Each is written to a temporary file beside it and
        renamed into place, so none is ever left half-written.
    """
    fmt = str(format).lower()
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if fmt == "npy":
        with open_features(path) as h:
            rows, X, columns = select(h, path, features, layers, status)
            ids = strings(h["items/id"])[rows].tolist()
        bad = [i for i in ids if "\n" in i or "\r" in i]
        if bad:
            raise InputError(f"item id {bad[0]!r} contains a line break; export to csv or parquet instead")
        if out.exists() and not out.is_dir():
            raise InputError(f"npy export writes a directory; {out} is a file")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        with atomic_path(out / "X.npy", ".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, X)
        written.append(out / "X.npy")
        for name, lines in (("ids.txt", ids), ("columns.txt", columns)):
            with atomic_path(out / name, ".txt") as tmp:
                with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                    f.write("".join(f"{line}\n" for line in lines))
            written.append(out / name)
        return written
    if fmt == "parquet":
        try:
            importlib.import_module("pyarrow")
        except ImportError:
            raise ImportError("parquet export needs pyarrow: pip install pyarrow") from None
    with open_features(path) as h:
        table = frame(h, path, features, layers, status).reset_index()
    with atomic_path(out, f".{fmt}") as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False, encoding="utf-8")
        else:
            table.to_parquet(tmp, index=False)
    return [out]
