"""The models: the published compact convnet ported exactly, its random-weights twin, our own
trained models, and the MFCC baseline.

``registry``      :func:`load_model` by name (``choi2017``, ``choi2017-k2``, ``random``, a trained folder)
``compact``       the compact convnet as a PyTorch module, with its BN policies
``frontend``      STFT → mel power → dB, as in the published graph
``input``         input preprocessing options of models we train (log/linear, weighting, …)
``keras_import``  reading the published Keras weight files into plain arrays
``weights``       where weight files live; fetching them, sha256-checked
``trained``       saving and loading models written by ``convfeat pretrain``; shipped models
``calibration``   frozen BN statistics estimated once over a calibration set
``mfcc``          the MFCC baseline feature (torch-free)
``tags``          the 50 MSD tag names

Names are imported lazily, so ``convfeat.models.mfcc`` (used by torch-free decode workers)
does not import torch.  A model knows no file format of the feature store.
"""
from importlib import import_module

_LAZY = {
    "load_model": "registry", "is_model": "registry", "default_bn_mode": "registry",
    "build_from_arrays": "registry", "random_model": "registry", "MODEL_NAMES": "registry",
    "DEFAULT_BN_MODE": "registry", "allowed_bn_modes": "registry", "check_bn_mode": "registry",
    "CompactConfig": "compact", "CompactConvnet": "compact",
    "WeightFileError": "keras_import",
    "load_trained": "trained", "model_dir": "trained", "shipped_models": "trained",
    "MSD_TAGS": "tags", "mfcc_feature": "mfcc",
}
_CONSTANTS = ("BN_MODES", "LAYER_NAMES", "WINDOW_SAMPLES", "WINDOW_SECONDS")

__all__ = sorted(_LAZY) + list(_CONSTANTS)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    if name in _CONSTANTS:
        return getattr(import_module("..constants", __name__), name)
    raise AttributeError(f"module 'convfeat.models' has no attribute {name!r}")


def __dir__():
    return __all__
