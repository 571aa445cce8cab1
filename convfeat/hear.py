"""The HEAR API (Holistic Evaluation of Audio Representations, hear-eval-kit's common interface).

>>> import torch, convfeat.hear as hear
>>> model = hear.load_model("", model="convfeat-synth")         # or "choi2017", a pretrain folder
>>> audio = torch.zeros(3, 16000 * 4)                              # (n_sounds, samples) at model.sample_rate
>>> hear.get_scene_embeddings(audio, model).shape                  # (3, 160) float32
>>> emb, ts = hear.get_timestamp_embeddings(audio, model)          # (3, T, 160), (3, T) milliseconds

``model.sample_rate`` is 16 kHz (one of HEAR's rates; the network's own 12 kHz is not one):
audio is resampled to 12 kHz inside (soxr, as everywhere in convfeat).  Scene embeddings are
:func:`convfeat.embed_batch` with ``long="mean"`` (every 29-s window at ``scene_hop`` seconds,
averaged; shorter sounds repeated); timestamp embeddings are :func:`convfeat.embed_frames`
(85.3-ms frames for choi2017, timestamps at frame centres, in milliseconds).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .constants import UNITS_PER_LAYER
from .errors import InputError
from .layers import parse_layers

__all__ = ["HearModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings", "HEAR_SAMPLE_RATE"]

#: the sample rate the module declares to HEAR (one of 16000, 22050, 32000, 44100, 48000).
HEAR_SAMPLE_RATE = 16000


class HearModel(nn.Module):
    """A convfeat model with HEAR's attributes: ``sample_rate`` (Hz), ``scene_embedding_size``
    and ``timestamp_embedding_size`` (``32 * n_layers``).  ``net`` is the
    :class:`~convfeat.models.CompactConvnet`; ``layers``, ``short`` and ``scene_hop`` the
    feature options."""

    def __init__(self, net, layers: str = "12345", short: str = "repeat", scene_hop: float = 14.5,
                 batch_size: int = 8):
        super().__init__()
        self.net = net
        self.layers = "".join(n[-1] for n in parse_layers(layers))
        self.short = short
        self.scene_hop = float(scene_hop)
        self.batch_size = int(batch_size)
        self.sample_rate = HEAR_SAMPLE_RATE
        self.scene_embedding_size = self.timestamp_embedding_size = UNITS_PER_LAYER * len(self.layers)

    def forward(self, audio_batch: torch.Tensor) -> torch.Tensor:
        """Same as :func:`get_scene_embeddings`."""
        return get_scene_embeddings(audio_batch, self)


def load_model(model_file_path: str = "", model: str = "choi2017", bn_mode: str | None = None,
               layers: str = "12345", short: str = "repeat", scene_hop: float = 14.5, seed: int = 0,
               device: str = "cpu", batch_size: int = 8) -> HearModel:
    """HEAR's ``load_model``: → a :class:`HearModel` (a ``torch.nn.Module``).

    model_file_path: ``""`` (the model named by ``model``), the folder of a ``convfeat pretrain``
        model (or its ``model.json``), or a Keras weight file for ``model`` (choi2017 /
        choi2017-k2 ``.hdf5``; a Keras-2 file given with the default ``model`` is taken as
        choi2017-k2's, so ``hear-validator convfeat.hear -m model_best.hdf5`` works).
    model: ``"choi2017"``, ``"choi2017-k2"``, ``"convfeat-synth"`` or ``"random"``.
    bn_mode, layers, short, seed: as :func:`convfeat.embed`; scene_hop: seconds between the
        29-s windows averaged into a scene embedding.
    """
    from .api import policy_of
    from .models.keras_import import WeightFileError
    from .models.registry import load_model as load_net
    from .models.trained import model_dir

    policy_of(short, "mean", scene_hop)           # checked here, once
    path = str(model_file_path or "")
    weights = None
    if path:
        if not os.path.exists(path):
            raise InputError(f"model_file_path {path!r} does not exist")
        if model_dir(Path(path)) is not None:
            model = path
        else:
            weights = path
    try:
        net = load_net(model, weights=weights, bn_mode=bn_mode, seed=seed, device=device)
    except WeightFileError:
        if weights is None or model != "choi2017":
            raise
        # hear-validator passes only a path: a Keras-2 file is choi2017-k2's
        net = load_net("choi2017-k2", weights=weights, bn_mode=bn_mode, seed=seed, device=device)
    return HearModel(net, layers, short, scene_hop, batch_size).eval()


def _sounds(audio_batch, model: HearModel) -> list:
    """HEAR audio ``(n_sounds, samples)`` → list of float32 NumPy rows (checked)."""
    if not isinstance(model, HearModel):
        raise InputError("model must come from convfeat.hear.load_model")
    x = audio_batch.detach().cpu().numpy() if isinstance(audio_batch, torch.Tensor) else np.asarray(audio_batch)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"audio must be (n_sounds, samples) with both > 0, got shape {tuple(x.shape)}")
    return list(x.astype(np.float32, copy=False))


def get_scene_embeddings(audio_batch: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``(n_sounds, samples)`` at ``model.sample_rate`` → float32 ``(n_sounds, scene_embedding_size)``."""
    from .api import embed_batch

    sounds = _sounds(audio_batch, model)
    X = embed_batch(sounds, model.sample_rate, model=model.net, layers=model.layers, short=model.short,
                    long="mean", hop=model.scene_hop, batch_size=model.batch_size)
    return torch.from_numpy(X)


def get_timestamp_embeddings(audio_batch: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_sounds, samples)`` at ``model.sample_rate`` → (float32 ``(n_sounds, T,
    timestamp_embedding_size)``, float32 timestamps ``(n_sounds, T)`` in milliseconds: frame
    centres, regularly spaced, the last at most half a frame past the end)."""
    from .frames import embed_frames

    out, stamps = [], None
    for y in _sounds(audio_batch, model):    # embed_frames: the checked decode path, resampled to 12 kHz
        stamps, frames = embed_frames(y, model.sample_rate, model=model.net, layers=model.layers, short=model.short)
        out.append(frames)
    emb = torch.from_numpy(np.stack(out))
    ts = torch.from_numpy(np.tile((stamps * 1000.0).astype(np.float32), (len(out), 1)))
    return emb, ts
