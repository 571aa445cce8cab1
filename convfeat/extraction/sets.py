"""Feature sets: which model, with which options, under which name, recorded how;
and whether a model can take the windows of a length policy."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import Policy
from ..constants import (AMIN, DYNAMIC_RANGE_DB, FMAX, FMIN, HOP, LAYER_NAMES, MFCC_WIDTH, N_FFT, N_MELS, PRECISIONS,
                         RESAMPLER_QUALITY, SAMPLE_RATE, UNITS_PER_LAYER)
from ..errors import InputError
from ..models.mfcc import MFCC_WINDOWS
from .items import ExtractError

__all__ = ["FEATURE_MODELS", "FRONTEND", "SetSpec", "parse_set", "set_config", "check_policy",
           "min_window_samples", "check_window"]

FEATURE_MODELS = ("choi2017", "choi2017-k2", "random", "mfcc")


# -- feature sets ----------------------------------------------------------------
@dataclass
class SetSpec:
    """One feature set to extract: a model with its options."""

    model: str
    bn_mode: str | None = None
    seed: int = 0
    weights: str | None = None
    name: str = ""
    options: dict = field(default_factory=dict)

    def resolved_name(self) -> str:
        from ..models import default_bn_mode

        if self.name:
            return self.name
        name = self.model
        if "/" in name or name.endswith(".json"):  # a trained-model folder: its recorded name
            from ..models.trained import read_meta
            name = read_meta(name).get("name") or Path(name.removesuffix("/model.json")).name
        if self.model != "mfcc" and self.bn_mode and self.bn_mode != default_bn_mode(self.model):
            name += f"-{self.bn_mode}"
        if self.model == "random" and self.seed:
            name += f"-s{self.seed}"
        if self.model == "mfcc" and self.options.get("window", MFCC_WINDOWS[0]) != MFCC_WINDOWS[0]:
            name += f"-{self.options['window']}"
        return name


def parse_set(text: str, bn_mode: str | None = None, seed: int = 0, weights: str | None = None) -> SetSpec:
    """``MODEL[:key=value,...]`` → :class:`SetSpec`; keys: bn_mode, seed, weights, name, and for ``mfcc``
    window (``model``: the model's window, a short clip repeated or padded as the length policy says, the
    study's; ``clip``: the clip itself, :func:`~convfeat.extraction.worker.mfcc_of_clip`)."""
    model, _, rest = text.partition(":")
    from ..models import is_model, shipped_models

    if model not in FEATURE_MODELS and not is_model(model):
        raise ExtractError(f"unknown model {model!r}; choose from "
                           f"{', '.join(FEATURE_MODELS + tuple(shipped_models()))} or a convfeat pretrain folder")
    fixed_bn = model in ("mfcc", "choi2017-k2") or model not in FEATURE_MODELS
    spec = SetSpec(model, bn_mode if not fixed_bn else None, seed,
                   weights if model in ("choi2017", "choi2017-k2") else None)
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if model == "mfcc" and key == "window" and eq:
            if value not in MFCC_WINDOWS:
                raise ExtractError(f"bad mfcc window {value!r} in {text!r}; use window=model (the model's 29-s "
                                   "window, short clips repeated: the study's) or window=clip (the clip itself)")
            spec.options["window"] = value
            continue
        if not eq or key not in ("bn_mode", "seed", "weights", "name"):
            raise ExtractError(f"bad model option {part!r} in {text!r}; use bn_mode=, seed=, weights= or name="
                               + (" (and window= for mfcc)" if model == "mfcc" else ""))
        setattr(spec, key, int(value) if key == "seed" else value)
    return spec


FRONTEND = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS, "fmin": FMIN,
            "fmax": FMAX, "window": "hann (periodic)", "padding": "same (TF)", "power": 2,
            "db_amin": AMIN, "db_range": DYNAMIC_RANGE_DB, "resampler": f"soxr {RESAMPLER_QUALITY}"}


