"""Audio in: decoding, mono mix-down and resampling.

Pure functions over NumPy arrays (float32 unless stated).  A mono signal is
``(samples,)``; a multichannel signal is 2-D with channels on the *shorter*
axis, so both librosa's ``(channels, samples)`` and soundfile's
``(samples, channels)`` are accepted.

What a decoder reports is checked before it is used (:func:`check_header`):
a header that claims an implausible sample rate, channel count or length is a
:class:`AudioDecodeError` naming the value, never a number passed on to the
resampler or the feature file.  Decoders read in bounded blocks, so a header
that lies about the length cannot make one read allocate more than a block.
Third-party decoders' own messages on stderr (libmpg123's "Note: Illegal
Audio-MPEG-Header …") are silenced while a file is decoded: the error raised
says what went wrong, in one line naming the file.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from ..constants import RESAMPLER_QUALITIES, RESAMPLER_QUALITY
from ..errors import InputError

__all__ = ["AUDIO_EXTENSIONS", "AudioDecodeError", "MAX_CHANNELS", "SAMPLE_RATE_LIMITS", "all_finite",
           "check_header", "describe_peak", "load", "mixdown", "quiet_stderr", "read_resampled", "resample",
           "signal_peak", "to_mono"]

SAMPLE_RATE_LIMITS = (1, 10_000_000)   # Hz: the sample rates a decoder may plausibly report
MAX_CHANNELS = 1024                    # channels (libsndfile's own limit)
READ_BLOCK_SAMPLES = 1 << 22           # samples (frames x channels) one decoder read may return


class AudioDecodeError(InputError):
    """A file could not be decoded by any available decoder."""


# -- checks -------------------------------------------------------------------------
def check_header(path, sample_rate, channels: int | None = None, frames: int | None = None) -> None:
    """Raise :class:`AudioDecodeError` (naming ``path`` and the value) unless what a decoder
    reports is plausible: a whole sample rate within :data:`SAMPLE_RATE_LIMITS`, 1 to
    :data:`MAX_CHANNELS` channels, a length of at least 0 frames (``None``: not reported)."""
    lo, hi = SAMPLE_RATE_LIMITS
    problems = []
    if not (isinstance(sample_rate, (int, np.integer)) and lo <= int(sample_rate) <= hi):
        problems.append(f"sample rate {sample_rate!r} Hz (expected {lo} Hz to {hi // 1_000_000} MHz)")
    if channels is not None and not (isinstance(channels, (int, np.integer)) and 1 <= int(channels) <= MAX_CHANNELS):
        problems.append(f"{channels!r} channels (expected 1 to {MAX_CHANNELS})")
    if frames is not None and not (isinstance(frames, (int, np.integer)) and int(frames) >= 0):
        problems.append(f"length {frames!r} frames (expected 0 or more)")
    if problems:
        raise AudioDecodeError(f"{path}: implausible header: {'; '.join(problems)}")


def all_finite(y: np.ndarray) -> bool:
    """True when no sample of ``y`` is NaN or infinite, without a full-size temporary.

    A NaN or an infinity makes any sum over the samples non-finite, so a finite
    sum proves every sample finite: for contiguous float32 / float64 input the sum
    of squares (one BLAS dot product, ~10x faster than the float64 sum of float32
    samples), else the float64 sum.  Only when that sum is not finite (a bad
    sample, or finite samples so large that the sum overflows) are the samples
    checked one by one.
    """
    y = np.asarray(y)
    if y.dtype.kind in "biu":
        return True
    if y.dtype.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            if y.dtype in (np.float32, np.float64) and y.flags.c_contiguous:
                flat = y.reshape(-1)          # a view
                if np.isfinite(np.dot(flat, flat)):
                    return True
            elif np.isfinite(np.sum(y, dtype=np.float64)):
                return True
    return bool(np.all(np.isfinite(y)))


def signal_peak(y: np.ndarray) -> float:
    """The largest absolute sample of ``y`` (0 for an empty signal), without a temporary."""
    y = np.asarray(y)
    if y.size == 0:
        return 0.0
    return float(max(np.max(y), -np.min(y)))


def describe_peak(peak: float) -> str:
    """``"input peak 1e30"``: a sample peak for a message (3 significant digits)."""
    text = f"{peak:.3g}".replace("e+", "e")
    return f"input peak {text}" + (", far outside audio's usual -1..1" if abs(peak) > 1e3 else "")


@contextlib.contextmanager
def quiet_stderr():
    """Send what C libraries write to file descriptor 2 to /dev/null for the block.

    Decoders (libmpg123 inside libsndfile, audioread's backends) print notes of
    their own while probing a file they cannot read; the error convfeat raises
    already says what went wrong.  Python's ``sys.stderr`` is flushed first and
    restored after; nothing is silenced when fd 2 cannot be duplicated.
    """
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: empty file (0 bytes)")


def _too_short(path, frames: int, sr: int, sr_out: int) -> AudioDecodeError:
    s = "" if frames == 1 else "s"
    return AudioDecodeError(f"{path}: too short: {frames} sample{s} at {sr} Hz give{'s' if frames == 1 else ''} "
                            f"no sample at {sr_out / 1000:g} kHz")


# -- mono and resampling ---------------------------------------------------------------
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
    short axis is several times slower for the same result); when that sum
    overflows float32 (finite samples near its largest value) the average is
    taken in float64 instead, so finite audio always mixes to finite audio.
    """
    if frames.shape[1] == 1:
        return np.array(frames[:, 0], dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.add(frames[:, 0], frames[:, 1], dtype=np.float32)   # one pass for the first two
        for c in range(2, frames.shape[1]):
            out += frames[:, c]
        out *= np.float32(1.0 / frames.shape[1])
    if not all_finite(out) and all_finite(frames):
        out = frames.mean(axis=1, dtype=np.float64).astype(np.float32)
    return out


def resample(y: np.ndarray, sr_in: int, sr_out: int, quality: str = RESAMPLER_QUALITY) -> np.ndarray:
    """Resample mono ``y`` from ``sr_in`` to ``sr_out`` Hz with soxr.

    ``quality``: a soxr preset of :data:`~convfeat.constants.RESAMPLER_QUALITIES`; every
    decode path uses the default ``"HQ"`` (``bench/extract.py --resampler`` measures the
    others' cost and effect on the features)."""
    if sr_in <= 0 or sr_out <= 0:
        raise InputError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if quality not in RESAMPLER_QUALITIES:
        raise InputError(f"resampler quality must be one of {RESAMPLER_QUALITIES}, got {quality!r}")
    y = np.asarray(y, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return y
    import soxr

    return soxr.resample(y, int(sr_in), int(sr_out), quality=quality).astype(np.float32, copy=False)


# -- decoding ---------------------------------------------------------------------------
def _open(path: Path):
    """``soundfile.SoundFile(path)``, or ``(None, why libsndfile cannot read it)``."""
    import soundfile as sf

    try:
        return sf.SoundFile(str(path)), ""
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        return None, _sf_reason(exc)


def _sf_reason(exc: Exception) -> str:
    """libsndfile's complaint without the misleading parts (a file that exists and is a
    regular file is reported as "does not exist … possibly a pipe?" when no format
    matches)."""
    text = str(exc)
    if text.startswith("Error opening"):
        text = text.split(": ", 1)[-1]
    if "possibly a pipe" in text or "does not exist" in text:
        return "no format it knows"
    return text.strip().rstrip(".") or type(exc).__name__


def _fallback_reason(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "NoBackendError":
        import shutil

        return "no backend could read it" + ("" if shutil.which("ffmpeg") else " (ffmpeg is not installed)")
    return f"{name}{': ' + str(exc) if str(exc) else ''}"


def _fallback(path: Path, first: str) -> tuple[np.ndarray, int]:
    """librosa's audioread fallback (ffmpeg, when installed) → (mono float32, sample rate);
    ``first`` is why libsndfile could not read the file.  Call inside :func:`quiet_stderr`."""
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=True)
    except Exception as exc:  # audioread raises several unrelated types
        raise AudioDecodeError(f"{path}: not an audio file librosa/soundfile can decode "
                               f"({path.stat().st_size} bytes; libsndfile: {first}; "
                               f"fallback: {_fallback_reason(exc)})") from None
    check_header(path, sr)
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        raise AudioDecodeError(f"{path}: empty audio (0 samples)")
    return y, int(sr)


def _read_mono(snd, want: int, path) -> np.ndarray:
    """Up to ``want`` frames of an open ``SoundFile`` mixed to mono, read in blocks of at most
    :data:`READ_BLOCK_SAMPLES` samples (a header's frame count is never allocated at once)."""
    block = max(1, READ_BLOCK_SAMPLES // snd.channels)
    parts, left = [], want
    while left > 0:
        y = snd.read(min(block, left), dtype="float32", always_2d=True)
        if y.shape[0] == 0:
            break
        parts.append(_checked(mixdown(y), path))
        left -= y.shape[0]
    if not parts:
        return np.zeros(0, np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def load(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file → (mono float32 signal, native sample rate).

    libsndfile (via soundfile) first: wav, flac, ogg, mp3, aiff, au…; then
    librosa's audioread fallback (ffmpeg, when installed) for anything else.
    Raises :class:`AudioDecodeError` (missing, empty or undecodable file, an
    implausible header, no samples, non-finite samples).
    """
    path = Path(path)
    _check_file(path)
    with quiet_stderr():
        snd, why = _open(path)
        if snd is None:
            return _fallback(path, why)
        with snd:
            sr, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
            check_header(path, sr, channels, frames)
            y = _read_mono(snd, frames, path)
    if y.size == 0:
        raise AudioDecodeError(f"{path}: empty audio (0 samples)")
    return y, sr


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
    Raises :class:`AudioDecodeError` (missing, empty or undecodable file, an
    implausible header, no samples or too few to give one at ``sr_out``,
    non-finite samples).
    """
    path = Path(path)
    _check_file(path)
    with quiet_stderr():
        snd, why = _open(path)
        if snd is None:
            y, sr = _fallback(path, why)
            y = y[int(offset * sr): None if duration is None else int(offset * sr) + int(round(duration * sr))]
            info = {"duration": y.size / sr, "source_sr": sr, "channels": 0}
            if y.size == 0:
                raise AudioDecodeError(f"{path}: empty audio (0 samples in the segment)")
            if max_seconds is not None:
                y = y[: int(np.ceil(max_seconds * sr)) + sr]
            out = _resampled_checked(_checked(y, path), sr, sr_out, path)
            return out, info
        with snd:
            return _read_open(snd, path, sr_out, max_seconds, block_seconds, offset, duration)


def _read_open(snd, path: Path, sr_out: int, max_seconds, block_seconds, offset, duration):
    """:func:`read_resampled` on an open ``SoundFile``."""
    sr, channels, frames = int(snd.samplerate), int(snd.channels), int(snd.frames)
    check_header(path, sr, channels, frames)
    segment = bool(offset) or duration is not None
    if segment:
        first = min(frames, max(0, int(round(offset * sr))))
        last = frames if duration is None else min(frames, first + int(round(duration * sr)))
        if first:
            snd.seek(first)
        frames = last - first
    info = {"duration": frames / sr, "source_sr": sr, "channels": channels}
    if frames <= 0:
        raise AudioDecodeError(f"{path}: empty audio (0 samples{' in the segment' if segment else ''})")
    want = frames if max_seconds is None else min(frames, int(np.ceil(max_seconds * sr)) + sr)
    if max_seconds is not None or want <= block_seconds * sr * 4:
        mono = _read_mono(snd, want, path)
        if mono.size == 0:
            raise AudioDecodeError(f"{path}: empty audio (0 samples)")
        return _resampled_checked(mono, sr, sr_out, path), info
    import soxr

    stream = soxr.ResampleStream(sr, sr_out, 1, dtype="float32", quality=RESAMPLER_QUALITY) if sr != sr_out else None
    # The output goes into one buffer sized from the header (pages never written cost no
    # memory; a header claiming more than 2**27 output samples is not trusted that far).
    out = np.empty(min(int(np.ceil(frames * sr_out / sr)) + 64, 1 << 27), np.float32)
    n, read = 0, 0
    block = max(1, min(int(block_seconds * sr), READ_BLOCK_SAMPLES // channels))
    left = frames
    while True:
        y = snd.read(min(block, left), dtype="float32", always_2d=True)
        left -= y.shape[0]
        read += y.shape[0]
        last = left <= 0 or y.shape[0] == 0
        mono = _checked(mixdown(y), path)
        chunk = stream.resample_chunk(mono, last=last) if stream else mono
        if not all_finite(chunk):
            raise _overflow(path, sr, sr_out, mono)
        if n + chunk.size > out.size:
            out = np.concatenate([out[:n], np.empty(max(chunk.size, out.size // 2), np.float32)])
        out[n:n + chunk.size] = chunk
        n += chunk.size
        if last:
            break
    if n == 0:
        raise _too_short(path, read, sr, sr_out) if read else AudioDecodeError(f"{path}: empty audio (0 samples)")
    return out[:n], info


def _resampled_checked(mono: np.ndarray, sr: int, sr_out: int, path) -> np.ndarray:
    out = resample(mono, sr, sr_out)
    if out.size == 0:
        raise _too_short(path, mono.size, sr, sr_out)
    if not all_finite(out):
        raise _overflow(path, sr, sr_out, mono)
    return out


def _overflow(path, sr: int, sr_out: int, mono: np.ndarray) -> AudioDecodeError:
    return AudioDecodeError(f"{path}: resampling {sr} Hz -> {sr_out} Hz gave non-finite values "
                            f"(float32 overflow; {describe_peak(signal_peak(mono))})")


def _checked(y: np.ndarray, path) -> np.ndarray:
    if not all_finite(y):
        raise AudioDecodeError(f"{path}: non-finite samples (NaN or Inf) in the audio")
    return y
