"""What every command module shares: the one ``fail``, the one error mapper, option choices
and help texts.  Imports nothing heavy: ``convfeat --help`` must not load torch."""
from __future__ import annotations

from enum import Enum
from functools import wraps

import typer


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad usage or input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str | None:
    """The one line for an error convfeat expects, or None for a bug.

    Expected: a :class:`~convfeat.errors.ConvfeatError` (its message), and an
    ``OSError`` the environment caused: a missing, unreadable or unwritable path,
    a path under a file, a full disk, … (any ``OSError`` naming a file, or with
    an errno from :data:`convfeat.fileio.EXPECTED_ERRNOS`), said by
    :func:`convfeat.fileio.describe_os_error` with what to do.
    """
    # Imported when an error is being handled, not at import time (keeps start-up light).
    from ..errors import ConvfeatError
    from ..fileio import EXPECTED_ERRNOS, describe_os_error, one_line, os_errno

    if isinstance(exc, ConvfeatError):
        text = str(exc)
        if isinstance(exc, KeyError) and type(exc).__str__ is KeyError.__str__ and len(exc.args) == 1:
            text = str(exc.args[0])   # KeyError quotes its message; take it unquoted
        return one_line(text)
    if isinstance(exc, OSError):
        expected = (isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                                     FileExistsError))
                    or getattr(exc, "filename", None) is not None or os_errno(exc) in EXPECTED_ERRNOS)
        if expected:
            return describe_os_error(exc)
    return None


def friendly_errors(func):
    """Turn errors convfeat expects (:class:`convfeat.errors.ConvfeatError`, a missing,
    unreadable or unwritable path, a full disk, …; see :func:`_one_line`) into one
    line on stderr and exit code 2.  Anything else is a bug and keeps its traceback."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            line = _one_line(exc)
            if line is None:
                raise
            fail(line)
    return wrapper


def json_text(obj, indent: int = 2) -> str:
    """JSON for the command line's ``--json`` output: always valid JSON.

    NumPy values and paths become plain values; a non-finite float (NaN, ±inf,
    which ``json.dumps`` would write as the invalid ``NaN`` / ``Infinity``)
    becomes ``null``; anything else unknown its ``str``.
    """
    import json
    import math

    from ..fileio import to_plain

    def clean(value):
        value = to_plain(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if value is None or isinstance(value, (str, int, bool)):
            return value
        return str(value)

    return json.dumps(clean(obj), indent=indent, allow_nan=False)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


def parse_workers(text: str) -> int | str:
    """``--workers``: ``"auto"`` or a whole number >= 0 (a :class:`typer.BadParameter` otherwise)."""
    text = str(text).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit():
        raise typer.BadParameter(f"{text!r}: use auto or a whole number >= 0")
    return int(text)


WORKERS_HELP = ("Decoding worker processes, which overlap decoding with inference (0: decode in the main "
                "process), or auto (the default): workers and torch threads that share the CPU cores in "
                "proportion to decoding's and inference's measured costs (2 cores: 2 workers, 1 thread; "
                "see the README, 'Speed'). With a number, torch's own thread setting is kept.")
PRECISION_HELP = ("Inference precision: fp32 (the default: exact) or bf16 (bfloat16 autocast on CPUs with "
                  "AVX-512 BF16 and on CUDA; features differ from fp32 by about 1e-2 of their scale, and the "
                  "set records its precision, so fp32 and bf16 runs are never mixed in one set).")


class BnMode(str, Enum):
    instance = "instance"
    batch = "batch"
    calibrated = "calibrated"
    stored = "stored"


class ShortPolicy(str, Enum):
    repeat = "repeat"
    pad = "pad"


class LongPolicy(str, Enum):
    first = "first"
    mean = "mean"


class ExportFormat(str, Enum):
    npy = "npy"
    csv = "csv"
    parquet = "parquet"


BN_HELP = ("Batch-normalisation statistics: 'instance' = each clip alone (the default for "
           "choi2017 and random, chosen on three real datasets: see the README; "
           "batch-invariant), 'calibrated' = statistics estimated once on a seeded sample of up "
           "to 256 of the given files, then frozen (batch-invariant), 'batch' = statistics of the current batch as in the original "
           "Keras-1 model (features then depend on which files share a batch), 'stored' = "
           "moving statistics stored with the weights (the only mode of choi2017-k2). "
           "Default: the model's own.")
WEIGHTS_HELP = ("Weight file to use instead of the installed one (a Keras HDF5 file; for choi2017 "
                "either the Theano- or the TF-layout file).")