def set_config(spec: SetSpec, model, policy: Policy, calibration=None, precision: str = "fp32",
               batch: dict | None = None, frames: bool = False) -> tuple[dict, dict, dict]:
    """(config that must match to append, provenance, dataset widths) of a set.

    ``frames``: a convnet set stored with its frame-level features (``extract --frames``); their
    grid (:func:`convfeat.frames.frames_config`) is the config's ``frames`` entry.

    ``batch``: for a ``bn_mode="batch"`` set, the batches it was extracted in
    (:meth:`~convfeat.extraction.batching.Batching.record`: size, order, seed), the config's ``batch`` entry.

    ``calibration``: the :class:`~convfeat.models.calibration.Calibration` of a
    calibrated set; its record is the config's ``calibration`` entry (not part
    of the provenance, as in every file written so far).  ``precision``: the
    inference precision of a convnet set (``"fp32"`` or ``"bf16"``); the
    provenance always records it, the config only when it is not ``"fp32"``, so
    that files written before precision was recorded still resume and merge,
    and a bf16 set never mixes with an fp32 one.
    """
    if precision not in PRECISIONS:
        raise ExtractError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    from importlib.metadata import version

    import torch

    from .. import __version__

    versions = {"convfeat": __version__, "torch": torch.__version__, "librosa": version("librosa"),
                "numpy": np.__version__, "python": sys.version.split()[0]}
    if spec.model == "mfcc":
        config = {"model": "mfcc", "n_mfcc": 20, "deltas": "librosa.feature.delta width 9",
                  "stats": "mean,std", "length_policy": policy.to_dict(), "sample_rate": SAMPLE_RATE}
        if spec.options.get("window", MFCC_WINDOWS[0]) != MFCC_WINDOWS[0]:
            config["window"] = spec.options["window"]   # absent: the model's window (files made before keep it)
        widths = {"mfcc": MFCC_WIDTH}
    else:
        prov = model.provenance
        config = {"model": spec.model, "weights_sha256": prov.get("weights_sha256"),
                  "bn_mode": model.bn_mode, "seed": spec.seed if spec.model == "random" else None,
                  "architecture": prov["config"], "frontend": FRONTEND, "length_policy": policy.to_dict()}
        widths = {name: UNITS_PER_LAYER for name in LAYER_NAMES}
        if batch is not None:
            config["batch"] = batch
        if precision != "fp32":
            config["precision"] = precision
        if frames:
            from ..frames import frames_config

            config["frames"] = frames_config(model, policy)
    provenance = dict(config, precision="fp32" if spec.model == "mfcc" else precision, versions=versions,
                      weights=getattr(model, "provenance", {}).get("weights")
                      if model is not None else None, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if calibration is not None:
        config["calibration"] = calibration.record
    return config, provenance, widths


# -- windows a model can take ------------------------------------------------------
MFCC_MIN_WINDOW = 2048  # samples: one frame of the MFCC baseline (librosa's n_fft, SPEC §3)


def check_policy(policy: Policy) -> None:
    """Raise :class:`ExtractError` for a length policy the extraction cannot use."""
    from ..audio import LONG_POLICIES, SHORT_POLICIES

    if policy.short not in SHORT_POLICIES or policy.long not in LONG_POLICIES:
        raise ExtractError(f"bad length policy {policy}")
    if policy.hop_seconds <= 0:
        raise ExtractError("--hop must be positive")
    try:
        policy.check()
    except InputError as exc:
        raise ExtractError(str(exc)) from None


def min_window_samples(model) -> int:
    """Shortest window (12-kHz samples) ``model`` can take: its time poolings must
    leave at least one spectrogram frame (``ceil(samples / HOP)`` frames enter).

    The published pooling (4·4·5·4·4 = 1280 frames) needs 327,425 samples
    (~27.3 s); the shorter pools of models trained by ``convfeat pretrain``
    (4·4·5·2·1 = 160 frames) need 40,705 (~3.4 s); the MFCC baseline
    (``model`` None) one 2048-sample frame.
    """
    if model is None:
        return MFCC_MIN_WINDOW
    frames = int(np.prod([pool[1] for pool in model.config.pools]))
    return (frames - 1) * HOP + 1


def check_window(name: str, model, policy: Policy) -> None:
    """Raise :class:`ExtractError` (an ``InputError``) when feature set ``name``'s
    model cannot take ``policy``'s windows (see :func:`min_window_samples`)."""
    need = min_window_samples(model)
    if policy.window_samples >= need:
        return
    why = ("one frame of the MFCC baseline" if model is None else
           f"its time pooling turns {-(-need // HOP)} spectrogram frames into one")
    raise ExtractError(f"feature set {name!r} cannot take {policy.window_seconds:g}-s windows "
                       f"({policy.window_samples} samples): it needs at least {need} samples "
                       f"({need / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz; {why})")
