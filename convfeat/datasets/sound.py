"""Adapters for sound / speech / instrument datasets: UrbanSound8K, ESC-50,
Free Spoken Digit, Philharmonia."""
from __future__ import annotations

import re
from pathlib import Path

from .base import (MAX_LISTED, Adapter, DatasetError, audio_files, audio_stem, find_first, looked_in, parse_bool,
                   parse_int, read_table, rel_id, resolve_audio, stratified_folds, subfolders)


def _int(value: str, where: str) -> int:
    """A metadata value as an integer (``"3"`` or ``"3.0"``); ``where`` names the row."""
    try:
        return int(float(value))
    except ValueError:
        raise DatasetError(f"{where}: not an integer: {value!r}") from None


def _float(value: str, where: str) -> float:
    """A metadata value as a number; ``where`` names the row."""
    try:
        return float(value)
    except ValueError:
        raise DatasetError(f"{where}: not a number: {value!r}") from None


# The dataset's classes by classID, as the dataset publishes them (UrbanSound8K README / Salamon et al. 2014).
US8K_CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
                "gun_shot", "jackhammer", "siren", "street_music")
US8K_FOLDS = 10
US8K_NAME = re.compile(r"(\d+)-(\d)-(\d+)-(\d+)")   # [fsID]-[classID]-[occurrenceID]-[sliceID].wav


