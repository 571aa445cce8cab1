"""What an evaluation needs besides the data: :class:`EvaluationError`, the protocol
and head names, and :class:`Options` (protocol, folds, head, grid, engine, inner search, parallelism),
checked once when made."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from numbers import Integral

from ..constants import TASKS
from ..errors import InputError

PROTOCOLS = ("nested", "study")
HEADS = ("svm", "linear")
SCALERS = ("auto", "both", "on", "off")
ENGINES = ("shared", "fold")
INNER_SEARCHES = ("halving", "full")
PROTOCOL_LABELS = {
    "study": "study protocol: best grid point's mean CV score, hyper-parameters chosen on the same folds "
             "(optimistically biased)",
    "nested": "nested CV: hyper-parameters chosen by an inner CV inside each outer training fold, "
              "scored on the outer test fold",
}
# libsvm iterations per fit.  The study's scikit-learn had no cap; a few linear-kernel SVR points on
# features need 10^7-10^9 iterations (seconds to hours per fit; ~1 µs per iteration).  Fits stopped at the cap are
# recorded in Result.capped and the report; a best (reported) point that stopped at the cap is re-run
# without it, so the reported figure always comes from converged fits.  -1 removes the cap.
DEFAULT_MAX_ITER = 1_000_000


class EvaluationError(InputError):
    """The inputs cannot be evaluated as asked (the message says why, on one line; a ``ValueError``)."""


def check_task(task: str) -> None:
    if task not in TASKS:
        raise EvaluationError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"protocol must be nested or study, got {protocol!r}")


def check_head(head: str) -> None:
    if head not in HEADS:
        raise EvaluationError(f"head must be one of {', '.join(HEADS)}, got {head!r}")


def check_scaler(scaler: str) -> None:
    if scaler not in SCALERS:
        raise EvaluationError(f"scaler must be auto, both, on or off, got {scaler!r}")


def check_n_folds(n_folds: int) -> None:
    if n_folds < 2:
        raise EvaluationError(f"--folds must be at least 2, got {n_folds}")


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise EvaluationError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _flag(name: str, value, allowed: tuple = (True, False)):
    if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
        shown = " or ".join("true" if a is True else "false" if a is False else repr(a) for a in allowed)
        raise EvaluationError(f"{name} must be {shown}, got {value!r}")
    return value


@dataclass(frozen=True)
class Options:
    """How to evaluate, independent of the data; every field is checked when the object is made.

    Attributes
    ----------
    protocol : str
        ``"nested"`` (honest) or ``"study"`` (the published, optimistic procedure).
    head : str
        ``"svm"`` (the study's SVC/SVR grid) or ``"linear"`` (logistic regression / ridge).
    scaler : str
        Standard scaling in the default grid: ``auto``, ``both``, ``on`` or ``off`` (:func:`grid_for`).
    grid : list of dict, optional
        Hyper-parameter points; ``None``: :func:`grid_for` (head, task, protocol, scaler).
    n_folds, shuffle, seed : int, bool, int
        Outer k-fold (used when the folds are not given or read from a column).
    inner_folds : int
        Inner folds of nested CV.
    n_jobs : int
        Worker processes (-1: all cores).
    iid : bool, optional
        Weight folds by test size in the study score (default: True for the study protocol).
    precompute : bool or "auto"
        Precomputed SVM kernels (``"auto"``: up to :data:`PRECOMPUTE_MAX_ITEMS` items per fold).
    max_iter : int
        libsvm iterations per fit; -1: no cap.
    engine : str
        How the SVM grid is fitted; both give the same figures.  ``"shared"``: kernel matrices
        computed once per feature set (unscaled) or fold (scaled) and shared by every grid point
        and fold, fits spread over ``n_jobs`` threads (:mod:`.kernels`); ``"fold"``: the per-fold
        engine, kernels computed again in every fold, ``n_jobs`` processes.  Heads other than a
        precomputed-kernel SVM always use ``"fold"``.
    inner_search : str
        How nested CV chooses a point in each outer training fold: ``"halving"`` (successive
        halving over the inner folds, :func:`.heads.inner_search`; about 2.6 times fewer inner
        fits with 5 inner folds) or ``"full"`` (every point on every inner fold).  The study
        protocol always scores every point.
    """

    protocol: str = "nested"
    head: str = "svm"
    scaler: str = "auto"
    grid: list | None = field(default=None, compare=False)
    n_folds: int = 10
    shuffle: bool = False
    seed: int | None = 0
    inner_folds: int = 5
    n_jobs: int = 1
    iid: bool | None = None
    precompute: bool | str = "auto"
    max_iter: int = DEFAULT_MAX_ITER
    engine: str = "shared"
    inner_search: str = "halving"

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        check_head(self.head)
        check_scaler(self.scaler)
        for name in ("n_folds", "inner_folds", "n_jobs", "max_iter") + (("seed",) if self.seed is not None else ()):
            object.__setattr__(self, name, _whole(name, getattr(self, name)))
        check_n_folds(self.n_folds)
        if self.inner_folds < 2:
            raise EvaluationError(f"inner_folds must be at least 2 (--inner-folds), got {self.inner_folds}")
        if self.n_jobs == 0:
            raise EvaluationError("n_jobs must be a number of processes (1 or more; -1 for all cores), got 0")
        if self.max_iter == 0 or self.max_iter < -1:
            raise EvaluationError(f"max_iter must be a number of libsvm iterations (1 or more, or -1 for no cap), "
                                  f"got {self.max_iter}")
        _flag("shuffle", self.shuffle)
        _flag("iid", self.iid, (True, False, None))
        _flag("precompute", self.precompute, (True, False, "auto"))
        if self.engine not in ENGINES:
            raise EvaluationError(f"engine must be shared or fold, got {self.engine!r}")
        if self.inner_search not in INNER_SEARCHES:
            raise EvaluationError(f"inner_search must be halving or full, got {self.inner_search!r}")
        if self.grid is not None and (not self.grid or not all(isinstance(p, dict) for p in self.grid)):
            raise EvaluationError("grid must be a non-empty list of hyper-parameter points (dicts), e.g. "
                                  "grid_for('svm', 'classification')")

    @property
    def weight_folds(self) -> bool:
        """Whether the study score weights folds by test size (``iid``, default: for the study protocol)."""
        return self.protocol == "study" if self.iid is None else self.iid

    @classmethod
    def resolve(cls, options: Options | None, protocol: str | None, settings: dict, where: str) -> Options:
        """``options`` (or the defaults) with ``protocol`` and keyword ``settings`` applied, checked once.

        ``where`` names the calling function in the message about unknown keywords.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in settings if k not in names]
        if unknown:
            raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}; the evaluation options "
                            f"are: {', '.join(names)}")
        if protocol is not None:
            settings = {**settings, "protocol": protocol}
        base = options if options is not None else cls()
        return dataclasses.replace(base, **settings) if settings else base
