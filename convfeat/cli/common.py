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


def _user_errors() -> tuple:
    # Imported when an error is being handled, not at import time (keeps start-up light).
    from ..errors import ConvfeatError

    return (ConvfeatError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def friendly_errors(func):
    """Turn errors convfeat raises on purpose (:class:`convfeat.errors.ConvfeatError`, and a
    missing or unreadable path) into one line on stderr and exit code 2.  Anything else is a
    bug and keeps its traceback."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, _user_errors()):
                fail(str(exc).strip("'\""))
            raise
    return wrapper


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


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
