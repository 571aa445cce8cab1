"""Audio in: decoding, mono mix-down and resampling.

Pure functions over NumPy arrays (float32 unless stated).  A mono signal is
``(samples,)``; a multichannel signal is 2-D with channels on the *shorter*
axis, so both librosa's ``(channels, samples)`` and soundfile's
``(samples, channels)`` are accepted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ..errors import InputError

class AudioDecodeError(InputError):
    """A file could not be decoded by any available decoder."""


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average the channels of ``y`` → ``(samples,)`` float32."""
    y = np.asarray(y)
    if y.ndim == 1:
        return y.astype(np.float32, copy=False)
    if y.ndim != 2:
        raise InputError(f"audio must be 1-D or 2-D, got shape {y.shape}")
    axis = 0 if y.shape[0] <= y.shape[1] else 1
    return y.mean(axis=axis, dtype=np.float64).astype(np.float32)


def mixdown(frames: np.ndarray) -> np.ndarray:
    """``(samples, channels)`` float32 → ``(samples,)``: the channel average.

    Channels are summed one at a time in float32 (a strided reduction over a
    short axis is several times slower for the same result).
    """
    out = np.array(frames[:, 0], dtype=np.float32)
    for c in range(1, frames.shape[1]):
        out += frames[:, c]
    if frames.shape[1] > 1:
        out *= np.float32(1.0 / frames.shape[1])
    return out


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono ``y`` from ``sr_in`` to ``sr_out`` Hz (soxr, high quality)."""
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    y = np.asarray(y, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return y
    import soxr

    return soxr.resample(y, int(sr_in), int(sr_out), quality="HQ").astype(np.float32, copy=False)


def load(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file → (mono float32 signal, native sample rate).

    libsndfile (via soundfile) first: wav, flac, ogg, mp3, aiff, au…; then
    librosa's audioread fallback (ffmpeg, when installed) for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    import soundfile as sf

    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
        return mixdown(y), int(sr)
    except (sf.LibsndfileError, RuntimeError, TypeError) as first:
        reason = str(first)
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=True)
        return np.asarray(y, dtype=np.float32), int(sr)
    except Exception as exc:  # audioread raises several unrelated types
        raise AudioDecodeError(f"{path}: cannot decode ({reason}; fallback: {type(exc).__name__}"
                               f"{': ' + str(exc) if str(exc) else ''})") from None


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au",
                    ".snd", ".caf", ".w64", ".m4a", ".aac", ".wma", ".mp4", ".webm", ".mka")


def read_resampled(path: str | Path, sr_out: int, max_seconds: float | None = None,
                   block_seconds: float = 30.0, offset: float = 0.0,
                   duration: float | None = None) -> tuple[np.ndarray, dict]:
    """Decode ``path`` → (mono float32 signal at ``sr_out``, info dict).

    Streams through libsndfile in blocks (mix-down and soxr resampling per
    block), so memory holds the 12-kHz result, never the whole decoded source.
    With ``max_seconds`` only that much (plus one second of resampler context)
    is read, and the output equals ``resample(load(path)[0], …)`` on that span.
    ``offset`` / ``duration`` (seconds) select a segment of the file (e.g. an
    annotated excerpt); the segment is then treated as the whole signal.
    Formats libsndfile cannot read go through :func:`load` (ffmpeg fallback).
    info: ``duration`` (s), ``source_sr``, ``channels``.
    Raises :class:`AudioDecodeError` (undecodable, empty, non-finite samples).
    """
    import soundfile as sf

    path = Path(path)
    try:
        snd = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        y, sr = load(path)  # fallback decoder; raises AudioDecodeError itself
        y = y[int(offset * sr): None if duration is None else int(offset * sr) + int(round(duration * sr))]
        info = {"duration": y.size / sr, "source_sr": sr, "channels": 0}
        if max_seconds is not None:
            y = y[: int(np.ceil(max_seconds * sr)) + sr]
        return _checked(resample(y, sr, sr_out), path), info
    with snd:
        sr, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
        if offset or duration is not None:
            first = min(frames, max(0, int(round(offset * sr))))
            last = frames if duration is None else min(frames, first + int(round(duration * sr)))
            if first:
                snd.seek(first)
            frames = last - first
        info = {"duration": frames / sr if sr else float("nan"), "source_sr": sr, "channels": channels}
        if frames <= 0:
            raise AudioDecodeError(f"{path}: empty audio (0 samples"
                                   f"{' in the segment' if offset or duration is not None else ''})")
        want = frames if max_seconds is None else min(frames, int(np.ceil(max_seconds * sr)) + sr)
        if max_seconds is not None or want <= block_seconds * sr * 4:
            mono = mixdown(snd.read(want, dtype="float32", always_2d=True))
            return _checked(resample(_checked(mono, path), sr, sr_out), path), info
        import soxr

        stream = soxr.ResampleStream(sr, sr_out, 1, dtype="float32", quality="HQ") if sr != sr_out else None
        out, block = [], int(block_seconds * sr)
        left = frames
        while True:
            y = snd.read(min(block, left), dtype="float32", always_2d=True)
            left -= y.shape[0]
            last = left <= 0 or y.shape[0] == 0
            mono = _checked(mixdown(y), path)
            out.append(stream.resample_chunk(mono, last=last) if stream else mono)
            if last:
                break
    return np.concatenate(out), info


def _checked(y: np.ndarray, path) -> np.ndarray:
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(f"{path}: non-finite samples (NaN or Inf) in the audio")
    return y
