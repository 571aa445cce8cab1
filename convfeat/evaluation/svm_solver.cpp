// One-vs-one C-SVC on a precomputed kernel: the SMO of Fan, Chen & Lin (JMLR 2005, second-order
// working-set selection, shrinking) as libsvm runs it, operation for operation, so that every alpha,
// rho and prediction equals scikit-learn's SVC(kernel="precomputed") bit for bit.  What differs is
// only where the numbers live: the kernel rows of a pair are kept whole in one float table (no LRU
// cache, no per-entry kernel call) and the three passes per iteration (two of the working-set
// selection, the gradient update) are vectorised, branch-free loops.
//
// Rules that keep it exact (each one mirrors libsvm's arithmetic):
//  * Q entries are float: (float)(y_i*y_j*K_ij); QD is the double K_ii.
//  * every update, comparison and tie-break (">=" keeps the last index, "<=" too) as libsvm has it;
//  * no fused multiply-add (built with -ffp-contract=off) and no reassociation (no -ffast-math).
//
// One change of variables, exact because y = +-1 and round-to-nearest commutes with a sign flip:
// the gradient is kept as F_k = y_k G_k (and G_bar as y_k G_bar_k), the rows as the unsigned float
// kernel (float)K, since y_k Q_ik = y_i (float)K_ik.  The selection then reads -F for -y G, and
// libsvm's QD_i + QD_t -/+ 2 y_i Q_it is QD_i + QD_t - 2 K_it for either sign of y_t: three
// multiplies fewer per item and pass, the same numbers.
//
// Two more exact shortcuts, both in select: the first pass adds +-inf biases instead of testing
// I_up / I_low masks, and the second tests exactly (with libsvm's division) only the few items
// that a division-free approximation cannot rule out (select_j_filtered); select_j, the plain
// vectorised pass, runs where the approximation's bounds do not hold.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr double TAU = 1e-12;
constexpr double INF = HUGE_VAL;
// Kernel values and C * l are at most KMAX: then every Q entry is a finite float and every gradient
// is finite, which the selection's +-inf biases rely on.  Larger values go to scikit-learn.
constexpr double KMAX = 1e30;
struct OutOfRange {};
inline double bounded(double k) {
  if (!(std::fabs(k) <= KMAX)) throw OutOfRange{};
  return k;
}
enum : char { LOWER = 0, UPPER = 1, FREE = 2 };

// Portable SIMD (GCC/Clang vector extensions): 8 lanes, AVX-512 where the CPU has it.
constexpr int W = 8;
typedef double vd __attribute__((vector_size(W * sizeof(double))));
typedef long long vl __attribute__((vector_size(W * sizeof(long long))));
typedef float vf __attribute__((vector_size(W * sizeof(float))));

inline vd load(const double* p) { vd v; std::memcpy(&v, p, sizeof v); return v; }
inline vl load(const long long* p) { vl v; std::memcpy(&v, p, sizeof v); return v; }
inline vd load(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return __builtin_convertvector(v, vd); }
inline vd splat(double x) { return vd{} + x; }
inline vl lanes() {
  vl lane;
  for (int k = 0; k < W; ++k) lane[k] = k;
  return lane;
}

// Visit the vectors of positions 0..n-1: visit(v, a, valid) for vector v (positions v*W ..) with
// accumulator a (v % A in whole groups of A, then 0: the positions each lane sees only grow) and
// valid, the lanes below n (all but in the last, partial vector).
constexpr int A = 4;   // independent accumulators (breaks the compare-blend dependency chain)
template <class Visit>
inline void over_vectors(int n, Visit&& visit) {
  const int nv = n / W, rem = n % W;
  const vl all = vl{} - 1;
  int v = 0;
  for (; v + A <= nv; v += A)
    for (int a = 0; a < A; ++a) visit(v + a, a, all);
  for (; v < nv; ++v) visit(v, 0, all);
  if (rem) visit(nv, 0, lanes() < rem);
}

