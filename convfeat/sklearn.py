"""A scikit-learn transformer of raw audio: :class:`ConvnetFeatures`.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.svm import SVC
>>> from convfeat.sklearn import ConvnetFeatures
>>> clf = make_pipeline(ConvnetFeatures(model="choi2017"), SVC())
>>> clf.fit(train_paths, train_labels).score(test_paths, test_labels)

``X`` is a list of audio file paths, of waveforms (with ``sr``), of ``(waveform, sr)``
pairs, or a 2-D array of mono waveforms ``(n_clips, samples)`` at ``sr`` Hz; a one-column
DataFrame or a Series of paths works too.  Files are decoded as ``convfeat extract``
decodes them and waveforms as :func:`convfeat.embed_batch` takes them, so the features
are those of the CLI and the Python API for the same model and length policy.

scikit-learn's generic estimator checks (``sklearn.utils.estimator_checks``) feed random
2-D numeric arrays; with ``sr`` set they are valid input here (each row a waveform), and
they pass except those listed in :data:`EXPECTED_FAILED_CHECKS`, which assume a fixed
number of input columns: audio of any length is valid input, so there is no
``n_features_in_`` to check against.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_memory

from . import __version__, audio
from .constants import UNITS_PER_LAYER
from .errors import InputError
from .layers import parse_layers

__all__ = ["ConvnetFeatures", "EXPECTED_FAILED_CHECKS"]

#: scikit-learn estimator checks that do not apply to a transformer of raw audio, and why.
EXPECTED_FAILED_CHECKS = {
    "check_n_features_in_after_fitting": "audio of any length is valid input: a waveform with another "
                                         "number of samples than the fitted ones is not an error",
    "check_n_features_in": "no fixed number of input columns (samples) exists, so there is no n_features_in_",
    "check_transformer_general": "its last step expects an error for another number of columns (samples); its "
                                 "other steps (fit_transform = fit().transform, repeatable) pass",
}

_NETS: dict = {}          # model cache: (spec key, calibration digest) -> model (at most a few)


def _net(spec: dict, calibration):
    from .models.calibration import Calibration
    from .models.registry import load_model

    digest = None if calibration is None else Calibration.digest(calibration)
    key = (tuple(sorted((k, str(v)) for k, v in spec.items())), digest)
    if key not in _NETS:
        net = load_model(spec["model"], weights=spec["weights"], bn_mode=spec["bn_mode"], seed=spec["seed"],
                         device=spec["device"])
        if calibration is not None:
            net.set_bn_statistics(calibration)
            net.bn_mode = "calibrated"
        while len(_NETS) >= 4:
            _NETS.pop(next(iter(_NETS)))
        _NETS[key] = net
    return _NETS[key]


def _waveform(x, i: int) -> np.ndarray:
    """Clip ``i`` of ``X`` as a checked numeric waveform (non-empty, real, finite)."""
    y = np.asarray(x)
    if y.dtype == object:
        y = y.astype(np.float64)         # a TypeError for what is no number
    if np.iscomplexobj(y) or not np.issubdtype(y.dtype, np.number):
        what = "Complex data not supported" if np.iscomplexobj(y) else "a waveform must hold real numbers"
        raise InputError(f"clip {i}: {what}, got dtype {y.dtype}")
    if y.size == 0:
        raise InputError(f"clip {i}: empty waveform (shape {y.shape})")
    if not np.isfinite(y).all():
        raise InputError(f"clip {i}: the waveform contains NaN or infinite samples")
    return y


def _windows(item: tuple, policy: audio.Policy) -> np.ndarray:
    """An item descriptor (see :meth:`ConvnetFeatures._items`) → its model windows."""
    if item[0] == "file":
        return audio.read_windows(item[1], policy)[0]
    return audio.to_windows(item[1], item[2], policy)


def _features(spec: dict, calibration, items: list) -> np.ndarray:
    """The features ``(n_items, D)`` of ``items`` (cached by ``memory=``: a pure function of
    its arguments, which name files by path, size and modification time)."""
    from .api import embed_windows

    policy = audio.Policy(spec["short"], spec["long"], float(spec["hop"])).check()
    return embed_windows(_net(spec, calibration), (_windows(it, policy) for it in items), spec["layers"],
                         int(spec["batch_size"]))


class ConvnetFeatures(TransformerMixin, BaseEstimator):
    """Convnet features of audio clips, as a scikit-learn transformer.

    model: ``"choi2017"``, ``"choi2017-k2"``, ``"random"``, ``"convfeat-synth"`` or the
        folder of a ``convfeat pretrain`` model.
    layers: blocks to concatenate (``"12345"``: 160 features; ``"5"``: 32).
    bn_mode: as :func:`convfeat.embed`; ``"calibrated"`` estimates the BN statistics in
        :meth:`fit`, on a seeded sample of up to ``calibration_size`` training clips (their
        first window), so a cross-validated pipeline calibrates on each training fold only.
    sr: sample rate (Hz) of waveforms given without one; not needed for file paths.
    batch_size: windows per forward pass; device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    memory: ``None``, a folder or a :class:`joblib.Memory`: features of a given input,
        model and policy are computed once and read back after (e.g. by every head of a
        grid search).
    weights, seed, short, long, hop: as :func:`convfeat.embed_batch`.

    Attributes after :meth:`fit`: ``calibration_`` (``{layerK: {"mean", "var"}}`` or None),
    ``calibration_indices_`` (positions in the fitted ``X`` of the calibration sample, or
    None), ``n_features_out_``.  :meth:`transform` returns ``(n_clips, n_features_out_)``
    float32; :meth:`get_feature_names_out` names them ``layer1_00`` … ``layer5_31``.
    """

    def __init__(self, model="choi2017", layers="12345", bn_mode=None, sr=None, batch_size=8, device="cpu",
                 memory=None, weights=None, seed=0, short="repeat", long="first", hop=29.0,
                 calibration_size=256, calibration_seed=0):
        self.model = model
        self.layers = layers
        self.bn_mode = bn_mode
        self.sr = sr
        self.batch_size = batch_size
        self.device = device
        self.memory = memory
        self.weights = weights
        self.seed = seed
        self.short = short
        self.long = long
        self.hop = hop
        self.calibration_size = calibration_size
        self.calibration_seed = calibration_seed

    # -- scikit-learn protocol -----------------------------------------------------
    def fit(self, X, y=None):
        """Check the parameters, load the model and, with ``bn_mode="calibrated"``, estimate
        the BN statistics on ``X``; → self.  ``y`` is ignored."""
        spec = self._spec()
        items = self._items(X)
        self.calibration_ = self.calibration_indices_ = None
        if spec["bn_mode"] == "calibrated":
            from .models.calibration import Calibration, calibration_indices
            from .models.registry import load_model

            if int(self.calibration_size) < 1:
                raise InputError(f"calibration_size must be >= 1, got {self.calibration_size}")
            idx = calibration_indices(len(items), int(self.calibration_size), int(self.calibration_seed))
            policy = audio.Policy(self.short, "first").check()
            windows = np.stack([_windows(items[i], policy)[0] for i in idx])
            net = load_model(spec["model"], weights=spec["weights"], bn_mode="calibrated", seed=spec["seed"],
                             device=spec["device"])
            cal = Calibration.estimate(net, windows, idx.tolist(), int(self.calibration_size),
                                       int(self.calibration_seed), batch_size=spec["batch_size"])
            self.calibration_ = cal.stats
            self.calibration_indices_ = idx
        else:
            _net(spec, None)                 # load now: a bad model or weight file fails in fit
        self.n_features_out_ = UNITS_PER_LAYER * len(parse_layers(self.layers))
        return self

    def transform(self, X):
        """Features of the clips in ``X`` → ``(n_clips, n_features_out_)`` float32."""
        check_is_fitted(self, "n_features_out_")
        spec = self._spec()
        items = self._items(X)
        compute = check_memory(self.memory).cache(_features)
        return compute(spec, self.calibration_, items)

    def get_feature_names_out(self, input_features=None):
        """``layerK_NN`` for every output column, e.g. ``layer1_00`` … ``layer5_31`` (object array)."""
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"{name}_{j:02d}" for name in parse_layers(self.layers)
                           for j in range(UNITS_PER_LAYER)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]   # features are float32 whatever the audio
        tags.input_tags.string = True                          # file paths
        return tags

    # -- helpers ---------------------------------------------------------------------
    def _spec(self) -> dict:
        """The validated parameters that determine the features (what the cache is keyed by)."""
        layers = "".join(name[-1] for name in parse_layers(self.layers))
        audio.Policy(self.short, self.long, float(self.hop)).check()
        if not isinstance(self.model, (str, os.PathLike)):
            raise InputError(f"model must be a model name or a model folder, got {type(self.model).__name__}")
        if int(self.batch_size) < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise InputError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        from .models.registry import check_bn_mode, default_bn_mode, is_model

        name = str(self.model)
        if not is_model(name):
            from .models.registry import load_model

            load_model(name)                 # raises the registry's one-line message
        bn_mode = check_bn_mode(name, self.bn_mode or default_bn_mode(name))
        return {"model": name, "weights": None if self.weights is None else str(self.weights), "bn_mode": bn_mode,
                "seed": int(self.seed), "layers": layers, "short": self.short, "long": self.long,
                "hop": float(self.hop), "device": device, "convfeat": __version__,
                # the features depend on the batch only in bn_mode batch
                "batch_size": int(self.batch_size) if bn_mode == "batch" else 8}

    def _items(self, X) -> list:
        """``X`` → item descriptors: ``("file", path, size, mtime_ns)`` or ``("wave", y, sr)``."""
        if hasattr(X, "columns"):                    # a DataFrame: one column of paths or waveforms
            if X.shape[1] != 1:
                raise InputError(f"a DataFrame X needs exactly one column (paths or waveforms), got {X.shape[1]}")
            X = X.iloc[:, 0]
        if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
            X = list(X.to_numpy())
        if hasattr(X, "tocsr") or hasattr(X, "toarray"):
            raise InputError("sparse input is not supported: X must be a list of clips (paths or waveforms) "
                             "or a dense 2-D array of waveforms")
        if isinstance(X, (str, os.PathLike)):
            raise InputError("X must be a list of clips (paths or waveforms), not one path; wrap it in a list")
        if hasattr(X, "__array__") and not isinstance(X, (list, tuple)):
            X = np.asarray(X)
        if isinstance(X, np.ndarray):
            if X.ndim != 2:
                raise InputError(f"an array X must be 2-D (n_clips, samples) of mono waveforms at sr, got "
                                 f"shape {X.shape}. Reshape your data, or pass a list of clips")
            if X.shape[1] == 0:
                raise InputError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required: "
                                 "each row is a waveform and needs samples")
            X = list(X)
        X = list(X)
        if not X:
            raise InputError("X holds no clips")
        items = []
        for i, x in enumerate(X):
            if isinstance(x, (str, os.PathLike)):
                p = Path(x)
                try:
                    st = p.stat()
                except OSError as exc:
                    raise InputError(f"clip {i}: {p}: {exc.strerror or exc}") from None
                items.append(("file", str(p.resolve()), st.st_size, st.st_mtime_ns))
            elif isinstance(x, tuple) and len(x) == 2 and np.ndim(x[1]) == 0:
                items.append(("wave", _waveform(x[0], i), x[1]))
            else:
                if self.sr is None:
                    raise InputError(f"clip {i} is a waveform: set sr= (its sample rate in Hz) or pass (waveform, sr)")
                items.append(("wave", _waveform(x, i), self.sr))
        return items
