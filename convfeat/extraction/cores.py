"""How ``convfeat extract --workers auto`` shares the CPU cores between decoding and inference.

The extraction has two kinds of CPU work per item: decoding (read, mix down, resample
to 12 kHz, and the MFCC baseline when asked for), done in worker processes, and convnet
inference, done in the main process on torch's intra-op threads.  With ``P`` cores and
costs ``d`` (decode, per file, one core) and ``m`` (inference, per 29-s window, one
core) no arrangement beats the *pipeline bound* ``P / (d + m)`` items per second; it is
reached only when every core is busy all the time.  The rule:

* Each kind gets at least its share of the cores, in proportion to its cost:
  ``threads = ceil(P·m / (d + m))`` torch threads and ``workers = ceil(P·d / (d + m))``
  decode processes (each at least 1), so neither stage alone can run slower than the
  bound (``workers / d >= P / (d + m)`` and ``threads / m >= P / (d + m)``).  Rounding
  both up may give ``P + 1`` in all, never more: a worker with nothing to do waits on the
  bounded decode-ahead queue and costs nothing, whereas a missing one leaves a core idle
  whenever inference waits for audio; the operating system time-shares the one extra,
  and the fast path's kernels claim work dynamically, so a thread that loses its core
  for a while delays nothing (convfeat/models/fast.py).  One torch thread also avoids
  OpenMP threads spinning against the decoders on small machines.
* Costs are the measured ones of this repository (see the constants below): decoding a
  30-s 44.1-kHz stereo FLAC (~30 ms) costs about twice the fast path's inference
  (~15 ms per window and convnet set), so on 2 cores the rule gives 2 workers and 1
  torch thread; on 16 cores 11 workers and 6 threads.  Several convnet sets multiply
  ``m``, the MFCC baseline (computed by the workers, ~30 ms per window) adds to ``d``.
* On a GPU the main process only assembles batches and copies them: ``m`` is taken as 0
  (1 thread, a worker per core).
* Never more workers than items.

``bench/extract.py --cores`` times a few (workers, threads) pairs end to end, so the
rule can be re-measured on another machine.
"""
from __future__ import annotations

import contextlib
import math
import os

from ..errors import InputError

__all__ = ["CONVNET_MS", "DECODE_MS", "MFCC_MS", "available_cores", "plan_cores", "resolve_device",
           "torch_threads"]

DECODE_MS = 30.0    # ms, one core: decode + mix-down + resample of a 30-s 44.1-kHz stereo FLAC (issue #11: 25 + 4)
MFCC_MS = 30.0      # ms, one core: the MFCC baseline of one 29-s window (librosa)
CONVNET_MS = 15.0   # ms, one core: the fast exact path on one 29-s window (bench/model.py, batch 16)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_cores(n_cores: int, device: str = "cpu", sets=("choi2017",), n_items: int | None = None
               ) -> tuple[int, int]:
    """``(decode workers, torch intra-op threads)`` for an extraction (see the module docstring).

    n_cores: cores to share (>= 1); device: ``"cpu"`` or ``"cuda"`` (a ``torch.device``
    or its string; anything but CPU counts as an accelerator); sets: the feature sets, as
    model names or objects with a ``model`` attribute (``"mfcc"`` is the MFCC baseline,
    anything else a convnet); n_items: items to decode (caps the workers; None: no cap).
    """
    if isinstance(n_cores, bool) or not isinstance(n_cores, int) or n_cores < 1:
        raise InputError(f"n_cores must be a whole number >= 1, got {n_cores!r}")
    models = [getattr(s, "model", s) for s in sets]
    convnets = sum(1 for m in models if m != "mfcc")
    decode = DECODE_MS + (MFCC_MS if "mfcc" in models else 0.0)
    on_cpu = str(device).split(":")[0] == "cpu"
    infer = CONVNET_MS * convnets if on_cpu else 0.0
    share = infer / (decode + infer)
    threads = min(n_cores, max(1, math.ceil(n_cores * share - 1e-9)))
    workers = min(n_cores, max(1, math.ceil(n_cores * (1.0 - share) - 1e-9)))
    if n_items is not None:
        workers = max(1, min(workers, int(n_items)))
    return workers, threads


def resolve_device(device="auto"):
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"`` | ``torch.device`` → ``torch.device``;
    ``"auto"`` is CUDA when available.  A CUDA device that is not there is an
    :class:`InputError` saying what to use instead."""
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"--device: {device!r} is not a device (use auto, cpu or cuda): {exc}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device}: no CUDA device is available to this torch "
                             f"({torch.__version__}); use --device cpu (or auto)")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"--device {device}: there are {count} CUDA device(s), numbered from 0")
    elif dev.type != "cpu":
        raise InputError(f"--device {device}: only cpu and cuda are supported")
    return dev


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count
    afterwards; ``None``: leave torch's setting alone."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