inline vd abs(vd x) { return x < 0 ? -x : x; }
inline vd masked(vd x, vl m) {   // x where m is set, +0.0 elsewhere
  vl b;
  std::memcpy(&b, &x, sizeof b);
  b &= m;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
inline unsigned bits(vl m) {   // bit k set where lane k of the mask is
#if defined(__AVX512F__)
  __m512i v;
  std::memcpy(&v, &m, sizeof v);
  return _mm512_test_epi64_mask(v, v);
#else
  unsigned b = 0;
  for (int k = 0; k < W; ++k) b |= static_cast<unsigned>(m[k] & 1) << k;
  return b;
#endif
}

// Lane permutations for the reductions below: swap halves, pairs, neighbours (W = 8).
static_assert(W == 8, "the reductions shuffle 8 lanes");
template <class V>
inline V mirror(V x, int step) {
  if (step == 4) return __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3);
  if (step == 2) return __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5);
  return __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6);
}

// The last index holding the largest (want_max) or smallest value, from per-lane bests that each keep
// their own last such index: the sequential scan's ">=" / "<=" tie-break.  Picking the larger (value,
// index) in that order is associative, so any merge order gives the scan's answer.  Values are never
// NaN.  → (value, index or -1)
inline void reduce_last(const vd* best, const vl* idx, int n_acc, bool want_max, double& value,
                        long long& index) {
  vd b = best[0];
  vl ix = idx[0];
  auto merge = [&](vd b2, vl ix2) {   // a lane that saw no candidate has index -1
    const vl take = (want_max ? b2 > b : b2 < b) | ((b2 == b) & (ix2 > ix));
    b = take ? b2 : b;
    ix = take ? ix2 : ix;
  };
  for (int a = 1; a < n_acc; ++a) merge(best[a], idx[a]);
  for (int step = 4; step >= 1; step /= 2) merge(mirror(b, step), mirror(ix, step));
  value = b[0];
  index = ix[0];
}

inline double largest(const vd* x) {   // the largest lane of A vectors (no NaN)
  vd m = x[0];
  for (int a = 1; a < A; ++a) m = x[a] > m ? x[a] : m;
  for (int step = 4; step >= 1; step /= 2) {
    const vd o = mirror(m, step);
    m = o > m ? o : m;
  }
  return m[0];
}

class BinarySMO {
 public:
  // items: rows of K (row-major, leading dimension ldk) of the l items; y: +1 / -1 per item.
  // pool: room for 2 l rows of lp floats (k_row, reciprocals), reused from pair to pair.
  BinarySMO(const double* K, long long ldk, const int* items, const signed char* y, int l, double C, double eps,
            long long max_iter, float* pool)
      : K_(K), ldk_(ldk), l_(l), lp_((l + W - 1) / W * W), C_(C), eps_(eps), max_iter_(max_iter),
        row_of_(items, items + l), where_(l), ys_(y, y + l), F_(lp_, 0.0), Fbar_(l, 0.0),
        alpha_(l, 0.0), QD_(lp_, 0.0), ratio_(lp_, 0.0), upb_(lp_, INF), lowb_(lp_, -INF), status_(l, LOWER),
        low_(lp_, 0), row_filter_(l, 0), rows_(l, nullptr), recips_(l, nullptr), pool_(pool) {
    for (int i = 0; i < l; ++i) {
      where_[i] = i;
      set_masks(i);
      F_[i] = -ys_[i];  // G = p = -1
      QD_[i] = bounded(K_[row_of_[i] * ldk_ + row_of_[i]]);
    }
  }

