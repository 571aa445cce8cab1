"""Dataset adapters: each on a tiny fake tree in its published layout, the CLI,
and the real copies in ../shared/datasets (skipped without them)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from convfeat import datasets
from convfeat.cli.datasets import register
from convfeat.datasets import DatasetError, MissingFilesError
from convfeat.datasets.base import audio_files

from conftest import shared_path

runner = CliRunner()


def put(path: Path, seconds: float = 0.01) -> Path:
    """A short silent file (.wav / .flac written with soundfile; other formats empty:
    the adapters never decode audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".wav", ".flac"):
        sf.write(path, np.zeros(int(8000 * seconds), dtype=np.float32), 8000)
    else:
        path.write_bytes(b"")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def check_common(df: pd.DataFrame, root: Path):
    assert list(df.columns[:2]) == ["id", "path"]
    assert df["id"].is_unique
    for i, p in zip(df["id"], df["path"]):
        assert Path(p).is_absolute() and Path(p).is_file()
        assert Path(p) == (root / i.split("#")[0]).resolve()


# -- UrbanSound8K ------------------------------------------------------------------
US8K_HEADER = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]


def us8k_tree(root: Path) -> Path:
    rows = [["100032-3-0-0.wav", "100032", "0.0", "0.317551", "1", "5", "3", "dog_bark"],
            ["100263-2-0-117.wav", "100263", "58.5", "62.5", "1", "5", "2", "children_playing"],
            ["7061-6-0-0.wav", "7061", "0.0", "4.0", "2", "1", "6", "gun_shot"],
            ["99812-1-2-0.wav", "99812", "3.5", "7.5", "2", "10", "1", "car_horn"]]
    write_csv(root / "metadata" / "UrbanSound8K.csv", US8K_HEADER, rows)
    for r in rows:
        put(root / "audio" / f"fold{r[5]}" / r[0])
    return root


US8K_SLICES = [("100032-3-0-0.wav", 5), ("100263-2-0-117.wav", 5), ("7061-6-0-0.wav", 1), ("99812-1-2-0.wav", 10),
               ("14113-4-0-1.wav", 2), ("57320-0-0-7.wav", 3), ("57320-0-0-24.wav", 3), ("24074-1-0-3.wav", 4),
               ("102305-6-0-0.wav", 6), ("180937-7-3-27.wav", 7), ("17973-2-0-12.wav", 8), ("46669-4-0-35.wav", 9),
               ("135160-8-0-0.wav", 10), ("155202-9-0-69.wav", 1), ("22347-3-0-0.wav", 2), ("127873-0-0-0.wav", 4)]
US8K_PUBLISHED = {0: "air_conditioner", 1: "car_horn", 2: "children_playing", 3: "dog_bark", 4: "drilling",
                  5: "engine_idling", 6: "gun_shot", 7: "jackhammer", 8: "siren", 9: "street_music"}


def us8k_folders(parent: Path) -> Path:
    """Plain fold1 … fold10 folders of official-style file names, no metadata."""
    for name, fold in US8K_SLICES:
        put(parent / f"fold{fold}" / name)
    return parent


@pytest.mark.parametrize("under", ["audio", ""])
def test_urbansound8k_fold_folders_without_metadata(tmp_path, under):
    root = tmp_path / "us8k"
    us8k_folders(root / under if under else root)
    df = datasets.manifest("urbansound8k", root)
    check_common(df, root)
    prefix = f"{under}/" if under else ""
    want = sorted((f"{prefix}fold{fold}/{name}", name, fold) for name, fold in US8K_SLICES)
    assert list(df["id"]) == [w[0] for w in want]
    assert list(df["fold"]) == [w[2] for w in want]
    assert list(df["group"].astype(str)) == [w[1].split("-")[0] for w in want]
    assert list(df["label"]) == [US8K_PUBLISHED[int(w[1].split("-")[1])] for w in want]
    assert list(df["slice"]) == [int(w[1].split("-")[3][:-4]) for w in want]
    # the two slices of recording 57320 share a group (and the official fold)
    assert set(df.loc[df["group"].astype(str) == "57320", "fold"]) == {3}


