"""Model registry: build a ready-to-run :class:`CompactConvnet` by name.

``choi2017``     the published Keras-1 tagging convnet (Theano or TF weight file).
``choi2017-k2``  the author's later Keras-2 retrain (stored BN statistics).
``random``       the same architecture with He-normal random weights (baseline).
``convfeat-synth`` our own tagging convnet, trained on the synthetic corpus
                 (``convfeat corpus synth``) and shipped inside the package; any
                 folder written by ``convfeat pretrain`` loads the same way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..constants import BN_MODES
from ..errors import InputError
from . import frontend
from .compact import POOLS_96, CompactConfig, CompactConvnet
from .keras_import import ConvnetArrays, WeightFileError, read_keras1, read_keras2
from .tags import MSD_TAGS
from .trained import load_trained, model_dir, shipped_models

MODEL_NAMES = ("choi2017", "choi2017-k2", "random")
DEFAULT_BN_MODE = {"choi2017": "instance", "random": "instance", "choi2017-k2": "stored"}
#: the BN modes of models that carry moving statistics (choi2017-k2, trained models).
STORED_ONLY = ("stored",)

__all__ = ["allowed_bn_modes", "check_bn_mode", "default_bn_mode", "is_model", "MODEL_NAMES", "DEFAULT_BN_MODE", "load_model",
           "build_from_arrays", "random_model"]


def is_model(name: str) -> bool:
    """True for a built-in model name, a shipped model or a trained-model folder."""
    return name in MODEL_NAMES or model_dir(name) is not None


def default_bn_mode(name: str) -> str:
    """The BN policy a model runs in unless told otherwise (trained models: ``stored``)."""
    return DEFAULT_BN_MODE.get(name, "stored")


def allowed_bn_modes(name: str) -> tuple[str, ...]:
    """The BN policies model ``name`` can run in, in :data:`~convfeat.constants.BN_MODES` order.

    ``choi2017`` and ``random``: the default :attr:`CompactConfig.allowed_bn_modes`;
    ``choi2017-k2`` and trained models (run by :func:`load_trained`): ``stored`` only.
    """
    allowed = CompactConfig.allowed_bn_modes if name in ("choi2017", "random") else STORED_ONLY
    return tuple(m for m in BN_MODES if m in allowed)


def check_bn_mode(name: str, bn_mode: str) -> str:
    """``bn_mode`` if model ``name`` can run in it, else an :class:`InputError` naming its modes.

    The one validation of a user's BN mode on its way to a model (CLI, extraction and the
    Python API all pass it through :func:`load_model`).
    """
    allowed = allowed_bn_modes(name)
    if bn_mode not in allowed:
        known = "" if bn_mode in BN_MODES else f" (BN modes: {', '.join(BN_MODES)})"
        raise InputError(f"bn_mode {bn_mode!r} is not available for model {name!r}{known}; "
                         f"choose one of: {', '.join(allowed)}")
    return bn_mode


def _check_frontend(arrays: ConvnetArrays, path: Path) -> None:
    # Our STFT is an FFT with a periodic Hann window; refuse a file whose stored
    # DFT kernels are something else rather than silently computing another front end.
    real, imag = frontend.dft_kernels()
    if arrays.dft_real.shape != real.shape:
        raise WeightFileError(f"{path}: DFT kernels have shape {arrays.dft_real.shape}, expected {real.shape}")
    err = max(np.abs(arrays.dft_real - real).max(), np.abs(np.abs(arrays.dft_imag) - np.abs(imag)).max())
    if err > 1e-5:
        raise WeightFileError(f"{path}: stored DFT kernels differ from a Hann-windowed DFT (max {err:.2e})")


def _check_pools(arrays: ConvnetArrays, path: Path) -> None:
    # A Keras-2 file records its architecture; ours is the compact convnet's.
    if arrays.pools is not None and arrays.pools != POOLS_96:
        raise WeightFileError(f"{path}: unexpected pool sizes {arrays.pools}")


def build_from_arrays(arrays: ConvnetArrays, config: CompactConfig, bn_mode: str) -> CompactConvnet:
    """A :class:`CompactConvnet` holding the parameters in ``arrays`` (PyTorch layout, see
    :class:`~convfeat.models.keras_import.ConvnetArrays`), with the stored mel filterbank
    ``(257, 96)``, in inference mode."""
    model = CompactConvnet(config, mel_basis=arrays.mel, bn_mode=bn_mode,
                           tag_names=MSD_TAGS if arrays.dense_w is not None else None)
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            block.conv.weight.copy_(torch.from_numpy(arrays.conv_w[i]))
            block.conv.bias.copy_(torch.from_numpy(arrays.conv_b[i]))
            block.bn.gamma.copy_(torch.from_numpy(arrays.bn_gamma[i]))
            block.bn.beta.copy_(torch.from_numpy(arrays.bn_beta[i]))
            if arrays.bn_mean is not None:
                block.bn.mean.copy_(torch.from_numpy(arrays.bn_mean[i]))
                block.bn.var.copy_(torch.from_numpy(arrays.bn_var[i]))
        if model.head is not None:
            model.head.weight.copy_(torch.from_numpy(arrays.dense_w))
            model.head.bias.copy_(torch.from_numpy(arrays.dense_b))
    return model.eval()


def random_model(seed: int = 0, bn_mode: str = "instance") -> CompactConvnet:
    """Random-weights twin: He-normal convolutions (std sqrt(2 / fan_in)), zero biases,
    BN gamma 1 / beta 0, Glorot-uniform tag head; all drawn from ``seed``.  The mel
    filterbank is the computed Slaney one; in inference mode."""
    model = CompactConvnet(CompactConfig(), mel_basis=None, bn_mode=bn_mode, tag_names=MSD_TAGS)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for block in model.blocks:
            w = block.conv.weight
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            w.copy_(torch.randn(w.shape, generator=gen) * np.sqrt(2.0 / fan_in))
            block.conv.bias.zero_()
        limit = np.sqrt(6.0 / sum(model.head.weight.shape))
        model.head.weight.copy_((torch.rand(model.head.weight.shape, generator=gen) * 2 - 1) * limit)
        model.head.bias.zero_()
    return model.eval()


def load_model(name: str = "choi2017", weights: str | Path | None = None, bn_mode: str | None = None,
               seed: int = 0, device: str | torch.device = "cpu") -> CompactConvnet:
    """Build model ``name`` with its weights, in inference mode.

    name: ``"choi2017"``, ``"choi2017-k2"``, ``"random"``, a shipped model
        (``"convfeat-synth"``) or the folder of a ``convfeat pretrain`` model.
    weights: explicit weight file; default resolved by :mod:`convfeat.models.weights`
        (``choi2017`` uses the complete Theano-layout file; pass the TF-layout
        file to get the same features without the tag head).
    bn_mode: ``"instance"`` (default for choi2017 / random), ``"batch"``,
        ``"calibrated"`` (call :meth:`CompactConvnet.calibrate` before use) or
        ``"stored"`` (the only mode of choi2017-k2 and of trained models).  Checked here,
        once (:func:`check_bn_mode`): an :class:`InputError` lists the model's modes.
    seed: random-weights seed (``random`` only).

    The returned model carries ``model.provenance``: a dict recording the model
    name, weight file and sha256, kernel layout and BN policy.
    """
    from . import weights as weights_mod

    if name not in MODEL_NAMES:
        if model_dir(name) is None:
            known = ", ".join(MODEL_NAMES + tuple(shipped_models()))
            raise InputError(f"unknown model {name!r}; choose one of {known} or a folder written by "
                             "convfeat pretrain")
        if bn_mode is not None:
            check_bn_mode(name, bn_mode)
        return load_trained(name, device=device)
    bn_mode = check_bn_mode(name, bn_mode or DEFAULT_BN_MODE[name])
    provenance = {"model": name, "bn_mode": bn_mode}
    if name == "random":
        model = random_model(seed, bn_mode)
        provenance.update(seed=int(seed), init="he_normal", weights=None, weights_sha256=None)
    else:
        path = weights_mod.resolve(name, weights)
        if name == "choi2017":
            arrays = read_keras1(path)
            config = CompactConfig(n_tags=len(MSD_TAGS) if arrays.dense_w is not None else 0,
                                   bn_eps=arrays.bn_eps)
        else:
            arrays = read_keras2(path)
            config = CompactConfig(bn_eps=arrays.bn_eps, feature_point="pre_pool",
                                   input_standardize=True, allowed_bn_modes=STORED_ONLY)
        _check_pools(arrays, path)
        _check_frontend(arrays, path)
        model = build_from_arrays(arrays, config, bn_mode)
        provenance.update(weights=str(path), weights_sha256=weights_mod.sha256_of(path),
                          layout=arrays.layout)
    provenance["config"] = model.config.to_dict()
    model.provenance = provenance
    return model.to(device)
