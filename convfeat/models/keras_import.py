"""Read the published Keras weight files into plain NumPy arrays.

Only h5py is used: no pickle, no Keras, no code from the file is run.  Two
formats are understood:

* Keras-1 weights-only files of the compact convnet (``weights_theano.hdf5``
  and ``weights_tensorflow.hdf5``).  Groups ``melgram``, ``ConvBNEluDr`` and,
  in the Theano file only, ``dense_1``.  Theano kernels are stored flipped in
  both spatial axes (Theano convolves, PyTorch cross-correlates).
* The Keras-2 full-model file of the later retrain (``model_best.hdf5``):
  ``model_config`` (JSON) plus ``model_weights``; channels-last kernels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..constants import FMAX, HOP, N_FFT, N_MELS, SAMPLE_RATE
from ..errors import InputError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS1_BN_EPS = 1e-3   # Keras-1 BatchNormalization default; the Keras-1 files do not record it


@dataclass
class ConvnetArrays:
    """Parameters of a compact convnet in PyTorch orientation.

    conv_w: five ``(32, C_in, 3, 3)`` cross-correlation kernels (freq, time).
    bn_mean / bn_var: stored moving statistics, or ``None`` where the file's
        statistics carry no information (Keras-1 "mode 2").
    dense_w: ``(50, 32)`` (PyTorch ``Linear`` layout) or ``None`` when absent.
    pools: ``(freq, time)`` max-pool sizes recorded in the file (Keras-2 only; the
        caller checks them against its architecture), else ``None``.
    """

    layout: str
    dft_real: np.ndarray
    dft_imag: np.ndarray
    mel: np.ndarray
    conv_w: list
    conv_b: list
    bn_gamma: list
    bn_beta: list
    bn_mean: list | None
    bn_var: list | None
    dense_w: np.ndarray | None
    dense_b: np.ndarray | None
    bn_eps: float = KERAS1_BN_EPS
    keras_config: dict | None = None
    pools: tuple | None = None


class WeightFileError(InputError):
    """A weight file is missing, of the wrong kind, or incomplete."""


def check_hdf5(path: str | Path) -> None:
    """Raise :class:`WeightFileError` unless ``path`` is an HDF5 file (by signature)."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(HDF5_SIGNATURE):
        return
    if head[:1] == b"\x80" or head.startswith(b"PK\x03\x04"):
        kind = "a Python pickle / torch archive (refused: unpickling can run code)"
    elif head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        kind = "an HTML page (a login or error page instead of the file?)"
    elif not head:
        kind = "empty"
    else:
        kind = "not HDF5"
    raise WeightFileError(f"{path} is {kind}; expected a Keras HDF5 weight file")


def _arr(group: h5py.Group, *names: str) -> np.ndarray:
    for name in names:
        if name in group:
            return np.asarray(group[name][()], dtype=np.float32)
    raise WeightFileError(f"missing dataset {names[0]!r} in group {group.name!r}")


def read_keras1(path: str | Path) -> ConvnetArrays:
    """Read a Keras-1 compact-convnet weight file (Theano or TensorFlow layout)."""
    check_hdf5(path)
    with h5py.File(path, "r") as h:
        if "melgram" not in h or "ConvBNEluDr" not in h:
            raise WeightFileError(f"{path} is not a Keras-1 compact-convnet weight file "
                                  "(needs groups 'melgram' and 'ConvBNEluDr')")
        mg, body = h["melgram"], h["ConvBNEluDr"]
        if "param_0" in mg:
            layout, suffix, mel_names = "theano", "", ("param_0", "param_1", "param_2")
        elif "Variable:0" in mg:
            layout, suffix, mel_names = "tensorflow", ":0", ("Variable:0", "Variable_1:0", "Variable_2:0")
        else:
            raise WeightFileError(f"{path}: unrecognised melgram weights {list(mg)}")
        dft_real = _arr(mg, mel_names[0])[:, 0, 0, :]
        dft_imag = _arr(mg, mel_names[1])[:, 0, 0, :]
        mel = _arr(mg, mel_names[2])
        conv_w, conv_b, gamma, beta = [], [], [], []
        for i in range(1, 6):
            w = _arr(body, f"convolution2d_{i}_W{suffix}")
            if layout == "theano":
                w = w[:, :, ::-1, ::-1]
            conv_w.append(np.ascontiguousarray(w))
            conv_b.append(_arr(body, f"convolution2d_{i}_b{suffix}"))
            gamma.append(_arr(body, f"batchnormalization_{i}_gamma{suffix}"))
            beta.append(_arr(body, f"batchnormalization_{i}_beta{suffix}"))
        dense_w = dense_b = None
        if "dense_1" in h and len(h["dense_1"]) > 0:
            dense_w = np.ascontiguousarray(_arr(h["dense_1"], f"dense_1_W{suffix}").T)
            dense_b = _arr(h["dense_1"], f"dense_1_b{suffix}")
    return ConvnetArrays(layout, dft_real, dft_imag, mel, conv_w, conv_b, gamma, beta,
                         None, None, dense_w, dense_b, bn_eps=KERAS1_BN_EPS)