  // Solve; alpha_y (length l, input order) gets alpha_i * y_i; returns the iterations run.
  long long solve(double* alpha_y, double* rho, bool* capped) {
    int counter = (l_ < 1000 ? l_ : 1000) + 1;
    long long iter = 0;
    active_ = l_;
    unshrink_ = false;
    *capped = false;
    for (;;) {
      if (max_iter_ != -1 && iter >= max_iter_) {
        *capped = true;
        break;
      }
      if (--counter == 0) {
        counter = l_ < 1000 ? l_ : 1000;
        shrink();
      }
      int i, j;
      if (select(i, j)) {
        reconstruct_gradient();
        active_ = l_;
        if (select(i, j)) break;
        counter = 1;
      }
      ++iter;
      step(i, j);
    }
    *rho = calculate_rho();
    for (int i = 0; i < l_; ++i) alpha_y[where_[i]] = alpha_[i] * ys_[i];   // item where_[i]'s alpha * y
    return iter;
  }

 private:
  const double* K_;
  long long ldk_;
  int l_, lp_, active_ = 0;   // items; padded to whole vectors (the loops read whole vectors)
  double C_, eps_;
  long long max_iter_;
  bool unshrink_ = false;
  std::vector<int> row_of_, where_;
  std::vector<signed char> ys_;   // y (+1 / -1) by position
  std::vector<double> F_, Fbar_, alpha_, QD_;   // y*G and y*G_bar by position (see the top)
  std::vector<double> ratio_;        // select_j_filtered's r_t
  std::vector<double> upb_, lowb_;   // 0 where the item is in I_up / I_low, +inf / -inf elsewhere
  std::vector<char> status_;
  std::vector<long long> low_;    // -1 where the item is in I_low (may move down), else 0
  std::vector<char> row_filter_;  // whether select_j_filtered may use the row (filter_ready)
  std::vector<float*> rows_;      // position -> its row (nullptr until first needed)
  std::vector<float*> filled_;    // every filled row (their entries follow the swaps)
  std::vector<float*> recips_;    // position -> its row's reciprocals (nullptr until made)
  std::vector<float*> recips_made_;
  float* pool_;                   // l rows, then l rows of reciprocals

  // Row i, filled on first use: (float)K_it for every position t (libsvm's Q without the sign).
  const float* k_row(int i) {
    float* r = rows_[i];
    if (r == nullptr) {
      r = pool_ + filled_.size() * static_cast<size_t>(lp_);
      const double* k = K_ + static_cast<long long>(row_of_[i]) * ldk_;
      for (int j = 0; j < l_; ++j) r[j] = static_cast<float>(k[row_of_[j]]);
      std::fill(r + l_, r + lp_, 0.0f);
      vl out = vl{};
      over_vectors(lp_, [&](int v, int, vl) { out |= ~(abs(load(r + v * W)) <= KMAX); });
      if (bits(out)) throw OutOfRange{};
      rows_[i] = r;
      filled_.push_back(r);
    }
    return r;
  }

  // Whether select_j_filtered may run with row i.  Its reciprocals are made on the row's fourth
  // selection: many rows of a short fit are selected only once or twice, and making them costs
  // about a pass (measured: first use slows short RBF fits by ~10 %, fourth use does not).
  bool filter_ready(int i) {
    char& state = row_filter_[i];   // 0-3: selections so far, 4: reciprocals made, 5: not usable
    if (state < 3) ++state;
    else if (state == 3) state = reciprocals(i) ? 4 : 5;
    return state == 4;
  }

  // Row i's (float)(1/q_it) for every position t, q_it = libsvm's divisor QD_i + QD_t - 2 K_it (TAU
  // when not positive); false (not usable) unless every q_it (t != i) lies in (1e-37, 1e37), where
  // the float reciprocal is a normal number.
  bool reciprocals(int i) {
    const float* r = k_row(i);
    float* rq = pool_ + (static_cast<size_t>(l_) + recips_made_.size()) * lp_;
    recips_[i] = rq;
    recips_made_.push_back(rq);
    const double* QD = QD_.data();
    const vd vqdi = splat(QD_[i]), vtau = splat(TAU);
    vl bad = vl{};
    over_vectors(l_, [&](int v, int, vl valid) {
      const int t = v * W;
      const vd quad = (vqdi + load(QD + t)) - 2.0 * load(r + t);
      const vd q = quad > 0 ? quad : vtau;
      bad |= ~((q > 1e-37) & (q < 1e37)) & valid & ((lanes() + t) != i);
      const vf inv = 1.0f / __builtin_convertvector(q, vf);
      std::memcpy(rq + t, &inv, sizeof inv);
    });
    std::fill(rq + l_, rq + lp_, 0.0f);
    rq[i] = 0.0f;   // gd_i = Gmax + F_i = 0: never a candidate
    return bits(bad) == 0;
  }

