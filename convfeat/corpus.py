"""A regenerable, fully offline multi-label tagging corpus of synthetic music.

Every clip is a pure function of ``(seed, index)``: :func:`render_clip` draws all its random
choices from ``numpy.random.default_rng([seed, index])``, so a corpus is identical whatever the
worker count or order and can be regenerated bit-for-bit.  Rendering is plain NumPy/SciPy:
additive / wavetable synthesis per instrument family, Karplus-Strong for plucked strings,
noise and sine sweeps for drums, an exponentially decaying noise reverb.

Layout written by :func:`synth`::

    DIR/corpus.json        generator parameters and the tag vocabulary
    DIR/manifest.csv       id, path, tags, split, style, tempo_bpm, key, mode, meter,
                           instruments, percussion, texture, reverb, dynamics
    DIR/audio/000000.flac  mono PCM_16 at ``sr``

Tags (the fixed vocabulary :data:`TAGS`) are derived from what was rendered:

* instrument families present (parts with at least one note inside the clip), ``drums``;
* tempo band: ``slow`` < 90 BPM <= ``medium`` <= 130 < ``fast``;
* ``major`` / ``minor``;
* texture: ``monophonic`` = one pitched line and never two notes at once; ``polyphonic`` = at
  least two independent melodic lines (melody + counter-melody, canon voices); ``homophonic`` =
  everything else (block chords, melody over chords / bass);
* the style (``chorale``, ``waltz``, ``march``, ``pop``, ``ambient``, ``etude``, ``solo``,
  ``canon``);
* ``reverb`` / ``dry``; ``loud`` / ``soft`` (velocity, hence timbre, and output peak level:
  loud peaks at 0.6-0.9, soft at 0.3-0.55 full scale).
"""
from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from scipy import signal

from .fileio import atomic_path

GENERATOR_VERSION = 1

FAMILIES: Tuple[str, ...] = ("piano", "organ", "strings", "brass", "woodwind", "guitar", "bass",
                             "synth", "mallet", "voice")
STYLES: Tuple[str, ...] = ("chorale", "waltz", "march", "pop", "ambient", "etude", "solo", "canon")
TAGS: Tuple[str, ...] = (FAMILIES + ("drums", "slow", "medium", "fast", "major", "minor",
                                     "monophonic", "homophonic", "polyphonic")
                         + STYLES + ("reverb", "dry", "loud", "soft"))

KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MANIFEST_COLUMNS = ("id", "path", "tags", "split", "style", "tempo_bpm", "key", "mode", "meter",
                    "instruments", "percussion", "texture", "reverb", "dynamics")

# playable MIDI range per family (notes are folded into it by octaves)
RANGES = {"piano": (33, 96), "organ": (36, 91), "strings": (36, 96), "brass": (40, 82),
          "woodwind": (52, 96), "guitar": (40, 84), "bass": (28, 55), "synth": (36, 96),
          "mallet": (53, 96), "voice": (45, 79)}
N_VARIANTS = {"piano": 2, "organ": 3, "strings": 2, "brass": 2, "woodwind": 2, "guitar": 2,
              "bass": 2, "synth": 3, "mallet": 2, "voice": 3}
TEMPI = {"chorale": (60, 110), "waltz": (84, 180), "march": (96, 136), "pop": (80, 150),
         "ambient": (60, 88), "etude": (72, 176), "solo": (60, 168), "canon": (66, 150)}
MELODIC = tuple(f for f in FAMILIES if f != "bass")
ETUDE_FAMILIES = ("piano", "guitar", "mallet", "strings", "woodwind", "synth", "organ")
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {
    "major": ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3), (1, 4, 0, 0), (0, 3, 0, 4), (0, 5, 1, 4)),
    "minor": ((0, 3, 4, 0), (0, 5, 2, 6), (0, 3, 6, 2), (0, 6, 5, 4), (0, 3, 4, 4)),
}


class CorpusError(ValueError):
    """Bad parameters, or an output directory made with other parameters."""


def tempo_band(bpm: float) -> str:
    return "slow" if bpm < 90 else ("fast" if bpm > 130 else "medium")


def midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12.0)


# --------------------------------------------------------------------------------------------
# note synthesis
# --------------------------------------------------------------------------------------------
_T = 2048  # wavetable length


