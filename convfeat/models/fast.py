"""Fast exact inference for :class:`~convfeat.models.compact.CompactConvnet` on the CPU.

Why one long module: about 520 of its lines are the C++ source of the kernels (``_SOURCE``),
kept beside the Python driver that compiles, caches and calls them, so that the two change together.

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
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from ..constants import AMIN, DYNAMIC_RANGE_DB, LAYER_NAMES
from .frontend import same_padding

__all__ = ["available", "unavailable_reason", "supports", "forward", "forward_input", "compile_seconds"]

VL = 16                 # float lanes of the kernels' vector type
MAX_CHANNELS = 256      # per-channel accumulators live on the kernel's stack
MAX_POOL_WIDTH = 16

# -----------------------------------------------------------------------------------------
# C++ source
# -----------------------------------------------------------------------------------------
_SOURCE = r"""
// convfeat fast inference kernels (see convfeat/models/fast.py).  Plain C++17 with GCC
// vector extensions; no Python / torch headers.  Every function works on a range of "items"
// [item0, item1) so that Python threads can split the work.
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef float vf __attribute__((vector_size(64)));
typedef float vfu __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(64)));
#define VL 16
#define MAXC 256

static inline vf ld(const float* p) { return *(const vfu*)p; }
static inline void st(float* p, vf v) { *(vfu*)p = v; }
static inline vf bc(float x) { return vf{} + x; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline vf lanes() { vf r; for (int l = 0; l < VL; l++) r[l] = (float)l; return r; }

// float64 accumulation of float vectors: partial sums stay short in float32 (a few dozen
// terms at most), so sums over whole maps keep ~1e-7 relative accuracy.
typedef double vd __attribute__((vector_size(64)));
typedef float vf8 __attribute__((vector_size(32)));
struct dv { vd lo, hi; };
static inline void dzero(dv& d) { d.lo = vd{}; d.hi = vd{}; }
static inline void dadd(dv& d, vf v) {
    vf8 a, b;
    memcpy(&a, &v, sizeof a);
    memcpy(&b, (const char*)&v + sizeof a, sizeof b);
    d.lo += __builtin_convertvector(a, vd);
    d.hi += __builtin_convertvector(b, vd);
}
static inline double dsum(const dv& d) { double s = 0; for (int l = 0; l < 8; l++) s += d.lo[l] + d.hi[l]; return s; }
static inline double dlane(const dv& d, int l) { return l < 8 ? d.lo[l] : d.hi[l - 8]; }

// e^x for x <= 0 (Cody-Waite reduction, degree-6 polynomial; ~1 ulp)
static inline vf vexp_neg(vf x) {
    x = vmax(x, bc(-87.0f));
    vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf p = bc(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}
// ELU(alpha = 1): y > 0 ? y : exp(y) - 1
static inline vf velu(vf y) {
    vf e = vexp_neg(vmin(y, bc(0.0f))) - 1.0f;
    return y > 0.0f ? y : e;
}

// log10(x) for positive normal x (Cody-Waite style: exponent and mantissa in [sqrt(.5), sqrt(2)),
// degree-9 polynomial; max error 0.9 ulp, unbiased).  NaN and +inf pass through.
static inline vf vlog10(vf x) {
    const vi bits = (vi)x;
    vi e = ((bits >> 23) & 0xff) - 126;
    vf m = (vf)((bits & 0x007fffff) | 0x3f000000);        // [0.5, 1)
    const vi small = m < 0.70710678118654752440f;
    e = small ? e - 1 : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    const vf z = m * m;
    vf p = bc(7.0376836292e-2f);
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    const vf y = m * z * p - 0.5f * z;
    const vf ef = __builtin_convertvector(e, vf);
    vf r = (m + y) * 7.00731903251827651129e-4f;
    r += y * 4.3359375e-1f;
    r += m * 4.3359375e-1f;
    r += ef * 2.48745663981195213739e-4f;
    r += ef * 3.0078125e-1f;
    return (x == x && x < INFINITY) ? r : x;
}

// In-register transpose of a 16 x 16 tile (4 butterfly stages of two-source shuffles).
static inline void transpose16(vf* r) {
#define TSTAGE(S)                                                                         \
    {                                                                                     \
        vi lo, hi;                                                                        \
        for (int c = 0; c < VL; c++) {                                                    \
            lo[c] = (c & S) ? VL + c - S : c;                                             \
            hi[c] = (c & S) ? VL + c : c + S;                                             \
        }                                                                                 \
        for (int i = 0; i < VL; i++)                                                      \
            if (!(i & S)) {                                                               \
                const vf a = r[i], b = r[i | S];                                          \
                r[i] = __builtin_shuffle(a, b, lo);                                       \
                r[i | S] = __builtin_shuffle(a, b, hi);                                   \
            }                                                                             \
    }
    TSTAGE(8) TSTAGE(4) TSTAGE(2) TSTAGE(1)
#undef TSTAGE
}

// ---------------------------------------------------------------------------------------
// Front end.
// Windowed frames of y [B][n] with TensorFlow 'same' padding (left zeros, virtual): frame
// i = b*T + t starts at sample t*hop - left; out [item][nfft] holds frame first + item.
// Items: frames of the chunk.
// bad: set to 1 when a sample is NaN or infinite.
extern "C" void frames_window(const float* y, long n, int left, int nfft, int hop, int T, const float* win,
                              float* out, long first, int* bad, long item0, long item1) {
    bool finite = true;
    for (long it = item0; it < item1; it++) {
        const long i = first + it, b = i / T, t = i % T;
        const float* yb = y + b * n;
        float* o = out + it * nfft;
        const long s0 = t * hop - left;
        if (s0 >= 0 && s0 + nfft <= n) {
            const float* ys = yb + s0;
            float check = 0.0f;
            for (int k = 0; k < nfft; k++) { o[k] = ys[k] * win[k]; check += ys[k] * 0.0f; }
            finite = finite && check == 0.0f;                 // x * 0 is NaN for NaN and inf
        } else {
            for (int k = 0; k < nfft; k++) {
                const long s = s0 + k;
                o[k] = (s >= 0 && s < n) ? yb[s] * win[k] : 0.0f;
                finite = finite && !(s >= 0 && s < n && yb[s] * 0.0f != 0.0f);
            }
        }
    }
    if (!finite) __atomic_store_n(bad, 1, __ATOMIC_RELAXED);
}

// Mel power of the spectra z [item][F] (complex, interleaved) of frames first + item with a
// banded filterbank (band m: len[m] coefficients coef[off[m] ...] for bins start[m] ...) ->
// mel [B][M][T] (frequency-major, the network layout).  With db: 10 log10(max(mel, amin))
// instead, and fmax[first + item] = the frame's maximum.  Items: frames of the chunk.
extern "C" void mel_power(const float* z, int F, int M, int T, const int* start, const int* len, const int* off,
                          const float* coef, float* mel, long first, int db, float amin, float* fmax,
                          long item0, long item1) {
    float p[4096];
    float mb[4096 + VL];
    for (long it = item0; it < item1; it++) {
        const float* zi = z + it * 2 * F;
        for (int k = 0; k < F; k++) {
            const float re = zi[2 * k], im = zi[2 * k + 1];
            p[k] = re * re + im * im;
        }
        const long i = first + it, b = i / T, t = i % T;
        float* mo = mel + b * M * (long)T + t;
        for (int m = 0; m < M; m++) {
            const float* cm = coef + off[m];
            const float* pm = p + start[m];
            float acc = 0.0f;
            for (int j = 0; j < len[m]; j++) acc += cm[j] * pm[j];
            mb[m] = acc;
        }
        if (db) {
            for (int m = M; m < M + VL; m++) mb[m] = 1.0f;
            vf vmx = bc(-INFINITY);
            for (int m = 0; m < M; m += VL) {
                vf v = *(const vfu*)(mb + m);
                v = v < amin ? bc(amin) : v;                  // clamp (NaN passes, as in torch)
                const vf d = vlog10(v) * 10.0f;
                *(vfu*)(mb + m) = d;
                const vi ok = lanes() < (float)(M - m);
                vmx = (ok && (d > vmx || d != d)) ? d : vmx;
            }
            float fm = -INFINITY;
            for (int l = 0; l < VL; l++) fm = (vmx[l] > fm || vmx[l] != vmx[l]) ? vmx[l] : fm;
            fmax[i] = fm;
        }
        for (int m = 0; m < M; m++) mo[(long)m * T] = mb[m];
    }
}

// power spectrum of interleaved complex values: out[i] = re^2 + im^2.  Items: values.
extern "C" void power_spectrum(const float* z, float* out, long item0, long item1) {
    for (long i = item0; i < item1; i++) {
        const float re = z[2 * i], im = z[2 * i + 1];
        out[i] = re * re + im * im;
    }
}

// Planes: the network input x (B, H, T) (any strides, in elements) -> padded planes
// [B][H+2][pw][L]: padded row h+1 holds input row h; plane q, index 1+j holds column
// t = j*pw + q.  Optional per-clip reference subtraction and floor (the dB scaling).  The
// values are CENTRED on their clip mean c (written: v - c; padding: -c, i.e. the zero padding
// of the uncentred input), so the convolution's rounding errors scale with the spread of the
// input, not with its offset (a dB map sits around -50).  centers[b] = c.  Items: clips.
extern "C" void build_planes(const float* x, long sb, long sh, long st_, int H, int T, int pw, int L,
                             const float* ref, float floor_v, int use_ref, float* planes, float* centers,
                             int* bad, long item0, long item1) {
    const long rs = (long)pw * L, cs = (long)(H + 2) * rs;
    const bool rows_outer = st_ == 1 || sh > st_;
    const float lo = use_ref ? floor_v : -INFINITY;
    for (long b = item0; b < item1; b++) {
        float* pb = planes + b * cs;
        const float* xb = x + b * sb;
        const float r = use_ref ? ref[b] : 0.0f;
        // pass 1: the clip mean (the input after the reference and the floor)
        double total = 0;
        if (rows_outer) {
            for (int h = 0; h < H; h++) {
                const float* xr = xb + h * sh;
                float acc = 0;
                for (int t = 0; t < T; t++) { const float v = xr[(long)t * st_] - r; acc += v < lo ? lo : v; }
                total += acc;
            }
        } else {
            for (int t = 0; t < T; t++) {
                const float* xt = xb + (long)t * st_;
                float acc = 0;
                for (int h = 0; h < H; h++) { const float v = xt[h * sh] - r; acc += v < lo ? lo : v; }
                total += acc;
            }
        }
        const float c = (float)(total / ((double)H * T));
        centers[b] = c;
        if (!(c - c == 0.0f)) __atomic_store_n(bad, 1, __ATOMIC_RELAXED);   // a NaN or inf in the clip
        // pass 2: padding (-c) everywhere, then the centred values
        for (long i = 0; i < cs; i++) pb[i] = -c;
        if (rows_outer) {
            for (int h = 0; h < H; h++) {
                const float* xr = xb + h * sh;
                for (int q = 0; q < pw; q++) {
                    float* pl = pb + (long)(h + 1) * rs + (long)q * L + 1;
                    for (long t = q, j = 0; t < T; t += pw, j++) {
                        const float v = xr[t * st_] - r;
                        pl[j] = (v < lo ? lo : v) - c;
                    }
                }
            }
        } else {
            for (int t = 0, q = 0, j = 0; t < T; t++) {
                const float* xt = xb + (long)t * st_;
                float* pcol = pb + rs + (long)q * L + 1 + j;
                for (int h = 0; h < H; h++) {
                    const float v = xt[h * sh] - r;
                    pcol[h * rs] = (v < lo ? lo : v) - c;
                }
                if (++q == pw) { q = 0; j++; }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Block 1: 1-channel 3x3 convolution + max-pool (ph, pw) + statistics, from the planes.
// w [C][9] (row-major 3x3, sign-adjusted), bias [B][C] (sign-adjusted, minus the shift),
// out [B][Hp][Wp][C] pooled maxima (channels-last), stats [B][nrg][C][2] sums of u and u^2
// over the row group (u = conv output - shift), pre [B][nrg][C] sums of ELU(A u + Bc)
// (pre-pool features; A, Bc [B][C]).  Items: b * nrg + g (row groups).
//
// Generic pooling shape (runtime ph, pw <= 16).
template <int PH, int PW, bool STATS, bool PRE>
static void block1_run(const float* planes, int H, int T, int ph_, int pw_, int L, int JB, int C,
                       const float* w, const float* bias, float* out, double* stats,
                       const float* A, const float* Bc, double* pre, long item0, long item1) {
    const int ph = PH ? PH : ph_, pw = PW ? PW : pw_;
    const int Hp = H / ph, Wp = T / pw, nrg = (H + ph - 1) / ph;
    const long rs = (long)pw * L, cs = (long)(H + 2) * rs;
    int off[16][3], nvalid[16];
    for (int p = 0; p < pw; p++) {
        nvalid[p] = (T - p + pw - 1) / pw;     // columns j*pw + p < T
        for (int k = 0; k < 3; k++) {
            const int q = p + k - 1, dj = q < 0 ? -1 : (q >= pw ? 1 : 0);
            off[p][k] = (q - dj * pw) * L + 1 + dj;
        }
    }
    dv S1[MAXC], S2[MAXC], SP[MAXC];
    const vf lane = lanes();
    for (long it = item0; it < item1; it++) {
        const int b = (int)(it / nrg), g = (int)(it % nrg);
        const int h0 = g * ph, nr = (h0 + ph <= H) ? ph : H - h0;
        const bool pooled = g < Hp;
        const float* base = planes + b * cs + (long)h0 * rs;
        for (int c = 0; c < C; c++) { dzero(S1[c]); dzero(S2[c]); dzero(SP[c]); }
        for (int jb = 0; jb < JB; jb += VL) {
            const bool full = jb + VL <= Wp;
            const int nl = Wp - jb < VL ? (Wp - jb > 0 ? Wp - jb : 0) : VL;
            for (int c = 0; c < C; c++) {
                const float* wc = w + c * 9;
                const vf w0 = bc(wc[0]), w1 = bc(wc[1]), w2 = bc(wc[2]), w3 = bc(wc[3]), w4 = bc(wc[4]),
                         w5 = bc(wc[5]), w6 = bc(wc[6]), w7 = bc(wc[7]), w8 = bc(wc[8]);
                const vf bv = bc(bias[b * C + c]);
                vf Av = bc(0.0f), Bv = bc(0.0f);
                if (PRE) { Av = bc(A[b * C + c]); Bv = bc(Bc[b * C + c]); }
                vf m = bc(-INFINITY), s1 = bc(0.0f), s2 = bc(0.0f), sp = bc(0.0f);
                for (int r = 0; r < nr; r++) {
                    const float* r0 = base + r * rs + jb;
                    const float* r1 = r0 + rs;
                    const float* r2 = r1 + rs;
                    for (int p = 0; p < pw; p++) {
                        const int o0 = off[p][0], o1 = off[p][1], o2 = off[p][2];
                        const vf u = bv + w0 * ld(r0 + o0) + w1 * ld(r0 + o1) + w2 * ld(r0 + o2)
                                   + w3 * ld(r1 + o0) + w4 * ld(r1 + o1) + w5 * ld(r1 + o2)
                                   + w6 * ld(r2 + o0) + w7 * ld(r2 + o1) + w8 * ld(r2 + o2);
                        m = vmax(m, u);
                        if (STATS || PRE) {
                            if (full) {
                                if (STATS) { s1 += u; s2 += u * u; }
                                if (PRE) sp += velu(Av * u + Bv);
                            } else {
                                const vi ok = lane < (float)(nvalid[p] - jb);
                                if (STATS) { const vf um = ok ? u : bc(0.0f); s1 += um; s2 += um * um; }
                                if (PRE) { const vf e = velu(Av * u + Bv); sp += ok ? e : bc(0.0f); }
                            }
                        }
                    }
                }
                if (pooled)
                    for (int l = 0; l < nl; l++) out[(((long)b * Hp + g) * Wp + jb + l) * C + c] = m[l];
                if (STATS) { dadd(S1[c], s1); dadd(S2[c], s2); }
                if (PRE) dadd(SP[c], sp);
            }
        }
        const long o = ((long)b * nrg + g) * C;
        for (int c = 0; c < C; c++) {
            if (STATS) { stats[(o + c) * 2] = dsum(S1[c]); stats[(o + c) * 2 + 1] = dsum(S2[c]); }
            if (PRE) pre[o + c] = dsum(SP[c]);
        }
    }
}

// A pooling shape known at compile time: the input vectors of a row group ((PH + 2) rows x
// (PW + 2) shifted vectors) are loaded once into registers and reused by every channel;
// pooled maxima are transposed in registers, 16 channels at a time.  C % 16 == 0.
template <int PH, int PW, bool STATS, bool PRE>
static void block1_regs(const float* planes, int H, int T, int L, int JB, int C,
                        const float* w, const float* bias, float* out, double* stats,
                        const float* A, const float* Bc, double* pre, long item0, long item1) {
    const int Hp = H / PH, Wp = T / PW, nrg = (H + PH - 1) / PH;
    const long rs = (long)PW * L, cs = (long)(H + 2) * rs;
    int nvalid[PW];
    for (int p = 0; p < PW; p++) nvalid[p] = (T - p + PW - 1) / PW;
    dv S1[MAXC], S2[MAXC], SP[MAXC];
    vf Mt[VL];
    const vf lane = lanes();
    for (long it = item0; it < item1; it++) {
        const int b = (int)(it / nrg), g = (int)(it % nrg);
        const int h0 = g * PH;
        if (h0 + PH > H) {   // a last, partial row group: statistics only, generic kernel
            block1_run<0, 0, STATS, PRE>(planes, H, T, PH, PW, L, JB, C, w, bias, out, stats, A, Bc, pre, it, it + 1);
            continue;
        }
        const float* base = planes + b * cs + (long)h0 * rs;
        float* orow = out + ((long)b * Hp + g) * (long)Wp * C;
        for (int c = 0; c < C; c++) { dzero(S1[c]); dzero(S2[c]); dzero(SP[c]); }
        for (int jb = 0; jb < JB; jb += VL) {
            const bool full = jb + VL <= Wp;
            const int nl = Wp - jb < VL ? (Wp - jb > 0 ? Wp - jb : 0) : VL;
            vi ok[PW];
            for (int p = 0; p < PW; p++) ok[p] = lane < (float)(nvalid[p] - jb);
            // X[r][k]: column phase k - 1 of padded row h0 + r (k = 0: plane PW-1 one group
            // back; k = PW + 1: plane 0 one group ahead)
            vf X[PH + 2][PW + 2];
            for (int r = 0; r < PH + 2; r++) {
                const float* rp = base + r * rs + jb + 1;
                X[r][0] = ld(rp + (PW - 1) * L - 1);
                for (int q = 0; q < PW; q++) X[r][q + 1] = ld(rp + q * L);
                X[r][PW + 1] = ld(rp + 1);
            }
            for (int c0 = 0; c0 < C; c0 += VL) {
                for (int ci = 0; ci < VL; ci++) {
                    const int c = c0 + ci;
                    const float* wc = w + c * 9;
                    const float bv = bias[b * C + c];
                    vf Av = bc(0.0f), Bv = bc(0.0f);
                    if (PRE) { Av = bc(A[b * C + c]); Bv = bc(Bc[b * C + c]); }
                    vf m = bc(-INFINITY), s1 = bc(0.0f), s2 = bc(0.0f), sp = bc(0.0f);
#pragma GCC unroll 8
                    for (int r = 0; r < PH; r++)
#pragma GCC unroll 8
                        for (int p = 0; p < PW; p++) {
                            const vf u = bv + wc[0] * X[r][p] + wc[1] * X[r][p + 1] + wc[2] * X[r][p + 2]
                                       + wc[3] * X[r + 1][p] + wc[4] * X[r + 1][p + 1] + wc[5] * X[r + 1][p + 2]
                                       + wc[6] * X[r + 2][p] + wc[7] * X[r + 2][p + 1] + wc[8] * X[r + 2][p + 2];
                            m = vmax(m, u);
                            if (STATS || PRE) {
                                if (full) {
                                    if (STATS) { s1 += u; s2 += u * u; }
                                    if (PRE) sp += velu(Av * u + Bv);
                                } else {
                                    if (STATS) { const vf um = ok[p] ? u : bc(0.0f); s1 += um; s2 += um * um; }
                                    if (PRE) { const vf e = velu(Av * u + Bv); sp += ok[p] ? e : bc(0.0f); }
                                }
                            }
                        }
                    Mt[ci] = m;
                    if (STATS) { dadd(S1[c], s1); dadd(S2[c], s2); }
                    if (PRE) dadd(SP[c], sp);
                }
                transpose16(Mt);      // Mt[l] = channels c0..c0+15 of column jb + l
                for (int l = 0; l < nl; l++) st(orow + (long)(jb + l) * C + c0, Mt[l]);
            }
        }
        const long o = ((long)b * nrg + g) * C;
        for (int c = 0; c < C; c++) {
            if (STATS) { stats[(o + c) * 2] = dsum(S1[c]); stats[(o + c) * 2 + 1] = dsum(S2[c]); }
            if (PRE) pre[o + c] = dsum(SP[c]);
        }
    }
}

extern "C" void block1(const float* planes, int H, int T, int ph, int pw, int L, int JB, int C,
                       const float* w, const float* bias, float* out, double* stats,
                       const float* A, const float* Bc, double* pre, int want_stats, int want_pre,
                       long item0, long item1) {
#define B1ARGS planes, H, T, ph, pw, L, JB, C, w, bias, out, stats, A, Bc, pre, item0, item1
#define R24ARGS planes, H, T, L, JB, C, w, bias, out, stats, A, Bc, pre, item0, item1
    const bool s = want_stats != 0, q = want_pre != 0;
    if (ph == 2 && pw == 4 && C % VL == 0) {
        if (s && q) block1_regs<2, 4, true, true>(R24ARGS);
        else if (s) block1_regs<2, 4, true, false>(R24ARGS);
        else if (q) block1_regs<2, 4, false, true>(R24ARGS);
        else block1_regs<2, 4, false, false>(R24ARGS);
    } else {
        if (s && q) block1_run<0, 0, true, true>(B1ARGS);
        else if (s) block1_run<0, 0, true, false>(B1ARGS);
        else if (q) block1_run<0, 0, false, true>(B1ARGS);
        else block1_run<0, 0, false, false>(B1ARGS);
    }
#undef B1ARGS
#undef R24ARGS
}

// ---------------------------------------------------------------------------------------
// Blocks 2+: z [B][H][W][C] (channels-last convolution output, sign-adjusted) ->
// out [B][Hp][Wp][C] max-pooled, stats [B][nrg][C][2] sums of (z - shift) and its square
// (float64 per row), pre [B][nrg][C] sums of ELU(A z + Bc).  C % 16 == 0.  Items: b*nrg + g.
template <bool STATS, bool PRE>
static void nhwc_run(const float* z, int H, int W, int C, int ph, int pw, const float* shift, float* out,
                     double* stats, const float* A, const float* Bc, double* pre, long item0, long item1) {
    const int Hp = H / ph, Wp = W / pw, nrg = (H + ph - 1) / ph, NV = C / VL;
    const int Wpool = Wp * pw;
    dv D1[MAXC / VL], D2[MAXC / VL], DP[MAXC / VL];
    vf sh[MAXC / VL], Av[MAXC / VL], Bv[MAXC / VL], s1[MAXC / VL], s2[MAXC / VL], sp[MAXC / VL];
    for (long it = item0; it < item1; it++) {
        const int b = (int)(it / nrg), g = (int)(it % nrg);
        const int h0 = g * ph, nr = (h0 + ph <= H) ? ph : H - h0;
        const bool pooled = g < Hp;
        float* orow = out + ((long)b * Hp + g) * (long)Wp * C;
        for (int k = 0; k < NV; k++) {
            if (STATS) sh[k] = ld(shift + (long)b * C + k * VL);
            if (PRE) { Av[k] = ld(A + (long)b * C + k * VL); Bv[k] = ld(Bc + (long)b * C + k * VL); }
        }
        for (int k = 0; k < NV; k++) { dzero(D1[k]); dzero(D2[k]); dzero(DP[k]); }
        for (int r = 0; r < nr; r++) {
            const float* zr = z + ((long)b * H + h0 + r) * (long)W * C;
            for (int k = 0; k < NV; k++) { s1[k] = bc(0.0f); s2[k] = bc(0.0f); sp[k] = bc(0.0f); }
            for (int x = 0; x < W; x++) {
                const float* px = zr + (long)x * C;
                const bool in_pool = pooled && x < Wpool;
                float* po = orow + (long)(x / pw) * C;
                const bool first = r == 0 && (x % pw) == 0;
                for (int k = 0; k < NV; k++) {
                    const vf v = ld(px + k * VL);
                    if (STATS) { const vf d = v - sh[k]; s1[k] += d; s2[k] += d * d; }
                    if (PRE) sp[k] += velu(Av[k] * v + Bv[k]);
                    if (in_pool) st(po + k * VL, first ? v : vmax(ld(po + k * VL), v));
                }
                if ((STATS || PRE) && ((x & 15) == 15 || x == W - 1)) {   // float partial sums: <= 16 terms
                    for (int k = 0; k < NV; k++) {
                        if (STATS) { dadd(D1[k], s1[k]); dadd(D2[k], s2[k]); s1[k] = bc(0.0f); s2[k] = bc(0.0f); }
                        if (PRE) { dadd(DP[k], sp[k]); sp[k] = bc(0.0f); }
                    }
                }
            }
        }
        const long o = ((long)b * nrg + g) * C;
        for (int c = 0; c < C; c++) {
            if (STATS) { stats[(o + c) * 2] = dlane(D1[c / VL], c % VL); stats[(o + c) * 2 + 1] = dlane(D2[c / VL], c % VL); }
            if (PRE) pre[o + c] = dlane(DP[c / VL], c % VL);
        }
    }
}

extern "C" void nhwc_pool_stats(const float* z, int H, int W, int C, int ph, int pw, const float* shift,
                                float* out, double* stats, const float* A, const float* Bc, double* pre,
                                int want_stats, int want_pre, long item0, long item1) {
#define NARGS z, H, W, C, ph, pw, shift, out, stats, A, Bc, pre, item0, item1
    if (want_stats && want_pre) nhwc_run<true, true>(NARGS);
    else if (want_stats) nhwc_run<true, false>(NARGS);
    else if (want_pre) nhwc_run<false, true>(NARGS);
    else nhwc_run<false, false>(NARGS);
#undef NARGS
}

// In place: v = ELU(A v + Bc) on a channels-last map v [B][Hp][Wp][C]; fsum [B][Hp][C] row
// sums of the result.  C % 16 == 0.  Items: b * Hp + hp.
extern "C" void nhwc_finish(float* v, int Hp, int Wp, int C, const float* A, const float* Bc,
                            double* fsum, long item0, long item1) {
    const int NV = C / VL;
    vf Av[MAXC / VL], Bv[MAXC / VL], s[MAXC / VL];
    dv D[MAXC / VL];
    for (long it = item0; it < item1; it++) {
        const int b = (int)(it / Hp);
        for (int k = 0; k < NV; k++) {
            Av[k] = ld(A + (long)b * C + k * VL); Bv[k] = ld(Bc + (long)b * C + k * VL);
            s[k] = bc(0.0f); dzero(D[k]);
        }
        float* row = v + it * (long)Wp * C;
        for (int x = 0; x < Wp; x++) {
            for (int k = 0; k < NV; k++) {
                float* px = row + (long)x * C + k * VL;
                const vf e = velu(Av[k] * ld(px) + Bv[k]);
                st(px, e);
                s[k] += e;
            }
            if ((x & 15) == 15 || x == Wp - 1)
                for (int k = 0; k < NV; k++) { dadd(D[k], s[k]); s[k] = bc(0.0f); }
        }
        for (int c = 0; c < C; c++) fsum[it * C + c] = dlane(D[c / VL], c % VL);
    }
}


extern "C" int convfeat_fast_abi(void) { return 9; }

"""

_FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno",
          "-fno-trapping-math"]
_ABI = 9

# -----------------------------------------------------------------------------------------
# Building and loading the kernels
# -----------------------------------------------------------------------------------------
_lock = threading.Lock()
_lib = None                 # the loaded ctypes library
_reason: str | None = None  # why the fast path is unavailable (None: not tried or fine)
_warned = False
_compile_seconds = 0.0      # time spent compiling in this process (0 when the cache hit)


def _cache_root() -> Path:
    env = os.environ.get("CONVFEAT_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "kernels"
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("convfeat")) / "kernels"
    except Exception:  # pragma: no cover - platformdirs is a dependency
        return Path(tempfile.gettempdir()) / "convfeat-kernels"


def _cpu_identity() -> str:
    # -march=native code must never be loaded on another CPU (a cache dir may be shared).
    parts = [platform.machine(), platform.system()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    parts.append(line.strip())
                if len(parts) > 8:
                    break
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:
        return ""


def _build() -> ctypes.CDLL:
    global _compile_seconds
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (g++, c++ or clang++; or set $CXX)")
    key = hashlib.sha256("\n".join([_SOURCE, " ".join(_FLAGS), _compiler_version(cxx), _cpu_identity(),
                                    str(_ABI)]).encode()).hexdigest()[:20]
    so_name = f"convfeat_fast_{key}.so"
    candidates = [_cache_root(), Path(tempfile.gettempdir()) / "convfeat-kernels"]
    for root in candidates:
        path = root / so_name
        if path.is_file():
            try:
                return _load(path)
            except Exception:
                pass                      # a corrupt cache entry: rebuilt below
    last_error = None
    for root in candidates:
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                src = Path(tmp) / "kernels.cpp"
                src.write_text(_SOURCE)
                tmp_so = Path(tmp) / so_name
                t0 = time.perf_counter()
                res = subprocess.run([cxx, *_FLAGS, str(src), "-o", str(tmp_so)], capture_output=True,
                                     text=True, timeout=300)
                _compile_seconds += time.perf_counter() - t0
                if res.returncode != 0:
                    raise RuntimeError(f"{Path(cxx).name} failed: {res.stderr.strip()[-800:]}")
                os.replace(tmp_so, root / so_name)     # atomic: concurrent builders agree
            return _load(root / so_name)
        except (OSError, subprocess.SubprocessError) as exc:
            last_error = exc
    raise RuntimeError(f"could not build the kernels: {last_error}")


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if lib.convfeat_fast_abi() != _ABI:
        raise OSError("kernel ABI mismatch")
    P, I, L, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float
    sig = {"frames_window": [P, L, I, I, I, I, P, P, L, P],
           "mel_power": [P, I, I, I, P, P, P, P, P, L, I, F, P],
           "power_spectrum": [P, P],
           "build_planes": [P, L, L, L, I, I, I, I, P, F, I, P, P, P],
           "block1": [P, I, I, I, I, I, I, I, P, P, P, P, P, P, P, I, I],
           "nhwc_pool_stats": [P, I, I, I, I, I, P, P, P, P, P, P, I, I],
           "nhwc_finish": [P, I, I, I, P, P, P]}
    for name, args in sig.items():
        fn = getattr(lib, name)
        fn.argtypes = args + [L, L]           # ..., item0, item1
        fn.restype = None
    return lib


def _kernels():
    """The loaded kernel library, or None (with a one-time warning) when it cannot be built."""
    global _lib, _reason, _warned
    if _lib is not None:
        return _lib
    if _reason is not None:
        return None
    with _lock:
        if _lib is None and _reason is None:
            if os.environ.get("CONVFEAT_FAST", "1").strip().lower() in ("0", "false", "no", "off"):
                _reason = "disabled by CONVFEAT_FAST=0"
            else:
                try:
                    _lib = _build()
                except Exception as exc:  # any failure: the exact reference path still works
                    _reason = f"{type(exc).__name__}: {exc}"
                    if not _warned:
                        _warned = True
                        warnings.warn(f"convfeat: fast inference kernels unavailable ({_reason}); "
                                      "using the reference forward pass (exact, slower)",
                                      RuntimeWarning, stacklevel=3)
    return _lib


def available() -> bool:
    """True when the compiled kernels are built and loaded (builds them on first call)."""
    return _kernels() is not None


def unavailable_reason() -> str | None:
    """Why the fast path is off (None when it is available or not tried yet)."""
    return _reason


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
