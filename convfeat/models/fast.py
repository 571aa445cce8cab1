"""Fast exact inference for :class:`~convfeat.models.compact.CompactConvnet` on the CPU.

The C++ source of the kernels is ``fast_kernels.cpp`` beside this module (package data); this
module compiles it once per machine and compiler, caches the library, and calls it.

``CompactConvnet.forward`` / ``forward_input`` use this path by default in inference (eval
mode, nothing to differentiate, float32 CPU tensors); ``reference=True`` runs the
straightforward computation, which tests/test_port.py checks against NumPy and
tests/test_fast.py checks this path against (max |fast - ref| <= 1e-5 of each output's scale;
typically 1e-7 .. 3e-6).

The reference stores every block's full-resolution convolution output and makes three more
passes over it (batch normalisation, ELU, max-pooling).  Block 1 dominates: a 3x3 convolution
with ONE input channel over the whole 96 x 1360 map (a shape library convolutions run at a
few GFLOP/s), 16.7 MB per clip, with page faults on every fresh buffer.  Here:

* **Sign trick.**  BN is a per-channel affine map ``a z + b`` with ``a = gamma / sqrt(var +
  eps)``: the sign of ``a`` is the sign of ``gamma``, known before any statistics.  Channels
  with ``gamma < 0`` are computed with negated convolution weights and bias (exact), so
  ``a >= 0`` everywhere; BN then commutes with max-pooling, and so does ELU (increasing).
  Every block max-pools the RAW convolution output and applies BN + ELU to the pooled map.
* **Statistics on the fly.**  The per-channel sum and sum of squares of the convolution
  output (per clip in ``instance`` mode, combined over the batch with Chan's formula in
  ``batch`` mode, not needed in ``calibrated`` / ``stored``) are accumulated while pooling,
  around a per-clip shift (the expected channel mean), in float32 runs of at most 16 terms
  added into float64.
* **Block 1** is one compiled kernel: the 9 shifted multiply-adds of the 1-channel 3x3
  convolution, the max-pool and the statistics in one pass over a row group, in registers,
  the time axis split into ``pool_width`` phases so that time pooling is a lane-wise
  maximum, and the input centred on its clip mean (errors scale with the spread of the dB
  map, not its -50 dB offset).  Nothing full-resolution is written.
* **Blocks 2-5**: PyTorch's (oneDNN) convolution on channels-last maps, then one compiled
  pass pools and accumulates the statistics, and one applies BN + ELU to the pooled map in
  place, writing the next block's input and the feature sums.
* **Front end**: windowed frames formed in a kernel (padding virtual), the same real FFT as
  ``torch.stft`` (bit-identical spectra: the FFT is where float32 rounding is amplified for
  quiet bins), then power and the mel product over each band's nonzero bins (502 of 257 x 96
  for the Slaney filterbank) fused, written in the network's layout.
* Big work buffers are kept between calls (per thread, up to :data:`SCRATCH_BYTES`).

``feature_point="pre_pool"`` (choi2017-k2: features are means of the ELU output BEFORE
pooling) is handled when the BN statistics are known beforehand (``stored`` / ``calibrated``,
the only modes such models have): the kernels also accumulate ``ELU(a z + b)`` over the full
map (a vectorised exp).  With ``instance`` / ``batch`` BN a pre-pool model runs the reference
(no such model exists).  So do training mode, autograd, non-CPU or non-float32 tensors,
inputs with NaN / inf, channel counts that are not a multiple of 16 and inputs too short for
the pooling.

The kernels are C++ (GCC vector extensions; no Python or torch headers), compiled on first
use with the system compiler (``$CXX``, ``g++``, ``c++`` or ``clang++``; a few seconds,
``-O3 -march=native``) into the user cache (``$CONVFEAT_CACHE_DIR/kernels`` or the platform
cache dir), keyed by the source, the flags, the compiler and the CPU, and loaded with ctypes.
When no compiler is available or the build fails, a one-time warning says why and the model
runs its reference forward.  ``CONVFEAT_FAST=0`` turns the fast path off.  Threads:
``torch.get_num_threads()`` (torch's own ops, and Python helper threads for the kernels);
nothing global is changed.
"""
from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from .. import native
from ..constants import AMIN, DYNAMIC_RANGE_DB, LAYER_NAMES
from .frontend import same_padding

