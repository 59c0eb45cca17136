// Small helpers shared by detkit's CUDA kernels (csrc/cuda/*.cu): launch-size arithmetic, a
// grid-stride loop, exactly-rounded arithmetic for the box-overlap tests, and the conversion of
// double thresholds into the kernels' compute type without changing any comparison's outcome.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>

namespace detkit {
namespace cuda {

// ceil(numerator / denominator) for positive integers.
template <typename integer_t>
__host__ __device__ constexpr integer_t ceil_div(integer_t numerator, integer_t denominator) {
  return (numerator + denominator - 1) / denominator;
}

// Blocks for a grid-stride loop over `work_items` items with `threads_per_block` threads: one item
// per thread up to a cap; beyond the cap each thread takes several items (the loop below). The cap
// (2^16 blocks) is far above what fills an H100 (132 SMs x 2048 threads), so in practice every
// thread handles one item, yet the grid stays well inside the hardware limit for any size.
inline unsigned int grid_stride_blocks(int64_t work_items, int threads_per_block) {
  constexpr int64_t kMaxBlocks = int64_t{1} << 16;
  const int64_t blocks = ceil_div<int64_t>(work_items, threads_per_block);
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// for (index_t i = <this thread's first item>; i < n; i += <threads in the grid>). The products
// are formed in index_t so that a 64-bit index never overflows in 32-bit arithmetic.
#define DETKIT_CUDA_GRID_STRIDE_LOOP(index_t, i, n)                                                  \
  for (index_t i = static_cast<index_t>(blockIdx.x) * static_cast<index_t>(blockDim.x) +          \
                   static_cast<index_t>(threadIdx.x);                                             \
       i < static_cast<index_t>(n); i += static_cast<index_t>(blockDim.x) * static_cast<index_t>(gridDim.x))

// ---------------------------------------------------------------------------------------------
// Exactly rounded products. nvcc contracts `a * b + c` into one fused multiply-add by default,
// which rounds once instead of twice; in an IoU that can flip `iou > threshold` for a borderline
// pair relative to the CPU kernels (and torchvision's CPU nms), which round every operation. The
// __*mul_rn intrinsics are never contracted, so the overlap tests below round exactly like the
// plain C++ expressions `(x2 - x1) * (y2 - y1)` and `inter / (area_a + area_b - inter)`.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// Area of an xyxy box, with no +1: boxes are continuous coordinates (a box from 0 to 1 has width 1).
template <typename acc_t>
__device__ __forceinline__ acc_t box_area(acc_t x1, acc_t y1, acc_t x2, acc_t y2) {
  return mul_rn(x2 - x1, y2 - y1);
}

// Intersection over union of boxes a and b (xyxy, areas precomputed with box_area), computed as
//   inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1));  iou = inter / (area_a + area_b - inter)
// in exactly that order of operations. Two zero-area boxes give 0 / 0 = NaN, which compares false
// against any threshold, so such pairs never suppress each other (as on the CPU).
template <typename acc_t>
__device__ __forceinline__ acc_t box_iou(acc_t ax1, acc_t ay1, acc_t ax2, acc_t ay2, acc_t area_a,
                                         acc_t bx1, acc_t by1, acc_t bx2, acc_t by2, acc_t area_b) {
  const acc_t inter_w = fmax(fmin(ax2, bx2) - fmax(ax1, bx1), acc_t(0));
  const acc_t inter_h = fmax(fmin(ay2, by2) - fmax(ay1, by1), acc_t(0));
  const acc_t inter = mul_rn(inter_w, inter_h);
  return inter / ((area_a + area_b) - inter);
}

// Intersection over the smaller of the two areas (MTCNN's "Min" overlap), same rounding rules.
template <typename acc_t>
__device__ __forceinline__ acc_t box_overlap_min(acc_t ax1, acc_t ay1, acc_t ax2, acc_t ay2, acc_t area_a,
                                                 acc_t bx1, acc_t by1, acc_t bx2, acc_t by2, acc_t area_b) {
  const acc_t inter_w = fmax(fmin(ax2, bx2) - fmax(ax1, bx1), acc_t(0));
  const acc_t inter_h = fmax(fmin(ay2, by2) - fmax(ay1, by1), acc_t(0));
  return mul_rn(inter_w, inter_h) / fmin(area_a, area_b);
}

// ---------------------------------------------------------------------------------------------
// Thresholds arrive as double (the schema's `float` is a C++ double). Comparing a float value
// against a double threshold in double on every test would be slow on some GPUs, and comparing
// against (float)threshold can change the outcome (float(0.3) > 0.3). For a float x and a double t:
//   x > t  <=>  x > (largest float <= t)       x < t  <=>  x < (smallest float >= t)
// (and so x <= t, x >= t likewise), since no float lies strictly between t and the float next to it. So converting the threshold
// with the right rounding direction keeps every comparison identical to the double one.
template <typename acc_t>
inline acc_t threshold_for_greater_than(double threshold);
template <typename acc_t>
inline acc_t threshold_for_less_than(double threshold);

template <>
inline double threshold_for_greater_than<double>(double threshold) { return threshold; }
template <>
inline double threshold_for_less_than<double>(double threshold) { return threshold; }

template <>
inline float threshold_for_greater_than<float>(double threshold) {
  float rounded = static_cast<float>(threshold);
  if (static_cast<double>(rounded) > threshold) {  // rounded up: step down one float
    rounded = std::nextafter(rounded, -std::numeric_limits<float>::infinity());
  }
  return rounded;
}
template <>
inline float threshold_for_less_than<float>(double threshold) {
  float rounded = static_cast<float>(threshold);
  if (static_cast<double>(rounded) < threshold) {  // rounded down: step up one float
    rounded = std::nextafter(rounded, std::numeric_limits<float>::infinity());
  }
  return rounded;
}

}  // namespace cuda
}  // namespace detkit