def test_urbansound8k_ids_stay_relative_to_root_through_symlinks(tmp_path):
    data = us8k_tree(tmp_path / "real")                    # the metadata layout, stored elsewhere
    root = tmp_path / "view"
    (root / "metadata").mkdir(parents=True)
    (root / "audio").symlink_to(data / "audio", target_is_directory=True)
    (root / "metadata" / "UrbanSound8K.csv").symlink_to(data / "metadata" / "UrbanSound8K.csv")
    want = ["audio/fold1/7061-6-0-0.wav", "audio/fold10/99812-1-2-0.wav", "audio/fold5/100032-3-0-0.wav",
            "audio/fold5/100263-2-0-117.wav"]
    assert list(datasets.manifest("urbansound8k", root)["id"]) == want
    # fold folders that are themselves links, and a ROOT that is a link, without metadata
    folders = us8k_folders(tmp_path / "store")
    plain = tmp_path / "plain"
    plain.mkdir()
    for fold in range(1, 11):
        (plain / f"fold{fold}").symlink_to(folders / f"fold{fold}", target_is_directory=True)
    link = tmp_path / "link"
    link.symlink_to(plain, target_is_directory=True)
    ids = list(datasets.manifest("urbansound8k", link)["id"])
    assert ids == sorted(f"fold{fold}/{name}" for name, fold in US8K_SLICES)
    # the generic folder walk follows linked folders too, under their path through the link
    assert [p.relative_to(link).as_posix() for p in audio_files(link)] == ids


def test_urbansound8k(tmp_path):
    root = us8k_tree(tmp_path / "UrbanSound8K")
    df = datasets.manifest("urbansound8k", root)
    check_common(df, root)
    assert list(df["id"]) == ["audio/fold1/7061-6-0-0.wav", "audio/fold10/99812-1-2-0.wav",
                              "audio/fold5/100032-3-0-0.wav", "audio/fold5/100263-2-0-117.wav"]
    assert list(df["label"]) == ["gun_shot", "car_horn", "dog_bark", "children_playing"]
    assert list(df["fold"]) == [1, 10, 5, 5]
    assert list(df["group"]) == ["7061", "99812", "100032", "100263"]
    assert list(df["start"]) == [0.0, 3.5, 0.0, 58.5]
    assert list(df["class_id"]) == [6, 1, 3, 2]


def test_urbansound8k_missing_files_reported_not_dropped(tmp_path):
    root = us8k_tree(tmp_path / "us")
    (root / "audio" / "fold5" / "100032-3-0-0.wav").unlink()
    with pytest.raises(MissingFilesError, match=r"1 of 4 files listed in metadata/UrbanSound8K.csv missing on "
                                                r"disk \(first: audio/fold5/100032-3-0-0.wav\)"):
        datasets.manifest("urbansound8k", root)
    df = datasets.manifest("urbansound8k", root, allow_missing=True)
    assert len(df) == 3
    assert "left out 1 of 4" in df.attrs["warnings"][0]


def test_urbansound8k_wrong_root(tmp_path):
    with pytest.raises(DatasetError, match=r"no UrbanSound8K.csv and no fold1 … fold10 folders found under .* "
                                           r"\(looked in ROOT/metadata/UrbanSound8K.csv, ROOT/UrbanSound8K.csv.*; for "
                                           r"folders in ROOT/audio, ROOT, ROOT/UrbanSound8K/audio\)"):
        datasets.manifest("urbansound8k", tmp_path)


# -- ESC-50 ------------------------------------------------------------------------
ESC_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
ESC_ROWS = [["1-100032-A-0.wav", "1", "0", "dog", "True", "100032", "A"],
            ["1-100038-A-14.wav", "1", "14", "chirping_birds", "False", "100038", "A"],
            ["2-109505-A-21.wav", "2", "21", "sneezing", "False", "109505", "A"],
            ["2-109505-B-21.wav", "2", "21", "sneezing", "False", "109505", "B"],
            ["5-9032-A-0.wav", "5", "0", "dog", "True", "9032", "A"]]


