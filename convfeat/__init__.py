"""convfeat: transfer-learning features for music and audio.

A frozen music-tagging convnet (Choi et al. 2017) turns audio into a 160-d
multi-layer feature (32 average-pooled activations per conv block).

>>> import convfeat
>>> x = convfeat.embed(y, sr)            # (160,) float32
>>> X = convfeat.embed_batch([y1, y2], sr)   # (2, 160)
>>> t, F = convfeat.embed_frames(y, sr)  # timestamps (T,) s, (T, 160) frame features
>>> convfeat.tag(y, sr, top_k=5)         # {'rock': 0.41, ...}
>>> ids, X = convfeat.load("features.h5", features="choi2017", layers="12345")

Attributes are imported lazily so that light modules (``convfeat.audio``,
used by decoding worker processes, ``convfeat.store``, ``convfeat.evaluation``)
do not import torch.  The rooms, in the order the data flows: ``audio`` →
``models`` → ``extraction`` → ``store`` → ``evaluation`` (README, "Architecture").
"""
from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "embed": "api", "embed_batch": "api", "tag": "api", "tag_batch": "api", "prepare": "api", "get_model": "api",
    "embed_frames": "frames", "load_frames": "store.frames",
    "calibrated_model": "api", "load_model": "models.registry", "MODEL_NAMES": "models.registry",
    "MSD_TAGS": "models.tags", "load": "store.read", "load_frame": "store.read",
    "extract": "extraction.pipeline",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'convfeat' has no attribute {name!r}")


def __dir__():
    return __all__
