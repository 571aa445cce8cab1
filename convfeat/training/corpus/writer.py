"""Writing a corpus to disk: FLAC clips, manifest.csv and corpus.json, resumably, with workers."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, Union

from ...fileio import atomic_path, write_bytes_atomic
from .render import TAGS, clip_metadata, clip_split, render_clip

GENERATOR_VERSION = 1
MANIFEST_COLUMNS = ("id", "path", "tags", "split", "style", "tempo_bpm", "key", "mode", "meter",
                    "instruments", "percussion", "texture", "reverb", "dynamics")


class CorpusError(ValueError):
    """Bad parameters, or an output directory made with other parameters."""


def _clip_id(i: int) -> str:
    return f"{i:06d}"


def _row(i: int, seed: int, meta: dict) -> dict:
    row = {"id": _clip_id(i), "path": f"audio/{_clip_id(i)}.flac", "tags": meta["tags"],
           "split": clip_split(i, seed)}
    row.update({k: meta[k] for k in MANIFEST_COLUMNS[4:]})
    return row


def _job(args) -> dict:
    """Render one clip to its FLAC (atomically); return its manifest row.  Top-level for spawn."""
    i, seed, duration, sr, audio_dir = args
    import soundfile as sf

    audio, meta = render_clip(i, seed, duration, sr)
    final = Path(audio_dir) / f"{_clip_id(i)}.flac"
    with atomic_path(final) as tmp:
        sf.write(tmp, audio, sr, format="FLAC", subtype="PCM_16")
    return _row(i, seed, meta)


def corpus_params(n: int, seed: int, duration: float, sr: int) -> dict:
    """The contents of ``corpus.json`` for these parameters (with the tag vocabulary)."""
    from ... import __version__

    # "generator" names the generator, not a module path: kept so corpus.json stays unchanged
    return {"generator": "convfeat.corpus", "generator_version": GENERATOR_VERSION,
            "n": int(n), "seed": int(seed), "duration": float(duration), "sr": int(sr),
            "convfeat_version": __version__, "tags": list(TAGS)}


def _check(n, duration, sr, workers):
    if int(n) != n or n < 1:
        raise CorpusError(f"n must be a positive integer, got {n!r}")
    if not (duration > 0) or not math.isfinite(duration):
        raise CorpusError(f"duration must be > 0 seconds, got {duration!r}")
    if int(sr) != sr or not (8000 <= sr <= 48000):
        raise CorpusError(f"sr must be an integer between 8000 and 48000 Hz, got {sr!r}")
    if int(workers) != workers or workers < 1:
        raise CorpusError(f"workers must be >= 1, got {workers!r}")


def synth(out_dir: Union[str, os.PathLike], n: int, seed: int = 0, duration: float = 10.0,
          sr: int = 12000, workers: int = 1,
          progress: Union[None, bool, Callable[[int, int], None]] = None):
    """Render (or resume) a corpus of ``n`` clips in ``out_dir``; return the manifest DataFrame.

    Layout::

        DIR/corpus.json        generator parameters and the tag vocabulary
        DIR/manifest.csv       id, path, tags, split, style, tempo_bpm, key, mode, meter,
                               instruments, percussion, texture, reverb, dynamics
        DIR/audio/000000.flac  mono PCM_16 at ``sr``

    Clips whose FLAC already exists are skipped (their manifest rows are recomputed from the
    score alone, which is cheap).  A non-empty ``out_dir`` must hold a ``corpus.json`` with the
    same parameters, else :class:`CorpusError`.  ``progress``: ``True`` for a rich progress bar
    on stderr, or a callable ``(done, total)``.  ``df.attrs`` holds ``rendered`` and ``skipped``.
    """
    import pandas as pd

    _check(n, duration, sr, workers)
    n, seed, sr, workers, duration = int(n), int(seed), int(sr), int(workers), float(duration)
    out = Path(out_dir)
    params = corpus_params(n, seed, duration, sr)
    cj = out / "corpus.json"
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not cj.is_file():
            raise CorpusError(f"{out} is not empty and has no corpus.json; use an empty or new directory")
        try:
            old = json.loads(cj.read_text())
        except ValueError as e:
            raise CorpusError(f"{cj} is unreadable: {e}") from None
        diff = [f"{k}={old.get(k)!r} (asked {params[k]!r})"
                for k in ("generator_version", "n", "seed", "duration", "sr") if old.get(k) != params[k]]
        if diff:
            raise CorpusError(f"{out} holds a corpus made with other parameters: " + ", ".join(diff))
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for stale in audio_dir.glob(".*.tmp"):
        stale.unlink()
    write_bytes_atomic(cj, (json.dumps(params, indent=2) + "\n").encode())

    todo = [i for i in range(n) if not (audio_dir / f"{_clip_id(i)}.flac").exists()]
    rows: Dict[int, dict] = {}
    for i in sorted(set(range(n)) - set(todo)):
        rows[i] = _row(i, seed, clip_metadata(i, seed, duration))

    bar = None
    if progress is True:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=Console(stderr=True), transient=False)
        task = bar.add_task("render", total=len(todo))
        bar.start()

    def tick(done):
        if bar is not None:
            bar.update(task, completed=done)
        elif callable(progress):
            progress(done, len(todo))

    try:
        args = [(i, seed, duration, sr, str(audio_dir)) for i in todo]
        if workers == 1 or len(todo) <= 1:
            for done, a in enumerate(args, 1):
                rows[a[0]] = _job(a)
                tick(done)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            chunk = max(1, min(8, len(args) // (4 * workers)))
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
                for done, row in enumerate(ex.map(_job, args, chunksize=chunk), 1):
                    rows[int(row["id"])] = row
                    tick(done)
    finally:
        if bar is not None:
            bar.stop()

    df = pd.DataFrame([rows[i] for i in range(n)], columns=list(MANIFEST_COLUMNS))
    with atomic_path(out / "manifest.csv") as tmp:
        df.to_csv(tmp, index=False)
    df.attrs["rendered"] = len(todo)
    df.attrs["skipped"] = n - len(todo)
    return df


def tag_counts(manifest) -> Dict[str, int]:
    """Occurrences of each tag of :data:`TAGS` in a manifest (DataFrame or path to manifest.csv)."""
    import pandas as pd

    if not isinstance(manifest, pd.DataFrame):
        manifest = pd.read_csv(manifest, dtype={"id": str})
    counts = {t: 0 for t in TAGS}
    for s in manifest["tags"].fillna(""):
        for t in str(s).split(";"):
            if t in counts:
                counts[t] += 1
    return counts