@pytest.mark.parametrize("csv_at", ["meta/esc50.csv", "esc50.csv"])
def test_esc50_meta_or_top_level_csv(tmp_path, csv_at):
    root = tmp_path / "ESC-50"
    write_csv(root / csv_at, ESC_HEADER, ESC_ROWS)
    for r in ESC_ROWS:
        put(root / "audio" / r[0])
    df = datasets.manifest("esc50", root)
    check_common(df, root)
    assert list(df["id"]) == [f"audio/{r[0]}" for r in ESC_ROWS]
    assert list(df["label"]) == ["dog", "chirping_birds", "sneezing", "sneezing", "dog"]
    assert list(df["fold"]) == [1, 1, 2, 2, 5]
    assert list(df["group"]) == ["100032", "100038", "109505", "109505", "9032"]
    assert list(df["target"]) == [0, 14, 21, 21, 0]
    esc10 = datasets.manifest("esc50", root, subset="esc10")
    assert list(esc10["id"]) == ["audio/1-100032-A-0.wav", "audio/5-9032-A-0.wav"]


def test_esc50_listed_wav_found_as_flac(tmp_path):
    """A copy converted to FLAC keeps the original CSV (which lists .wav)."""
    write_csv(tmp_path / "meta" / "esc50.csv", ESC_HEADER, ESC_ROWS[:2])
    for r in ESC_ROWS[:2]:
        put(tmp_path / "audio" / r[0].replace(".wav", ".flac"))
    df = datasets.manifest("esc50", tmp_path)
    assert list(df["id"]) == ["audio/1-100032-A-0.flac", "audio/1-100038-A-14.flac"]


def test_esc50_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"no esc50.csv found under .* \(looked in ROOT/meta/esc50.csv, "
                                           r"ROOT/esc50.csv"):
        datasets.manifest("esc50", tmp_path)
    write_csv(tmp_path / "esc50.csv", ["filename", "fold"], [["a.wav", "1"]])
    with pytest.raises(DatasetError, match="lacks target, category, esc10, src_file, take"):
        datasets.manifest("esc50", tmp_path)
    with pytest.raises(DatasetError, match="esc50 has no option colour"):
        datasets.manifest("esc50", tmp_path, colour="red")


# -- Free Spoken Digit ---------------------------------------------------------------
def test_fsdd_speaker_folds_and_official_split(tmp_path):
    names = ["0_theo_0", "0_george_4", "7_jackson_5", "9_george_49", "3_yweweler_12", "1_lucas_2"]
    for i, n in enumerate(names):
        put(tmp_path / "recordings" / (n + (".wav" if i % 2 else ".flac")))
    df = datasets.manifest("fsdd", tmp_path)
    check_common(df, tmp_path)
    by = df.set_index("id")
    # sorted speakers: george 1, jackson 2, lucas 3, theo 4, yweweler 5
    assert by.loc["recordings/0_theo_0.flac", ["label", "fold", "split", "group"]].tolist() == ["0", 4, "test", "theo"]
    assert by.loc["recordings/0_george_4.wav", ["label", "fold", "split"]].tolist() == ["0", 1, "test"]
    assert by.loc["recordings/7_jackson_5.flac", ["label", "fold", "split"]].tolist() == ["7", 2, "train"]
    assert by.loc["recordings/9_george_49.wav", ["fold", "split", "index"]].tolist() == [1, "train", 49]
    assert by.loc["recordings/3_yweweler_12.flac", "fold"] == 5
    assert by.loc["recordings/1_lucas_2.wav", "fold"] == 3


def test_fsdd_errors(tmp_path):
    with pytest.raises(DatasetError, match="no FSDD recordings found"):
        datasets.manifest("fsdd", tmp_path)
    put(tmp_path / "recordings" / "0_theo_0.wav")
    put(tmp_path / "recordings" / "hello.wav")
    with pytest.raises(DatasetError, match=r"1 audio files .* not named \{digit\}_\{speaker\}_\{index\}"):
        datasets.manifest("fsdd", tmp_path)


