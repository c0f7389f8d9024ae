// Winograd input / output transforms over VecF (the filter transform is done once per call in float64
// by the entry, conv_fast_winograd.cpp). Matrices of Lavin & Gray 2016 ("Fast Algorithms for
// Convolutional Neural Networks", section 4.1 for F(2x2,3x3) and 4.2 for F(4x4,3x3)):
//
//  F(2x2,3x3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]          A^T = [1 1 1 0; 0 1 -1 -1]
//  F(4x4,3x3): B^T = [4  0 -5  0 1 0;                                  A^T = [1 1  1 1  1 0;
//                     0 -4 -4  1 1 0;                                         0 1 -1 2 -2 0;
//                     0  4 -4 -1 1 0;                                         0 1  1 4  4 0;
//                     0 -2 -1  2 1 0;                                         0 1 -1 8 -8 1]
//                     0  2 -1 -2 1 0;
//                     0  4  0 -5 0 1]
// Y = A^T [ (G g G^T) .* (B^T d B) ] A per m x m output tile, d the alpha x alpha input tile (alpha = m + 2).
// Both transforms are vectorised across the tiles of one tile row: the padded input rows are split into
// m phases, so tile j's column l is phase l % m at offset j + l / m (contiguous), and the GEMM result
// holds each output channel's tiles contiguously (K x tiles).
// Test: pytest tests/test_conv_fast.py -k winograd. Bench: python -m fastml.bench --ops conv_fast
#pragma once
#include <cstdint>

#include "ops/conv_fast/conv_fast.h"

