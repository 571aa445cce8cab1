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
// One convolution output vector u of a pooling window: its max-pool, and the sums of u and u^2
// (STATS) and of ELU(A u + Bc) (PRE) over the lanes that hold real columns (ok; all when full).
template <bool STATS, bool PRE>
static inline void take(vf u, bool full, vi ok, vf Av, vf Bv, vf& m, vf& s1, vf& s2, vf& sp) {
    m = vmax(m, u);
    if (!(STATS || PRE)) return;
    if (full) {
        if (STATS) { s1 += u; s2 += u * u; }
        if (PRE) sp += velu(Av * u + Bv);
    } else {
        if (STATS) { const vf um = ok ? u : bc(0.0f); s1 += um; s2 += um * um; }
        if (PRE) { const vf e = velu(Av * u + Bv); sp += ok ? e : bc(0.0f); }
    }
}

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
            vi ok[16];
            for (int p = 0; p < pw; p++) ok[p] = lane < (float)(nvalid[p] - jb);
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
                        take<STATS, PRE>(u, full, ok[p], Av, Bv, m, s1, s2, sp);
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
                            take<STATS, PRE>(u, full, ok[p], Av, Bv, m, s1, s2, sp);
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