  double grad(int i) const { return ys_[i] * F_[i]; }   // G_i (exact: y = +-1)

  void set_status(int i) {
    status_[i] = alpha_[i] >= C_ ? UPPER : (alpha_[i] <= 0 ? LOWER : FREE);
    set_masks(i);
  }

  void set_masks(int i) {  // I_up: y=+1 below C or y=-1 above 0; I_low the other way round
    const bool up = ys_[i] == 1 ? status_[i] != UPPER : status_[i] != LOWER;
    const bool low = ys_[i] == 1 ? status_[i] != LOWER : status_[i] != UPPER;
    upb_[i] = up ? 0.0 : INF;
    lowb_[i] = low ? 0.0 : -INF;
    low_[i] = low ? -1 : 0;
  }

  void swap_positions(int i, int j) {
    if (i == j) return;
    std::swap(row_of_[i], row_of_[j]);
    std::swap(where_[i], where_[j]);
    std::swap(ys_[i], ys_[j]);
    std::swap(F_[i], F_[j]);
    std::swap(Fbar_[i], Fbar_[j]);
    std::swap(alpha_[i], alpha_[j]);
    std::swap(QD_[i], QD_[j]);
    std::swap(status_[i], status_[j]);
    std::swap(upb_[i], upb_[j]);
    std::swap(lowb_[i], lowb_[j]);
    std::swap(low_[i], low_[j]);
    std::swap(row_filter_[i], row_filter_[j]);
    std::swap(rows_[i], rows_[j]);
    std::swap(recips_[i], recips_[j]);
    for (float* r : filled_) std::swap(r[i], r[j]);
    for (float* r : recips_made_) std::swap(r[i], r[j]);
  }

  // 1 when optimal (to eps), else the working set (i, j): i maximises -y_t G_t over I_up, j
  // minimises the second-order objective decrease over I_low (ties: the last index, as libsvm).
  // Lane t of vector v is position v*W + t; each of the A accumulators keeps, per lane, the best
  // value and the last position holding it; reduce_last merges them.
  int select(int& out_i, int& out_j) {
    const int n = active_;
    const double* F = F_.data();
    const vl lane = lanes();
    // Pass 1.  Gmax = max over I_up of -F_t = -(min of F_t + upb_t), upb = 0 in I_up and +inf
    // elsewhere (F is finite: kernel values are bounded, see k_row), with the last position holding
    // it; and Gmax2 = max over I_low of F_t (libsvm takes it in its second pass: the same set and
    // values), from F_t + lowb_t.  Adding the bias costs less than testing a mask.
    double fmin, gmax2;
    long long imax;
    {
      const double* upb = upb_.data();
      const double* lowb = lowb_.data();
      vd best[A], g2[A];
      vl bidx[A];
      for (int a = 0; a < A; ++a) { best[a] = splat(INF); g2[a] = splat(-INF); bidx[a] = vl{} - 1; }
      over_vectors(n, [&](int v, int a, vl valid) {
        const int t = v * W;
        const vd f = load(F + t);
        const vd u = f + load(upb + t);
        const vl m = (u <= best[a]) & valid;
        best[a] = m ? u : best[a];
        bidx[a] = m ? lane + t : bidx[a];
        const vd g = f + load(lowb + t);
        g2[a] = (g > g2[a]) & valid ? g : g2[a];
      });
      reduce_last(best, bidx, A, false, fmin, imax);
      gmax2 = largest(g2);
    }
    if (fmin == INF) return 1;  // I_up empty: Gmax = -inf, optimal
    const int i = static_cast<int>(imax);
    const double gmax = -F[i];
    if (gmax + gmax2 < eps_) return 1;
    long long jmin = -1;
    if (!filter_ready(i) || !select_j_filtered(i, gmax, jmin)) select_j(i, gmax, jmin);
    if (jmin == -1) return 1;
    out_i = i;
    out_j = static_cast<int>(jmin);
    return 0;
  }