__all__ = ["available", "unavailable_reason", "supports", "forward", "forward_input", "compile_seconds"]

VL = 16                 # float lanes of the kernels' vector type
MAX_CHANNELS = 256      # per-channel accumulators live on the kernel's stack
MAX_POOL_WIDTH = 16

# -----------------------------------------------------------------------------------------
# C++ source (fast_kernels.cpp) and flags
# -----------------------------------------------------------------------------------------
def _source() -> str:
    """The kernels' C++ source, read from the package (a wheel carries it as package data)."""
    return native.source("convfeat.models", "fast_kernels.cpp")


_FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno",
          "-fno-trapping-math"]
_ABI = 9

# -----------------------------------------------------------------------------------------
# Building and loading the kernels
# -----------------------------------------------------------------------------------------
_compile_seconds = 0.0      # time spent compiling in this process (0 when the cache hit)
_lock = threading.Lock()    # guards the helper-thread pool


def _build() -> ctypes.CDLL:
    global _compile_seconds
    lib, seconds = native.build(_source(), _FLAGS, "convfeat_fast", _ABI, _load)
    _compile_seconds += seconds
    return lib


def _load(path: Path) -> ctypes.CDLL:
    P, I, L, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float
    sig = {"frames_window": [P, L, I, I, I, I, P, P, L, P],
           "mel_power": [P, I, I, I, P, P, P, P, P, L, I, F, P],
           "power_spectrum": [P, P],
           "build_planes": [P, L, L, L, I, I, I, I, P, F, I, P, P, P],
           "block1": [P, I, I, I, I, I, I, I, P, P, P, P, P, P, P, I, I],
           "nhwc_pool_stats": [P, I, I, I, I, I, P, P, P, P, P, P, I, I],
           "nhwc_finish": [P, I, I, I, P, P, P]}
    # every kernel ends with ..., item0, item1 and returns nothing
    return native.load(path, "convfeat_fast_abi", _ABI, {name: (args + [L, L], None) for name, args in sig.items()})


_LIBRARY = native.Library("fast inference kernels", "using the reference forward pass (exact, slower)",
                          lambda: _build())
_kernels = _LIBRARY.get      # the loaded kernel library, or None


def available() -> bool:
    """True when the compiled kernels are built and loaded (builds them on first call)."""
    return _kernels() is not None


def unavailable_reason() -> str | None:
    """Why the fast path is off (None when it is available or not tried yet)."""
    return _LIBRARY.reason


def compile_seconds() -> float:
    """Seconds this process spent compiling the kernels (0.0 when they came from the cache)."""
    return _compile_seconds


# -----------------------------------------------------------------------------------------
# Threads
# -----------------------------------------------------------------------------------------
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _forget_pool() -> None:      # in a forked child the pool's threads do not exist
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


SERIAL_WORK = 1 << 18   # below this many values touched, one thread (a split costs a barrier)