# -- Philharmonia ------------------------------------------------------------------
def test_philharmonia_parse_and_stratified_folds(tmp_path):
    for inst, prefix in (("banjo", "banjo"), ("bass clarinet", "bass-clarinet")):
        for k, (pitch, length) in enumerate([("A3", "very-long"), ("As4", "025"), ("C5", "05"),
                                             ("D2", "1"), ("E6", "15"), ("G3", "phrase"), ("B4", "long")]):
            put(tmp_path / inst / f"{prefix}_{pitch}_{length}_{'forte' if k % 2 else 'piano'}_normal.ogg")
    df = datasets.manifest("philharmonia", tmp_path)
    check_common(df, tmp_path)
    assert len(df) == 14 and sorted(df["label"].unique()) == ["banjo", "bass clarinet"]
    row = df.set_index("id").loc["bass clarinet/bass-clarinet_As4_025_forte_normal.ogg"]
    assert row[["label", "pitch", "length", "dynamic", "articulation"]].tolist() == \
        ["bass clarinet", "As4", "0.25", "forte", "normal"]
    assert set(df["length"]) == {"very-long", "0.25", "0.5", "1", "1.5", "phrase", "long"}
    # 14 items dealt to 5 folds in turn across classes: sizes 3,3,3,3,2; each class spread over all folds
    assert df["fold"].value_counts().sort_index().tolist() == [3, 3, 3, 3, 2]
    for _, g in df.groupby("label"):
        assert g["fold"].nunique() == 5
    # deterministic; the seed changes the assignment; n_folds is honoured
    assert df["fold"].tolist() == datasets.manifest("philharmonia", tmp_path)["fold"].tolist()
    assert df["fold"].tolist() != datasets.manifest("philharmonia", tmp_path, seed="1")["fold"].tolist()
    assert set(datasets.manifest("philharmonia", tmp_path, n_folds=2)["fold"]) == {1, 2}


def test_stratified_folds_balanced():
    ids = [f"c{c}/{i}" for c in range(3) for i in range(10)]
    labels = [i.split("/")[0] for i in ids]
    folds = datasets.stratified_folds(ids, labels, k=5, seed=0)
    for c in ("c0", "c1", "c2"):
        assert sorted(f for f, lab in zip(folds, labels) if lab == c) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert folds == datasets.stratified_folds(list(reversed(ids)), list(reversed(labels)), 5, 0)[::-1]


def test_philharmonia_wrong_root(tmp_path):
    put(tmp_path / "x" / "hello.wav")
    with pytest.raises(DatasetError, match="is this the Philharmonia set"):
        datasets.manifest("philharmonia", tmp_path)
    with pytest.raises(DatasetError, match="is not a folder"):
        datasets.manifest("philharmonia", tmp_path / "x" / "hello.wav")
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.manifest("philharmonia", tmp_path / "nowhere")


# -- GTZAN ---------------------------------------------------------------------------
def test_gtzan_genre_original_au(tmp_path):
    for g in ("blues", "rock"):
        for i in (0, 1):
            put(tmp_path / "genres" / g / f"{g}.0000{i}.au")
    df = datasets.manifest("gtzan-genre", tmp_path)
    check_common(df, tmp_path)
    assert list(df["id"]) == ["genres/blues/blues.00000.au", "genres/blues/blues.00001.au",
                              "genres/rock/rock.00000.au", "genres/rock/rock.00001.au"]
    assert list(df["label"]) == ["blues", "blues", "rock", "rock"]
    assert "fold" not in df.columns and "split" not in df.columns


def test_gtzan_genre_kaggle_with_filtered_split(tmp_path):
    base = tmp_path / "Data" / "genres_original"
    for name in ("jazz/jazz.00000.wav", "jazz/jazz.00001.wav", "pop/pop.00002.wav", "pop/pop.00003.wav"):
        put(base / name)
    (tmp_path / "train_filtered.txt").write_text("jazz/jazz.00000.wav\npop/pop.00002.au\n")
    (tmp_path / "test_filtered.txt").write_text("jazz/jazz.00001.wav\n")
    df = datasets.manifest("gtzan-genre", tmp_path)
    assert df.set_index("id")["split"].to_dict() == {
        "Data/genres_original/jazz/jazz.00000.wav": "train", "Data/genres_original/jazz/jazz.00001.wav": "test",
        "Data/genres_original/pop/pop.00002.wav": "train", "Data/genres_original/pop/pop.00003.wav": ""}
    # ROOT may also be the genres folder itself
    assert len(datasets.manifest("gtzan-genre", base)) == 4


