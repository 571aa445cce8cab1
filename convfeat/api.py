"""Library API: one signal in, a feature vector or tag scores out."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from . import audio
from .layers import concat_layers, parse_layers
from .models.calibration import Calibration, calibration_indices
from .models.compact import CompactConvnet
from .models.registry import load_model
from .constants import UNITS_PER_LAYER
from .errors import InputError


@lru_cache(maxsize=8)
def _cached_model(name: str, weights: str | None, bn_mode: str | None, seed: int) -> CompactConvnet:
    return load_model(name, weights=weights, bn_mode=bn_mode, seed=seed)


def get_model(model: str | CompactConvnet = "choi2017", weights: str | Path | None = None,
              bn_mode: str | None = None, seed: int = 0) -> CompactConvnet:
    """A ready model: ``model`` itself if it is one, else :func:`load_model` (cached)."""
    if isinstance(model, CompactConvnet):
        if bn_mode is not None and bn_mode != model.bn_mode:
            raise InputError(f"the given model runs in bn_mode {model.bn_mode!r}; set model.bn_mode "
                             "instead of passing bn_mode")
        return model
    return _cached_model(model, None if weights is None else str(weights), bn_mode, int(seed))


def prepare(y: np.ndarray, sr: int, short: str = "repeat") -> np.ndarray:
    """Any signal → the model's input window ``(348000,)`` float32: mono, 12 kHz,
    first 29 s, shorter audio repeated (or zero-padded with ``short="pad"``).

    y: ``(samples,)`` or 2-D with channels on the shorter axis, at ``sr`` Hz.
    The study's length policy through :func:`convfeat.audio.to_windows`, the
    decode path extraction uses too.
    """
    return audio.to_windows(y, sr, audio.Policy(short=short))[0]


def calibrated_model(signals, model: str = "choi2017", weights: str | Path | None = None,
                     max_clips: int = 256, seed: int = 0, short: str = "repeat",
                     batch_size: int = 8) -> CompactConvnet:
    """A fresh model in ``bn_mode="calibrated"``, its BN statistics estimated on a
    seeded sample of up to ``max_clips`` of ``signals`` (a sequence of ``(y, sr)``).

    The statistics and the sample are recorded in ``model.provenance["calibration"]``
    so the same features can be recomputed later (``model.set_bn_statistics``).
    The estimate is :meth:`Calibration.estimate <convfeat.models.calibration.Calibration.estimate>`,
    as in a calibrated feature set of ``convfeat extract``.
    """
    signals = list(signals)
    idx = calibration_indices(len(signals), max_clips, seed)
    net = load_model(model, weights=weights, bn_mode="calibrated", seed=seed)
    windows = np.stack([prepare(*signals[i], short=short) for i in idx])
    Calibration.estimate(net, windows, idx.tolist(), max_clips, seed, batch_size=batch_size)
    net.provenance["calibration"] = {"n_clips": int(len(idx)), "max_clips": int(max_clips),
                                     "seed": int(seed), "indices": idx.tolist()}
    return net


@torch.no_grad()
def _forward(model: CompactConvnet, windows: np.ndarray) -> dict:
    """Run ``(batch, samples)`` windows through the model → dict of NumPy arrays."""
    device = next(model.parameters()).device
    out = model(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(device))
    return {k: v.cpu().numpy() for k, v in out.items()}


OVERFLOW_SAFE_PEAK = 1e12  # |sample| below which no float32 spectrogram can overflow (|STFT| <= 256 x peak)


def front_end_overflows(model: CompactConvnet, windows, peaks=None) -> np.ndarray:
    """``(rows,)`` bool: the windows ``(rows, samples)`` whose mel power spectrum in ``model``'s
    float32 front end is not finite (samples near 1e19 and beyond; whatever the network then
    makes of them, NaN or a finite constant, is no feature).  Only windows whose peak
    (``peaks``, else measured) exceeds :data:`OVERFLOW_SAFE_PEAK` are run through the front end."""
    n = len(windows)
    if peaks is None:
        peaks = [audio.signal_peak(np.asarray(w)) for w in windows]
    rows = [i for i in range(n) if peaks[i] > OVERFLOW_SAFE_PEAK]
    out = np.zeros(n, bool)
    if rows:
        device = next(model.parameters()).device
        if isinstance(windows, torch.Tensor):
            x = windows[torch.as_tensor(rows, device=windows.device)].to(device)
        else:
            x = torch.as_tensor(np.ascontiguousarray(np.asarray(windows)[rows], dtype=np.float32)).to(device)
        with torch.no_grad():
            out[rows] = ~torch.isfinite(model.frontend(x)).flatten(1).all(dim=1).cpu().numpy()
    return out


def _finite_or_raise(out: dict, keys, windows: np.ndarray, what: str = "features", overflow=None) -> None:
    """Raise :class:`InputError` when an output in ``keys`` of ``out`` (batch-first arrays of
    :func:`_forward` on ``windows``) is NaN or infinite, or ``overflow`` (from
    :func:`front_end_overflows`) marks a window: such a result is no feature."""
    rows, parts = set(), []
    if overflow is not None and overflow.any():
        rows |= set(np.flatnonzero(overflow).tolist())
        parts.append("the model's spectrogram overflows float32")
    bad = []
    for k in keys:
        finite = np.isfinite(out[k].reshape(len(out[k]), -1)).all(axis=1)
        if not finite.all():
            bad.append(k)
            rows |= set(np.flatnonzero(~finite).tolist())
    if bad and what == "features":
        parts.append("layer1…layer5" if bad == [f"layer{i}" for i in range(1, 6)] else ", ".join(bad))
    if not rows:
        return
    rows = sorted(rows)
    which = "" if len(windows) == 1 else f"signal{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows))}: "
    peak = max(audio.signal_peak(windows[i]) for i in rows)
    detail = f": {'; '.join(parts)}" if parts else ""
    raise InputError(f"{which}{what} not finite{detail} ({audio.describe_peak(peak)})")


def _top_tags(net: CompactConvnet, probs: np.ndarray, top_k: int | None) -> dict:
    order = np.argsort(-probs, kind="stable")[: top_k if top_k else None]
    return {net.tag_names[i]: float(probs[i]) for i in order}


def _require_tags(net: CompactConvnet) -> None:
    if not net.has_tags:
        raise InputError("these weights have no tag head (the TF-layout Keras-1 file has none); "
                         "use the Theano-layout file: convfeat weights fetch choi2017")


def policy_of(short: str = "repeat", long: str = "first", hop: float = 29.0) -> audio.Policy:
    """The length policy of ``short`` / ``long`` / ``hop`` (seconds), checked: the one
    :class:`~convfeat.audio.Policy` that ``convfeat extract --short --long --hop`` builds too."""
    return audio.Policy(short=short, long=long, hop_seconds=float(hop)).check()


def as_signals(signals, sr) -> list:
    """``signals`` (a sequence of 1-D / 2-D arrays, or a 2-D array of mono rows) and ``sr``
    (one rate or one per signal) → a list of ``(y, sr)`` pairs; :class:`InputError` when the
    counts differ."""
    if isinstance(signals, torch.Tensor):
        signals = signals.detach().cpu().numpy()
    if isinstance(signals, np.ndarray) and signals.dtype != object:
        if signals.ndim != 2:
            raise InputError(f"a signal array must be 2-D (n_signals, samples), got shape {signals.shape}; "
                             "pass a list for signals of different lengths or channels")
        signals = list(signals)
    else:
        signals = list(signals)
    srs = [sr] * len(signals) if np.ndim(sr) == 0 else list(sr)
    if len(srs) != len(signals):
        raise InputError(f"{len(signals)} signals but {len(srs)} sample rates; give one rate or one per signal")
    return list(zip(signals, srs))


@torch.no_grad()
def embed_windows(net: CompactConvnet, windows, layers: str = "12345", batch_size: int = 8) -> np.ndarray:
    """Mean convnet feature of each item's windows → ``(n_items, 32 * n_layers)`` float32.

    windows: an iterable of ``(k_i, samples)`` 12-kHz window arrays, one per item (lazily
    produced is fine).  Windows are batched across items, ``batch_size`` at a time, through
    ``net(batch, layers=...)``; an item's feature is the float64 mean of its windows' pooled
    features cast to float32, as :func:`convfeat.extract` computes it.
    Raises :class:`InputError` naming the item when its spectrogram overflows float32 or its
    feature is not finite.
    """
    names = parse_layers(layers)
    device = next(net.parameters()).device
    sums, counts, peaks = [], [], []
    rows, owners = [], []

    def run():
        batch = np.concatenate(rows)
        overflow = front_end_overflows(net, batch, [peaks[i] for i in owners])   # item peaks: no second pass
        if overflow.any():
            i = owners[int(np.flatnonzero(overflow)[0])]
            raise InputError(f"signal {i}: features not finite: the model's spectrogram overflows float32 "
                             f"({audio.describe_peak(peaks[i])})")
        out = net(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device), layers=names)
        feats = concat_layers({k: v.float().cpu().numpy() for k, v in out.items()}, layers)
        for owner, row in zip(owners, feats):
            sums[owner] += row
        rows.clear()
        owners.clear()

    for i, w in enumerate(windows):
        w = np.asarray(w)
        sums.append(np.zeros(UNITS_PER_LAYER * len(names), np.float64))
        counts.append(len(w))
        peaks.append(audio.signal_peak(w))
        k = 0
        while k < len(w):
            take = min(batch_size - len(owners), len(w) - k)
            rows.append(w[k:k + take])
            owners.extend([i] * take)
            k += take
            if len(owners) == batch_size:
                run()
    if owners:
        run()
    if not sums:
        raise InputError("no signals given")
    with np.errstate(over="ignore", invalid="ignore"):
        X = (np.stack(sums) / np.asarray(counts, np.float64)[:, None]).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        raise InputError(f"signal{'s' if bad.size > 1 else ''} {', '.join(map(str, bad[:5]))}: features not finite "
                         f"({audio.describe_peak(max(peaks[i] for i in bad))})")
    return X


def embed_batch(signals, sr, model: str | CompactConvnet = "choi2017", layers: str = "12345",
                bn_mode: str | None = None, weights: str | Path | None = None, seed: int = 0,
                short: str = "repeat", long: str = "first", hop: float = 29.0, batch_size: int = 8) -> np.ndarray:
    """Multi-layer convnet features of many signals → ``(n_signals, 32 * n_layers)`` float32.

    signals: a list of arrays (each ``(samples,)`` or 2-D with channels on the shorter
        axis, any lengths), or a 2-D array ``(n_signals, samples)`` of mono rows.
    sr: the sample rate in Hz, one for all or a sequence with one per signal.
    long: ``"first"`` (the study: the first 29 s) or ``"mean"`` (the pooled features of
        every full 29-s window starting every ``hop`` seconds, averaged), as
        ``convfeat extract --long/--hop``; short, model, layers, bn_mode, weights, seed as
        in :func:`embed`.
    batch_size: windows per forward pass (memory only: with a batch-invariant ``bn_mode``
        the features do not depend on it; in ``"batch"`` mode each forward pass of
        ``batch_size`` windows is one BN batch, as in ``convfeat extract``).

    Row i equals ``embed(signals[i], sr[i], ...)`` (to float32 rounding), and a file's
    feature from ``convfeat extract`` with the same policy.
    """
    policy = policy_of(short, long, hop)
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    net = get_model(model, weights, bn_mode, seed)
    pairs = as_signals(signals, sr)
    return embed_windows(net, (audio.to_windows(y, s, policy) for y, s in pairs), layers, int(batch_size))


def embed(y: np.ndarray, sr: int, model: str | CompactConvnet = "choi2017", layers: str = "12345",
          bn_mode: str | None = None, weights: str | Path | None = None, seed: int = 0,
          short: str = "repeat", long: str = "first", hop: float = 29.0) -> np.ndarray:
    """Multi-layer convnet feature of one signal.

    y: audio, ``(samples,)`` or 2-D with channels on the shorter axis; any
        length and sample rate ``sr`` (Hz).  Mixed to mono, resampled to 12 kHz,
        cut to the first 29 s (shorter audio repeated, or zero-padded with
        ``short="pad"``); with ``long="mean"`` the features of every full 29-s
        window starting every ``hop`` seconds are averaged (``convfeat extract --long mean``).
    model: ``"choi2017"`` (published weights), ``"choi2017-k2"``, ``"random"``,
        ``"convfeat-synth"`` or a :class:`~convfeat.models.CompactConvnet` (e.g. a calibrated one).
    layers: blocks to concatenate, e.g. ``"12345"`` (default), ``"5"``, ``"135"``.
    bn_mode: ``"instance"`` (default), ``"batch"`` (a single window is a batch
        of one, so it equals ``"instance"`` here), ``"calibrated"`` (pass a
        calibrated model) or ``"stored"`` (choi2017-k2).

    Returns ``(32 * n_layers,)`` float32, blocks in ascending order.
    Raises :class:`InputError` when the feature is not finite (samples so large,
    e.g. 1e30, that the model's float32 spectrogram overflows): never NaN.
    """
    try:
        return embed_batch([y], sr, model, layers, bn_mode, weights, seed, short, long, hop, batch_size=8)[0]
    except InputError as exc:       # one signal: no "signal 0: " prefix
        raise InputError(str(exc).removeprefix("signal 0: ")) from None


def tag(y: np.ndarray, sr: int, model: str | CompactConvnet = "choi2017", bn_mode: str | None = None,
        weights: str | Path | None = None, top_k: int | None = None, short: str = "repeat") -> dict:
    """Tag probabilities of one signal: ``{tag: probability}``, most probable first.

    Same input handling as :func:`embed`.  ``top_k`` keeps the k best tags.
    Raises ``ValueError`` for a model without a tag head (the TF-layout weight file), and
    :class:`InputError` (a ``ValueError``) when the probabilities are not finite.
    """
    net = get_model(model, weights, bn_mode)
    _require_tags(net)
    windows = prepare(y, sr, short)[None]
    out = _forward(net, windows)
    _finite_or_raise(out, ["tags"], windows, "tag probabilities", front_end_overflows(net, windows))
    return _top_tags(net, out["tags"][0], top_k)


def tag_batch(ys, srs, model: CompactConvnet, top_k: int | None = None, short: str = "repeat") -> list:
    """Tags of several signals run as ONE batch (what ``bn_mode="batch"`` means):
    a list of ``{tag: probability}`` dicts in input order.

    ys, srs: the signals and their sample rates (Hz), handled as in :func:`tag` (first 29-s
    window of each); model: a loaded model (:func:`get_model`, e.g. in ``bn_mode="batch"``,
    where each signal's tags depend on the others in the batch; in a batch-invariant mode the
    result equals :func:`tag` per signal); top_k: keep the k most probable tags of each.
    """
    _require_tags(model)
    windows = np.stack([prepare(y, sr, short) for y, sr in zip(ys, srs)])
    out = _forward(model, windows)
    _finite_or_raise(out, ["tags"], windows, "tag probabilities", front_end_overflows(model, windows))
    probs = out["tags"]
    return [_top_tags(model, p, top_k) for p in probs]
