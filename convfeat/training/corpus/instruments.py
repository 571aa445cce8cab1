"""Note synthesis per instrument family (wavetables, Karplus-Strong, modal bars) and the drum kit."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, Tuple

import numpy as np
from scipy import signal

FAMILIES: Tuple[str, ...] = ("piano", "organ", "strings", "brass", "woodwind", "guitar", "bass",
                             "synth", "mallet", "voice")

# playable MIDI range per family (notes are folded into it by octaves)
RANGES = {"piano": (33, 96), "organ": (36, 91), "strings": (36, 96), "brass": (40, 82),
          "woodwind": (52, 96), "guitar": (40, 84), "bass": (28, 55), "synth": (36, 96),
          "mallet": (53, 96), "voice": (45, 79)}
N_VARIANTS = {"piano": 2, "organ": 3, "strings": 2, "brass": 2, "woodwind": 2, "guitar": 2,
              "bass": 2, "synth": 3, "mallet": 2, "voice": 3}


def midi_to_hz(m: float) -> float:
    """Frequency in Hz of MIDI note ``m`` (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((m - 69) / 12.0)


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


def note(family, f, dur, sr, vel, rng, variant):
    """Unchecked, level-matched :func:`render_note` drawing from ``rng``."""
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
    return note(family, float(freq), float(duration), int(sr), float(velocity), rng, variant)


def drum_kit(sr: int, rng) -> Dict[str, np.ndarray]:
    """One randomised kit at ``sr``: float32 ``kick``, ``snare``, ``hat`` and ``ohat`` samples."""
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