def _parallel(fn, n_items: int, *args, work: int | None = None) -> None:
    """Run kernel ``fn(*args, item0, item1)`` over ``[0, n_items)`` on torch's thread count
    (``torch.get_num_threads()``).

    The range is cut into a few pieces per thread, claimed dynamically by Python helper
    threads (ctypes releases the GIL) and by the calling thread, which never waits for a
    helper that has not started yet: on a loaded machine a helper may wait milliseconds for a
    CPU, and the caller then simply does more of the work.  ``work``: about how many values
    the call touches; small calls run on the calling thread alone.  Results do not depend on
    the split (items are independent)."""
    global _pool, _pool_size
    n = max(1, min(torch.get_num_threads(), n_items))
    if work is not None and work < SERIAL_WORK:
        n = 1
    if n == 1:
        fn(*args, 0, n_items)
        return
    if _pool is None or _pool_size < n - 1:
        with _lock:
            if _pool is None or _pool_size < n - 1:
                if _pool is not None:
                    _pool.shutdown(wait=False)
                _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="convfeat-fast")
                _pool_size = n - 1
    pieces = min(n_items, 4 * n)
    bounds = [n_items * i // pieces for i in range(pieces + 1)]
    claims = iter(range(pieces))
    claim_lock = threading.Lock()

    def work_loop() -> None:
        while True:
            with claim_lock:
                i = next(claims, None)
            if i is None:
                return
            fn(*args, bounds[i], bounds[i + 1])

    helpers = [_pool.submit(work_loop) for _ in range(n - 1)]
    work_loop()
    for h in helpers:
        if not h.cancel():          # started: it holds a piece (or is about to find none)
            h.result()


SCRATCH_BYTES = 256 << 20   # per thread: large work buffers kept between calls up to this total


_scratch_local = threading.local()


def _scratch(key: str, shape: tuple, dtype=torch.float32) -> torch.Tensor:
    """An uninitialised work tensor of ``shape``, reused between calls (per calling thread).

    Fresh multi-megabyte allocations cost page faults (the first touch of every 4-KB page:
    about a fifth of the reference forward pass's time); the fast path's big buffers are
    kept instead, up to :data:`SCRATCH_BYTES` per thread.  Callers never return them."""
    cache = getattr(_scratch_local, "buffers", None)
    if cache is None:
        cache = _scratch_local.buffers = {}
    numel = 1
    for d in shape:
        numel *= int(d)
    buf = cache.get(key)
    if buf is None or buf.dtype != dtype or buf.numel() < numel:
        cache.pop(key, None)
        held = sum(b.numel() * b.element_size() for b in cache.values())
        buf = torch.empty(numel, dtype=dtype)
        if held + buf.numel() * buf.element_size() <= SCRATCH_BYTES:
            cache[key] = buf
    return buf[:numel].view(shape)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


# -----------------------------------------------------------------------------------------
# When the fast path applies
# -----------------------------------------------------------------------------------------
def supports(model, x_shape: tuple) -> str | None:
    """None when the fast path can run ``model`` (in its current state) on an input of shape
    ``(batch, 1, n_mels, frames)``; otherwise the reason it cannot (the reference runs)."""
    cfg = model.config
    if model.training:
        return "training mode"
    if cfg.channels % VL or cfg.channels > MAX_CHANNELS:
        return f"channels must be a multiple of {VL} up to {MAX_CHANNELS}"
    if cfg.feature_point not in ("pooled", "pre_pool"):
        return f"feature point {cfg.feature_point!r}"
    if cfg.feature_point == "pre_pool" and model.bn_mode in ("batch", "instance"):
        return "pre-pool features with batch/instance BN (statistics are needed before the ELU)"
    if len(x_shape) != 4 or x_shape[1] != 1 or x_shape[0] < 1:
        return "input is not (batch, 1, n_mels, frames)"
    h, w = int(x_shape[2]), int(x_shape[3])
    for i, (ph, pw) in enumerate(cfg.pools):
        if ph < 1 or pw < 1 or (i == 0 and pw > MAX_POOL_WIDTH):
            return "pool sizes"
        if h < ph or w < pw:
            return "input too short for the pooling (the reference defines the result)"
        h, w = h // ph, w // pw
    return None


def _eligible_tensor(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32


# -----------------------------------------------------------------------------------------
# Front end
# -----------------------------------------------------------------------------------------
def _banded(basis: torch.Tensor):
    """The mel filterbank ``(F, M)`` as bands: ``(start, length, offset, coefficients)``, each
    band's nonzero bin range packed; None when it is not worth it (dense filterbanks)."""
    F, M = basis.shape
    nz = basis != 0
    idx = torch.arange(F)[:, None].expand(F, M)
    start = torch.where(nz.any(dim=0), torch.where(nz, idx, F).amin(dim=0), 0)
    length = torch.clamp(torch.where(nz, idx + 1, 0).amax(dim=0) - start, min=0)
    if int(length.sum()) > 8 * F or F > 4096:
        return None
    offset = torch.cumsum(length, 0) - length
    coef = torch.cat([basis[int(s):int(s) + int(n), m] for m, (s, n) in enumerate(zip(start, length))]
                     + [torch.zeros(1)])
    as_int = lambda t: t.to(torch.int32).contiguous()
    return as_int(start), as_int(length), as_int(offset), coef.float().contiguous()


FRAME_CHUNK = 8192      # frames per FFT call: few calls; the spectra (16.8 MB) stay below glibc's mmap threshold


def _mel(model, y: torch.Tensor, db: bool):
    """Mel power ``(batch, 1, n_mels, frames)`` (contiguous) of waveforms ``y`` or, with
    ``db``, its decibels ``10 log10(max(P, 1e-10))`` and each frame's maximum ``(batch *
    frames,)``.  → ``(x, frame_max or None)``, or None when ``y`` holds NaN or infinity.

    The windowed frames are formed with the padding done virtually, a chunk of frames at a
    time, then the same real FFT as ``torch.stft`` (bit-identical spectra, whatever the
    chunking: the FFT is where float32 rounding would be amplified for quiet bins); power,
    the banded mel product and the decibels are fused."""
    fe = model.frontend
    lib = _kernels()
    y = y.contiguous()
    B, n = y.shape
    T, left, _ = same_padding(n, fe.n_fft, fe.hop)
    window = fe.window.contiguous()
    basis = fe.mel_basis
    F, M = basis.shape
    bands = _banded(basis)
    mel = _scratch("mel", (B, 1, M, T))
    frame_max = torch.empty(B * T, dtype=torch.float32) if db and bands is not None else None
    frames = _scratch("frames", (min(FRAME_CHUNK, B * T), fe.n_fft))
    bad = torch.zeros(1, dtype=torch.int32)
    if bands is None:                                   # dense filterbank: power, then a GEMM
        power = torch.empty((frames.shape[0], F), dtype=torch.float32)
        mel_tm = torch.empty((B * T, M), dtype=torch.float32)
    for i0 in range(0, B * T, FRAME_CHUNK):
        k = min(FRAME_CHUNK, B * T - i0)
        fr = frames[:k]
        _parallel(lib.frames_window, k, y.data_ptr(), n, left, fe.n_fft, fe.hop, T, window.data_ptr(),
                  fr.data_ptr(), i0, bad.data_ptr(), work=k * fe.n_fft)
        if i0 == 0 and int(bad):
            return None
        spec = torch.fft.rfft(fr, dim=-1)                                    # (k, F) complex
        if bands is None:
            _parallel(lib.power_spectrum, k * F, spec.data_ptr(), power.data_ptr(), work=k * F)
            torch.matmul(power[:k], basis, out=mel_tm[i0:i0 + k])
        else:
            start, length, offset, coef = bands
            _parallel(lib.mel_power, k, spec.data_ptr(), F, M, T, start.data_ptr(), length.data_ptr(),
                      offset.data_ptr(), coef.data_ptr(), mel.data_ptr(), i0, int(db), AMIN,
                      _ptr(frame_max), work=k * F * 2)
    if int(bad):
        return None
    if bands is None:
        mel.copy_(mel_tm.view(B, T, M).transpose(1, 2).unsqueeze(1))
        if db:
            mel.clamp_(min=AMIN).log10_().mul_(10.0)
    return mel, frame_max


def _input(model, y: torch.Tensor, mode: str):
    """Network input of waveforms ``y``, as ``(x, ref)``: ``x`` ``(batch, 1, n_mels, frames)``
    and, for the published dB scaling, the per-clip reference that the plane builder
    subtracts before flooring at -80 dB (else None: ``x`` is the input itself).  None when
    ``y`` holds NaN or infinity."""
    cfg = model.config
    res = _mel(model, y, db=model.input_transform is None)
    if res is None:
        return None
    x, frame_max = res
    if model.input_transform is not None:
        return model.input_transform(x), None
    B = x.shape[0]
    if frame_max is None:
        ref = x.amax().expand(B) if mode == "batch" else x.amax(dim=(1, 2, 3))
    else:
        ref = frame_max.amax().expand(B) if mode == "batch" else frame_max.view(B, -1).amax(dim=1)
    if cfg.input_standardize:
        x = torch.clamp(x - ref.reshape(-1, 1, 1, 1), min=-DYNAMIC_RANGE_DB)
        var, mean = torch.var_mean(x, dim=(1, 2, 3), correction=0, keepdim=True)
        return (x - mean) / (torch.sqrt(var) + 1e-10), None
    return x, ref.contiguous()


# -----------------------------------------------------------------------------------------
# The network
# -----------------------------------------------------------------------------------------
CHUNK_BYTES = 24 << 20  # clips per chunk: a block-1 output of at most this size (allocations
                        # below glibc's 32-MB mmap threshold are reused, not page-faulted)


def _bn_affine(bn, mode: str, sign: torch.Tensor, stats_fn):
    """BN of the sign-adjusted pre-BN values z~ as ``(A, mean)`` float64 ``(B or 1, C)``:
    ``y = A (z~ - mean) + beta`` with ``A = |gamma| / sqrt(var + eps) >= 0``.  ``stats_fn()``
    gives ``(mean, var)`` of z~ for the batch-statistics modes."""
    gamma = bn.gamma.detach().double()
    if mode in ("batch", "instance"):
        mean, var = stats_fn()
    else:
        mean = (bn.mean.detach().double() * sign)[None]
        var = bn.var.detach().double()[None]
    return gamma.abs() / torch.sqrt(var + bn.eps), mean


def _combine(stats: torch.Tensor, shift: torch.Tensor, n: int, mode: str):
    """Per-row-group sums ``stats`` (B, groups, C, 2) of ``d = z~ - shift`` → ``(mean, var)``
    float64 (B, C) of z~: per clip (instance) or over the batch (batch, Chan's combination)."""
    s = stats.sum(dim=1)                                  # (B, C, 2) float64
    s1, s2 = s[..., 0], s[..., 1]
    mean_d = s1 / n
    m2 = torch.clamp(s2 - s1 * mean_d, min=0.0)           # centred sum of squares per clip
    mean = shift + mean_d                                 # (B, C)
    if mode == "instance":
        return mean, m2 / n
    bmean = mean.mean(dim=0, keepdim=True)
    var = (m2.sum(dim=0, keepdim=True) + n * (mean - bmean).square().sum(dim=0, keepdim=True)) / (n * mean.shape[0])
    return bmean, var


def _f32(t: torch.Tensor, B: int) -> torch.Tensor:
    return t.expand(B, -1).to(torch.float32).contiguous()


def _signed(block, dtype=torch.float32):
    """Convolution weight and bias with the channels of negative BN gamma negated, and the
    sign vector (float64)."""
    sign = torch.where(block.bn.gamma.detach() < 0, -1.0, 1.0)
    w = block.conv.weight.detach() * sign[:, None, None, None]
    b = block.conv.bias.detach() * sign
    return w.to(dtype), b.to(dtype), sign.double()


@torch.no_grad()
def forward_input(model, x: torch.Tensor, ref: torch.Tensor | None = None, depth: int | None = None) -> dict:
    """The fast network after the front end (see the module docstring).

    x: ``(batch, 1, n_mels, frames)`` float32 on the CPU, any strides; ``ref``: per-clip
    decibel reference subtracted (then floored at -80 dB) while the input is laid out, or
    None; ``depth``: blocks to run (default all; the tags need all).  Returns the dict of
    :meth:`CompactConvnet.forward_input` (``layer1..`` up to ``depth``, ``tags``), or None
    when ``x`` holds NaN or infinity (then the reference runs).  The caller checks
    :func:`available` and :func:`supports` first.
    """
    lib = _kernels()
    cfg = model.config
    mode = model.bn_mode
    pre_pool = cfg.feature_point == "pre_pool"
    need_stats = mode in ("batch", "instance")
    depth = len(model.blocks) if depth is None else depth
    B, _, H, T = x.shape
    C = cfg.channels
    out: dict[str, torch.Tensor] = {}

    # ---- block 1: fused convolution + pooling + statistics ------------------------------
    blk = model.blocks[0]
    ph, pw = blk.pool
    w1, b1, sign = _signed(blk)
    w1 = w1.reshape(C, 9).contiguous()
    nj = -(-T // pw)
    JB = -(-nj // VL) * VL
    L = JB + VL
    Hp, Wp, nrg = H // ph, T // pw, -(-H // ph)
    per_clip = max(Hp * Wp * C * 4, (H + 2) * pw * L * 4)
    cs = max(1, min(B, CHUNK_BYTES // per_clip))
    chunks = [(s, min(B, s + cs)) for s in range(0, B, cs)]
    xs = x[:, 0]
    bad = torch.zeros(1, dtype=torch.int32)
    beta = blk.bn.beta.detach().double()
    known = None
    if pre_pool:   # statistics known beforehand (checked by supports)
        known = _bn_affine(blk.bn, mode, sign, None)
    ys, shifts, stats, pres = [], [], [], []
    for s, e in chunks:
        n = e - s
        planes = _scratch("planes", (n, H + 2, pw, L))
        centers = torch.empty(n, dtype=torch.float32)
        xc = xs[s:e]
        _parallel(lib.build_planes, n, xc.data_ptr(), xc.stride(0), xc.stride(1), xc.stride(2), H, T, pw, L,
                  _ptr(None if ref is None else ref[s:e]), -DYNAMIC_RANGE_DB, int(ref is not None),
                  planes.data_ptr(), centers.data_ptr(), bad.data_ptr(), work=n * H * T)
        if int(bad):
            return None    # NaN / inf in the input: the reference defines what propagates where
        # The planes hold x - c (c: the clip mean); the kernel computes u = conv(x - c), i.e.
        # z~ - shift with shift = b + c * sum(w) exactly: statistics and pooling of u.
        shift = b1.double()[None] + w1.double().sum(dim=1)[None] * centers.double()[:, None]
        bias_u = torch.zeros((n, C), dtype=torch.float32)
        y = _scratch(f"y1.{len(ys)}", (n, Hp, Wp, C))                 # pooled maxima of u
        st = torch.empty((n, nrg, C, 2), dtype=torch.float64) if need_stats else None
        pre = A32 = Bu32 = None
        if pre_pool:
            A, mean = known
            A32, Bu32 = _f32(A, n), _f32(beta - A * (mean - shift), n)
            pre = torch.empty((n, nrg, C), dtype=torch.float64)
        _parallel(lib.block1, n * nrg, planes.data_ptr(), H, T, ph, pw, L, JB, C, w1.data_ptr(),
                  bias_u.data_ptr(), y.data_ptr(), _ptr(st), _ptr(A32), _ptr(Bu32), _ptr(pre),
                  int(need_stats), int(pre_pool), work=n * H * T * C)
        del planes
        ys.append(y), shifts.append(shift), stats.append(st), pres.append(pre)
    shift = torch.cat(shifts)
    A, mean = known or _bn_affine(blk.bn, mode, sign, lambda: _combine(torch.cat(stats), shift, H * T, mode))
    A32, Bu32 = _f32(A, B), _f32(beta - A * (mean - shift), B)
    in_mean = _finish(lib, ys, chunks, A32, Bu32)                         # (B, C) float64
    out[LAYER_NAMES[0]] = (torch.cat(pres).sum(dim=1) / (H * T) if pre_pool else in_mean).float()

    # ---- blocks 2..: oneDNN convolution, then one pooling/statistics pass ----------------
    for k in range(1, depth):
        blk = model.blocks[k]
        ph, pw = blk.pool
        H, W = ys[0].shape[1], ys[0].shape[2]
        wk, bk, sign = _signed(blk)
        Hp, Wp, nrg = H // ph, W // pw, -(-H // ph)
        # shift: the channel mean of z~ from the block input's channel means
        shift = bk.double()[None] + in_mean @ wk.double().sum(dim=(2, 3)).T   # (B, C)
        shift32 = shift.float().contiguous()
        shift = shift32.double()
        beta = blk.bn.beta.detach().double()
        known = _bn_affine(blk.bn, mode, sign, None) if pre_pool else None
        pooled, stats, pres = [], [], []
        for (s, e), y in zip(chunks, ys):
            n = e - s
            z = nn.functional.conv2d(y.permute(0, 3, 1, 2), wk, bk, padding=1).permute(0, 2, 3, 1)
            if not z.is_contiguous():
                z = z.contiguous()                                          # (n, H, W, C)
            p = _scratch(f"y{k + 1}.{len(pooled)}", (n, Hp, Wp, C))
            st = torch.empty((n, nrg, C, 2), dtype=torch.float64) if need_stats else None
            pre = A32 = B32 = None
            if pre_pool:
                A, mean = known
                A32, B32 = _f32(A, n), _f32(beta - A * mean, n)
                pre = torch.empty((n, nrg, C), dtype=torch.float64)
            _parallel(lib.nhwc_pool_stats, n * nrg, z.data_ptr(), H, W, C, ph, pw, shift32[s:e].data_ptr(),
                      p.data_ptr(), _ptr(st), _ptr(A32), _ptr(B32), _ptr(pre), int(need_stats), int(pre_pool),
                      work=n * H * W * C)
            del z
            pooled.append(p), stats.append(st), pres.append(pre)
        ys = pooled
        A, mean = known or _bn_affine(blk.bn, mode, sign, lambda: _combine(torch.cat(stats), shift, H * W, mode))
        A32, B32 = _f32(A, B), _f32(beta - A * mean, B)
        in_mean = _finish(lib, ys, chunks, A32, B32)
        out[LAYER_NAMES[k]] = (torch.cat(pres).sum(dim=1) / (H * W) if pre_pool else in_mean).float()

    if model.head is not None and depth == len(model.blocks):
        out["tags"] = torch.sigmoid(model.head(torch.cat([y.amax(dim=(1, 2)) for y in ys])))
    return out


def _finish(lib, ys, chunks, A32, B32) -> torch.Tensor:
    """BN affine + ELU in place on each chunk's pooled map; → channel means (B, C) float64."""
    means = []
    for (s, e), y in zip(chunks, ys):
        n, Hp, Wp, C = y.shape
        fsum = torch.empty((n, Hp, C), dtype=torch.float64)
        _parallel(lib.nhwc_finish, n * Hp, y.data_ptr(), Hp, Wp, C, A32[s:e].data_ptr(), B32[s:e].data_ptr(),
                  fsum.data_ptr(), work=n * Hp * Wp * C)
        means.append(fsum.sum(dim=1) / (Hp * Wp))
    return torch.cat(means)


@torch.no_grad()
def forward(model, y: torch.Tensor, depth: int | None = None) -> dict:
    """Waveforms ``(batch, samples)`` → the dict of :meth:`CompactConvnet.forward`, fast (None
    for non-finite input).  The caller checks :func:`available` and :func:`supports` first."""
    res = _input(model, y, model.bn_mode)
    if res is None:
        return None        # NaN / inf: the reference defines what propagates where
    return forward_input(model, *res, depth)
