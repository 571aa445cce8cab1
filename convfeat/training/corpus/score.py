"""Composition of a clip: style, key, tempo, parts (melody, chords, bass, drums) and their instruments."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import numpy as np

from .instruments import FAMILIES, N_VARIANTS, RANGES

STYLES: Tuple[str, ...] = ("chorale", "waltz", "march", "pop", "ambient", "etude", "solo", "canon")
# pitch-class names (index = tonic) and the BPM range of each style
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
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


class _Part:
    """One voice of the score; ``family`` / ``variant`` are assigned after composition."""
    __slots__ = ("role", "events", "family", "variant", "gain")

    def __init__(self, role: str):
        self.role = role          # melody | line | counter | chords | bass | drums
        self.events: List[tuple] = []  # (onset_beats, dur_beats, midi or drum name, velocity)
        self.family: Optional[str] = None
        self.variant = 0
        self.gain = 1.0


class _Ctx:
    """Key, meter and harmony of a clip being composed, with its ``rng``."""

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
    """The parts of one clip: (parts, beats per bar, has_drums, loud)."""
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


class Plan:
    """All musical / mixing choices of one clip; ``parts`` are those with a note inside it."""
    __slots__ = ("style", "tonic", "mode", "bpm", "bpb", "parts", "loud", "reverb")

    def __init__(self, style: str, tonic: int, mode: str, bpm: int, bpb: int, parts: List[_Part],
                 loud: bool, reverb: bool):
        self.style, self.tonic, self.mode, self.bpm, self.bpb = style, tonic, mode, bpm, bpb
        self.parts, self.loud, self.reverb = parts, loud, reverb

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm


def plan_clip(rng, duration: float) -> Plan:
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
    reverb = rng.random() < 0.5
    return Plan(style, tonic, mode, bpm, bpb, [p for p in parts if p.events], loud, reverb)
