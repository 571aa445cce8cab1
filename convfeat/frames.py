"""Frame-level (timestamped) convnet features: :func:`embed_frames`.

The clip feature of :func:`convfeat.embed` is, per block, the average over frequency AND
time of the block's output (after max-pooling; before it for ``choi2017-k2``).  A frame
feature is the same output averaged over frequency only: one 32-value column per block per
time step.  The blocks pool time, so each has its own time resolution; for ``choi2017``
(time pools 4, 4, 5, 4, 4 over 21.3-ms STFT frames):

=======  ===========  ==========================
block    one step     steps per 29-s window
=======  ===========  ==========================
layer1   85.3 ms      340
layer2   341 ms       85
layer3   1.71 s       17
layer4   6.83 s       4  (the last 1.7 s uncovered)
layer5   27.3 s       1  (the last 1.7 s uncovered)
=======  ===========  ==========================

All blocks are put on one grid, the finest block's (85.3 ms for choi2017; ``choi2017-k2``'s
features are taken before pooling, so its grid is the 21.3-ms STFT frame): a block's step
is repeated over the grid frames it spans, and past a block's last complete step (the window's
last 1.7 s for layers 4 and 5) its last step is held.  Frame ``t`` covers the 12-kHz samples
``[t * hop, (t + 1) * hop)``; its timestamp is the centre of that span, and a signal has the
frames that cover it (the last one's centre at most half a step past the end).

A signal is cut into the model's 29-s windows (the windows :func:`convfeat.embed` uses;
shorter audio repeated or zero-padded by ``short``) starting every 27.31 s (the largest whole
number of the deepest block's steps in a window), so the grid runs on regularly across
windows: each window gives the frames up to the next window's start, the last one the frames
up to the end of the signal.  A signal of up to 29 s is one window.

**Relation to** :func:`convfeat.embed`: for a clip of exactly 29 s (348,000 samples at 12 kHz:
340 frames), each block's mean over the frames its complete steps cover equals ``embed``'s
value for that block (to float32 rounding): all 340 frames for layers 1–3, the first 320 for
layers 4 and 5 (:func:`frames_covered`).  The frames of any clip's first window are the maps
``embed`` averages.

Cost: the maps are computed by the straightforward (reference) forward, not the fast path
that ``embed`` uses; see the README for the measured factor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import audio
from .constants import HOP, LAYER_NAMES, SAMPLE_RATE, UNITS_PER_LAYER, WINDOW_SAMPLES
from .errors import InputError
from .layers import parse_layers

__all__ = ["FrameGrid", "frame_grid", "frames_covered", "frames_config", "embed_frames", "frames_of_signal"]


@dataclass(frozen=True)
class FrameGrid:
    """How a model's block outputs map onto one frame grid.

    hop_samples: 12-kHz samples per grid frame; repeats: grid frames per step of each block
    (``(5,)``); window_frames: grid frames of one 29-s window; advance_frames: grid frames
    between window starts.
    """

    hop_samples: int
    repeats: tuple
    window_frames: int
    advance_frames: int

    @property
    def hop_seconds(self) -> float:
        return self.hop_samples / SAMPLE_RATE

    def resolution_seconds(self) -> dict:
        """``{layerK: seconds per step}`` of each block."""
        return {name: r * self.hop_seconds for name, r in zip(LAYER_NAMES, self.repeats)}


def frame_grid(net) -> FrameGrid:
    """The :class:`FrameGrid` of model ``net`` (from its pools and feature point)."""
    time_pools = [int(p[1]) for p in net.config.pools]
    cumulative = np.cumprod([1] + time_pools)                  # STFT frames per step before block k
    pre_pool = net.config.feature_point == "pre_pool"
    steps = cumulative[:-1] if pre_pool else cumulative[1:]    # STFT frames per feature step, per block
    finest = int(steps[0])
    window_stft = math.ceil(WINDOW_SAMPLES / HOP)
    deepest = int(cumulative[-1])
    advance = (window_stft // deepest) * deepest
    if advance == 0:
        raise InputError(f"this model pools {deepest} frames in time: more than one 29-s window")
    return FrameGrid(finest * HOP, tuple(int(s) // finest for s in steps), window_stft // finest, advance // finest)


def frames_config(net, policy: audio.Policy) -> dict:
    """What a feature set stored with ``convfeat extract --frames`` records as its ``frames``
    config (JSON-ready); :class:`InputError` for a policy whose windows are not the 29-s ones."""
    if policy.window_samples != WINDOW_SAMPLES:
        raise InputError(f"--frames needs the {WINDOW_SAMPLES}-sample (29-s) model window, "
                         f"not {policy.window_samples} samples")
    grid = frame_grid(net)
    return {"hop_seconds": grid.hop_seconds, "columns": list(LAYER_NAMES), "window_samples": WINDOW_SAMPLES,
            "advance_frames": grid.advance_frames, "repeats": list(grid.repeats),
            "covers": "the first window" if policy.long == "first" else "the whole signal"}


def frames_covered(net, layers: str = "12345", frames: int | None = None) -> dict:
    """``{layerK: n}``: of a 29-s window's grid frames (or the first ``frames``), how many the
    block's complete steps cover (the frames whose mean is ``embed``'s value of the block)."""
    grid = frame_grid(net)
    frames = grid.window_frames if frames is None else frames
    return {name: min(frames, (grid.window_frames // grid.repeats[LAYER_NAMES.index(name)])
                      * grid.repeats[LAYER_NAMES.index(name)]) for name in parse_layers(layers)}


@torch.no_grad()
def _window_frames(net, windows: torch.Tensor, names: list, grid: FrameGrid) -> np.ndarray:
    """``(B, samples)`` 12-kHz windows → ``(B, window_frames, 32 * len(names))`` grid frames."""
    net._check_calibrated()
    mode, pre_pool = net.bn_mode, net.config.feature_point == "pre_pool"
    depth = max(LAYER_NAMES.index(n) for n in names) + 1
    x = net.spectrogram(windows, mode)
    maps = {}
    for name, block in zip(LAYER_NAMES[:depth], net.blocks[:depth]):
        x = block.bn(block.conv(x), mode)
        if pre_pool:
            x = nn.functional.elu(x)
            maps[name] = x.mean(dim=2)
            x = nn.functional.max_pool2d(x, block.pool)
        else:
            x = nn.functional.elu(nn.functional.max_pool2d(x, block.pool))
            maps[name] = x.mean(dim=2)                            # (B, 32, steps): frequency only
    t = np.arange(grid.window_frames)
    cols = []
    for name in names:
        m = maps[name].float().cpu().numpy()
        r = grid.repeats[LAYER_NAMES.index(name)]
        cols.append(m[:, :, np.minimum(t // r, m.shape[2] - 1)].transpose(0, 2, 1))
    return np.concatenate(cols, axis=2)


def frames_of_signal(net, mono: np.ndarray, layers: str = "12345", short: str = "repeat",
                     batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A mono 12-kHz signal ``(samples,)`` → (timestamps ``(T,)`` s, frames ``(T, D)`` float32),
    ``T = ceil(samples / hop_samples)``: the frames that cover the signal (see the module
    docstring)."""
    names = parse_layers(layers)
    grid = frame_grid(net)
    mono = np.asarray(mono, dtype=np.float32)
    n_frames = max(1, math.ceil(mono.size / grid.hop_samples))    # frames covering the signal
    n_windows = 1 + max(0, math.ceil((n_frames - grid.window_frames) / grid.advance_frames))
    step = grid.advance_frames * grid.hop_samples
    device = next(net.parameters()).device
    out = np.empty((n_frames, UNITS_PER_LAYER * len(names)), np.float32)
    for start in range(0, n_windows, batch_size):
        idx = range(start, min(n_windows, start + batch_size))
        batch = np.stack([audio.fit_window(mono[w * step:w * step + WINDOW_SAMPLES], WINDOW_SAMPLES, short)
                          for w in idx])
        frames = _window_frames(net, torch.from_numpy(batch).to(device), names, grid)
        for w, f in zip(idx, frames):
            lo = w * grid.advance_frames
            hi = n_frames if w == n_windows - 1 else lo + grid.advance_frames
            out[lo:hi] = f[:hi - lo]
    if not np.isfinite(out).all():
        raise InputError(f"frame features not finite ({audio.describe_peak(audio.signal_peak(mono))})")
    return (np.arange(n_frames) + 0.5) * grid.hop_seconds, out


def embed_frames(y: np.ndarray, sr: int, model="choi2017", layers: str = "12345", bn_mode: str | None = None,
                 weights=None, seed: int = 0, short: str = "repeat", batch_size: int = 4):
    """Frame-level convnet features of one signal → ``(timestamps (T,) float64 seconds,
    X (T, 32 * n_layers) float32)``.

    y, sr, model, layers, bn_mode, weights, seed, short: as :func:`convfeat.embed`.  The
    grid is the finest block's time step (85.3 ms for choi2017), ``T = ceil(duration /
    step)``: the frames that cover the signal; timestamps are their centres (the last one at
    most half a step past the end).  See :mod:`convfeat.frames` for the
    resolution of each block and the exact relation to :func:`convfeat.embed`.
    """
    from .api import get_model

    net = get_model(model, weights, bn_mode, seed)
    # the validated decode path of embed (mix-down, checks, resampling): a window of one
    # sample at a hop of one sample is the whole 12-kHz signal
    one = 1.0 / SAMPLE_RATE
    mono = audio.to_windows(y, sr, audio.Policy(long="mean", hop_seconds=one, window_seconds=one))
    return frames_of_signal(net, np.ravel(mono), layers, short, int(batch_size))
