"""Shared machinery of the dataset adapters: errors, the adapter base class,
file look-ups, missing-file reporting, deterministic folds and manifest frames.

A *manifest* is a CSV with one row per item:

``id``     unique; the audio path relative to ROOT (posix), ``#NNN`` appended
           for segment items (several items from one file)
``path``   absolute path of the audio file
task columns
           ``label`` (classification, class name as a string), numeric targets
           (regression, e.g. ``arousal``, ``valence``) or ``tags`` (multi-label,
           ``;``-joined)
``fold`` / ``split`` / ``group``
           where the dataset defines them (``fold`` 1-based as the dataset
           numbers them; ``split`` train/valid/test; ``group`` the speaker /
           artist / source recording for group-aware cross-validation)
metadata   anything else useful (``start`` / ``end`` seconds of segment items, …)
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from ..audio import AUDIO_EXTENSIONS
from ..errors import InputError

#: Column order of a manifest: these first (those present), then the rest.
LEADING_COLUMNS = ("id", "path", "label", "tags", "fold", "split", "group")
MAX_LISTED = 5


class DatasetError(InputError):
    """ROOT does not look like the dataset, or an option is wrong (one line)."""


class MissingFilesError(DatasetError):
    """Files listed in the dataset's metadata are not on disk."""

    def __init__(self, missing: Sequence[str], total: int, what: str):
        self.missing = list(missing)
        self.total = total
        shown = ", ".join(self.missing[:MAX_LISTED]) + (", …" if len(self.missing) > MAX_LISTED else "")
        super().__init__(f"{len(self.missing)} of {total} {what} missing on disk (first: {shown}); "
                         "pass --allow-missing (allow_missing=True) to write the manifest without them")


# -- finding files and folders -------------------------------------------------
# The one place the adapters search a dataset's folder: audio files (by
# convfeat.audio.AUDIO_EXTENSIONS), class folders, and the first of several
# candidate places, reporting where they looked when none fits.
def is_audio(path: Path) -> bool:
    """A visible file with an audio extension (:data:`convfeat.audio.AUDIO_EXTENSIONS`)."""
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def audio_stem(name: str) -> str:
    """``name`` less its extension when that is an audio one (``blues.00029.wav`` ->
    ``blues.00029``; ``blues.00029`` stays as it is)."""
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in AUDIO_EXTENSIONS else name


def _walk(folder: Path):
    """Every file under ``folder``, following symbolic links to folders (each real folder once: no loops)."""
    seen = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for f in files:
            yield Path(top) / f


def audio_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Audio files under ``folder`` (hidden files such as ``._x.wav`` skipped; folders reached through
    symbolic links included, under their path through the link), sorted."""
    it = _walk(folder) if recursive else folder.iterdir()
    return sorted(p for p in it if is_audio(p) and not any(part.startswith(".") for part in
                                                            p.relative_to(folder).parts))


def subfolders(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder`` (class folders, instrument folders …), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def looked_in(root: Path, candidates: Iterable[str]) -> str:
    """``"ROOT/a, ROOT/b, ROOT"``: where a search of ``candidates`` looked (``""`` is ROOT)."""
    return ", ".join(f"ROOT/{c}" if c else "ROOT" for c in candidates)


def find_first(root: Path, candidates: Iterable[str], accept: Callable[[Path], bool] = Path.exists,
               what: str | None = None) -> Path | None:
    """The first ``ROOT/<candidate>`` (``""`` is ROOT itself) that ``accept`` takes.

    None when no candidate fits, or, given ``what``, a :class:`DatasetError`
    ``"no <what> found under <root> (looked in ROOT/…, …)"``.
    """
    candidates = tuple(candidates)
    for rel in candidates:
        p = root / rel if rel else root
        if accept(p):
            return p
    if what is None:
        return None
    raise DatasetError(f"no {what} found under {root} (looked in {looked_in(root, candidates)})")


def resolve_audio(folder: Path, filename: str) -> Path | None:
    """``folder/filename`` if it exists, else the same stem with another audio
    extension (so a copy converted to e.g. FLAC still matches its metadata)."""
    p = folder / filename
    if p.is_file():
        return p
    stem = Path(filename).stem
    for ext in AUDIO_EXTENSIONS:
        q = folder / (stem + ext)
        if q.is_file():
            return q
    return None


def rel_id(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix), as reached from ROOT: a file under a symbolic link inside ROOT
    (``ROOT/audio -> /data/us8k/audio``) keeps its path through the link; else relative to ROOT's real
    folder; the absolute posix path if outside it."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        pass
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def hash_key(seed: int | str, text: str) -> str:
    """Hex sha256 of ``seed`` and ``text``: the deterministic sort key of :func:`stratified_folds`."""
    return hashlib.sha256(f"{seed}\0{text}".encode()).hexdigest()


def stratified_folds(ids: Sequence[str], labels: Sequence[str], k: int = 5, seed: int = 0) -> list[int]:
    """Deterministic stratified ``k``-fold assignment → 1-based fold per item.

    Within each class (classes in sorted order) items are ordered by
    ``sha256(f"{seed}\\0{id}")`` and dealt to folds 1..k in turn; the dealing
    continues across classes, so fold sizes differ by at most one overall and
    each class is spread as evenly as possible.  Depends only on the ids,
    labels, ``k`` and ``seed`` (no RNG, no library version).
    """
    if k < 2:
        raise DatasetError(f"n_folds must be at least 2, got {k}")
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(str(lab), []).append(i)
    folds = [0] * len(ids)
    turn = 0
    for lab in sorted(by_class):
        for i in sorted(by_class[lab], key=lambda j: hash_key(seed, ids[j])):
            folds[i] = turn % k + 1
            turn += 1
    return folds


def parse_bool(value) -> bool:
    """An option or CSV value as a boolean (``true``/``yes``/``1`` …, ``false``/``no``/``0``/empty)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off", ""):
        return False
    raise DatasetError(f"expected a boolean (true/false), got {value!r}")