  // Pass 2, the reference: j minimises obj_t = -(gd_t^2)/q_t over I_low where gd_t = Gmax + F_t > 0,
  // q_t = QD_i + QD_t - 2 K_it (libsvm's QD_i + QD_t -/+ 2 y_i Q_it for y_t = +1/-1, exactly), TAU
  // when not positive; the last such position on ties.
  void select_j(int i, double gmax, long long& jmin) {
    const double* F = F_.data();
    const double* QD = QD_.data();
    const long long* low = low_.data();
    const float* Ki = k_row(i);
    const vl lane = lanes();
    const vd vgmax = splat(gmax), vqdi = splat(QD_[i]), vtau = splat(TAU);
    vd best[A];
    vl bidx[A];
    for (int a = 0; a < A; ++a) { best[a] = splat(INF); bidx[a] = vl{} - 1; }
    over_vectors(active_, [&](int v, int a, vl valid) {
      const int t = v * W;
      const vd gd = vgmax + load(F + t);
      const vd quad = (vqdi + load(QD + t)) - 2.0 * load(Ki + t);
      const vd obj = -(gd * gd) / (quad > 0 ? quad : vtau);
      const vl m = load(low + t) & valid & (gd > 0) & (obj <= best[a]);
      best[a] = m ? obj : best[a];
      bidx[a] = m ? lane + t : bidx[a];
    });
    double best_obj;
    reduce_last(best, bidx, A, false, best_obj, jmin);
  }

  // Pass 2, filtered (the same j; false when it cannot vouch for that, then select_j runs).  The
  // division per item was most of the pass.  With row i's 1/q_t kept as floats (reciprocals), r_t =
  // gd_t |gd_t| (1/q_t), masked to I_low, is within 2^-22 of gd_t^2/q_t where gd_t > 0 and <= 0
  // elsewhere; only items within 2^-20 of the largest r can hold the minimum of obj_t, whose
  // rounding keeps the order of the exact ratios up to ties.  Those few are tested exactly, in
  // order, with libsvm's "<=".
  bool select_j_filtered(int i, double gmax, long long& jmin) {
    const double* F = F_.data();
    const long long* low = low_.data();
    const float* RQ = recips_[i];
    double* R = ratio_.data();
    const vd vgmax = splat(gmax);
    vd rmax[A];
    for (int a = 0; a < A; ++a) rmax[a] = splat(0.0);
    over_vectors(active_, [&](int v, int a, vl valid) {
      const int t = v * W;
      const vd gd = vgmax + load(F + t);
      const vd r = masked(gd * abs(gd) * load(RQ + t), load(low + t) & valid);
      std::memcpy(R + t, &r, sizeof r);
      rmax[a] = r > rmax[a] ? r : rmax[a];
    });
    const double top = largest(rmax);
    if (!(top >= 0x1p-900 && top <= 0x1p900)) return false;   // far from overflow and underflow
    const double thr = top * (1 - 0x1p-20);
    const double* QD = QD_.data();
    const float* Ki = k_row(i);
    double best_obj = INF;
    auto test = [&](int t) {   // libsvm's test of item t, in its arithmetic (t in I_low, gd > 0)
      const double gd = gmax + F[t];
      double quad = (QD_[i] + QD[t]) - 2.0 * static_cast<double>(Ki[t]);
      if (quad <= 0) quad = TAU;
      const double obj = -(gd * gd) / quad;
      if (obj <= best_obj) { best_obj = obj; jmin = t; }
    };
    auto scan = [&](int v) {
      for (unsigned c = bits(load(R + v * W) >= thr); c; c &= c - 1) test(v * W + __builtin_ctz(c));
    };
    const int nv = (active_ + W - 1) / W;
    int v = 0;
    for (; v + 4 <= nv; v += 4) {   // candidates are rare: four vectors at a time
      const vd a = load(R + v * W), b = load(R + (v + 1) * W), c = load(R + (v + 2) * W), d = load(R + (v + 3) * W);
      const vd ab = a > b ? a : b, cd = c > d ? c : d;
      if (bits((ab > cd ? ab : cd) >= thr))
        for (int u = v; u < v + 4; ++u) scan(u);
    }
    for (; v < nv; ++v) scan(v);
    return true;
  }