def test_gtzan_music_speech(tmp_path):
    for n in ("music_wav/bagpipe.wav", "music_wav/blues.wav", "speech_wav/voices.wav"):
        put(tmp_path / "music_speech" / n)
    df = datasets.manifest("gtzan-music-speech", tmp_path)
    check_common(df, tmp_path)
    assert dict(zip(df["id"], df["label"])) == {"music_speech/music_wav/bagpipe.wav": "music",
                                                "music_speech/music_wav/blues.wav": "music",
                                                "music_speech/speech_wav/voices.wav": "speech"}
    with pytest.raises(DatasetError, match="no music_wav/ and speech_wav/"):
        datasets.manifest("gtzan-music-speech", tmp_path / "music_speech" / "music_wav")


# -- Extended Ballroom ---------------------------------------------------------------
def test_ballroom_extended(tmp_path):
    for n in ("Chacha/100701.mp3", "Chacha/100702.mp3", "Wcswing/118720.mp3", "Viennesewaltz/1.mp3"):
        put(tmp_path / "extended_ballroom" / n)
    df = datasets.manifest("ballroom-extended", tmp_path)
    check_common(df, tmp_path)
    assert list(df["label"]) == ["Chacha", "Chacha", "Viennesewaltz", "Wcswing"]
    assert df["id"].iloc[0] == "extended_ballroom/Chacha/100701.mp3"
    with pytest.raises(DatasetError, match="no Extended Ballroom style folders"):
        datasets.manifest("ballroom-extended", tmp_path / "extended_ballroom" / "Chacha")


# -- EmoMusic ------------------------------------------------------------------------
def emomusic_tree(root: Path) -> Path:
    write_csv(root / "annotations" / "static_annotations.csv",
              ["song_id", "mean_arousal", "std_arousal", "mean_valence", "std_valence"],
              [[2, 1, 0.8, 9, 0], [3, 9, 1.6, 1, 0.4], [10, 5, 0, 5, 0.8]])
    with open(root / "annotations" / "songs_info.csv", "w") as f:   # the published file has tabs in values
        f.write("song_id,file_name,Artist,Song title,start of the segment (min.sec),"
                "end of the segment (min.sec),Genre,Mediaeval 2013 set\n"
                "2,2.mp3,Artist A\t,Song\t,1.00,1.45,Blues\t,development\n"
                "3,3.mp3,Artist B\t,Song\t,0.30,1.15,Rock\t,development\n"
                "10,10.mp3,Artist A\t,Song\t,0.00,0.45,Blues\t,evaluation\n")
    for sid in (2, 3, 10, 11):   # 11: a clip without annotations is not an item
        put(root / "clips_45seconds" / f"{sid}.mp3")
    return root


def test_emomusic_scaling_split_group(tmp_path):
    root = emomusic_tree(tmp_path)
    df = datasets.manifest("emomusic", root)
    check_common(df, root)
    assert list(df["id"]) == ["clips_45seconds/2.mp3", "clips_45seconds/3.mp3", "clips_45seconds/10.mp3"]
    assert df["arousal"].tolist() == [0.0, 1.0, 0.5]            # (x - 1) / 8: 1 -> 0, 9 -> 1, 5 -> 0.5
    assert df["valence"].tolist() == [1.0, 0.0, 0.5]
    assert df["arousal_std"].tolist() == pytest.approx([0.1, 0.2, 0.0])   # std / 8
    assert df["split"].tolist() == ["train", "train", "test"]
    assert df["group"].tolist() == ["Artist A", "Artist B", "Artist A"]
    assert df["genre"].tolist() == ["Blues", "Rock", "Blues"]
    assert df.attrs["task"] == "regression"
    assert list(df.columns[:6]) == ["id", "path", "arousal", "valence", "split", "group"]
    assert datasets.summarize(df) == "3 rows, targets arousal, valence, splits train:2 test:1, 2 groups"
    assert datasets.manifest("emomusic", root, scale="study")["arousal"].tolist() == \
        pytest.approx([1 / 9, 1.0, 5 / 9])
    assert datasets.manifest("emomusic", root, scale="raw")["arousal"].tolist() == [1.0, 9.0, 5.0]


