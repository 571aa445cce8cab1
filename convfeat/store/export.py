"""Exporting the usable rows of a feature file for other tools: ``.npy`` + text files, CSV, Parquet.

Every file is written through :func:`convfeat.fileio.atomic_path` (a temporary
file beside it, renamed into place), so none is ever left half-written; files
get the usual permissions (``0o666`` less the umask).  An export never writes
over the feature file it reads, nor over any other HDF5 file.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..fileio import atomic_path, describe_os_error
from .access import frame, open_features, select, strings
from .layout import StoreError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_out(source: Path, out: Path) -> None:
    """Refuse an output that is the feature file itself, or any existing HDF5 file."""
    try:
        if out.exists() and out.is_file():
            if source.exists() and os.path.samefile(source, out):
                raise InputError(f"the export output {out} is the feature file itself; give another path")
            with open(out, "rb") as f:
                if f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                    raise InputError(f"{out} is an HDF5 file (a feature file?), not an earlier export; refusing "
                                     "to overwrite it: give another output path")
    except OSError as exc:
        raise StoreError(describe_os_error(exc, out, "write")) from None


def _write_failed(exc: OSError, out: Path) -> StoreError:
    return StoreError(f"{describe_os_error(exc, out, 'write')}; no file was left half-written")

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
        written = []
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name in ("X.npy", "ids.txt", "columns.txt"):
                _check_out(Path(path), out / name)
            with atomic_path(out / "X.npy", ".npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, X)
            written.append(out / "X.npy")
            for name, lines in (("ids.txt", ids), ("columns.txt", columns)):
                with atomic_path(out / name, ".txt") as tmp:
                    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                        f.write("".join(f"{line}\n" for line in lines))
                written.append(out / name)
        except OSError as exc:
            raise _write_failed(exc, out) from None
        return written
    if fmt == "parquet":
        try:
            importlib.import_module("pyarrow")
        except ImportError:
            raise ImportError("parquet export needs pyarrow: pip install pyarrow") from None
    with open_features(path) as h:
        table = frame(h, path, features, layers, status).reset_index()
    if out.is_dir():
        raise InputError(f"{fmt} export writes one file; {out} is a folder")
    _check_out(Path(path), out)
    try:
        with atomic_path(out, f".{fmt}") as tmp:
            if fmt == "csv":
                table.to_csv(tmp, index=False, encoding="utf-8")
            else:
                table.to_parquet(tmp, index=False)
    except OSError as exc:
        raise _write_failed(exc, out) from None
    return [out]