def read_keras2(path: str | Path) -> ConvnetArrays:
    """Read the Keras-2 full-model file of the compact-convnet retrain."""
    check_hdf5(path)
    with h5py.File(path, "r") as h:
        if "model_config" not in h.attrs or "model_weights" not in h:
            raise WeightFileError(f"{path} is not a Keras-2 full-model file "
                                  "(needs 'model_config' and 'model_weights')")
        config = json.loads(h.attrs["model_config"])
        layers = config["config"] if isinstance(config["config"], list) else config["config"]["layers"]
        kinds = [layer["class_name"] for layer in layers]
        expected = (["Melspectrogram", "Normalization2D"]
                    + ["Conv2D", "BatchNormalization", "ELU", "MaxPooling2D"] * 5
                    + ["GlobalMaxPooling2D", "Dense"])
        if kinds != expected:
            raise WeightFileError(f"{path}: unexpected layer sequence {kinds}")
        mel_cfg = layers[0]["config"]
        wanted = {"sr": SAMPLE_RATE, "n_dft": N_FFT, "n_hop": HOP, "n_mels": N_MELS, "fmax": int(FMAX)}
        for key, value in wanted.items():
            if mel_cfg.get(key) != value:
                raise WeightFileError(f"{path}: melgram {key}={mel_cfg.get(key)}, expected {value}")
        if layers[1]["config"].get("str_axis") != "data_sample":
            raise WeightFileError(f"{path}: only per-sample input normalisation is supported")
        pools = tuple(tuple(layer["config"]["pool_size"]) for layer in layers
                      if layer["class_name"] == "MaxPooling2D")
        eps = {layer["config"]["epsilon"] for layer in layers
               if layer["class_name"] == "BatchNormalization"}
        if len(eps) != 1:
            raise WeightFileError(f"{path}: batch normalisation epsilons differ: {eps}")
        mw = h["model_weights"]
        mg = mw["melgram/melgram"]
        dft_real = _arr(mg, "real_kernels:0")[:, 0, 0, :]
        dft_imag = _arr(mg, "imag_kernels:0")[:, 0, 0, :]
        mel = _arr(mg, "Variable:0")
        conv_w, conv_b, gamma, beta, mean, var = [], [], [], [], [], []
        for i in range(1, 6):
            conv = mw[f"conv2d_{i}/conv2d_{i}"]
            # Keras-2 kernel (rows=freq, cols=time, in, out) -> (out, in, freq, time)
            conv_w.append(np.ascontiguousarray(_arr(conv, "kernel:0").transpose(3, 2, 0, 1)))
            conv_b.append(_arr(conv, "bias:0"))
            bn = mw[f"batch_normalization_{i}/batch_normalization_{i}"]
            gamma.append(_arr(bn, "gamma:0"))
            beta.append(_arr(bn, "beta:0"))
            mean.append(_arr(bn, "moving_mean:0"))
            var.append(_arr(bn, "moving_variance:0"))
        dense = mw["dense_1/dense_1"]
        dense_w = np.ascontiguousarray(_arr(dense, "kernel:0").T)
        dense_b = _arr(dense, "bias:0")
    return ConvnetArrays("keras2-tensorflow", dft_real, dft_imag, mel, conv_w, conv_b, gamma, beta,
                         mean, var, dense_w, dense_b, bn_eps=float(eps.pop()), keras_config=config,
                         pools=pools)