def test_emomusic_missing_clip(tmp_path):
    root = emomusic_tree(tmp_path)
    (root / "clips_45seconds" / "3.mp3").unlink()
    with pytest.raises(MissingFilesError, match=r"1 of 3 songs listed in annotations/static_annotations.csv "
                                                r"missing on disk \(first: clips_45seconds/3.mp3\)"):
        datasets.manifest("emomusic", root)
    with pytest.raises(DatasetError, match="no static_annotations.csv found"):
        datasets.manifest("emomusic", root / "clips_45seconds")


# -- Jamendo -------------------------------------------------------------------------
def jamendo_tree(root: Path) -> Path:
    songs = {"train": ["01 - A song.ogg", "02 - B song.mp3"], "valid": ["03 - C.ogg"], "test": ["04 - D.ogg"]}
    for split, names in songs.items():
        for n in names:
            put(root / split / n)
    lab = root / "jamendo_lab"
    lab.mkdir()
    (lab / "01 - A song.lab").write_text("0 12.5 nosing\n12.5 30.25 sing\n30.25 31 nosing\n")
    (lab / "02 - B song.lab").write_text("0.0 4.0 sing\n")
    (lab / "03 - C.lab").write_text("0 1 nosing\n1 2 sing\n")
    (root / "test" / "04 - D.lab").write_text("0 3 sing\n")    # a .lab beside its song is accepted
    return root


def test_jamendo_segments(tmp_path):
    root = jamendo_tree(tmp_path)
    df = datasets.manifest("jamendo-vd", root)
    check_common(df, root)
    assert list(df["id"]) == ["train/01 - A song.ogg#000", "train/01 - A song.ogg#001", "train/01 - A song.ogg#002",
                              "train/02 - B song.mp3#000", "valid/03 - C.ogg#000", "valid/03 - C.ogg#001",
                              "test/04 - D.ogg#000"]
    assert list(df["label"]) == ["nosing", "sing", "nosing", "sing", "nosing", "sing", "sing"]
    assert list(df["split"]) == ["train"] * 4 + ["valid"] * 2 + ["test"]
    assert list(df["segment_start"]) == [0.0, 12.5, 30.25, 0.0, 0.0, 1.0, 0.0]
    assert list(df["segment_end"]) == [12.5, 30.25, 31.0, 4.0, 1.0, 2.0, 3.0]
    assert list(df["group"].unique()) == ["train/01 - A song.ogg", "train/02 - B song.mp3", "valid/03 - C.ogg",
                                          "test/04 - D.ogg"]


def test_jamendo_missing(tmp_path):
    root = jamendo_tree(tmp_path)
    (root / "jamendo_lab" / "05 - lost.lab").write_text("0 1 sing\n")
    (root / "jamendo_lab" / "03 - C.lab").unlink()
    with pytest.raises(MissingFilesError, match=r"2 of 5 songs .* missing on disk \(first: valid/03 - C.lab "
                                                r"\(annotation\), jamendo_lab/05 - lost.lab \(no audio"):
        datasets.manifest("jamendo-vd", root)
    assert len(datasets.manifest("jamendo-vd", root, allow_missing=True)) == 5
    (root / "train" / "01 - A song.lab").write_text("0 1 instrumental\n")
    with pytest.raises(DatasetError, match="label must be sing or nosing"):
        datasets.manifest("jamendo-vd", root, allow_missing=True)
    with pytest.raises(DatasetError, match=r"no train/, valid/ or test/ folder"):
        datasets.manifest("jamendo-vd", root / "train")


# -- generic: folders and csv --------------------------------------------------------
def test_folders(tmp_path):
    for n in ("cats/a.wav", "cats/deep/b.flac", "dogs/c.mp3", "dogs/notes.txt", "loose.wav"):
        put(tmp_path / n)
    df = datasets.manifest("folders", tmp_path)
    check_common(df, tmp_path)
    assert dict(zip(df["id"], df["label"])) == {"cats/a.wav": "cats", "cats/deep/b.flac": "cats",
                                                "dogs/c.mp3": "dogs"}
    assert df.attrs["warnings"] == ["left out 1 audio files directly in ROOT (no class folder): loose.wav"]