  void step(int i, int j) {
    const float* Ki = k_row(i);
    const float* Kj = k_row(j);
    const float Qij = static_cast<float>(ys_[i] * ys_[j]) * Ki[j];   // libsvm's Q_i[j]
    const double Gi = grad(i), Gj = grad(j);
    const double Ci = C_, Cj = C_;
    const double old_i = alpha_[i], old_j = alpha_[j];
    double& ai = alpha_[i];
    double& aj = alpha_[j];
    if (ys_[i] != ys_[j]) {
      double quad = QD_[i] + QD_[j] + static_cast<double>(2 * Qij);
      if (quad <= 0) quad = TAU;
      const double delta = (-Gi - Gj) / quad;
      const double diff = ai - aj;
      ai += delta;
      aj += delta;
      if (diff > 0) {
        if (aj < 0) { aj = 0; ai = diff; }
      } else {
        if (ai < 0) { ai = 0; aj = -diff; }
      }
      if (diff > Ci - Cj) {
        if (ai > Ci) { ai = Ci; aj = Ci - diff; }
      } else {
        if (aj > Cj) { aj = Cj; ai = Cj + diff; }
      }
    } else {
      double quad = QD_[i] + QD_[j] - static_cast<double>(2 * Qij);
      if (quad <= 0) quad = TAU;
      const double delta = (Gi - Gj) / quad;
      const double sum = ai + aj;
      ai -= delta;
      aj += delta;
      if (sum > Ci) {
        if (ai > Ci) { ai = Ci; aj = sum - Ci; }
      } else {
        if (aj < 0) { aj = 0; ai = sum; }
      }
      if (sum > Cj) {
        if (aj > Cj) { aj = Cj; ai = sum - Cj; }
      } else {
        if (ai < 0) { ai = 0; aj = sum; }
      }
    }
    const double dai = ai - old_i, daj = aj - old_j;
    // G_k += Q_ik dai + Q_jk daj, times y_k: y_k Q_ik = y_i K_ik, so F_k += K_ik (y_i dai) + K_jk (y_j daj)
    const double ydai = ys_[i] * dai, ydaj = ys_[j] * daj;
    double* F = F_.data();
    for (int k = 0; k < active_; ++k) F[k] += static_cast<double>(Ki[k]) * ydai + static_cast<double>(Kj[k]) * ydaj;

    const bool ui = status_[i] == UPPER, uj = status_[j] == UPPER;
    set_status(i);
    set_status(j);
    // G_bar_k -/+= C Q_ik when i leaves / reaches its upper bound; times y_k as above.  One loop
    // with the sign in the factor: a - c K and a + (-c) K are the same double.
    double* Fb = Fbar_.data();
    auto bound_moved = [&](const float* Kr, double c) {
      for (int k = 0; k < l_; ++k) Fb[k] += c * static_cast<double>(Kr[k]);
    };
    if (ui != (status_[i] == UPPER)) bound_moved(Ki, (ui ? -1 : 1) * (ys_[i] * Ci));
    if (uj != (status_[j] == UPPER)) bound_moved(Kj, (uj ? -1 : 1) * (ys_[j] * Cj));
  }

