"""Rendering a clip's plan to audio, and its metadata and tags (derived from what was rendered)."""
from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import signal

from .instruments import FAMILIES, drum_kit, midi_to_hz, note
from .score import KEYS, STYLES, Plan, plan_clip

TAGS: Tuple[str, ...] = (FAMILIES + ("drums", "slow", "medium", "fast", "major", "minor",
                                     "monophonic", "homophonic", "polyphonic")
                         + STYLES + ("reverb", "dry", "loud", "soft"))


def tempo_band(bpm: float) -> str:
    """``slow`` below 90 BPM, ``fast`` above 130, else ``medium``."""
    return "slow" if bpm < 90 else ("fast" if bpm > 130 else "medium")


def _texture(plan: Plan) -> str:
    """``monophonic``: one pitched line, never two notes at once; ``polyphonic``: at least two
    melodic lines; ``homophonic``: everything else."""
    pitched = [p for p in plan.parts if p.role != "drums"]
    lines = [p for p in pitched if p.role in ("melody", "line", "counter")]
    if len(pitched) == 1 and pitched[0].role in ("melody", "line") and all(
            a[0] + a[1] <= b[0] + 1e-9 for a, b in zip(pitched[0].events, pitched[0].events[1:])):
        return "monophonic"
    if len(lines) >= 2:
        return "polyphonic"
    return "homophonic"


def _metadata(plan: Plan) -> dict:
    """Manifest fields of a planned clip; ``tags`` in vocabulary order."""
    texture = _texture(plan)
    fams = {p.family for p in plan.parts if p.role != "drums"}
    instruments = [f for f in FAMILIES if f in fams]
    percussion = int(any(p.role == "drums" for p in plan.parts))
    tags = set(instruments) | {tempo_band(plan.bpm), plan.mode, texture, plan.style,
                               "reverb" if plan.reverb else "dry", "loud" if plan.loud else "soft"}
    if percussion:
        tags.add("drums")
    return {"style": plan.style, "tempo_bpm": plan.bpm, "key": KEYS[plan.tonic], "mode": plan.mode,
            "meter": f"{plan.bpb}/{2 if plan.style == 'march' else 4}",
            "instruments": ";".join(instruments), "percussion": percussion, "texture": texture,
            "reverb": int(plan.reverb), "dynamics": "loud" if plan.loud else "soft",
            "tags": ";".join(t for t in TAGS if t in tags)}


def _render(plan: Plan, rng, duration: float, sr: int) -> np.ndarray:
    """Mix the notes of ``plan`` (with reverb, fade-out and peak level drawn from ``rng``)."""
    total = int(round(duration * sr))
    buf = np.zeros(total + int(0.5 * sr), dtype=np.float32)
    beat_s = plan.beat_s
    kit = None
    for p in plan.parts:
        if p.role == "drums":
            kit = kit or drum_kit(sr, rng)
        for (t, d, m, v) in p.events:
            s = int(round(t * beat_s * sr))
            if p.role == "drums":
                x = kit[m] * np.float32(v)
            else:
                x = note(p.family, midi_to_hz(m), d * beat_s, sr, v, rng, p.variant)
                x = x * np.float32(0.3 + 0.7 * v)
            e = min(len(buf), s + len(x))
            buf[s:e] += np.float32(p.gain) * x[:e - s]
    if plan.reverb:
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
    target = rng.uniform(0.6, 0.9) if plan.loud else rng.uniform(0.3, 0.55)
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
    plan = plan_clip(rng, float(duration))
    audio = _render(plan, rng, float(duration), int(sr))
    return audio, _metadata(plan)


def clip_metadata(index: int, seed: int = 0, duration: float = 10.0) -> dict:
    """The metadata :func:`render_clip` would return, without rendering the audio."""
    return _metadata(plan_clip(np.random.default_rng([int(seed), int(index)]), float(duration)))


def clip_split(index: int, seed: int = 0) -> str:
    """Deterministic ~80/10/10 train/valid/test split of clip ``index``."""
    u = np.random.default_rng([int(seed), int(index), 0x5B17]).random()
    return "train" if u < 0.8 else ("valid" if u < 0.9 else "test")