def test_csv_relative_paths_and_columns(tmp_path):
    put(tmp_path / "audio" / "x.wav")
    put(tmp_path / "audio" / "y.flac")
    outside = put(tmp_path.parent / f"{tmp_path.name}_elsewhere" / "z.wav")
    table = write_csv(tmp_path / "lists" / "mine.csv", ["file", "genre", "cv", "artist", "bpm"],
                      [["../audio/x.wav", "rock", "1", "a1", "120"], ["../audio/y.flac", "jazz", "2", "a2", "90"],
                       [str(outside), "rock", "2", "a3", "100"]])
    df = datasets.manifest("csv", table, path="file", label="genre", fold="cv", group="artist")
    assert list(df["id"]) == ["../audio/x.wav", "../audio/y.flac", outside.resolve().as_posix()]
    assert list(df["path"]) == [str((tmp_path / "audio" / "x.wav").resolve()),
                                str((tmp_path / "audio" / "y.flac").resolve()), str(outside.resolve())]
    assert list(df["label"]) == ["rock", "jazz", "rock"]
    assert list(df["fold"]) == [1, 2, 2] and list(df["group"]) == ["a1", "a2", "a3"]
    assert list(df["bpm"]) == ["120", "90", "100"]          # other columns kept
    # ROOT as a folder + csv option; regression targets
    reg = datasets.manifest("csv", tmp_path, csv="lists/mine.csv", path="file", targets="bpm")
    assert reg.attrs["task"] == "regression" and reg["bpm"].tolist() == [120.0, 90.0, 100.0]
    assert reg["id"].tolist()[:2] == ["audio/x.wav", "audio/y.flac"]     # relative to ROOT, the folder
    assert "label" not in reg.columns


def test_csv_default_columns_tags_and_missing(tmp_path):
    put(tmp_path / "a.wav")
    table = write_csv(tmp_path / "m.csv", ["path", "label", "split", "moods"],
                      [["a.wav", "x", "train", "happy|calm"], ["b.wav", "y", "test", "sad"]])
    with pytest.raises(MissingFilesError, match=r"1 of 2 files listed in m.csv missing on disk \(first: b.wav\)"):
        datasets.manifest("csv", table)
    df = datasets.manifest("csv", table, allow_missing=True)
    assert df[["id", "label", "split"]].values.tolist() == [["a.wav", "x", "train"]]
    tags = datasets.manifest("csv", table, allow_missing=True, tags="moods", tags_sep="|")
    assert tags.attrs["task"] == "multilabel" and tags["tags"].tolist() == ["happy;calm"]
    assert tags["orig_label"].tolist() == ["x"]
    with pytest.raises(DatasetError, match="no label column 'genre'"):
        datasets.manifest("csv", table, label="genre")
    with pytest.raises(DatasetError, match="is a folder: give the CSV file as ROOT"):
        datasets.manifest("csv", tmp_path)


# -- write_manifest and the CLI -----------------------------------------------------
def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root():
        pass

    register(app)
    return app


def test_write_manifest_atomic_roundtrip(tmp_path):
    root = us8k_tree(tmp_path / "us")
    out = tmp_path / "out" / "m.csv"
    df = datasets.write_manifest("urbansound8k", root, out)
    back = pd.read_csv(out, dtype={"group": str})
    assert back["id"].tolist() == df["id"].tolist() and back["fold"].tolist() == [1, 10, 5, 5]
    assert [p.name for p in out.parent.iterdir()] == ["m.csv"]      # no temporary left behind
    (root / "metadata" / "UrbanSound8K.csv").unlink()
    put(root / "audio" / "fold1" / "notes.wav")      # without the CSV the names are the labels: refused
    with pytest.raises(DatasetError, match="do not have UrbanSound8K's official names"):
        datasets.write_manifest("urbansound8k", root, out)
    assert pd.read_csv(out)["id"].tolist() == df["id"].tolist()     # a failed run leaves the old file