  void reconstruct_gradient() {
    if (active_ == l_) return;
    for (int j = active_; j < l_; ++j) F_[j] = Fbar_[j] - ys_[j];   // y_j (G_bar_j + p_j), p = -1
    // G[j] += sum over free i (ascending) of alpha_i * Q_ij: the order libsvm's two variants share
    for (int i = 0; i < active_; ++i)
      if (status_[i] == FREE) {
        const float* Ki = k_row(i);
        const double a = ys_[i] * alpha_[i];   // y_j (alpha_i Q_ij) = (y_i alpha_i) K_ij
        for (int j = active_; j < l_; ++j) F_[j] += a * static_cast<double>(Ki[j]);
      }
  }

  bool be_shrunk(int i, double gmax1, double gmax2) const {
    const double G = grad(i);
    if (status_[i] == UPPER) return ys_[i] == 1 ? -G > gmax1 : -G > gmax2;
    if (status_[i] == LOWER) return ys_[i] == 1 ? G > gmax2 : G > gmax1;
    return false;
  }

  void shrink() {
    double gmax1 = -INF, gmax2 = -INF;
    for (int i = 0; i < active_; ++i) {
      const double G = grad(i);
      if (ys_[i] == 1) {
        if (status_[i] != UPPER && -G >= gmax1) gmax1 = -G;
        if (status_[i] != LOWER && G >= gmax2) gmax2 = G;
      } else {
        if (status_[i] != UPPER && -G >= gmax2) gmax2 = -G;
        if (status_[i] != LOWER && G >= gmax1) gmax1 = G;
      }
    }
    if (!unshrink_ && gmax1 + gmax2 <= eps_ * 10) {
      unshrink_ = true;
      reconstruct_gradient();
      active_ = l_;
    }
    for (int i = 0; i < active_; ++i)
      if (be_shrunk(i, gmax1, gmax2)) {
        --active_;
        while (active_ > i) {
          if (!be_shrunk(active_, gmax1, gmax2)) {
            swap_positions(i, active_);
            break;
          }
          --active_;
        }
      }
  }

  double calculate_rho() const {
    int nr_free = 0;
    double ub = INF, lb = -INF, sum_free = 0;
    for (int i = 0; i < active_; ++i) {
      const double yG = F_[i];
      if (status_[i] == UPPER) {
        if (ys_[i] == -1) ub = ub < yG ? ub : yG; else lb = lb > yG ? lb : yG;
      } else if (status_[i] == LOWER) {
        if (ys_[i] == 1) ub = ub < yG ? ub : yG; else lb = lb > yG ? lb : yG;
      } else {
        ++nr_free;
        sum_free += yG;
      }
    }
    return nr_free > 0 ? sum_free / nr_free : (ub + lb) / 2;
  }
};

}  // namespace

