"""How good is a feature on a labelled task: protocols, heads, honest scores, reports.

The pieces, each usable alone (scikit-learn style, plain arrays in and out):

* :func:`load_labels` (:mod:`.labels`) matches a manifest (CSV or DataFrame)
  to feature-file items by id or path and returns the labels in manifest
  order, with the items that have no label and the labels that have no item
  *reported* (:attr:`Labels.items_without_labels`,
  :attr:`Labels.labels_without_items`), never silently dropped.  Labels with
  nothing to learn — one class, a constant target, no tag that some items
  have and others lack — and folds whose training side holds one class are
  refused with a message that says what was found and what to do.
* :func:`make_splits` (:mod:`.splits`) builds the outer folds: stratified
  k-fold (scikit-learn's defaults, not shuffled unless asked), predefined
  folds from a column, a fixed train/test split from a column, or group-aware
  folds (no group is ever in both the training and the test side of a fold).
* :func:`evaluate` (:mod:`.protocol`) scores one feature matrix with one head
  under one protocol, as :class:`Options` say:

  - ``protocol="study"`` — the study's procedure (SPEC §4) exactly: every
    grid point is cross-validated on the same folds and the reported score is
    the best grid point's mean CV score (scikit-learn ``GridSearchCV.best_score_``
    with the ``iid=True`` fold weighting of the version the study ran).  It is
    optimistically biased: the folds that choose the hyper-parameters also
    score them.
  - ``protocol="nested"`` (default) — inside each outer training fold an inner
    CV chooses the hyper-parameters; the chosen head is refitted on the outer
    training fold and scored on the outer test fold, which took no part in
    the choice.

* :func:`sweep` evaluates many feature matrices on the same folds, in
  parallel across cores (one work unit per feature set and outer fold).
* :func:`paired_test`, :func:`compare` (:mod:`.stats`) and
  :func:`write_report` (:mod:`.report`) produce the per-fold scores, mean ±
  std, 95 % intervals (kept inside the metric's range), paired tests against
  baselines, per-item predictions, confusion matrices and layer-subset plots
  (Markdown, JSON, CSV, PNG).  Outer folds are numbered from 1 everywhere,
  as the datasets' official folds are.
* :func:`run` (:mod:`.run`) does all of it for feature files and a manifest
  (``convfeat evaluate``, ``convfeat run``).

Heads (``head=``, :mod:`.heads`): ``"svm"`` — the study's SVC/SVR grid
(:func:`svm_grid`), computed with precomputed kernels (the squared-distance
and Gram matrices of a fold are computed once and every γ reuses them;
identical to the RBF/linear estimators, tested); ``"linear"`` — logistic
regression / ridge, fast for large sets.  Multi-label tasks fit one binary
head per tag (one-vs-rest).

Tasks and metrics (:mod:`.metrics`): ``classification`` (accuracy,
macro-F1), ``regression`` (r², RMSE; one target at a time), ``multilabel``
(macro ROC-AUC, macro PR-AUC = average precision).  The first metric of each
task chooses the hyper-parameters.

Importing this package never imports torch or h5py (feature files are read
through :mod:`convfeat.store.read` when :func:`run` is called).
"""
from __future__ import annotations

from ..constants import TASKS
from .heads import (LINEAR_C, PRECOMPUTE_MAX_ITEMS, RIDGE_ALPHA, STUDY_C, STUDY_GAMMAS, describe_point, grid_for,
                    linear_grid, svm_grid)
from .labels import Labels, load_labels
from .metrics import METRICS
from .options import DEFAULT_MAX_ITER, HEADS, PROTOCOL_LABELS, PROTOCOLS, EvaluationError, Options
from .protocol import Result, cpu_count, evaluate, sweep
from .report import format_table, json_safe, write_report
from .run import FeatureSpec, feature_specs, layer_subsets, run
from .splits import Splits, inner_splits, legacy_stratified_folds, make_splits
from .stats import compare, min_wilcoxon_p, pair_baselines, paired_test

# The old module's private names that bench/evaluate.py and the tests use.
_describe_point = describe_point
_json_safe = json_safe
_inner_splits = inner_splits

__all__ = [
    "TASKS", "PROTOCOLS", "HEADS", "METRICS", "EvaluationError", "Labels", "Splits", "Result",
    "load_labels", "make_splits", "legacy_stratified_folds", "svm_grid", "linear_grid", "grid_for",
    "evaluate", "sweep", "paired_test", "compare", "pair_baselines", "min_wilcoxon_p", "layer_subsets", "write_report", "format_table",
    "Options", "PROTOCOL_LABELS", "DEFAULT_MAX_ITER", "STUDY_C", "STUDY_GAMMAS", "LINEAR_C", "RIDGE_ALPHA",
    "PRECOMPUTE_MAX_ITEMS", "FeatureSpec", "feature_specs", "run", "cpu_count",
]