class UrbanSound8K(Adapter):
    """UrbanSound8K: slices listed in ``UrbanSound8K.csv``, official folds 1–10; without the CSV, the
    ``fold1`` … ``fold10`` folders and the official file names (fsID, classID in the name)."""

    name = "urbansound8k"
    description = "UrbanSound8K: 8732 urban sound excerpts, 10 classes (Salamon et al. 2014)"
    task = "classification"
    layout = ("`metadata/UrbanSound8K.csv` (slice_file_name, fsID, start, end, salience, fold, classID, "
              "class) + `audio/fold1..10/<slice_file_name>`; or, without the CSV, `fold1..10/` (under ROOT or "
              "`ROOT/audio`) holding the official `[fsID]-[classID]-[occurrenceID]-[sliceID].wav` files")
    columns = ("`label` = class (from classID and the published class list without the CSV); `group` = fsID; "
               "`class_id`; `start`, `end`, `salience` (CSV only); `occurrence`, `slice` (file names only)")
    folds = "`fold` 1–10 (official; use them, never shuffle: slices of one recording share a fold)"
    CANDIDATES = ("metadata/UrbanSound8K.csv", "UrbanSound8K.csv", "UrbanSound8K/metadata/UrbanSound8K.csv")
    FOLD_PARENTS = ("audio", "", "UrbanSound8K/audio")

    def rows(self, root: Path):
        """One row per slice listed in UrbanSound8K.csv, or per file of the fold folders (sorted by id)."""
        meta = find_first(root, self.CANDIDATES, Path.is_file)
        if meta is None:
            parent = find_first(root, self.FOLD_PARENTS, lambda p: (p / "fold1").is_dir())
            if parent is None:
                raise DatasetError(f"no UrbanSound8K.csv and no fold1 … fold10 folders found under {root} (looked "
                                   f"in {looked_in(root, self.CANDIDATES)}; for folders in "
                                   f"{looked_in(root, self.FOLD_PARENTS)})")
            return self._rows_from_names(root, parent)
        base = meta.parent.parent if meta.parent.name == "metadata" else meta.parent
        df = read_table(meta, ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        rows, missing = [], []
        for i, r in df.iterrows():
            where = f"{meta.name} row {i + 2}"
            fold = _int(r["fold"], where)
            folder = base / "audio" / f"fold{fold}"
            path = resolve_audio(folder, r["slice_file_name"])
            if path is None:
                missing.append(rel_id(folder / r["slice_file_name"], root))
                continue
            rows.append({"id": rel_id(path, root), "path": str(path.resolve()), "label": r["class"],
                         "fold": fold, "group": r["fsID"], "class_id": _int(r["classID"], where),
                         "start": _float(r["start"], where), "end": _float(r["end"], where),
                         "salience": _int(r["salience"], where)})
        rows.sort(key=lambda x: x["id"])
        return rows, missing, len(df), f"files listed in {rel_id(meta, root)}"

    def _rows_from_names(self, root: Path, parent: Path):
        """Rows of the audio files in ``parent/fold1`` … ``fold10``, labelled from their official names."""
        rows, odd = [], []
        for fold in range(1, US8K_FOLDS + 1):
            folder = parent / f"fold{fold}"
            if not folder.is_dir():
                continue
            for path in audio_files(folder, recursive=False):
                m = US8K_NAME.fullmatch(audio_stem(path.name))
                if m is None or int(m.group(2)) >= len(US8K_CLASSES):
                    odd.append(rel_id(path, root))
                    continue
                fs_id, class_id, occurrence, slice_id = m.groups()
                rows.append({"id": rel_id(path, root), "path": str(path.resolve()),
                             "label": US8K_CLASSES[int(class_id)], "fold": fold, "group": fs_id,
                             "class_id": int(class_id), "occurrence": int(occurrence), "slice": int(slice_id)})
        if odd:
            shown = ", ".join(odd[:MAX_LISTED]) + (", …" if len(odd) > MAX_LISTED else "")
            raise DatasetError(f"{len(odd)} audio file(s) in the fold folders do not have UrbanSound8K's official "
                               f"names [fsID]-[classID 0-9]-[occurrenceID]-[sliceID].wav (first: {shown}); without "
                               "metadata/UrbanSound8K.csv the names are the labels")
        rows.sort(key=lambda x: x["id"])
        return rows, [], len(rows), f"files in the fold folders of {parent}"


class ESC50(Adapter):
    """ESC-50 (or its ESC-10 subset): clips listed in ``esc50.csv``, official folds 1–5."""

    name = "esc50"
    description = "ESC-50: 2000 environmental sound clips of 5 s, 50 classes (Piczak 2015)"
    task = "classification"
    layout = ("`meta/esc50.csv` (filename, fold, target, category, esc10, src_file, take) + "
              "`audio/<filename>`; the CSV may also sit at ROOT (`ROOT/esc50.csv`)")
    columns = "`label` = category; `group` = src_file; `target`, `esc10`, `take`"
    folds = "`fold` 1–5 (official; clips from one source recording share a fold)"
    options = {"subset": "`esc10`: only the ESC-10 subset (rows with esc10 = True); default all 50 classes"}
    CANDIDATES = ("meta/esc50.csv", "esc50.csv", "ESC-50-master/meta/esc50.csv", "ESC-50/meta/esc50.csv")

    def rows(self, root: Path, subset: str | None = None):
        """One row per clip listed in esc50.csv (only ESC-10 with ``subset="esc10"``), sorted by id."""
        meta = find_first(root, self.CANDIDATES, Path.is_file, "esc50.csv")
        if subset not in (None, "", "all", "esc10"):
            raise DatasetError(f"esc50 option subset must be esc10 or all, got {subset!r}")
        base = meta.parent.parent if meta.parent.name == "meta" else meta.parent
        df = read_table(meta, ["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        if subset == "esc10":
            df = df[df["esc10"].map(parse_bool)]
        folder = base / "audio"
        rows, missing = [], []
        for i, r in df.iterrows():
            where = f"{meta.name} row {i + 2}"
            path = resolve_audio(folder, r["filename"]) or resolve_audio(base, r["filename"])
            if path is None:
                missing.append(rel_id(folder / r["filename"], root))
                continue
            rows.append({"id": rel_id(path, root), "path": str(path.resolve()), "label": r["category"],
                         "fold": _int(r["fold"], where), "group": r["src_file"],
                         "target": _int(r["target"], where), "esc10": parse_bool(r["esc10"]), "take": r["take"]})
        rows.sort(key=lambda x: x["id"])
        return rows, missing, len(df), f"files listed in {rel_id(meta, root)}"


class FreeSpokenDigit(Adapter):
    """Free Spoken Digit: ``{digit}_{speaker}_{index}`` recordings, folds by speaker."""

    name = "fsdd"
    description = "Free Spoken Digit Dataset: spoken digits 0–9, 8 kHz (Jackson et al.)"
    task = "classification"
    layout = "`recordings/{digit}_{speaker}_{index}.wav` (`.flac` etc. accepted)"
    columns = "`label` = digit (`0`–`9`); `group` = speaker; `index`"
    folds = ("`fold` = speaker, leave-one-speaker-out (sorted speaker names → 1..n; the 6 speakers of "
             "v1.0.10: george 1, jackson 2, lucas 3, nicolas 4, theo 5, yweweler 6); `split` = official "
             "test (index 0–4) / train (5–49)")
    CANDIDATES = ("recordings", "free-spoken-digit-dataset/recordings", "")
    PATTERN = re.compile(r"^(\d)_([A-Za-z][A-Za-z0-9-]*)_(\d+)$")

    def rows(self, root: Path):
        """One row per recording (sorted by id); folds by speaker, split by index."""
        folder = find_first(root, self.CANDIDATES, lambda c: c.is_dir() and any(
            self.PATTERN.match(p.stem) for p in audio_files(c, recursive=False)))
        if folder is None:
            nested = sorted(root.glob("free-spoken-digit-dataset*/recordings"))
            if nested:
                folder = nested[0]
            else:
                raise DatasetError(f"no FSDD recordings found under {root} (looked for "
                                   f"{{digit}}_{{speaker}}_{{index}}.wav in ROOT/recordings and ROOT)")
        files = audio_files(folder, recursive=False)
        bad = [p.name for p in files if not self.PATTERN.match(p.stem)]
        if bad:
            raise DatasetError(f"{len(bad)} audio files in {folder} are not named {{digit}}_{{speaker}}_{{index}} "
                               f"(first: {', '.join(bad[:5])})")
        parsed = [(p, *self.PATTERN.match(p.stem).groups()) for p in files]
        speakers = sorted({spk for _, _, spk, _ in parsed})
        fold_of = {spk: i + 1 for i, spk in enumerate(speakers)}
        rows = []
        for p, digit, spk, idx in parsed:
            rows.append({"id": rel_id(p, root), "path": str(p.resolve()), "label": digit, "fold": fold_of[spk],
                         "split": "test" if int(idx) < 5 else "train", "group": spk, "index": int(idx)})
        rows.sort(key=lambda x: x["id"])
        return rows, [], len(rows), "files"


class Philharmonia(Adapter):
    """Philharmonia Orchestra samples: one folder per instrument, deterministic folds."""

    name = "philharmonia"
    description = "Philharmonia Orchestra sound samples: single notes per instrument"
    task = "classification"
    layout = ("`<instrument>/…/<instrument>_<pitch>_<length>_<dynamic>_<articulation>.mp3` "
              "(`.ogg` etc. accepted), e.g. `banjo/banjo_A3_very-long_forte_normal.ogg`")
    columns = ("`label` = instrument folder name; `pitch` (`As3` = A♯3), `length` (seconds `0.25`, `0.5`, `1`, "
               "`1.5` for the codes `025`, `05`, `1`, `15`; else `long`, `very-long`, `phrase`), `dynamic`, `articulation` parsed from the file name "
               "(empty where the name has another form)")
    folds = ("none published: `fold` 1..5 = deterministic stratified assignment (per instrument, files ordered "
             "by sha256(seed, id) and dealt to folds in turn; seed 0)")
    options = {"n_folds": "number of folds (default 5)", "seed": "seed of the fold assignment (default 0)"}
    FIELDS = ("pitch", "length", "dynamic", "articulation")
    LENGTHS = {"025": "0.25", "05": "0.5", "1": "1", "15": "1.5"}   # file-name code -> seconds

    def rows(self, root: Path, n_folds: int | str = 5, seed: int | str = 0):
        """One row per audio file in the instrument folders, with deterministic stratified folds."""
        n_folds, seed = parse_int("n_folds", n_folds), parse_int("seed", seed)
        rows = []
        for inst in subfolders(root):
            for p in audio_files(inst):
                parts = p.stem.split("_")
                meta = dict(zip(self.FIELDS, parts[1:])) if len(parts) == 5 else dict.fromkeys(self.FIELDS, "")
                meta["length"] = self.LENGTHS.get(meta["length"], meta["length"])
                rows.append({"id": rel_id(p, root), "path": str(p.resolve()), "label": inst.name, **meta})
        if not rows:
            raise DatasetError(f"no instrument folders with audio found under {root} "
                               "(expected ROOT/<instrument>/<instrument>_<pitch>_<length>_<dynamic>_<articulation>.mp3)")
        if not any(r["pitch"] for r in rows):
            raise DatasetError(f"no file under {root} is named <instrument>_<pitch>_<length>_<dynamic>_"
                               "<articulation> (is this the Philharmonia set?)")
        rows.sort(key=lambda x: x["id"])
        folds = stratified_folds([r["id"] for r in rows], [r["label"] for r in rows], n_folds, seed)
        for r, f in zip(rows, folds):
            r["fold"] = f
        return rows, [], len(rows), "files"
