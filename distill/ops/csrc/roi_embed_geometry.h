// RoI-align sampling geometry along one axis, shared by the CUDA kernels and the host-side
// geometry check (compiled by both nvcc and the host C++ compiler).
//
// RoI-align + mean over S x S bins is sum_{h,w} a_y[h] * F[c,h,w] * a_x[w]: the sample grid is a
// tensor product of row samples and column samples and the bilinear weights factorise. a_y[h] is
// the mean 1-D interpolation weight that the RoI's S * grid_h row samples put on row h (a_x the
// same for columns). The arithmetic follows torchvision's roi_align so results agree with it.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define OVD_HD __host__ __device__ inline
#else
#define OVD_HD inline
#endif

namespace ovdistill {

template <typename T>
struct AxisSampling {
  T start;     // RoI start, feature-map units
  T bin_size;  // RoI extent / bins (negative for inverted boxes with a fixed sampling ratio)
  int grid;    // samples per bin; <= 0 means no samples (output 0)
  int bins;    // S
  int length;  // feature-map size along the axis (H or W)
};

template <typename T>
OVD_HD AxisSampling<T> make_axis_sampling(T lo, T hi, T spatial_scale, int bins, int sampling_ratio,
                                          bool aligned, int length) {
  const T offset = aligned ? T(0.5) : T(0);
  AxisSampling<T> s;
  s.start = lo * spatial_scale - offset;
  T extent = (hi * spatial_scale - offset) - s.start;
  if (!aligned && extent < T(1)) extent = T(1);
  s.bin_size = extent / static_cast<T>(bins);
  if (sampling_ratio > 0) {
    s.grid = sampling_ratio;
  } else {
    const T g = ceil(s.bin_size);
    s.grid = g > T(0) ? (g < T(1 << 30) ? static_cast<int>(g) : (1 << 30)) : 0;
  }
  s.bins = bins;
  s.length = length;
  return s;
}

// Coordinate of sample i of bin p (torchvision: start + p * bin + (i + .5) * bin / grid).
template <typename T>
OVD_HD T sample_coord(const AxisSampling<T>& s, int p, int i) {
  return (s.start + static_cast<T>(p) * s.bin_size) +
         (static_cast<T>(i) + T(0.5)) * s.bin_size / static_cast<T>(s.grid);
}

// The two taps of a 1-D bilinear sample: weight (1 - frac) on `low`, frac on `high`.
// Returns false for samples outside [-1, length], which contribute nothing.
template <typename T>
OVD_HD bool sample_taps(T y, int length, int* low, int* high, T* frac) {
  if (y < T(-1) || y > static_cast<T>(length)) return false;
  if (y <= T(0)) y = T(0);
  const int lo = static_cast<int>(y);
  if (lo >= length - 1) {
    *low = length - 1;
    *high = length - 1;
    *frac = T(0);
  } else {
    *low = lo;
    *high = lo + 1;
    *frac = y - static_cast<T>(lo);
  }
  return true;
}

// Mean weight that the RoI's samples put on index `idx` along this axis.
template <typename T>
OVD_HD T axis_weight(const AxisSampling<T>& s, int idx) {
  if (s.grid <= 0) return T(0);
  T acc = T(0);
  for (int p = 0; p < s.bins; ++p) {
    // Samples of bin p lie between its two ends; only samples within 1 of idx (after clamping to
    // [0, length - 1]) touch it, so skip bins that are clearly farther (2 px slack for rounding).
    const T a = s.start + static_cast<T>(p) * s.bin_size;
    const T b = a + s.bin_size;
    const T bin_min = a < b ? a : b;
    const T bin_max = a < b ? b : a;
    if (bin_min > static_cast<T>(idx + 2) || bin_max < static_cast<T>(idx - 2)) continue;
    for (int i = 0; i < s.grid; ++i) {
      int low, high;
      T frac;
      if (!sample_taps(sample_coord(s, p, i), s.length, &low, &high, &frac)) continue;
      if (low == idx) acc += T(1) - frac;
      if (high == idx) acc += frac;
    }
  }
  return acc / (static_cast<T>(s.bins) * static_cast<T>(s.grid));
}

// Inclusive index range [*first, *last] holding every tap of the RoI's samples along this axis;
// *first > *last when no sample is in range.
template <typename T>
OVD_HD void axis_support(const AxisSampling<T>& s, int* first, int* last) {
  int lo_min = s.length;
  int hi_max = -1;
  for (int p = 0; p < s.bins && s.grid > 0; ++p) {
    for (int i = 0; i < s.grid; ++i) {
      int low, high;
      T frac;
      if (!sample_taps(sample_coord(s, p, i), s.length, &low, &high, &frac)) continue;
      lo_min = low < lo_min ? low : lo_min;
      hi_max = high > hi_max ? high : hi_max;
    }
  }
  *first = lo_min;
  *last = hi_max;
}

}  // namespace ovdistill
