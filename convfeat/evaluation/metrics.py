"""The metrics of each task (accuracy, macro-F1; r², RMSE; macro ROC-AUC, PR-AUC); the first chooses
the hyper-parameters."""
from __future__ import annotations

import math

import numpy as np

METRICS = {"classification": ("accuracy", "macro_f1"),
           "regression": ("r2", "rmse"),
           "multilabel": ("roc_auc", "pr_auc")}

# The range of each metric's values: the ends of a 95 % interval are kept inside it (stats.interval).
BOUNDS = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "roc_auc": (0.0, 1.0), "pr_auc": (0.0, 1.0),
          "r2": (-math.inf, 1.0), "rmse": (0.0, math.inf)}


def primary(task: str) -> str:
    """The metric that chooses the hyper-parameters (and is the headline score) of ``task``."""
    return METRICS[task][0]


def metric_values(task: str, y_true, out, only_primary: bool = False) -> dict:
    """metric -> value of one fold's outputs.

    ``y_true``/``out``: ``(n,)`` class codes or values, or ``(n, T)`` 0/1 tags and
    decision scores (macro averages over the tags with both positives and negatives;
    NaN when there is none).
    """
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, r2_score, roc_auc_score

    if task == "classification":
        res = {"accuracy": float(accuracy_score(y_true, out))}
        if not only_primary:
            res["macro_f1"] = float(f1_score(y_true, out, average="macro", zero_division=0))
        return res
    if task == "regression":
        res = {"r2": float(r2_score(y_true, out))}
        if not only_primary:
            res["rmse"] = float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(out)) ** 2)))
        return res
    cols = [j for j in range(y_true.shape[1]) if 0 < y_true[:, j].sum() < len(y_true)]
    if not cols:
        return {"roc_auc": float("nan")} if only_primary else {"roc_auc": float("nan"), "pr_auc": float("nan")}
    res = {"roc_auc": float(np.mean([roc_auc_score(y_true[:, j], out[:, j]) for j in cols]))}
    if not only_primary:
        res["pr_auc"] = float(np.mean([average_precision_score(y_true[:, j], out[:, j]) for j in cols]))
    return res


def fast_metric(task: str, metric: str, y_true, out) -> float:
    """accuracy / r2 / rmse in plain NumPy (bootstrap loops); other metrics through scikit-learn."""
    if metric == "accuracy":
        return float(np.mean(np.asarray(y_true) == np.asarray(out)))
    if metric in ("r2", "rmse"):
        y_true = np.asarray(y_true, float)
        res = float(np.sum((y_true - out) ** 2))
        if metric == "rmse":
            return math.sqrt(res / len(y_true))
        tot = float(np.sum((y_true - y_true.mean()) ** 2))
        return 1.0 - res / tot if tot > 0 else float("nan")
    return metric_values(task, y_true, out)[metric]
