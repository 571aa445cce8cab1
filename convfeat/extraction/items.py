"""Inputs of an extraction: folders, files, lists and manifests → items with stable ids; shards."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS
from ..errors import InputError

__all__ = ["ExtractError", "collect_items", "read_manifest", "shard_of", "parse_shard"]


class ExtractError(InputError):
    """Bad input to the extraction (nothing is written)."""


# -- inputs ----------------------------------------------------------------------
def collect_items(inputs: list[str | Path]) -> list[dict]:
    """Expand folders (recursive), audio files, text lists and manifest CSVs into items.

    Each item: ``{"id", "path", "source", "meta"}``; ``path`` is relative to
    its input root (the folder, or the list / manifest's folder) and is also
    the ``id`` unless a manifest has an ``id`` column.  Items are sorted by id.
    """
    items: list[dict] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS and not f.name.startswith("."):
                    rel = f.relative_to(p).as_posix()
                    items.append({"id": rel, "path": rel, "source": str(f.resolve()), "meta": {}})
        elif p.suffix.lower() == ".csv" and p.is_file():
            items += read_manifest(p)
        elif p.suffix.lower() in (".txt", ".lst", ".list") and p.is_file():
            for line in p.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    src = Path(line) if Path(line).is_absolute() else p.parent / line
                    items.append({"id": line, "path": line, "source": str(src.resolve()), "meta": {}})
        elif p.is_file():
            items.append({"id": p.as_posix(), "path": p.as_posix(), "source": str(p.resolve()), "meta": {}})
        else:
            raise ExtractError(f"input not found: {raw}")
    seen: dict[str, str] = {}
    for it in items:
        if it["id"] in seen and seen[it["id"]] != it["source"]:
            raise ExtractError(f"two inputs share the id {it['id']!r} ({seen[it['id']]} and {it['source']}); "
                               "use a manifest CSV with an id column")
        seen[it["id"]] = it["source"]
    unique = {it["id"]: it for it in items}
    if not unique:
        raise ExtractError("no audio files found in the inputs")
    return [unique[k] for k in sorted(unique)]


def read_manifest(path: str | Path, error: type[Exception] = ExtractError, require: tuple = ()) -> list[dict]:
    """The items of a manifest CSV, in file order: ``{"id", "path", "source", "meta"}``.

    The one reader of item manifests.  A manifest has a ``path`` column (relative
    to the CSV's folder, or absolute); an optional ``id`` column (an empty or
    missing id is the path); every other column is ``meta`` (text, as written).
    ``source`` is the resolved absolute path.  A UTF-8 byte-order mark is
    ignored; cells missing from a short row are empty.  Raises ``error``
    (default :class:`ExtractError`) for a missing file, or a missing ``path``
    column or column named in ``require`` (e.g. ``("tags",)``).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: manifest not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, restval="")
        for column in ("path",) + tuple(require):
            if column not in (reader.fieldnames or ()):
                raise error(f"{path}: a manifest needs a '{column}' column (found: {reader.fieldnames})")
        rows = []
        for row in reader:
            rel = row["path"]
            src = Path(rel) if Path(rel).is_absolute() else path.parent / rel
            meta = {k: v for k, v in row.items() if k not in ("path", "id") and k is not None}
            rows.append({"id": row.get("id") or rel, "path": rel, "source": str(src.resolve()), "meta": meta})
    return rows


def shard_of(item_id: str, n: int) -> int:
    """1-based shard of an item: a stable hash of its id (independent of the rest)."""
    return int(hashlib.sha1(item_id.encode()).hexdigest(), 16) % n + 1


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ExtractError(f"--shard must look like I/N (e.g. 2/8), got {text!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ExtractError(f"--shard I/N needs 1 <= I <= N, got {text!r}")
    return i, n
