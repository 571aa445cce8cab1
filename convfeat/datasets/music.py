"""Adapters for the music datasets of Choi et al. (2017): GTZAN genre, GTZAN
music/speech, Extended Ballroom, EmoMusic, Jamendo vocal detection."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from .base import (Adapter, DatasetError, audio_files, audio_stem, find_first, read_table, rel_id, resolve_audio,
                   subfolders)

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
BALLROOM_STYLES = ("Chacha", "Foxtrot", "Jive", "Pasodoble", "Quickstep", "Rumba", "Salsa", "Samba",
                   "Slowwaltz", "Tango", "Viennesewaltz", "Waltz", "Wcswing")
SPLITS = ("train", "valid", "test")


class GTZANGenre(Adapter):
    """GTZAN genre: one folder per genre; splits from the fault-filtered lists when present."""

    name = "gtzan-genre"
    description = "GTZAN genre collection: 1000 clips of 30 s, 10 genres (Tzanetakis & Cook 2002)"
    task = "classification"
    layout = ("`genres/<genre>/<genre>.000NN.au` (original) or `genres_original/<genre>/<genre>.000NN.wav` "
              "(Kaggle; also under `Data/`); ROOT may be the `genres` folder itself; optional "
              "`{train,valid,test}_filtered.txt` beside it")
    columns = "`label` = genre (folder name)"
    folds = ("none official; `split` = train/valid/test only when the fault-filtered lists (Kereliuk et al. "
             "2015, `train_filtered.txt` …, lines `blues/blues.00029.wav`) are found in ROOT or the genres "
             "folder — files in none of the lists get an empty split")
    CANDIDATES = ("genres", "genres_original", "Data/genres_original", "gtzan/genres", "")

    def rows(self, root: Path):
        """One row per audio file in the genre folders (sorted by id)."""
        base = find_first(root, self.CANDIDATES,
                          lambda c: c.is_dir() and any((c / g).is_dir() for g in GTZAN_GENRES),
                          f"GTZAN genre folders ({', '.join(GTZAN_GENRES)})")
        split_of: dict[str, str] = {}   # "blues.00029" -> "train"
        has_split = False
        list_dirs = [d for d in dict.fromkeys((root, base.parent, base)) if d == root or root in d.parents]
        for s in SPLITS:
            lst = next((d / f"{s}_filtered.txt" for d in list_dirs if (d / f"{s}_filtered.txt").is_file()), None)
            if lst is None:
                continue
            has_split = True
            for line in lst.read_text().splitlines():
                name = PurePosixPath(line.strip().replace("\\", "/")).name
                if name:
                    split_of[audio_stem(name)] = s
        rows = []
        for genre in GTZAN_GENRES:
            folder = base / genre
            if not folder.is_dir():
                continue
            for p in audio_files(folder):
                row = {"id": rel_id(p, root), "path": str(p.resolve()), "label": genre}
                if has_split:
                    row["split"] = split_of.get(p.stem, "")
                rows.append(row)
        rows.sort(key=lambda x: x["id"])
        return rows, [], len(rows), "files"


class GTZANMusicSpeech(Adapter):
    """GTZAN music/speech: ``music_wav/`` and ``speech_wav/``."""

    name = "gtzan-music-speech"
    description = "GTZAN music/speech collection: 128 clips of 30 s, music vs speech"
    task = "classification"
    layout = "`music_wav/*.wav` + `speech_wav/*.wav` (ROOT or ROOT/`music_speech`)"
    columns = "`label` = `music` / `speech`"
    folds = "none published"
    CANDIDATES = ("", "music_speech")

    def rows(self, root: Path):
        """One row per audio file in music_wav/ and speech_wav/ (sorted by id)."""
        base = find_first(root, self.CANDIDATES,
                          lambda c: (c / "music_wav").is_dir() and (c / "speech_wav").is_dir(),
                          "music_wav/ and speech_wav/ folders")
        rows = [{"id": rel_id(p, root), "path": str(p.resolve()), "label": label}
                for label in ("music", "speech") for p in audio_files(base / f"{label}_wav")]
        rows.sort(key=lambda x: x["id"])
        return rows, [], len(rows), "files"


class ExtendedBallroom(Adapter):
    """Extended Ballroom: one folder per dance style."""

    name = "ballroom-extended"
    description = "Extended Ballroom: 4180 excerpts, 13 dance styles (Marchand & Peeters 2016)"
    task = "classification"
    layout = ("one folder per style: `Chacha/`, `Foxtrot/`, `Jive/`, `Pasodoble/`, `Quickstep/`, `Rumba/`, "
              "`Salsa/`, `Samba/`, `Slowwaltz/`, `Tango/`, `Viennesewaltz/`, `Waltz/`, `Wcswing/` with "
              "`<id>.mp3`, in ROOT or in a sub-folder of it")
    columns = "`label` = style (folder name; every folder beside the styles that holds audio becomes a class too)"
    folds = "none published"

    def rows(self, root: Path):
        """One row per audio file in the style folders, in ROOT or one sub-folder down (sorted by id)."""
        known = {s.lower() for s in BALLROOM_STYLES}
        candidates = [root] + subfolders(root)
        base = next((c for c in candidates if any(p.name.lower() in known for p in subfolders(c))), None)
        if base is None:
            raise DatasetError(f"no Extended Ballroom style folders ({', '.join(BALLROOM_STYLES)}) found in "
                               f"{root} or its sub-folders")
        rows = [{"id": rel_id(p, root), "path": str(p.resolve()), "label": d.name}
                for d in subfolders(base) for p in audio_files(d)]
        rows.sort(key=lambda x: x["id"])
        return rows, [], len(rows), "files"


class EmoMusic(Adapter):
    """EmoMusic: static arousal / valence annotations of 45-s clips (regression)."""

    name = "emomusic"
    description = "EmoMusic (1000 songs for emotional analysis of music): 744 clips of 45 s, static arousal/valence"
    task = "regression"
    targets = ("arousal", "valence")
    layout = ("`clips_45seconds/<song_id>.mp3` + `annotations/static_annotations.csv` (song_id, mean_arousal, "
              "std_arousal, mean_valence, std_valence; 1–9 scale); optional `annotations/songs_info.csv`")
    columns = ("`arousal`, `valence` = (mean − 1) / 8 ∈ [0, 1]; `arousal_std`, `valence_std` = std / 8; "
               "with songs_info.csv: `group` = artist, `genre`")
    folds = "`split` = MediaEval 2013 set (development → `train`, evaluation → `test`) when songs_info.csv is present"
    options = {"scale": "`unit` (default): (x − 1)/8 ∈ [0, 1]; `study`: x/9 as in Choi et al.'s preprocessing; "
                        "`raw`: the published 1–9 values"}
    ANNOTATIONS = ("annotations/static_annotations.csv", "static_annotations.csv",
                   "annotations/static_annotations_averaged_songs.csv")
    CLIPS = ("clips_45seconds", "clips_45sec", "clips", "audio", "")

    def rows(self, root: Path, scale: str = "unit"):
        """One row per annotated song (sorted by song id); songs without audio are reported missing."""
        scalers = {"unit": (lambda m: (m - 1.0) / 8.0, lambda s: s / 8.0),
                   "study": (lambda m: m / 9.0, lambda s: s / 9.0),
                   "raw": (lambda m: m, lambda s: s)}
        if scale not in scalers:
            raise DatasetError(f"emomusic option scale must be one of {', '.join(scalers)}, got {scale!r}")
        f_mean, f_std = scalers[scale]
        anno = find_first(root, self.ANNOTATIONS, Path.is_file, "static_annotations.csv")
        df = read_table(anno, ["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"])
        info = {}
        info_path = anno.parent / "songs_info.csv"
        if info_path.is_file():
            for _, r in read_table(info_path, ["song_id"]).iterrows():
                info[str(int(float(r["song_id"])))] = r
        clips = find_first(root, self.CLIPS, Path.is_dir) or root
        rows, missing = [], []
        for i, r in df.iterrows():
            try:
                sid = str(int(float(r["song_id"])))
                vals = {k: float(r[k]) for k in ("mean_arousal", "std_arousal", "mean_valence", "std_valence")}
            except ValueError:
                raise DatasetError(f"{anno.name} row {i + 2}: not a number in {dict(r)}") from None
            path = resolve_audio(clips, f"{sid}.mp3")
            if path is None:
                missing.append(rel_id(clips / f"{sid}.mp3", root))
                continue
            row = {"id": rel_id(path, root), "path": str(path.resolve()),
                   "arousal": f_mean(vals["mean_arousal"]), "valence": f_mean(vals["mean_valence"])}
            if sid in info:
                s = info[sid]
                mset = str(s.get("Mediaeval 2013 set", "")).strip().lower()
                row["split"] = {"development": "train", "evaluation": "test"}.get(mset, mset)
                row["group"] = str(s.get("Artist", "")).strip()
            row["arousal_std"] = f_std(vals["std_arousal"])
            row["valence_std"] = f_std(vals["std_valence"])
            row["song_id"] = int(sid)
            if sid in info and "Genre" in info[sid]:
                row["genre"] = str(info[sid]["Genre"]).strip()
            rows.append(row)
        rows.sort(key=lambda x: x["song_id"])
        return rows, missing, len(df), f"songs listed in {rel_id(anno, root)}"


class JamendoVD(Adapter):
    """Jamendo vocal detection: one item per annotated sing / nosing segment."""

    name = "jamendo-vd"
    description = "Jamendo vocal detection corpus: 93 songs, sing/nosing segments (Ramona et al. 2008)"
    task = "classification"
    layout = ("`train/`, `valid/`, `test/` with the songs (`.ogg` / `.mp3`) + `jamendo_lab/<song>.lab` "
              "(lines `start end sing|nosing`, seconds; a `.lab` beside its song is accepted too)")
    columns = ("one item per annotated segment (as the study did: 4086 items): `id` = `<song path>#NNN` "
               "(segment number from 000), `label` = `sing` / `nosing`, `segment_start`, `segment_end` "
               "(seconds: the part of the song `convfeat extract` embeds), `group` = song")
    folds = "`split` = the folder: `train` / `valid` / `test` (official)"
    LAB_DIRS = ("jamendo_lab", "labels", "lab")

    @staticmethod
    def _parse_lab(path: Path) -> list[tuple[float, float, str]]:
        """(start, end, "sing" | "nosing") per line of a ``.lab`` file."""
        segs = []
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3:
                raise DatasetError(f"{path}:{n}: expected 'start end sing|nosing', got {line!r}")
            try:
                start, end = float(parts[0]), float(parts[1])
            except ValueError:
                raise DatasetError(f"{path}:{n}: expected 'start end sing|nosing', got {line!r}") from None
            lab = {"sing": "sing", "nosing": "nosing", "1": "sing", "0": "nosing"}.get(parts[2].lower())
            if lab is None:
                raise DatasetError(f"{path}:{n}: label must be sing or nosing, got {parts[2]!r}")
            segs.append((start, end, lab))
        return segs

    def rows(self, root: Path):
        """One row per annotated segment of each song in train/, valid/, test/."""
        splits = [s for s in SPLITS if (root / s).is_dir()]
        if not splits:
            raise DatasetError(f"no train/, valid/ or test/ folder found under {root} (Jamendo layout: "
                               "ROOT/{train,valid,test}/<song>.ogg + ROOT/jamendo_lab/<song>.lab)")
        lab_dirs = [root / d for d in self.LAB_DIRS if (root / d).is_dir()]
        labs = {p.stem: p for d in lab_dirs for p in sorted(d.glob("*.lab")) if not p.name.startswith(".")}
        rows, missing, used, songs = [], [], set(), 0
        for split in splits:
            for audio in audio_files(root / split, recursive=False):
                songs += 1
                lab = audio.with_suffix(".lab") if audio.with_suffix(".lab").is_file() else labs.get(audio.stem)
                if lab is None:
                    missing.append(f"{rel_id(audio.with_suffix('.lab'), root)} (annotation)")
                    continue
                used.add(lab.stem)
                song_id = rel_id(audio, root)
                for k, (start, end, lab_name) in enumerate(self._parse_lab(lab)):
                    rows.append({"id": f"{song_id}#{k:03d}", "path": str(audio.resolve()), "label": lab_name,
                                 "split": split, "group": song_id, "segment_start": start, "segment_end": end,
                                 "segment": k})
        for stem in sorted(set(labs) - used):
            missing.append(f"{rel_id(labs[stem], root)} (no audio in {'/, '.join(splits)}/)")
            songs += 1
        if not songs:
            raise DatasetError(f"no songs found in {', '.join(f'ROOT/{s}' for s in splits)}")
        return rows, missing, songs, "songs (audio + .lab)"