@lru_cache(maxsize=4096)
def _table(amps: Tuple[float, ...]) -> np.ndarray:
    """One period of sum_k amps[k-1] * sin(2 pi k x), plus a guard sample."""
    spec = np.zeros(_T // 2 + 1, dtype=np.complex128)
    k = min(len(amps), _T // 2 - 1)
    spec[1:k + 1] = -1j * np.asarray(amps[:k]) * (_T / 2)
    tab = np.fft.irfft(spec, _T)
    return np.append(tab, tab[0]).astype(np.float32)


def _osc(tab: np.ndarray, phase: np.ndarray) -> np.ndarray:
    x = (phase % 1.0) * _T
    i = x.astype(np.int32)
    w = (x - i).astype(np.float32)
    a = tab[i]
    return a + w * (tab[i + 1] - a)


def _nh(f: float, sr: int, margin: float = 1.0, cap: int = 200) -> int:
    """Number of harmonics of ``f`` that stay below 0.45 sr (so well under Nyquist)."""
    return int(max(1, min(cap, math.floor(0.45 * sr / (f * margin)))))


def _phase(f: float, n: int, sr: int, rng, depth: float = 0.0, rate: float = 5.0,
           delay: float = 0.0) -> np.ndarray:
    """Phase in cycles (float64), optionally with vibrato fading in after ``delay`` s."""
    if depth <= 0:
        return f * np.arange(n) / sr + rng.random()
    t = np.arange(n) / sr
    ramp = np.clip((t - delay) / 0.3, 0.0, 1.0) if delay > 0 else 1.0
    inst = f * (1.0 + depth * ramp * np.sin(2 * np.pi * rate * t + 2 * np.pi * rng.random()))
    return np.cumsum(inst) / sr + rng.random()


def _ramps(n: int, sr: int, attack: float, hold: float, release: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr
    env = np.minimum(t / max(attack, 1e-4), 1.0)
    return env * np.clip(1.0 - (t - hold) / max(release, 1e-4), 0.0, 1.0)


def _piano(f, dur, sr, vel, rng, var):
    hold = min(dur, 4.0)
    n = int((hold + 0.12) * sr)
    t = np.arange(n, dtype=np.float32) / sr
    B = 1.5e-4 if var == 0 else 4e-4
    k = np.arange(1, 17, dtype=np.float64)
    fk = k * f * np.sqrt(1 + B * k * k)
    k, fk = k[fk < 0.45 * sr], fk[fk < 0.45 * sr]
    amp = k ** -(0.8 + 1.6 * (1.0 - vel)) * (0.25 + np.abs(np.sin(np.pi * k / 7.3)))
    rate = (0.8 + 0.45 * k) * (f / 262.0) ** 0.5
    ph = 2 * np.pi * rng.random(len(k))
    x = np.zeros(n, dtype=np.float32)
    for a, r, ff, p in zip(amp, rate, fk, ph):
        x += np.float32(a) * np.exp(np.float32(-r) * t) * np.sin(
            (2 * np.pi * ff * t.astype(np.float64) + p)).astype(np.float32)
    return x * _ramps(n, sr, 0.003, hold, 0.12)


def _organ(f, dur, sr, vel, rng, var):
    n = int((dur + 0.04) * sr)
    regs = ({1: 1.0, 2: 0.6, 3: 0.45, 4: 0.35, 6: 0.2, 8: 0.15},
            {1: 1.0, 2: 0.8, 4: 0.6, 8: 0.45},
            {1: 1.0, 3: 0.7, 5: 0.4, 6: 0.3})[var]
    K = _nh(f, sr)
    amps = tuple(regs.get(k, 0.0) for k in range(1, min(K, 8) + 1))
    x = _osc(_table(amps), _phase(f, n, sr, rng))
    if var == 1:  # slow tremolo
        x *= (1.0 + 0.15 * np.sin(2 * np.pi * 6.0 * np.arange(n) / sr)).astype(np.float32)
    return x * _ramps(n, sr, 0.008, dur, 0.03)


def _strings(f, dur, sr, vel, rng, var):
    rel = 0.18
    n = int((dur + rel) * sr)
    K = _nh(f, sr, 1.01)
    tilt = 1.0 if var == 0 else 1.3
    amps = tuple((1.0 / k ** tilt) * (1.0 + 0.5 * math.exp(-((k * f - 900.0) / 400.0) ** 2))
                 for k in range(1, K + 1))
    tab = _table(amps)
    x = np.zeros(n, dtype=np.float32)
    for det in (-0.0025, 0.0025):
        x += _osc(tab, _phase(f * (1 + det), n, sr, rng, depth=0.004, rate=5.5, delay=0.15))
    attack = 0.06 + 0.15 * (1.0 - vel)
    return 0.6 * x * _ramps(n, sr, attack, dur, rel)


def _brass(f, dur, sr, vel, rng, var):
    rel = 0.08
    n = int((dur + rel) * sr)
    K = _nh(f, sr, 1.005)
    dark = _table(tuple(k ** -3.0 for k in range(1, K + 1)))
    bright = _table(tuple(k ** -0.7 * (1.3 if 3 <= k <= 8 else 1.0) for k in range(1, K + 1)))
    ph = _phase(f, n, sr, rng, depth=0.002, rate=5.0, delay=0.3)
    a = 0.05 + 0.06 * (1.0 - vel)
    t = np.arange(n, dtype=np.float32) / sr
    swell = np.minimum(t / a, 1.0) ** 1.5 * (1.0 + 0.15 * np.exp(-np.maximum(t - a, 0) / 0.08))
    env = (swell * np.clip(1.0 - (t - dur) / rel, 0, 1)).astype(np.float32)
    mix = np.clip(env * (0.45 + 0.55 * vel) * (1.0 if var == 0 else 0.8), 0, 1) ** 1.5
    return env * ((1 - mix) * _osc(dark, ph) + mix * _osc(bright, ph))


def _woodwind(f, dur, sr, vel, rng, var):
    rel = 0.06
    n = int((dur + rel) * sr)
    K = _nh(f, sr, 1.005)
    if var == 0:  # flute: nearly sinusoidal + breath noise
        amps = tuple(a for a in (1.0, 0.22, 0.08, 0.03)[:K])
        x = _osc(_table(amps), _phase(f, n, sr, rng, depth=0.003, rate=4.5, delay=0.2))
        b, a = signal.butter(2, [min(0.9 * f, 0.3 * sr) / (sr / 2), min(4.0 * f, 0.45 * sr) / (sr / 2)],
                             btype="band")
        x = x + 0.12 * signal.lfilter(b, a, rng.standard_normal(n)).astype(np.float32)
    else:  # clarinet: odd harmonics
        amps = tuple((1.0 / k if k % 2 else 0.02 / k) for k in range(1, min(K, 15) + 1))
        x = _osc(_table(amps), _phase(f, n, sr, rng))
    return x * _ramps(n, sr, 0.04, dur, rel)


def _karplus(f, n, sr, rng, smooth: int, g: float) -> np.ndarray:
    """Karplus-Strong at the rate N*f (N = integer period), resampled to ``sr``."""
    N = max(2, int(sr / f - 0.5))  # the two-point average adds half a sample of delay
    sr2 = (N + 0.5) * f
    m = int(n * sr2 / sr) + 2
    exc = rng.uniform(-1, 1, N)
    for _ in range(smooth):
        exc = 0.5 * (exc + np.roll(exc, 1))
    exc -= exc.mean()
    if N < 64:
        a = np.zeros(N + 2)
        a[0], a[N], a[N + 1] = 1.0, -0.5 * g, -0.5 * g
        x = np.zeros(m)
        x[:N] = exc[:m]
        y = signal.lfilter([1.0], a, x)
    else:
        y = np.zeros(m + N + 1)
        y[N + 1:2 * N + 1] = exc
        pos = 2 * N + 1
        while pos < len(y):
            e = min(pos + N, len(y))
            L = e - pos
            y[pos:e] = 0.5 * g * (y[pos - N:pos - N + L] + y[pos - N - 1:pos - N - 1 + L])
            pos = e
        y = y[N + 1:]
    return np.interp(np.arange(n) * (sr2 / sr), np.arange(len(y)), y).astype(np.float32)


def _guitar(f, dur, sr, vel, rng, var):
    hold = min(dur, 3.0)
    n = int((hold + 0.05) * sr)
    x = _karplus(f, n, sr, rng, smooth=(1 if var == 1 else 3) + int(2 * (1 - vel)), g=0.996)
    return x * _ramps(n, sr, 0.001, hold, 0.05)


def _bass(f, dur, sr, vel, rng, var):
    if var == 0:  # plucked
        hold = min(dur, 3.0)
        n = int((hold + 0.05) * sr)
        x = _karplus(f, n, sr, rng, smooth=6, g=0.998)
        return 6.0 * x * _ramps(n, sr, 0.002, hold, 0.05)
    n = int((dur + 0.05) * sr)  # synth bass: saw through a decaying low-pass (crossfade)
    K = _nh(f, sr)
    bright = _table(tuple(1.0 / k for k in range(1, min(K, 24) + 1)))
    dark = _table(tuple((1.0, 0.3, 0.08)[:K]))
    ph = _phase(f, n, sr, rng)
    t = np.arange(n, dtype=np.float32) / sr
    mix = (0.8 * vel * np.exp(-t / 0.12)).astype(np.float32)
    return (mix * _osc(bright, ph) + (1 - mix) * _osc(dark, ph)) * _ramps(n, sr, 0.004, dur, 0.05)


def _synth(f, dur, sr, vel, rng, var):
    rel = 0.3 if var == 0 else 0.08
    n = int((dur + rel) * sr)
    K = _nh(f, sr, 1.01)
    if var == 1:  # square lead
        bright = _table(tuple((1.0 / k if k % 2 else 0.0) for k in range(1, K + 1)))
    else:  # saw
        bright = _table(tuple(1.0 / k for k in range(1, K + 1)))
    dark = _table(tuple(k ** -2.5 for k in range(1, K + 1)))
    t = np.arange(n, dtype=np.float32) / sr
    if var == 0:  # pad: filter opens slowly
        mix = np.clip(t / 0.8, 0, 1) * (0.4 + 0.4 * vel)
        attack = 0.25
    else:  # lead: filter envelope decays
        mix = 0.3 + 0.6 * vel * np.exp(-t / 0.25)
        attack = 0.01
    mix = mix.astype(np.float32)
    x = np.zeros(n, dtype=np.float32)
    for det in ((-0.004, 0.004) if var != 1 else (0.0,)):
        ph = _phase(f * (1 + det), n, sr, rng, depth=0.002 if var else 0.0, rate=5.5, delay=0.2)
        x += mix * _osc(bright, ph) + (1 - mix) * _osc(dark, ph)
    return 0.7 * x * _ramps(n, sr, attack, dur, rel)


def _mallet(f, dur, sr, vel, rng, var):
    n = int(min(max(dur, 0.6), 2.5) * sr)
    t = np.arange(n, dtype=np.float32) / sr
    if var == 0:  # marimba-like bar
        ratios, amps, rates = (1.0, 3.99, 9.86), (1.0, 0.4 * vel, 0.15 * vel), (3.0, 12.0, 30.0)
    else:  # vibraphone / bell-like free bar
        ratios, amps, rates = (1.0, 2.76, 5.40, 8.93), (1.0, 0.55, 0.35 * vel, 0.25 * vel), \
            (1.2, 3.5, 7.0, 12.0)
    x = np.zeros(n, dtype=np.float32)
    for r, a, d in zip(ratios, amps, rates):
        if r * f < 0.45 * sr:
            x += np.float32(a) * np.exp(np.float32(-d) * t) * np.sin(
                2 * np.pi * r * f * t.astype(np.float64) + 2 * np.pi * rng.random()).astype(np.float32)
    return x * _ramps(n, sr, 0.002, n / sr - 0.03, 0.03)


_VOWELS = (((800, 80, 1.0), (1150, 90, 0.5), (2900, 120, 0.25)),   # "aah"
           ((500, 80, 1.0), (800, 80, 0.6), (2830, 120, 0.15)),    # "oh"
           ((325, 60, 1.0), (700, 70, 0.35), (2530, 120, 0.1)))    # "ooh"


def _voice(f, dur, sr, vel, rng, var):
    rel = 0.15
    n = int((dur + rel) * sr)
    K = _nh(f, sr, 1.01)
    amps = []
    for k in range(1, K + 1):
        g = sum(w / (1.0 + ((k * f - F) / B) ** 2) for F, B, w in _VOWELS[var])
        amps.append(k ** -1.2 * (0.05 + g))
    tab = _table(tuple(round(a, 6) for a in amps))
    x = np.zeros(n, dtype=np.float32)
    for det in (-0.004, 0.0, 0.005):
        x += _osc(tab, _phase(f * (1 + det), n, sr, rng, depth=0.006, rate=5.0 + rng.random(),
                              delay=0.2))
    return 0.5 * x * _ramps(n, sr, 0.1, dur, rel)


_NOTE_FUNCS = {"piano": _piano, "organ": _organ, "strings": _strings, "brass": _brass,
               "woodwind": _woodwind, "guitar": _guitar, "bass": _bass, "synth": _synth,
               "mallet": _mallet, "voice": _voice}
# rough loudness matching between families (RMS of a 1 s note ~0.3)
_LEVEL = {"piano": 0.8, "organ": 0.3, "strings": 0.4, "brass": 0.3, "woodwind": 0.4, "guitar": 2.5,
          "bass": 0.4, "synth": 0.45, "mallet": 0.8, "voice": 1.5}


def _note(family, f, dur, sr, vel, rng, variant):
    return np.float32(_LEVEL[family]) * _NOTE_FUNCS[family](f, dur, sr, vel, rng, variant)


def render_note(family: str, freq: float, duration: float, sr: int = 12000, velocity: float = 0.8,
                seed: int = 0, variant: int = 0, rng=None) -> np.ndarray:
    """One note of ``family`` at ``freq`` Hz held ``duration`` s (plus its release), float32.

    All partials stay below 0.45 ``sr``.  ``variant`` picks a sub-timbre (e.g. woodwind 0 =
    flute, 1 = clarinet); ``rng`` (a numpy Generator) overrides ``seed``.
    """
    if family not in _NOTE_FUNCS:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng(seed) if rng is None else rng
    variant = int(variant) % N_VARIANTS[family]
    return _note(family, float(freq), float(duration), int(sr), float(velocity), rng, variant)


def _drum_kit(sr: int, rng) -> Dict[str, np.ndarray]:
    def t_of(sec):
        return np.arange(int(sec * sr)) / sr

    t = t_of(0.45)
    f0, f1 = rng.uniform(45, 60), rng.uniform(110, 180)
    ph = 2 * np.pi * np.cumsum(f0 + (f1 - f0) * np.exp(-t / 0.035)) / sr
    kick = np.sin(ph) * np.exp(-t / rng.uniform(0.15, 0.3))
    t = t_of(0.3)
    b, a = signal.butter(2, [1000 / (sr / 2), min(5000, 0.45 * sr) / (sr / 2)], btype="band")
    snare = (0.8 * signal.lfilter(b, a, rng.standard_normal(len(t))) * np.exp(-t / rng.uniform(0.06, 0.12))
             + 0.5 * np.sin(2 * np.pi * rng.uniform(170, 220) * t) * np.exp(-t / 0.04))
    b, a = signal.butter(2, min(3500, 0.3 * sr) / (sr / 2), btype="high")
    t = t_of(0.35)
    noise = signal.lfilter(b, a, rng.standard_normal(len(t)))
    hat = 0.5 * noise[:int(0.08 * sr)] * np.exp(-t[:int(0.08 * sr)] / 0.02)
    ohat = 0.4 * noise * np.exp(-t / 0.12)
    return {k: v.astype(np.float32) for k, v in
            {"kick": kick, "snare": snare, "hat": hat, "ohat": ohat}.items()}


# --------------------------------------------------------------------------------------------
# musical material
# --------------------------------------------------------------------------------------------
class _Part:
    __slots__ = ("role", "events", "family", "variant", "gain")

    def __init__(self, role: str):
        self.role = role          # melody | line | counter | chords | bass | drums
        self.events: List[tuple] = []  # (onset_beats, dur_beats, midi or drum name, velocity)
        self.family: Optional[str] = None
        self.variant = 0
        self.gain = 1.0


class _Ctx:
    def __init__(self, rng, style, tonic, mode, bpb, n_bars, chords, vel):
        self.rng, self.style, self.tonic, self.mode = rng, style, tonic, mode
        self.bpb, self.n_bars, self.chords, self.vel = bpb, n_bars, chords, vel
        self.scale = MAJOR if mode == "major" else MINOR
        self.n_beats = bpb * n_bars

    def chord_at(self, beat: float) -> int:
        i = min(int(beat // self.bpb), len(self.chords) - 1)
        c = self.chords[i]
        return c[int((beat % self.bpb) / self.bpb * len(c))]

    def midi(self, deg: int, root: int) -> int:
        octv, d = divmod(deg, 7)
        pc = self.scale[d] + (1 if (self.mode == "minor" and d == 6 and root == 4) else 0)
        return 48 + self.tonic + 12 * octv + pc

    def chord_midis(self, root: int, lo: int, hi: int) -> List[int]:
        pcs = {(self.midi(root + j, root) - self.tonic) % 12 for j in (0, 2, 4)}
        return [m for m in range(lo, hi + 1) if (m - self.tonic) % 12 in pcs]

    def nearest(self, root: int, target: float, lo: int, hi: int) -> int:
        c = self.chord_midis(root, lo, hi)
        return min(c, key=lambda m: (abs(m - target), m))

    def v(self, accent: float = 0.0) -> float:
        return float(np.clip(self.vel + accent + 0.06 * self.rng.standard_normal(), 0.15, 1.0))


def _melody(ctx: _Ctx, lo_deg: int, hi_deg: int, cells, start: float = 0.0,
            rest_p: float = 0.06) -> List[tuple]:
    rng, ev = ctx.rng, []
    deg = int(rng.integers(lo_deg + 2, hi_deg - 1))
    t = start
    steps = np.array([-3, -2, -1, -1, 0, 1, 1, 2, 3, 4, -4])
    while t < ctx.n_beats:
        cell = cells[int(rng.integers(len(cells)))]
        for d in cell:
            if t >= ctx.n_beats:
                break
            deg += int(steps[rng.integers(len(steps))])
            if deg > hi_deg:
                deg -= 2 * (deg - hi_deg)
            if deg < lo_deg:
                deg += 2 * (lo_deg - deg)
            root = ctx.chord_at(t)
            if abs(t - round(t)) < 1e-6:  # on the beat: a chord tone
                tones = {(root + j) % 7 for j in (0, 2, 4)}
                for delta in (0, -1, 1, -2, 2):
                    if (deg + delta) % 7 in tones:
                        deg += delta
                        break
            if rng.random() >= rest_p:
                ev.append((t, d, ctx.midi(deg, root), ctx.v(0.08 if t % ctx.bpb == 0 else 0.0)))
            t += d
    return ev


def _bass_line(ctx: _Ctx, pattern) -> List[tuple]:
    ev = []
    for bar in range(ctx.n_bars):
        for (off, dur, kind) in pattern:
            t = bar * ctx.bpb + off
            root = ctx.chord_at(t)
            m = ctx.midi(root, root) - 24
            if kind == "fifth":
                m = ctx.midi(root + 4, root) - 24
            elif kind == "octave":
                m += 12
            while m < 33:
                m += 12
            ev.append((t, dur, m, ctx.v(0.05 if off == 0 else 0.0)))
    return ev


def _block_chords(ctx: _Ctx, onsets, dur, lo=55, hi=72, notes=3) -> List[tuple]:
    ev, center = [], (lo + hi) / 2
    for bar in range(ctx.n_bars):
        for off in onsets:
            t = bar * ctx.bpb + off
            cm = ctx.chord_midis(ctx.chord_at(t), lo, hi)
            cm = sorted(cm, key=lambda m: abs(m - center))[:notes]
            v = ctx.v(-0.1)
            ev.extend((t, dur, m, v) for m in cm)
    return ev


def _drums(ctx: _Ctx, style: str) -> List[tuple]:
    ev, rng = [], ctx.rng
    for bar in range(ctx.n_bars):
        b0 = bar * ctx.bpb
        if style == "waltz":
            hits = [(0, "kick"), (1, "hat"), (2, "hat")]
        elif style == "march":
            hits = [(0, "kick"), (1, "snare")] + [(x / 2, "hat") for x in range(4)]
            if bar % 4 == 3:
                hits += [(1 + x / 4, "snare") for x in range(1, 4)]
        else:
            hits = [(0, "kick"), (2, "kick"), (1, "snare"), (3, "snare")]
            if rng.random() < 0.5:
                hits.append((2.5, "kick"))
            hits += [(x / 2, "ohat" if (x == 7 and rng.random() < 0.3) else "hat") for x in range(8)]
        ev.extend((b0 + off, 0.25, name, ctx.v(0.1 if name != "hat" else -0.1)) for off, name in hits)
    return ev


def _compose(rng, style: str, tonic: int, mode: str, bpm: int, duration: float):
    """The parts of one clip: (parts, beats per bar, has_drums)."""
    bpb = {"waltz": 3, "march": 2, "pop": 4, "ambient": 4, "chorale": 4}.get(style)
    if bpb is None:
        bpb = int(rng.choice([3, 4]))
    beat_s = 60.0 / bpm
    n_bars = int(math.ceil(duration / (bpb * beat_s))) + 1
    prog = PROGRESSIONS[mode][int(rng.integers(len(PROGRESSIONS[mode])))]
    per_bar = 2 if style in ("chorale", "etude") and rng.random() < 0.5 else 1
    if style == "ambient":  # one chord per two bars
        chords = [(prog[(b // 2) % len(prog)],) for b in range(n_bars)]
    elif style == "march":
        chords = [(prog[(b // 2) % len(prog)],) for b in range(n_bars)]
    else:
        chords = [tuple(prog[(b * per_bar + j) % len(prog)] for j in range(per_bar))
                  for b in range(n_bars)]
    loud = rng.random() < 0.5
    base_vel = rng.uniform(0.75, 0.95) if loud else rng.uniform(0.35, 0.55)
    ctx = _Ctx(rng, style, tonic, mode, bpb, n_bars, chords, base_vel)
    parts: List[_Part] = []
    has_drums = False

    def part(role, events):
        p = _Part(role)
        p.events = events
        parts.append(p)
        return p

    if style == "chorale":
        step = float(rng.choice([1.0, 2.0]))
        ranges = ((60, 79), (55, 72), (48, 67), (40, 55))
        prev = [float(rng.integers(64, 74)), 62.0, 55.0, 47.0]
        voices: List[List[tuple]] = [[], [], [], []]
        t = 0.0
        while t < ctx.n_beats:
            root = ctx.chord_at(t)
            d = step if (t + step) % (4 * bpb) else 2 * step  # phrase-end fermata
            v = ctx.v()
            for j, (lo, hi) in enumerate(ranges):
                if j == 3:
                    m = ctx.nearest(root, prev[3], lo, hi) if rng.random() < 0.2 else \
                        min(ctx.chord_midis(root, lo, hi), key=lambda x: (
                            (x - ctx.midi(root, root)) % 12 != 0, abs(x - prev[3])))
                else:
                    target = prev[j] + (rng.integers(-2, 3) if j == 0 else 0)
                    m = ctx.nearest(root, target, lo, min(hi, int(prev[j - 1]) - 1) if j else hi)
                voices[j].append((t, d, m, v))
                prev[j] = m
            t += d
        for j in range(3):
            part("chords", voices[j])
        part("bass", voices[3])
    elif style == "waltz":
        part("melody", _melody(ctx, 7, 17, [(2.0, 1.0), (3.0,), (1.0, 1.0, 1.0), (1.5, 0.5, 1.0)]))
        part("chords", _block_chords(ctx, (1, 2), 0.8))
        part("bass", _bass_line(ctx, [(0, 1.0, "root")]))
        has_drums = rng.random() < 0.3
    elif style == "march":
        part("melody", _melody(ctx, 7, 17, [(1.0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5), (1.5, 0.5), (2.0,)]))
        part("chords", _block_chords(ctx, (0.5, 1.5), 0.4))
        part("bass", _bass_line(ctx, [(0, 0.9, "root"), (1, 0.9, "fifth")]))
        has_drums = True
    elif style == "pop":
        part("melody", _melody(ctx, 7, 16, [(1.0, 0.5, 0.5), (1.5, 1.5, 1.0), (0.5, 1.0, 0.5), (2.0,)]))
        if rng.random() < 0.5:
            part("chords", _block_chords(ctx, (0,), 3.9, notes=4))
        else:
            part("chords", _block_chords(ctx, (0, 1.5, 2.5, 3.0), 0.45))
        if rng.random() < 0.5:
            part("bass", _bass_line(ctx, [(x / 2, 0.45, "octave" if x == 3 else "root") for x in range(8)]))
        else:
            part("bass", _bass_line(ctx, [(0, 1.4, "root"), (1.5, 0.5, "root"), (2, 1.0, "fifth"),
                                          (3, 1.0, "octave")]))
        if rng.random() < 0.35:
            part("counter", _melody(ctx, 2, 10, [(2.0,), (1.0, 1.0), (3.0, 1.0)], start=1.0, rest_p=0.0))
        has_drums = rng.random() < 0.85
    elif style == "ambient":
        ev = []
        for bar in range(0, n_bars, 2):
            t = bar * bpb
            root = ctx.chord_at(t)
            cm = ctx.chord_midis(root, 43, 74)
            pick = [cm[0]] + [cm[j] for j in sorted(rng.choice(np.arange(1, len(cm)), 3, replace=False))]
            v = ctx.v(-0.1)
            ev.extend((t, 2 * bpb + 1.0, m, v) for m in pick)
        part("chords", ev)
        if rng.random() < 0.6:
            part("melody", _melody(ctx, 7, 15, [(4.0,), (2.0, 2.0), (3.0, 1.0), (8.0,)], rest_p=0.15))
    elif style == "etude":
        ev, t = [], 0.0
        sub = 0.25 if bpb == 4 else 1.0 / 3.0
        while t < ctx.n_beats - 1e-9:
            bar_t = t
            root = ctx.chord_at(t)
            if rng.random() < 0.6:  # arpeggio over two octaves
                cm = ctx.chord_midis(root, 60, 84)
                seq = cm + cm[-2:0:-1] if rng.random() < 0.5 else cm
                if rng.random() < 0.3:
                    seq = seq[::-1]
            else:  # scale run
                d0 = int(rng.integers(7, 12))
                dirn = 1 if rng.random() < 0.5 else -1
                seq = [ctx.midi(d0 + dirn * j, root) for j in range(16)]
            j = 0
            while t < bar_t + bpb - 1e-9:
                ev.append((t, sub, seq[j % len(seq)], ctx.v(0.1 if j % 4 == 0 else 0.0)))
                t += sub
                j += 1
        part("line", ev)
        if rng.random() < 0.5:
            part("chords", _block_chords(ctx, (0,), bpb - 0.1, lo=43, hi=60))
    elif style == "solo":
        part("line", _melody(ctx, 5, 16, [(1.0, 1.0), (0.5, 0.5, 1.0), (2.0,), (1.5, 0.5), (0.5,) * 4, (3.0,)]))
    elif style == "canon":
        lead = _melody(ctx, 7, 16, [(1.0, 1.0), (0.5, 0.5, 1.0), (2.0,), (1.5, 0.5)])
        part("line", lead)
        n_voices = int(rng.integers(2, 4))
        delay = bpb * int(rng.integers(1, 3))
        for j in range(1, n_voices):
            shift = (-12, 12)[j - 1] if rng.random() < 0.7 else 0
            part("line", [(t + j * delay, d, m + shift, v) for (t, d, m, v) in lead
                          if t + j * delay < ctx.n_beats])
    if has_drums:
        part("drums", _drums(ctx, style))
    return parts, bpb, has_drums, loud


def _assign(rng, parts: List[_Part], style: str, has_drums: bool) -> None:
    pitched = [p for p in parts if p.role != "drums"]
    bass_parts = [p for p in pitched if p.role == "bass"]
    others = [p for p in pitched if p.role != "bass"]
    if style == "etude":
        fam = str(rng.choice(ETUDE_FAMILIES))
        var = int(rng.integers(N_VARIANTS[fam]))
        for p in pitched:
            p.family, p.variant = fam, var
        return
    use_bass = bool(bass_parts) and rng.random() < 0.7
    slots = 4 - int(has_drums) - int(use_bass)
    k = int(rng.integers(1, max(1, min(slots, len(others))) + 1))
    pool = [str(x) for x in rng.choice(MELODIC, k, replace=False)]
    variants = {f: int(rng.integers(N_VARIANTS[f])) for f in pool + ["bass"]}
    for j, idx in enumerate(rng.permutation(len(others))):
        others[idx].family = pool[j] if j < k else pool[int(rng.integers(k))]
    for p in bass_parts:
        p.family = "bass" if use_bass else pool[int(rng.integers(k))]
    for p in pitched:
        p.variant = variants[p.family]


def _plan(rng, duration: float) -> dict:
    """All musical / mixing choices of a clip (cheap; consumes ``rng`` deterministically)."""
    style = STYLES[int(rng.integers(len(STYLES)))]
    tonic = int(rng.integers(12))
    mode = "major" if rng.random() < 0.5 else "minor"
    lo, hi = TEMPI[style]
    bpm = int(rng.integers(lo, hi + 1))
    parts, bpb, has_drums, loud = _compose(rng, style, tonic, mode, bpm, duration)
    _assign(rng, parts, style, has_drums)
    beat_s = 60.0 / bpm
    for p in parts:
        p.events = [e for e in p.events if e[0] * beat_s < duration]
        if p.role == "drums":
            p.family = "drums"
        else:
            lo_m, hi_m = RANGES[p.family]
            folded = []
            for (t, d, m, v) in p.events:
                while m < lo_m:
                    m += 12
                while m > hi_m:
                    m -= 12
                folded.append((t, d, m, v))
            p.events = folded
        p.gain = float(rng.uniform(0.5, 1.0)) * (1.3 if p.role in ("melody", "line") else 1.0)
    active = [p for p in parts if p.events]
    pitched = [p for p in active if p.role != "drums"]
    lines = [p for p in pitched if p.role in ("melody", "line", "counter")]
    if len(pitched) == 1 and pitched[0].role in ("melody", "line") and all(
            a[0] + a[1] <= b[0] + 1e-9 for a, b in zip(pitched[0].events, pitched[0].events[1:])):
        texture = "monophonic"
    elif len(lines) >= 2:
        texture = "polyphonic"
    else:
        texture = "homophonic"
    reverb = rng.random() < 0.5
    fams = {p.family for p in pitched}
    instruments = [f for f in FAMILIES if f in fams]
    percussion = int(any(p.role == "drums" for p in active))
    tags = set(instruments) | {tempo_band(bpm), mode, texture, style,
                               "reverb" if reverb else "dry", "loud" if loud else "soft"}
    if percussion:
        tags.add("drums")
    meta = {"style": style, "tempo_bpm": bpm, "key": KEYS[tonic], "mode": mode,
            "meter": f"{bpb}/{2 if style == 'march' else 4}",
            "instruments": ";".join(instruments), "percussion": percussion, "texture": texture,
            "reverb": int(reverb), "dynamics": "loud" if loud else "soft",
            "tags": ";".join(t for t in TAGS if t in tags)}
    return {"meta": meta, "parts": active, "beat_s": beat_s, "loud": loud, "reverb": reverb}


def _render(plan: dict, rng, duration: float, sr: int) -> np.ndarray:
    total = int(round(duration * sr))
    buf = np.zeros(total + int(0.5 * sr), dtype=np.float32)
    beat_s = plan["beat_s"]
    kit = None
    for p in plan["parts"]:
        if p.role == "drums":
            kit = kit or _drum_kit(sr, rng)
        for (t, d, m, v) in p.events:
            s = int(round(t * beat_s * sr))
            if p.role == "drums":
                x = kit[m] * np.float32(v)
            else:
                x = _note(p.family, midi_to_hz(m), d * beat_s, sr, v, rng, p.variant)
                x = x * np.float32(0.3 + 0.7 * v)
            e = min(len(buf), s + len(x))
            buf[s:e] += np.float32(p.gain) * x[:e - s]
    if plan["reverb"]:
        rt60 = rng.uniform(0.4, 1.6)
        L = int(rt60 * sr)
        t = np.arange(L) / sr
        ir = rng.standard_normal(L) * np.exp(-6.9 * t / rt60)
        ir[:int(rng.uniform(0.008, 0.03) * sr)] = 0.0
        ir = np.convolve(ir, [0.5, 0.5], mode="same")  # slightly darker tail
        ir /= np.sqrt(np.sum(ir ** 2))
        wet = signal.fftconvolve(buf, ir)[:len(buf)].astype(np.float32)
        w = rng.uniform(0.15, 0.35)
        buf = (1 - w) * buf + w * wet
    y = buf[:total].astype(np.float64)
    fade = min(total // 4, int(0.03 * sr))
    if fade > 0:
        y[-fade:] *= np.linspace(1.0, 0.0, fade)
    peak = float(np.max(np.abs(y)))
    target = rng.uniform(0.6, 0.9) if plan["loud"] else rng.uniform(0.3, 0.55)
    if peak > 0:
        y *= target / peak
    return y.astype(np.float32)


def render_clip(index: int, seed: int = 0, duration: float = 10.0, sr: int = 12000
                ) -> Tuple[np.ndarray, dict]:
    """Render clip ``index`` of corpus ``seed``: (float32 mono audio, metadata incl. ``tags``).

    A pure function of its arguments: all randomness comes from
    ``numpy.random.default_rng([seed, index])``.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    plan = _plan(rng, float(duration))
    audio = _render(plan, rng, float(duration), int(sr))
    return audio, dict(plan["meta"])


def clip_metadata(index: int, seed: int = 0, duration: float = 10.0) -> dict:
    """The metadata :func:`render_clip` would return, without rendering the audio."""
    return dict(_plan(np.random.default_rng([int(seed), int(index)]), float(duration))["meta"])


def clip_split(index: int, seed: int = 0) -> str:
    """Deterministic ~80/10/10 train/valid/test split of clip ``index``."""
    u = np.random.default_rng([int(seed), int(index), 0x5B17]).random()
    return "train" if u < 0.8 else ("valid" if u < 0.9 else "test")


# --------------------------------------------------------------------------------------------
# corpus on disk
# --------------------------------------------------------------------------------------------
def _clip_id(i: int) -> str:
    return f"{i:06d}"


def _row(i: int, seed: int, meta: dict) -> dict:
    row = {"id": _clip_id(i), "path": f"audio/{_clip_id(i)}.flac", "tags": meta["tags"],
           "split": clip_split(i, seed)}
    row.update({k: meta[k] for k in MANIFEST_COLUMNS[4:]})
    return row


def _job(args) -> dict:
    i, seed, duration, sr, audio_dir = args
    import soundfile as sf

    audio, meta = render_clip(i, seed, duration, sr)
    final = Path(audio_dir) / f"{_clip_id(i)}.flac"
    with atomic_path(final) as tmp:
        sf.write(tmp, audio, sr, format="FLAC", subtype="PCM_16")
    return _row(i, seed, meta)


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def corpus_params(n: int, seed: int, duration: float, sr: int) -> dict:
    from . import __version__

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
    _write_text_atomic(cj, json.dumps(params, indent=2) + "\n")

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
