"""Generic adapters: a folder per class, or an existing CSV."""
from __future__ import annotations

import os
from pathlib import Path

from .base import (LEADING_COLUMNS, Adapter, DatasetError, audio_files, is_audio, parse_int, read_table, rel_id,
                   subfolders)


class Folders(Adapter):
    """Any collection with one folder per class (the folder name is the label)."""

    name = "folders"
    description = "Any collection with one folder per class"
    task = "classification"
    layout = "`<class>/**/<audio>` (any depth below the class folder; audio directly in ROOT is left out, with a warning)"
    columns = "`label` = top-level folder name"
    folds = "none"

    def rows(self, root: Path):
        """One row per audio file below each class folder (sorted by id); loose files are warned about."""
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder (expected ROOT/<class>/<audio files>)")
        rows = []
        for d in subfolders(root):
            rows += [{"id": rel_id(p, root), "path": str(p.resolve()), "label": d.name} for p in audio_files(d)]
        if not rows:
            raise DatasetError(f"no audio files in class folders under {root} (expected ROOT/<class>/<audio files>)")
        loose = [p.name for p in audio_files(root, recursive=False)]
        self._warnings = ([f"left out {len(loose)} audio files directly in ROOT (no class folder): "
                           f"{', '.join(loose[:5])}{', …' if len(loose) > 5 else ''}"] if loose else [])
        rows.sort(key=lambda x: x["id"])
        return rows, [], len(rows), "files"

    def manifest(self, root, allow_missing=False, **options):
        """As :meth:`Adapter.manifest`, plus a warning about audio directly in ROOT."""
        self._warnings = []
        df = super().manifest(root, allow_missing, **options)
        df.attrs["warnings"] = df.attrs["warnings"] + self._warnings
        return df


class CSV(Adapter):
    """An existing CSV of audio paths and labels / targets / tags; the options name its columns."""

    name = "csv"
    description = "An existing CSV listing audio files and their labels"
    task = "classification"   # regression with targets=…, multilabel with tags=…
    layout = ("ROOT = a CSV file (or a folder with `-O csv=FILE`) with a path column; relative paths are "
              "resolved against the CSV's folder")
    columns = ("`label` from `label=COL` (default `label`); or numeric targets from `targets=A,B` "
               "(regression); or `tags` from `tags=COL` split on `tags_sep` (multi-label); other columns kept")
    folds = "`fold` / `split` / `group` from `fold=COL` / `split=COL` / `group=COL` (or same-named columns)"
    options = {
        "csv": "the CSV, relative to ROOT, when ROOT is a folder",
        "path": "column with the audio paths (default: the first of path, filepath, file, filename)",
        "label": "column with the class name (default `label`; `none` for no label column)",
        "targets": "comma-separated numeric target columns (regression)",
        "tags": "column with the tags (multi-label)",
        "tags_sep": "separator of the tags in that column (default `;`; written joined with `;`)",
        "fold": "column with integer folds (default `fold` if present)",
        "split": "column with the split (default `split` if present)",
        "group": "column with the group (default `group` if present)",
        "id": "column with unique ids (default: the path relative to ROOT, or to the CSV's folder when ROOT "
              "is the CSV; absolute paths outside it stay absolute)",
    }
    accepts_file = True
    PATH_COLUMNS = ("path", "filepath", "file", "filename", "file_path", "audio", "audio_path")

    def rows(self, root: Path, csv: str | None = None, path: str | None = None, label: str | None = None,
             targets: str | None = None, tags: str | None = None, tags_sep: str = ";", fold: str | None = None,
             split: str | None = None, group: str | None = None, id: str | None = None):
        """One row per CSV row whose audio exists (in CSV order); the options name the columns."""
        if root.is_dir():
            if not csv:
                raise DatasetError(f"{root} is a folder: give the CSV file as ROOT, or -O csv=FILE")
            table = root / csv
        else:
            table = root
        if not table.is_file():
            raise DatasetError(f"CSV not found: {table}")
        df = read_table(table, [])
        cols = list(df.columns)

        def need(col: str, what: str) -> str:
            if col not in cols:
                raise DatasetError(f"{table}: no {what} column {col!r} (columns: {', '.join(cols)})")
            return col

        path_col = need(path, "path") if path else next((c for c in self.PATH_COLUMNS if c in cols), None)
        if path_col is None:
            raise DatasetError(f"{table}: no path column (looked for {', '.join(self.PATH_COLUMNS)}; "
                               f"name it with -O path=COLUMN; columns: {', '.join(cols)})")
        target_cols = [need(c.strip(), "target") for c in targets.split(",") if c.strip()] if targets else []
        tags_col = need(tags, "tags") if tags else None
        if label and label.lower() == "none":
            label_col = None
        elif label:
            label_col = need(label, "label")
        else:
            label_col = "label" if "label" in cols and not (target_cols or tags_col) else None
        if not (label_col or target_cols or tags_col):
            raise DatasetError(f"{table}: no task column: give -O label=COL (classification), "
                               f"-O targets=A,B (regression) or -O tags=COL (multi-label); columns: {', '.join(cols)}")
        special = {"fold": fold, "split": split, "group": group}
        for key, col in special.items():
            special[key] = need(col, key) if col else (key if key in cols else None)
        id_col = need(id, "id") if id else None
        self.targets = tuple(target_cols)
        self.task = "multilabel" if tags_col else "regression" if target_cols and not label_col else "classification"

        base = table.parent
        id_base = root if root.is_dir() else base   # ids are relative to ROOT (a folder) or the CSV's folder
        used = {path_col, label_col, tags_col, id_col, *target_cols, *special.values()} - {None}
        rows, missing = [], []
        for i, r in df.iterrows():
            where = f"{table.name} row {i + 2}"
            rel = r[path_col]
            if not rel:
                raise DatasetError(f"{where}: empty path")
            p = Path(rel).expanduser()
            p = p if p.is_absolute() else base / p
            if not is_audio(p):
                missing.append(rel)
                continue
            if id_col:
                item_id = r[id_col]
            elif Path(rel).expanduser().is_absolute():
                item_id = rel_id(p, id_base)
            else:
                item_id = Path(os.path.relpath(os.path.normpath(p), os.path.normpath(id_base))).as_posix()
            row = {"id": item_id, "path": str(p.resolve())}
            if label_col:
                row["label"] = r[label_col]
            for c in target_cols:
                try:
                    row[c] = float(r[c])
                except ValueError:
                    raise DatasetError(f"{where}: target {c} is not a number: {r[c]!r}") from None
            if tags_col:
                row["tags"] = ";".join(t.strip() for t in r[tags_col].split(tags_sep) if t.strip())
            if special["fold"]:
                row["fold"] = parse_int(f"fold ({where})", r[special["fold"]]) if r[special["fold"]] != "" else None
            for key in ("split", "group"):
                if special[key]:
                    row[key] = r[special[key]]
            for c in cols:
                if c not in used:
                    row[c if c not in LEADING_COLUMNS and c not in row else f"orig_{c}"] = r[c]
            rows.append(row)
        return rows, missing, len(df), f"files listed in {table.name}"

    def manifest(self, root, allow_missing=False, **options):
        """As :meth:`Adapter.manifest`, with the task the options chose (classification,
        regression or multi-label)."""
        self.task, self.targets = "classification", ()
        df = super().manifest(root, allow_missing, **options)
        df.attrs["task"] = self.task
        return df
