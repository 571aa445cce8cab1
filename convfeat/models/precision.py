"""Inference precision: float32 (the default, exact) or bfloat16 autocast (opt-in).

``bf16`` runs the model under ``torch.autocast(device_type, dtype=torch.bfloat16)``: the
convolutions, the mel filterbank product and the head compute in bfloat16 (8 bits of
mantissa) where torch's autocast lists put them, on CPUs (fast with AVX-512 BF16 / AMX)
and on CUDA.  The fast exact path (:mod:`convfeat.models.fast`) is float32 only, so under
autocast the reference computation runs (``CompactConvnet._fast_eligible`` steps aside):
bf16 on a CPU without BF16 instructions is slower than the float32 fast path.  Features
come out as float32; they differ from float32 features by bfloat16 rounding (measured in
tests/test_speed_paths.py and ``bench/extract.py --precision``), so a feature set records
its precision and files of different precisions are never mixed.
"""
from __future__ import annotations

import contextlib

import torch

from ..constants import PRECISIONS
from ..errors import InputError

__all__ = ["autocast", "autocast_active", "check_precision"]


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`~convfeat.constants.PRECISIONS`, else :class:`InputError`."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device, precision: str = "fp32"):
    """Context manager: inference on ``device`` (``"cpu"``, ``"cuda"`` or a ``torch.device``)
    in ``precision``; for ``"fp32"`` it does nothing."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def autocast_active(device_type: str) -> bool:
    """True inside an enabled ``torch.autocast`` for ``device_type`` (``"cpu"``, ``"cuda"``)."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:   # torch < 2.4: no device argument
        return bool(torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled())