def test_cli_list_and_manifest(tmp_path):
    app = cli_app()
    res = runner.invoke(app, ["datasets", "list"])
    assert res.exit_code == 0, res.output
    for name in datasets.REGISTRY:
        assert name in res.output
    res = runner.invoke(app, ["datasets", "list", "--markdown"])
    assert res.exit_code == 0 and res.output.count("\n| `") == len(datasets.REGISTRY)

    root = us8k_tree(tmp_path / "us")
    out = tmp_path / "m.csv"
    res = runner.invoke(app, ["datasets", "manifest", "urbansound8k", str(root), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == (f"{out}: urbansound8k, 4 rows, 4 classes, 3 folds (1:1 5:2 10:1), 4 groups")
    assert len(pd.read_csv(out)) == 4

    res = runner.invoke(app, ["datasets", "manifest", "esc50", str(root), "-o", str(out)])
    assert res.exit_code == 2
    assert res.output.startswith("error: no esc50.csv found under") and res.output.count("\n") == 1
    res = runner.invoke(app, ["datasets", "manifest", "nope", str(root), "-o", str(out)])
    assert res.exit_code == 2 and "unknown dataset 'nope'" in res.output
    res = runner.invoke(app, ["datasets", "manifest", "esc50", str(root), "-o", str(out), "-O", "subset"])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output

    (root / "audio" / "fold1" / "7061-6-0-0.wav").unlink()
    res = runner.invoke(app, ["datasets", "manifest", "urbansound8k", str(root), "-o", str(out)])
    assert res.exit_code == 2 and "1 of 4 files" in res.output and "--allow-missing" in res.output
    res = runner.invoke(app, ["datasets", "manifest", "urbansound8k", str(root), "-o", str(out), "--allow-missing"])
    assert res.exit_code == 0 and "warning: left out 1 of 4" in res.output and "3 rows" in res.output


def test_cli_options_reach_the_adapter(tmp_path):
    put(tmp_path / "a.wav")
    table = write_csv(tmp_path / "m.csv", ["audio_path", "genre"], [["a.wav", "x"]])
    out = tmp_path / "o.csv"
    res = runner.invoke(cli_app(), ["datasets", "manifest", "csv", str(table), "-o", str(out),
                                    "-O", "path=audio_path", "-O", "label=genre"])
    assert res.exit_code == 0, res.output
    assert "1 rows, 1 classes, no folds" in res.output
    assert pd.read_csv(out)[["id", "label"]].values.tolist() == [["a.wav", "x"]]


# -- the real copies in ../shared/datasets ----------------------------------------------
def test_real_esc50_fold4_subset():
    root = shared_path("datasets", "esc50-fold4")
    df = datasets.manifest("esc50", root)
    check_common(df, root)
    assert len(df) == 414 and df["label"].nunique() == 50
    assert df["fold"].value_counts().to_dict() == {4: 400, 2: 11, 5: 2, 3: 1}
    fold4 = df[df["fold"] == 4]
    assert fold4["label"].value_counts().tolist() == [8] * 50       # fold 4 complete: 8 clips per class
    assert df["group"].nunique() == 309 and int(df["esc10"].sum()) == 83
    assert df["id"].str.match(r"^audio/\d-\d+-[A-Z]-\d+\.flac$").all()


def test_real_fsdd():
    root = shared_path("datasets", "fsdd")
    df = datasets.manifest("fsdd", root)
    assert len(df) == 3000 and df["group"].nunique() == 6 and df["label"].nunique() == 10
    assert sorted(df["group"].unique()) == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert df.groupby("group")["fold"].unique().map(list).to_dict() == {
        "george": [1], "jackson": [2], "lucas": [3], "nicolas": [4], "theo": [5], "yweweler": [6]}
    assert df["fold"].value_counts().tolist() == [500] * 6
    assert df["split"].value_counts().to_dict() == {"train": 2700, "test": 300}
    assert Path(df["path"].iloc[0]).is_file()


def test_real_philharmonia():
    root = shared_path("datasets", "philharmonia")
    df = datasets.manifest("philharmonia", root)
    check_common(df, root)
    assert len(df) == 900 and df["label"].nunique() == 15
    assert df["label"].value_counts().tolist() == [60] * 15
    assert df["fold"].value_counts().tolist() == [180] * 5
    assert (df.groupby(["label", "fold"]).size() == 12).all()       # 12 per instrument per fold
    assert (df["pitch"] != "").all() and (df["articulation"] != "").all()
