"""Feature sets: which model, with which options, under which name, recorded how."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import Policy
from ..constants import (AMIN, DYNAMIC_RANGE_DB, FMAX, FMIN, HOP, LAYER_NAMES, MFCC_WIDTH, N_FFT, N_MELS,
                         SAMPLE_RATE, UNITS_PER_LAYER)
from .items import ExtractError

__all__ = ["FEATURE_MODELS", "FRONTEND", "SetSpec", "parse_set", "set_config"]

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
        return name


def parse_set(text: str, bn_mode: str | None = None, seed: int = 0, weights: str | None = None) -> SetSpec:
    """``MODEL[:key=value,...]`` → :class:`SetSpec`; keys: bn_mode, seed, weights, name."""
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
        if not eq or key not in ("bn_mode", "seed", "weights", "name"):
            raise ExtractError(f"bad model option {part!r} in {text!r}; use bn_mode=, seed=, weights= or name=")
        setattr(spec, key, int(value) if key == "seed" else value)
    return spec


FRONTEND = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS, "fmin": FMIN,
            "fmax": FMAX, "window": "hann (periodic)", "padding": "same (TF)", "power": 2,
            "db_amin": AMIN, "db_range": DYNAMIC_RANGE_DB, "resampler": "soxr HQ"}


def set_config(spec: SetSpec, model, policy: Policy) -> tuple[dict, dict, dict]:
    """(config that must match to append, provenance, dataset widths) of a set."""
    import librosa
    import torch

    from .. import __version__

    versions = {"convfeat": __version__, "torch": torch.__version__, "librosa": librosa.__version__,
                "numpy": np.__version__, "python": sys.version.split()[0]}
    if spec.model == "mfcc":
        config = {"model": "mfcc", "n_mfcc": 20, "deltas": "librosa.feature.delta width 9",
                  "stats": "mean,std", "length_policy": policy.to_dict(), "sample_rate": SAMPLE_RATE}
        widths = {"mfcc": MFCC_WIDTH}
    else:
        prov = model.provenance
        config = {"model": spec.model, "weights_sha256": prov.get("weights_sha256"),
                  "bn_mode": model.bn_mode, "seed": spec.seed if spec.model == "random" else None,
                  "architecture": prov["config"], "frontend": FRONTEND, "length_policy": policy.to_dict()}
        widths = {name: UNITS_PER_LAYER for name in LAYER_NAMES}
    provenance = dict(config, versions=versions, weights=getattr(model, "provenance", {}).get("weights")
                      if model is not None else None, time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return config, provenance, widths