def parse_int(name: str, value) -> int:
    """Option ``name``'s value as an integer."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"option {name} must be an integer, got {value!r}") from None


# -- the adapter base class ----------------------------------------------------
class Adapter:
    """One dataset: reads its published layout and metadata → manifest rows.

    Subclasses set the class attributes and implement :meth:`rows`.
    """

    name: str = ""
    description: str = ""
    task: str = "classification"
    layout: str = ""          # expected on-disk layout (for docs / `datasets list`)
    columns: str = ""         # label / target columns written
    folds: str = ""           # folds / splits written
    options: dict[str, str] = {}  # adapter-specific options → help
    targets: tuple[str, ...] = ()  # numeric target columns (regression)
    accepts_file = False           # ROOT may be a file (the csv adapter)

    def rows(self, root: Path, **options) -> tuple[list[dict], list[str], int, str]:
        """→ (rows, missing, listed_total, what); ``missing`` lists entries of the
        metadata whose audio is absent (posix paths relative to ROOT)."""
        raise NotImplementedError

    def manifest(self, root: str | Path, allow_missing: bool = False, **options) -> pd.DataFrame:
        """The manifest of the dataset at ``root`` (see :func:`convfeat.datasets.manifest`)."""
        root = Path(root).expanduser()
        if not root.exists():
            raise DatasetError(f"{root} does not exist")
        if not root.is_dir() and not self.accepts_file:
            raise DatasetError(f"{root} is not a folder ({self.name} expects the dataset's folder)")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise DatasetError(f"{self.name} has no option {', '.join(unknown)} (its options: {known})")
        rows, missing, total, what = self.rows(root, **options)
        warnings = []
        if missing:
            if not parse_bool(allow_missing):
                raise MissingFilesError(missing, total, what)
            shown = ", ".join(missing[:MAX_LISTED]) + (", …" if len(missing) > MAX_LISTED else "")
            warnings.append(f"left out {len(missing)} of {total} {what} missing on disk (first: {shown})")
        if not rows:
            raise DatasetError(f"{self.name}: no items found under {root}")
        df = to_frame(rows, self.targets)
        df.attrs["dataset"] = self.name
        df.attrs["task"] = self.task
        df.attrs["targets"] = list(self.targets)
        df.attrs["warnings"] = warnings + list(df.attrs.get("warnings", []))
        return df

    def describe(self) -> dict:
        """Name, task, description, layout, columns, folds and options (for `datasets list`)."""
        return {"name": self.name, "task": self.task, "description": self.description,
                "layout": self.layout, "columns": self.columns, "folds": self.folds,
                "options": dict(self.options)}


def to_frame(rows: list[dict], targets: Sequence[str] = ()) -> pd.DataFrame:
    """Rows → DataFrame in manifest column order (id, path, label / targets / tags,
    fold, split, group, the rest), with integer folds and unique ids."""
    df = pd.DataFrame(rows)
    order = LEADING_COLUMNS[:3] + tuple(targets) + LEADING_COLUMNS[3:]
    lead = [c for c in dict.fromkeys(order) if c in df.columns]
    df = df[lead + [c for c in df.columns if c not in lead]]
    if "fold" in df.columns:
        df["fold"] = df["fold"].astype("Int64")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DatasetError(f"duplicate ids in the manifest (first: {', '.join(map(str, dup[:MAX_LISTED]))})")
    return df.reset_index(drop=True)


def read_table(path: Path, required: Sequence[str], **kwargs) -> pd.DataFrame:
    """A metadata CSV as strings (stripped names and values); checks the columns."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, **kwargs)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{path}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for c in df.columns:
        df[c] = df[c].str.strip()
    lacking = [c for c in required if c not in df.columns]
    if lacking:
        raise DatasetError(f"{path}: expected columns {', '.join(required)}; lacks {', '.join(lacking)} "
                           f"(found: {', '.join(df.columns)})")
    return df
