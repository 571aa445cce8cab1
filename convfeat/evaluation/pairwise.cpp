// Kernel matrices in libsvm's arithmetic: for every row pair (i, j),
//   dot:    s = 0.0; for k = 0 .. d-1: s = s + A[i,k] * B[j,k]
//   sqdist: s = 0.0; for k = 0 .. d-1: t = A[i,k] - B[j,k]; s = s + t * t
// every operation rounded to double, in this order (built with -ffp-contract=off: no fused
// multiply-add; no -ffast-math: no reassociation).  The result is the NumPy reference loops'
// (convfeat/evaluation/kernels.py) bit for bit.
//
// Speed comes only from doing many independent sums at once: SIMD lanes run ACROSS output
// columns j (never across k), and a tile of R rows x NV vectors of columns keeps its R*NV
// accumulators in registers while k runs 0, 1, ..., d-1.  Both operands are packed first so the
// tile's inner loop reads memory sequentially: A in blocks of R rows interleaved by k, B in
// panels of TW columns interleaved by k (zero-padded: the padded lanes/rows are computed and
// never stored).
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int VW = 8;   // doubles per vector: one zmm register
constexpr int NV = 4;   // vectors of columns per tile: 4 x 4 = 16 accumulators of 32 registers
#else
constexpr int VW = 4;   // one ymm register (two xmm without AVX; still correct)
constexpr int NV = 2;   // 8 accumulators: leaves registers free on 16-register machines
#endif
constexpr int R = 4;          // rows per tile
constexpr int TW = VW * NV;   // columns per tile
typedef double vd __attribute__((vector_size(VW * sizeof(double))));

inline vd load(const double* p) { vd v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(double* p, vd v) { std::memcpy(p, &v, sizeof v); }

typedef long long idx;

// Packed[g][k*width + r] = X[g*width + r, k] (0 for rows past n): a group of `width` rows with their
// values of k side by side — A in blocks of R rows, B in panels of TW columns.
void pack(const double* X, idx n, idx d, idx width, std::vector<double>& packed) {
  const idx groups = (n + width - 1) / width;
  packed.assign(static_cast<size_t>(groups * width * d), 0.0);
  for (idx i = 0; i < n; ++i) {
    double* dst = packed.data() + (i / width) * width * d + (i % width);
    const double* src = X + i * d;
    for (idx k = 0; k < d; ++k) dst[k * width] = src[k];
  }
}

struct Dot {
  static inline vd step(vd acc, double a, vd b) { return acc + b * a; }   // product rounded, then the add
};
struct SqDist {
  static inline vd step(vd acc, double a, vd b) {
    vd t = b - a;            // (b-a)**2 == (a-b)**2 exactly: round-to-nearest is sign-symmetric
    return acc + t * t;
  }
};

// One R x TW tile: the sums of its rows (packed block ap) with its columns (packed panel bp),
// k in order, into tile[r*TW + c].
template <class Op>
inline void tile_sums(const double* ap, const double* bp, idx d, double* tile) {
  vd acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = vd{};   // +0.0, libsvm's starting sum
  for (idx k = 0; k < d; ++k) {
    vd b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load(bp + k * TW + v * VW);
    for (int r = 0; r < R; ++r) {
      const double a = ap[k * R + r];
      for (int v = 0; v < NV; ++v) acc[r][v] = Op::step(acc[r][v], a, b[v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) store(tile + r * TW + v * VW, acc[r][v]);
}

template <class Op>
int pairwise(const double* A, idx n, const double* B, idx m, idx d, double* out, idx ldo, int sym) {
  if (n <= 0 || m <= 0) return 0;
  if (sym) { B = A; m = n; }
  std::vector<double> Ap, Bp;
  pack(A, n, d, R, Ap);
  pack(B, m, d, TW, Bp);
  const idx nb = (n + R - 1) / R, np = (m + TW - 1) / TW;
  alignas(64) double tile[R * TW];
  // Panel outer, row blocks inner: the panel (d x TW) stays in L1/L2 while the row blocks stream.
  for (idx p = 0; p < np; ++p) {
    const idx j0 = p * TW, jn = (m - j0 < TW) ? m - j0 : TW;
    // symmetric: only row blocks that reach the upper triangle of this panel (i <= j)
    const idx nb_here = sym ? ((j0 + jn - 1) / R + 1 < nb ? (j0 + jn - 1) / R + 1 : nb) : nb;
    for (idx b = 0; b < nb_here; ++b) {
      tile_sums<Op>(Ap.data() + b * R * d, Bp.data() + p * TW * d, d, tile);
      const idx i0 = b * R;
      for (int r = 0; r < R && i0 + r < n; ++r) {
        const idx i = i0 + r;
        idx c = 0;
        if (sym && i > j0) c = i - j0;   // j >= i only; the rest is mirrored below
        if (c < jn) std::memcpy(out + i * ldo + j0 + c, tile + r * TW + c, (jn - c) * sizeof(double));
      }
    }
  }
  if (sym) {
    // out[i, j] = out[j, i] for j < i, in square blocks so both sides stay in cache.
    constexpr idx BS = 64;
    for (idx ib = 0; ib < n; ib += BS)
      for (idx jb = 0; jb <= ib; jb += BS) {
        const idx ie = ib + BS < n ? ib + BS : n, je = jb + BS < n ? jb + BS : n;
        for (idx i = ib; i < ie; ++i)
          for (idx j = jb; j < je && j < i; ++j) out[i * ldo + j] = out[j * ldo + i];
      }
  }
  return 0;
}

template <class Op>
int guarded(const double* A, idx n, const double* B, idx m, idx d, double* out, idx ldo, int sym) {
  try {
    return pairwise<Op>(A, n, B, m, d, out, ldo, sym);
  } catch (const std::bad_alloc&) {   // no exception may cross into Python
    return -1;
  } catch (...) {
    return -2;
  }
}

}  // namespace

extern "C" {

int convfeat_pairwise_abi() { return 1; }

// A: (n, d) row-major; B: (m, d) row-major (ignored when sym: B is A); out: (n, m) row-major with
// leading dimension ldo >= m.  sym: compute j >= i, mirror the rest.  0 on success, < 0 when the
// packed copies could not be allocated (out is then incomplete).
int convfeat_seq_dot(const double* A, long long n, const double* B, long long m, long long d, double* out,
                     long long ldo, int sym) {
  return guarded<Dot>(A, n, B, m, d, out, ldo, sym);
}

int convfeat_seq_sqdist(const double* A, long long n, const double* B, long long m, long long d, double* out,
                        long long ldo, int sym) {
  return guarded<SqDist>(A, n, B, m, d, out, ldo, sym);
}

}  // extern "C"