extern "C" {

int convfeat_svm_abi() { return 2; }

// One-vs-one C-SVC, classes 0..n_class-1 given grouped: class c is rows start[c] .. start[c]+count[c]-1
// of the n x n training kernel K (row-major, leading dimension ldk).  For every pair (a < b) in
// libsvm's order the binary problem (class a +1, class b -1) is solved; the m x n test kernel Kt
// (leading dimension ldt) is then voted on as libsvm's predict does → pred[m] (class indices).
// n_iter[pair] gets each pair's iterations; when not null, rho_out[pair] its rho and coef_out its
// coefficients alpha_i*y_i (pair after pair, count[a]+count[b] each).  Returns 1 if any pair stopped
// at max_iter, 0 if none, -1 when it failed (memory), -2 when a kernel value or C * n exceeds KMAX.
int convfeat_svc_ovo(const double* K, long long ldk, const int* start, const int* count, int n_class, double C,
                     double eps, long long max_iter, const double* Kt, long long ldt, long long m, int* pred,
                     long long* n_iter, double* rho_out, double* coef_out) {
  try {
    const int n_pairs = n_class * (n_class - 1) / 2;
    const long long n = start[n_class - 1] + count[n_class - 1];
    if (!(C * static_cast<double>(n) <= KMAX)) return -2;
    size_t most = 0;   // the largest pair's rows and reciprocals
    for (int a = 0; a < n_class; ++a)
      for (int b = a + 1; b < n_class; ++b) {
        const size_t l = static_cast<size_t>(count[a]) + count[b], lp = (l + W - 1) / W * W;
        most = l * 2 * lp > most ? l * 2 * lp : most;
      }
    std::unique_ptr<float[]> pool(new float[most]);
    // per pair: coefficients (alpha*y) of its items, rho
    std::vector<std::vector<double>> coef(n_pairs);
    std::vector<double> rho(n_pairs);
    int capped_any = 0;
    int p = 0;
    for (int a = 0; a < n_class; ++a)
      for (int b = a + 1; b < n_class; ++b, ++p) {
        const int l = count[a] + count[b];
        std::vector<int> items(l);
        std::vector<signed char> y(l);
        for (int k = 0; k < count[a]; ++k) { items[k] = start[a] + k; y[k] = 1; }
        for (int k = 0; k < count[b]; ++k) { items[count[a] + k] = start[b] + k; y[count[a] + k] = -1; }
        coef[p].assign(l, 0.0);
        bool capped = false;
        BinarySMO smo(K, ldk, items.data(), y.data(), l, C, eps, max_iter, pool.get());
        n_iter[p] = smo.solve(coef[p].data(), &rho[p], &capped);
        capped_any |= capped;
        if (rho_out) rho_out[p] = rho[p];
        if (coef_out) {
          std::memcpy(coef_out, coef[p].data(), sizeof(double) * l);
          coef_out += l;
        }
      }
    // predict: per pair, sum over its nonzero coefficients in order (class a, then class b), minus
    // rho, a vote for a when positive: each test row's sum in libsvm's order, the rows side by side
    // (a transposed test kernel, so that the compiler vectorises across rows)
    std::vector<double> KtT(static_cast<size_t>(m * n));
    for (long long t = 0; t < m; ++t)
      for (long long k = 0; k < n; ++k) KtT[k * m + t] = Kt[t * ldt + k];
    std::vector<int> votes(static_cast<size_t>(m) * n_class, 0);
    std::vector<double> sum(m);
    p = 0;
    for (int a = 0; a < n_class; ++a)
      for (int b = a + 1; b < n_class; ++b, ++p) {
        std::fill(sum.begin(), sum.end(), 0.0);
        const double* c = coef[p].data();
        for (int side = 0; side < 2; ++side) {
          const int first = side ? start[b] : start[a], cnt = side ? count[b] : count[a];
          const double* cs = side ? c + count[a] : c;
          for (int k = 0; k < cnt; ++k) {
            if (cs[k] == 0) continue;  // a zero coefficient adds an exact zero
            const double ck = cs[k];
            const double* col = KtT.data() + (first + k) * m;
            for (long long t = 0; t < m; ++t) sum[t] += ck * col[t];
          }
        }
        for (long long t = 0; t < m; ++t) ++votes[t * n_class + (sum[t] - rho[p] > 0 ? a : b)];
      }
    for (long long t = 0; t < m; ++t) {
      const int* v = votes.data() + t * n_class;
      int best = 0;
      for (int c = 1; c < n_class; ++c)
        if (v[c] > v[best]) best = c;
      pred[t] = best;
    }
    return capped_any;
  } catch (const OutOfRange&) {   // kernel values beyond KMAX
    return -2;
  } catch (...) {   // out of memory (or any other C++ error): never unwind into Python
    return -1;
  }
}

}  // extern "C"