namespace fastml::conv_fast_impl {

template <class V>
inline void bt_f23(const V* d, V* r) {
  r[0] = d[0] - d[2];
  r[1] = d[1] + d[2];
  r[2] = d[2] - d[1];
  r[3] = d[1] - d[3];
}

template <class V>
inline void bt_f43(const V* d, V* r) {
  const V four = V::set1(4.0f), five = V::set1(5.0f), two = V::set1(2.0f);
  r[0] = fmadd(four, d[0], fnmadd(five, d[2], d[4]));
  const V a = fnmadd(four, d[2], d[4]);  // d4 - 4 d2
  const V b = fmsub(four, d[1], d[3]);   // 4 d1 - d3
  r[1] = a - b;
  r[2] = a + b;
  const V c = d[4] - d[2];
  const V e = two * (d[3] - d[1]);
  r[3] = c + e;
  r[4] = c - e;
  r[5] = fmadd(four, d[1], fnmadd(five, d[3], d[5]));
}

template <class V>
inline void at_f23(const V* s, V* o) {
  o[0] = s[0] + s[1] + s[2];
  o[1] = s[1] - s[2] - s[3];
}

template <class V>
inline void at_f43(const V* s, V* o) {
  const V p1 = s[1] + s[2], m1 = s[1] - s[2];
  const V p3 = s[3] + s[4], m3 = s[3] - s[4];
  o[0] = s[0] + p1 + p3;
  o[1] = fmadd(V::set1(2.0f), m3, m1);
  o[2] = fmadd(V::set1(4.0f), p3, p1);
  o[3] = fmadd(V::set1(8.0f), m3, m1) + s[5];
}

// One channel's tile row: buf = alpha padded rows (m phases of wg.wq floats each);
// v[e * stride_e + j] = (B^T d_j B)[e] for tiles j < wg.tw.
template <class V, int M>
void wino_input_m(const WinoGeom& wg, const float* buf, float* v, int64_t stride_e) {
  constexpr int N = V::N;
  constexpr int A = M + 2;
  const int64_t wq = wg.wq, rf = M * wq;
  for (int64_t j = 0; j < wg.tw; j += N) {
    V t[A][A];  // t[a][e2]: rows transformed
    for (int a = 0; a < A; ++a) {
      V d[A];
      for (int l = 0; l < A; ++l) d[l] = V::load(buf + a * rf + (l % M) * wq + j + l / M);  // slack >= 16
      if constexpr (M == 4) bt_f43(d, t[a]);
      else bt_f23(d, t[a]);
    }
    const int64_t left = wg.tw - j;
    for (int e2 = 0; e2 < A; ++e2) {
      V col[A], r[A];
      for (int a = 0; a < A; ++a) col[a] = t[a][e2];
      if constexpr (M == 4) bt_f43(col, r);
      else bt_f23(col, r);
      for (int e1 = 0; e1 < A; ++e1) {
        float* dst = v + (e1 * A + e2) * stride_e + j;
        if (left >= N) r[e1].store(dst);
        else r[e1].store_tail(dst, static_cast<int>(left));
      }
    }
  }
}

template <class V>
void wino_input(const WinoGeom& wg, const float* buf, float* v, int64_t stride_e) {
  if (wg.m == 4) wino_input_m<V, 4>(wg, buf, v, stride_e);
  else wino_input_m<V, 2>(wg, buf, v, stride_e);
}

// Output rows a < rows (y + a * Wo) of r tiles from tile j0: tile[a][b][l] is column b of tile j0 + l,
// written at column (j0 + l) * M + b when that is < Wo.
template <int N, int M>
inline void store_tiles(const float (&tile)[M][M][N], float* y, int64_t Wo, int64_t rows, int64_t j0, int r) {
  const int64_t c0 = j0 * M, cn = (Wo - c0 < int64_t(r) * M) ? Wo - c0 : int64_t(r) * M;
  for (int64_t a = 0; a < rows; ++a) {
    float* yr = y + a * Wo + c0;
    if (cn == int64_t(r) * M) {  // every tile whole: a fixed inner trip count the compiler can vectorise
      for (int l = 0; l < r; ++l)
        for (int b = 0; b < M; ++b) yr[l * M + b] = tile[a][b][l];
    } else {
      for (int64_t c = 0; c < cn; ++c) yr[c] = tile[a][c % M][c / M];
    }
  }
}

// One tile row of one output channel: the GEMM results mk[e * lde + j] of tiles j < wg.tw give the
// m x m outputs Y_j = A^T M_j A + bias, written to output rows a < rows (y + a * Wo) at columns
// j*m + b < Wo. Vectorised across tiles; the interleave into the row goes through a small stack tile.
template <class V, int M>
void wino_output_m(const WinoGeom& wg, const float* mk, int64_t lde, float bias, float* y, int64_t Wo, int64_t rows) {
  constexpr int N = V::N;
  constexpr int A = M + 2;
  const V vb = V::set1(bias);
  for (int64_t j0 = 0; j0 < wg.tw; j0 += N) {
    const int r = static_cast<int>(wg.tw - j0 < N ? wg.tw - j0 : N);
    V s[A][M];  // s[e1][b] = sum_e2 m[e1][e2] A[e2][b]
    for (int e1 = 0; e1 < A; ++e1) {
      V row[A];
      for (int e2 = 0; e2 < A; ++e2) row[e2] = V::load_tail(mk + (e1 * A + e2) * lde + j0, r);
      if constexpr (M == 4) at_f43(row, s[e1]);
      else at_f23(row, s[e1]);
    }
    float tile[M][M][N];  // tile[a][b][lane]
    for (int b = 0; b < M; ++b) {
      V col[A], o[M];
      for (int e1 = 0; e1 < A; ++e1) col[e1] = s[e1][b];
      if constexpr (M == 4) at_f43(col, o);
      else at_f23(col, o);
      for (int a = 0; a < M; ++a) (o[a] + vb).store(tile[a][b]);
    }
    store_tiles<N, M>(tile, y, Wo, rows, j0, r);
  }
}

template <class V>
void wino_output(const WinoGeom& wg, const float* mk, int64_t lde, float bias, float* y, int64_t Wo, int64_t rows) {
  if (wg.m == 4) wino_output_m<V, 4>(wg, mk, lde, bias, y, Wo, rows);
  else wino_output_m<V, 2>(wg, mk, lde, bias, y, Wo, rows);
}

// Filter transform U[e * ld + kc] = (G g_kc G^T)[e] for filters kc < n stored transposed, wt[(r*3 + s) * ld + kc],
// vectorised over kc. G (Lavin & Gray) applied to a column (a, b, c):
//   F(2x2,3x3): (a, (a+b+c)/2, (a-b+c)/2, c)
//   F(4x4,3x3): (a/4, -(a+b+c)/6, -(a-b+c)/6, (a + 4c)/24 + b/12, (a + 4c)/24 - b/12, c)
template <class V, int M>
inline void g_col(V a, V b, V c, V* r) {
  if constexpr (M == 2) {
    const V h = V::set1(0.5f), s = a + c;
    r[0] = a;
    r[1] = h * (s + b);
    r[2] = h * (s - b);
    r[3] = c;
  } else {
    // divisions (correctly rounded) rather than products with the rounded constants 1/6, 1/12, 1/24
    const V s = a + c, six = V::set1(6.0f);
    const V u = (a + V::set1(4.0f) * c) / V::set1(24.0f), v = b / V::set1(12.0f);
    r[0] = a * V::set1(0.25f);
    r[1] = -((s + b) / six);
    r[2] = -((s - b) / six);
    r[3] = u + v;
    r[4] = u - v;
    r[5] = c;
  }
}

template <class V, int M>
void wino_filter_m(int64_t n, int64_t ld, const float* wt, float* U) {
  constexpr int N = V::N;
  constexpr int A = M + 2;
  for (int64_t kc = 0; kc < n; kc += N) {
    const int r = static_cast<int>(n - kc < N ? n - kc : N);
    V gv[9];
    for (int t = 0; t < 9; ++t) gv[t] = V::load_tail(wt + t * ld + kc, r);
    V t[A][3];  // G g: column s of g transformed
    for (int s = 0; s < 3; ++s) {
      V col[A];
      g_col<V, M>(gv[s], gv[3 + s], gv[6 + s], col);
      for (int i = 0; i < A; ++i) t[i][s] = col[i];
    }
    for (int i = 0; i < A; ++i) {  // (G g) G^T: G applied to each row of t
      V row[A];
      g_col<V, M>(t[i][0], t[i][1], t[i][2], row);
      for (int j = 0; j < A; ++j) row[j].store_tail(U + (i * A + j) * ld + kc, r);
    }
  }
}

template <class V>
void wino_filter(int64_t m, int64_t n, int64_t ld, const float* wt, float* U) {
  if (m == 4) wino_filter_m<V, 4>(n, ld, wt, U);
  else wino_filter_m<V, 2>(n, ld, wt, U);
}

// ---- F(2x2x2, 3x3x3): the same 1-D matrices along D, H and W (e = (ez * 4 + ey) * 4 + ex) ----

// One channel's tile row of a 3-D tile row: buf = 4 padded planes (plane_floats apart) of 4 padded rows
// (2 phases of wg.wq floats each); v[e * stride_e + j] = (B^T ⊗ B^T ⊗ B^T d_j)[e] for tiles j < wg.tw.
template <class V>
void wino3_input(const WinoGeom& wg, const float* buf, int64_t plane_floats, float* v, int64_t stride_e) {
  constexpr int N = V::N;
  const int64_t wq = wg.wq, rf = 2 * wq;
  for (int64_t j = 0; j < wg.tw; j += N) {
    V t2[4][16];  // t2[z][ey * 4 + ex]: plane z transformed along W and H
    for (int z = 0; z < 4; ++z) {
      const float* pz = buf + z * plane_floats;
      V t[4][4];  // t[row][ex]: rows transformed along W
      for (int a = 0; a < 4; ++a) {
        V d[4];
        for (int l = 0; l < 4; ++l) d[l] = V::load(pz + a * rf + (l % 2) * wq + j + l / 2);  // slack >= 16
        bt_f23(d, t[a]);
      }
      for (int ex = 0; ex < 4; ++ex) {
        const V col[4] = {t[0][ex], t[1][ex], t[2][ex], t[3][ex]};
        V r[4];
        bt_f23(col, r);
        for (int ey = 0; ey < 4; ++ey) t2[z][ey * 4 + ex] = r[ey];
      }
    }
    const int64_t left = wg.tw - j;
    for (int q = 0; q < 16; ++q) {  // along D
      const V col[4] = {t2[0][q], t2[1][q], t2[2][q], t2[3][q]};
      V r[4];
      bt_f23(col, r);
      for (int ez = 0; ez < 4; ++ez) {
        float* dst = v + (ez * 16 + q) * stride_e + j;
        if (left >= N) r[ez].store(dst);
        else r[ez].store_tail(dst, static_cast<int>(left));
      }
    }
  }
}

// One tile row of one output channel: mk[e * lde + j] (tiles j < wg.tw) -> the 2x2x2 outputs of each tile
// plus bias, written to output planes dz < planes (y + dz * plane), rows a < rows, columns j*2 + b < Wo.
template <class V>
void wino3_output(const WinoGeom& wg, const float* mk, int64_t lde, float bias, float* y, int64_t Wo, int64_t plane,
                  int64_t rows, int64_t planes) {
  constexpr int N = V::N;
  const V vb = V::set1(bias);
  for (int64_t j0 = 0; j0 < wg.tw; j0 += N) {
    const int r = static_cast<int>(wg.tw - j0 < N ? wg.tw - j0 : N);
    V s2[2][16];  // s2[dz][ey * 4 + ex]: reduced along D
    for (int q = 0; q < 16; ++q) {
      V col[4], o[2];
      for (int ez = 0; ez < 4; ++ez) col[ez] = V::load_tail(mk + (ez * 16 + q) * lde + j0, r);
      at_f23(col, o);
      s2[0][q] = o[0];
      s2[1][q] = o[1];
    }
    for (int64_t dz = 0; dz < planes; ++dz) {
      V s[4][2];  // s[ey][b]: reduced along W
      for (int ey = 0; ey < 4; ++ey) at_f23(&s2[dz][ey * 4], s[ey]);
      float tile[2][2][N];  // tile[a][b][lane]
      for (int b = 0; b < 2; ++b) {
        const V col[4] = {s[0][b], s[1][b], s[2][b], s[3][b]};
        V o[2];
        at_f23(col, o);
        for (int a = 0; a < 2; ++a) (o[a] + vb).store(tile[a][b]);
      }
      store_tiles<N, 2>(tile, y + dz * plane, Wo, rows, j0, r);
    }
  }
}

// Filter transform of n 3x3x3 filters stored transposed (wt[((z*3 + y)*3 + x)*ld + kc], kc < n):
// U[e*ld + kc] = (G ⊗ G ⊗ G g)[e], e < 64, G of F(2x2,3x3) (g_col<V, 2>) along W, then H, then D.
template <class V>
void wino3_filter(int64_t n, int64_t ld, const float* wt, float* U) {
  constexpr int N = V::N;
  for (int64_t kc = 0; kc < n; kc += N) {
    const int r = static_cast<int>(n - kc < N ? n - kc : N);
    V t1[3][3][4];  // [z][y][ex]
    for (int zy = 0; zy < 9; ++zy) {
      const V a = V::load_tail(wt + (zy * 3) * ld + kc, r), b = V::load_tail(wt + (zy * 3 + 1) * ld + kc, r),
              c = V::load_tail(wt + (zy * 3 + 2) * ld + kc, r);
      g_col<V, 2>(a, b, c, t1[zy / 3][zy % 3]);
    }
    V t2[3][4][4];  // [z][ey][ex]
    for (int z = 0; z < 3; ++z)
      for (int ex = 0; ex < 4; ++ex) {
        V col[4];
        g_col<V, 2>(t1[z][0][ex], t1[z][1][ex], t1[z][2][ex], col);
        for (int ey = 0; ey < 4; ++ey) t2[z][ey][ex] = col[ey];
      }
    for (int q = 0; q < 16; ++q) {
      V col[4];
      g_col<V, 2>(t2[0][q / 4][q % 4], t2[1][q / 4][q % 4], t2[2][q / 4][q % 4], col);
      for (int ez = 0; ez < 4; ++ez) col[ez].store_tail(U + (ez * 16 + q) * ld + kc, r);
    }
  }
}

// ---- weight gradient, F(3x3, 2x2) by the transposition of F(2x2, 3x3) ----
// sum_i y_i dy_i = sum_e (A dy)_e (G g)_e (B^T x)_e, so dW = G^T [ (A dy) .* (B^T x) ] per tile and axis:
// the input transform is the forward's, dy (2 per axis) goes through A = A^T's transpose, and the summed
// products through G^T (3 x 4): (m0 + (m1 + m2)/2, (m1 - m2)/2, (m1 + m2)/2 + m3).
template <class V>
inline void a_col(V d0, V d1, V* r) {  // A (4 x 2) = [1 0; 1 1; 1 -1; 0 -1]
  r[0] = d0;
  r[1] = d0 + d1;
  r[2] = d0 - d1;
  r[3] = -d1;
}

template <class V>
inline void gt_col(const V* m, V* r) {  // G^T (3 x 4)
  const V h = V::set1(0.5f), s = h * (m[1] + m[2]);
  r[0] = m[0] + s;
  r[1] = h * (m[1] - m[2]);
  r[2] = s + m[3];
}

// dy of one tile row: buf = 2 (per plane, planes = 1 or 2 of plane_floats apart) rows of grad_output split
// into 2 phases of wg.wq floats (column 2j + b of tile j at phase b, offset j); d[e * stride_e + j] =
// (A ⊗ A [⊗ A] dy_j)[e], e < 16 (planes 1) or 64 (planes 2), tiles j < wg.tw.
template <class V>
void wino_dy(const WinoGeom& wg, const float* buf, int64_t plane_floats, int planes, float* d, int64_t stride_e) {
  constexpr int N = V::N;
  const int64_t wq = wg.wq, rf = 2 * wq;
  for (int64_t j = 0; j < wg.tw; j += N) {
    V t2[2][16];  // t2[z][ey * 4 + ex]
    for (int z = 0; z < planes; ++z) {
      const float* pz = buf + z * plane_floats;
      V t[2][4];
      for (int a = 0; a < 2; ++a) a_col(V::load(pz + a * rf + j), V::load(pz + a * rf + wq + j), t[a]);
      for (int ex = 0; ex < 4; ++ex) {
        V r[4];
        a_col(t[0][ex], t[1][ex], r);
        for (int ey = 0; ey < 4; ++ey) t2[z][ey * 4 + ex] = r[ey];
      }
    }
    const int64_t left = wg.tw - j;
    auto put = [&](int e, V v) {
      float* dst = d + e * stride_e + j;
      if (left >= N) v.store(dst);
      else v.store_tail(dst, static_cast<int>(left));
    };
    for (int q = 0; q < 16; ++q) {
      if (planes == 1) {
        put(q, t2[0][q]);
        continue;
      }
      V r[4];
      a_col(t2[0][q], t2[1][q], r);
      for (int ez = 0; ez < 4; ++ez) put(ez * 16 + q, r[ez]);
    }
  }
}

// dW of n filters (lanes over kc < n) from the summed products m[e * ld + kc] (e < 16 for 3x3, 64 for
// 3x3x3): wt[t * ld + kc] = (G^T ⊗ G^T [⊗ G^T] m_kc)[t], t < 9 or 27 (row-major taps).
template <class V>
void wino_wgrad(int nd, int64_t n, int64_t ld, const float* m, float* wt) {
  constexpr int N = V::N;
  for (int64_t kc = 0; kc < n; kc += N) {
    const int r = static_cast<int>(n - kc < N ? n - kc : N);
    V u[4][3][3];  // u[ez][y][x]: reduced along W and H
    for (int ez = 0; ez < (nd == 3 ? 4 : 1); ++ez) {
      V t[4][3];  // t[ey][x]
      for (int ey = 0; ey < 4; ++ey) {
        V row[4];
        for (int ex = 0; ex < 4; ++ex) row[ex] = V::load_tail(m + ((ez * 4 + ey) * 4 + ex) * ld + kc, r);
        gt_col(row, t[ey]);
      }
      for (int x = 0; x < 3; ++x) {
        const V col[4] = {t[0][x], t[1][x], t[2][x], t[3][x]};
        V o[3];
        gt_col(col, o);
        for (int y = 0; y < 3; ++y) u[ez][y][x] = o[y];
      }
    }
    for (int q = 0; q < 9; ++q) {
      if (nd != 3) {
        u[0][q / 3][q % 3].store_tail(wt + q * ld + kc, r);
        continue;
      }
      const V col[4] = {u[0][q / 3][q % 3], u[1][q / 3][q % 3], u[2][q / 3][q % 3], u[3][q / 3][q % 3]};
      V o[3];
      gt_col(col, o);
      for (int z = 0; z < 3; ++z) o[z].store_tail(wt + (z * 9 + q) * ld + kc, r);
    }
  }
}

template <class V>
constexpr ConvFastKernels make_kernels() {
  return ConvFastKernels{&pad_rows<V>,      &pad_interior<V>,  &dw_forward<V>,  &dw_lanes<V>,   &dw_lanes_wgrad<V>,
                         V::N,              &scatter<V>,       &unpad<V>,
                         &corr_taps<V>,     &sum<V>,           &direct_rows<V>, &wino_input<V>, &wino_output<V>,
                         &wino_filter<V>,   &wino3_input<V>,   &wino3_output<V>, &wino3_filter<V>, &wino_dy<V>,
                         &wino_wgrad<V>};
}

}  // namespace fastml::conv_fast_impl
