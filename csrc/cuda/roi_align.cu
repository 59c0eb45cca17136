// RoIAlign (He et al., Mask R-CNN 2017) on CUDA, forward and backward, with exactly torchvision's
// semantics.
//
// Conventions
// - input [N, C, H, W]; rois [K, 5] = (batch index, x1, y1, x2, y2) in the coordinates of the
//   image, which spatial_scale (e.g. 1/16) maps onto the feature map.
// - Pixel centres. With aligned=true a RoI corner is shifted by -0.5 after scaling, because
//   feature value (h, w) sits at the continuous point (h + 0.5, w + 0.5): a RoI [0, 1] x [0, 1] then
//   samples around value (0, 0). With aligned=false (the original Detectron behaviour) there is
//   no shift, and RoI sides are clamped to at least 1 so that degenerate RoIs still cover a pixel.
// - Each output bin averages grid_h x grid_w regularly spaced bilinear samples, grid = sampling_ratio
//   when > 0, else ceil(roi_size / pooled_size) per axis and per RoI (adaptive). Sample (iy, ix)
//   of bin (ph, pw) is at y = roi_start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h (x alike).
// - Bilinear interpolation: a sample further than one pixel outside the map (y < -1, y > H, ...)
//   contributes 0 (it still counts in the average); otherwise it is clamped into [0, H - 1] and
//   interpolates the four surrounding values.
//
// Kernels: one thread per output element, in a grid-stride loop. The element order of the output
// (pw fastest) makes a warp read a small neighbourhood of one channel plane. Arithmetic is in the
// accumulate type (float for half). The backward pass scatters each output gradient onto the four
// taps of every sample with atomic adds (half gradients are accumulated in a float buffer).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "cuda/cuda_helpers.h"

namespace detkit {
namespace {

constexpr int kThreadsPerBlock = 256;

// Where a sampling coordinate lands along one axis: the two neighbouring indices and their
// interpolation weights. `inside` is false for a coordinate more than one pixel outside the map.
template <typename acc_t>
struct AxisTaps {
  bool inside;
  int low;
  int high;
  acc_t low_weight;   // 1 - frac: weight of `low`
  acc_t high_weight;  // frac: weight of `high`
};

// coord is a continuous coordinate on an axis of `size` values (value k at k, in the units used
// after the half-pixel shift above).
template <typename acc_t>
__device__ __forceinline__ AxisTaps<acc_t> axis_taps(acc_t coord, int size) {
  AxisTaps<acc_t> taps;
  taps.inside = !(coord < acc_t(-1) || coord > static_cast<acc_t>(size));
  if (coord <= acc_t(0)) {
    coord = acc_t(0);
  }
  taps.low = static_cast<int>(coord);
  if (taps.low >= size - 1) {  // at or past the last value: no neighbour above, use the last one
    taps.low = size - 1;
    taps.high = size - 1;
    coord = static_cast<acc_t>(taps.low);
  } else {
    taps.high = taps.low + 1;
  }
  taps.high_weight = coord - static_cast<acc_t>(taps.low);
  taps.low_weight = acc_t(1) - taps.high_weight;
  return taps;
}

// The sampling geometry of one RoI, derived from its row of `rois`.
template <typename acc_t>
struct RoIGeometry {
  int64_t batch_index;
  acc_t start_h, start_w;  // top-left corner on the feature map
  acc_t bin_h, bin_w;      // bin size on the feature map
  int grid_h, grid_w;      // samples per bin along each axis
  acc_t count;             // samples per bin, at least 1 (the divisor of the average)
};

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ RoIGeometry<acc_t> roi_geometry(const scalar_t* __restrict__ roi, acc_t spatial_scale,
                                                          int pooled_height, int pooled_width,
                                                          int sampling_ratio, bool aligned) {
  RoIGeometry<acc_t> g;
  g.batch_index = static_cast<int64_t>(static_cast<acc_t>(roi[0]));
  const acc_t offset = aligned ? acc_t(0.5) : acc_t(0);
  g.start_w = static_cast<acc_t>(roi[1]) * spatial_scale - offset;
  g.start_h = static_cast<acc_t>(roi[2]) * spatial_scale - offset;
  const acc_t end_w = static_cast<acc_t>(roi[3]) * spatial_scale - offset;
  const acc_t end_h = static_cast<acc_t>(roi[4]) * spatial_scale - offset;
  acc_t roi_width = end_w - g.start_w;
  acc_t roi_height = end_h - g.start_h;
  if (!aligned) {  // legacy behaviour: force malformed RoIs to be at least 1x1
    roi_width = roi_width > acc_t(1) ? roi_width : acc_t(1);
    roi_height = roi_height > acc_t(1) ? roi_height : acc_t(1);
  }
  g.bin_h = roi_height / static_cast<acc_t>(pooled_height);
  g.bin_w = roi_width / static_cast<acc_t>(pooled_width);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(roi_height / static_cast<acc_t>(pooled_height)));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(roi_width / static_cast<acc_t>(pooled_width)));
  const int samples = g.grid_h * g.grid_w;
  g.count = static_cast<acc_t>(samples > 1 ? samples : 1);
  return g;
}

// Output element `index` of a [K, C, PH, PW] tensor, unravelled.
template <typename index_t>
struct BinIndex {
  index_t roi, channel;
  int ph, pw;
};

template <typename index_t>
__device__ __forceinline__ BinIndex<index_t> unravel_bin(index_t index, int channels, int pooled_height,
                                                         int pooled_width) {
  BinIndex<index_t> b;
  b.pw = static_cast<int>(index % pooled_width);
  index /= pooled_width;
  b.ph = static_cast<int>(index % pooled_height);
  index /= pooled_height;
  b.channel = index % channels;
  b.roi = index / channels;
  return b;
}

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreadsPerBlock)
    roi_align_forward_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ rois,
                             at::acc_type<scalar_t, true> spatial_scale, int batch_size, int channels,
                             int height, int width, int pooled_height, int pooled_width, int sampling_ratio,
                             bool aligned, index_t num_outputs, scalar_t* __restrict__ output) {
  using acc_t = at::acc_type<scalar_t, true>;
  DETKIT_CUDA_GRID_STRIDE_LOOP(index_t, index, num_outputs) {
    const BinIndex<index_t> bin = unravel_bin(index, channels, pooled_height, pooled_width);
    const RoIGeometry<acc_t> g = roi_geometry(rois + bin.roi * 5, spatial_scale, pooled_height, pooled_width,
                                              sampling_ratio, aligned);
    acc_t sum = 0;
    // A batch index outside [0, N) would read out of bounds: such a RoI pools to 0 instead.
    if (g.batch_index >= 0 && g.batch_index < batch_size) {
      const scalar_t* plane =
          input + (static_cast<index_t>(g.batch_index) * channels + bin.channel) * height * width;
      const acc_t bin_start_h = g.start_h + static_cast<acc_t>(bin.ph) * g.bin_h;
      const acc_t bin_start_w = g.start_w + static_cast<acc_t>(bin.pw) * g.bin_w;
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const acc_t y = bin_start_h + (static_cast<acc_t>(iy) + acc_t(0.5)) * g.bin_h / static_cast<acc_t>(g.grid_h);
        const AxisTaps<acc_t> ty = axis_taps(y, height);
        if (!ty.inside) {
          continue;
        }
        const scalar_t* row_low = plane + static_cast<index_t>(ty.low) * width;
        const scalar_t* row_high = plane + static_cast<index_t>(ty.high) * width;
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const acc_t x = bin_start_w + (static_cast<acc_t>(ix) + acc_t(0.5)) * g.bin_w / static_cast<acc_t>(g.grid_w);
          const AxisTaps<acc_t> tx = axis_taps(x, width);
          if (!tx.inside) {
            continue;
          }
          sum += ty.low_weight * tx.low_weight * static_cast<acc_t>(row_low[tx.low]) +
                 ty.low_weight * tx.high_weight * static_cast<acc_t>(row_low[tx.high]) +
                 ty.high_weight * tx.low_weight * static_cast<acc_t>(row_high[tx.low]) +
                 ty.high_weight * tx.high_weight * static_cast<acc_t>(row_high[tx.high]);
        }
      }
    }
    output[index] = static_cast<scalar_t>(sum / g.count);
  }
}

// grad is read through its strides (autograd often hands over expanded, non-contiguous grads);
// grad_input (of type grad_acc_t: scalar_t, or float for half) is contiguous [N, C, H, W] and zeroed.
template <typename scalar_t, typename grad_acc_t, typename index_t>
__global__ void __launch_bounds__(kThreadsPerBlock)
    roi_align_backward_kernel(const scalar_t* __restrict__ grad, int64_t grad_stride_roi,
                              int64_t grad_stride_channel, int64_t grad_stride_h, int64_t grad_stride_w,
                              const scalar_t* __restrict__ rois, at::acc_type<scalar_t, true> spatial_scale,
                              int batch_size, int channels, int height, int width, int pooled_height,
                              int pooled_width, int sampling_ratio, bool aligned, index_t num_grads,
                              grad_acc_t* __restrict__ grad_input) {
  using acc_t = at::acc_type<scalar_t, true>;
  DETKIT_CUDA_GRID_STRIDE_LOOP(index_t, index, num_grads) {
    const BinIndex<index_t> bin = unravel_bin(index, channels, pooled_height, pooled_width);
    const RoIGeometry<acc_t> g = roi_geometry(rois + bin.roi * 5, spatial_scale, pooled_height, pooled_width,
                                              sampling_ratio, aligned);
    if (g.batch_index < 0 || g.batch_index >= batch_size) {
      continue;  // pooled to 0 in the forward pass: no gradient
    }
    const int64_t grad_offset = static_cast<int64_t>(bin.roi) * grad_stride_roi +
                                static_cast<int64_t>(bin.channel) * grad_stride_channel +
                                bin.ph * grad_stride_h + bin.pw * grad_stride_w;
    // d output / d sample = 1 / count; each sample spreads its share over its four taps.
    const acc_t grad_per_sample = static_cast<acc_t>(grad[grad_offset]) / g.count;
    grad_acc_t* plane = grad_input + (static_cast<index_t>(g.batch_index) * channels + bin.channel) * height * width;
    const acc_t bin_start_h = g.start_h + static_cast<acc_t>(bin.ph) * g.bin_h;
    const acc_t bin_start_w = g.start_w + static_cast<acc_t>(bin.pw) * g.bin_w;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = bin_start_h + (static_cast<acc_t>(iy) + acc_t(0.5)) * g.bin_h / static_cast<acc_t>(g.grid_h);
      const AxisTaps<acc_t> ty = axis_taps(y, height);
      if (!ty.inside) {
        continue;
      }
      grad_acc_t* row_low = plane + static_cast<index_t>(ty.low) * width;
      grad_acc_t* row_high = plane + static_cast<index_t>(ty.high) * width;
      const acc_t grad_low = grad_per_sample * ty.low_weight;
      const acc_t grad_high = grad_per_sample * ty.high_weight;
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = bin_start_w + (static_cast<acc_t>(ix) + acc_t(0.5)) * g.bin_w / static_cast<acc_t>(g.grid_w);
        const AxisTaps<acc_t> tx = axis_taps(x, width);
        if (!tx.inside) {
          continue;
        }
        gpuAtomicAddNoReturn(row_low + tx.low, static_cast<grad_acc_t>(grad_low * tx.low_weight));
        gpuAtomicAddNoReturn(row_low + tx.high, static_cast<grad_acc_t>(grad_low * tx.high_weight));
        gpuAtomicAddNoReturn(row_high + tx.low, static_cast<grad_acc_t>(grad_high * tx.low_weight));
        gpuAtomicAddNoReturn(row_high + tx.high, static_cast<grad_acc_t>(grad_high * tx.high_weight));
      }
    }
  }
}

// 32-bit indexing when every index (and a grid-stride step past the end) fits: faster divisions.
bool fits_int32_indexing(int64_t num_elements) {
  return num_elements <= std::numeric_limits<int32_t>::max() / 2;
}

void check_rois(const at::Tensor& rois, const at::Tensor& reference, const char* op, const char* reference_name) {
  TORCH_CHECK(rois.is_cuda(), op, ": rois must be a CUDA tensor");
  TORCH_CHECK(rois.device() == reference.device(), op, ": ", reference_name, " (", reference.device(),
              ") and rois (", rois.device(), ") must be on the same device");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op,
              ": rois must have shape [K, 5] = (batch index, x1, y1, x2, y2), got ", rois.sizes());
  TORCH_CHECK(rois.scalar_type() == reference.scalar_type(), op, ": ", reference_name, " (",
              reference.scalar_type(), ") and rois (", rois.scalar_type(), ") must have the same dtype");
}

void check_pooled_size(int64_t pooled_height, int64_t pooled_width, const char* op) {
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, op, ": pooled_height and pooled_width must be positive, got ",
              pooled_height, " and ", pooled_width);
}

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                  int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                                  bool aligned) {
  constexpr const char* op = "roi_align";
  TORCH_CHECK(input.is_cuda(), op, ": input must be a CUDA tensor");
  TORCH_CHECK(input.dim() == 4, op, ": input must have shape [N, C, H, W], got ", input.sizes());
  check_rois(rois, input, op, "input");
  check_pooled_size(pooled_height, pooled_width, op);

  const c10::cuda::CUDAGuard device_guard(input.device());
  const int64_t num_rois = rois.size(0);
  const int64_t batch_size = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options());
  if (output.numel() == 0) {
    return output;
  }
  if (input.numel() == 0) {  // H or W is 0 (N and C are not, output is non-empty): nothing to sample
    return output.zero_();
  }

  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const int64_t num_outputs = output.numel();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const unsigned int blocks = cuda::grid_stride_blocks(num_outputs, kThreadsPerBlock);

  AT_DISPATCH_FLOATING_TYPES_AND_HALF(input.scalar_type(), "roi_align_forward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      roi_align_forward_kernel<scalar_t, index_t><<<blocks, kThreadsPerBlock, 0, stream>>>(
          input_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(), static_cast<acc_t>(spatial_scale),
          static_cast<int>(batch_size), static_cast<int>(channels), static_cast<int>(height),
          static_cast<int>(width), static_cast<int>(pooled_height), static_cast<int>(pooled_width),
          static_cast<int>(sampling_ratio), aligned, static_cast<index_t>(num_outputs),
          output.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fits_int32_indexing(num_outputs) && fits_int32_indexing(input_c.numel())) {
      launch(int32_t{0});
    } else {
      launch(int64_t{0});
    }
  });
  return output;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                   int64_t pooled_height, int64_t pooled_width, int64_t batch_size,
                                   int64_t channels, int64_t height, int64_t width, int64_t sampling_ratio,
                                   bool aligned) {
  constexpr const char* op = "_roi_align_backward";
  TORCH_CHECK(grad.is_cuda(), op, ": grad must be a CUDA tensor");
  check_rois(rois, grad, op, "grad");
  check_pooled_size(pooled_height, pooled_width, op);
  TORCH_CHECK(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0, op,
              ": input sizes must be non-negative, got [", batch_size, ", ", channels, ", ", height, ", ", width, "]");
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              op, ": grad must have shape [K, C, pooled_height, pooled_width] = [", rois.size(0), ", ", channels,
              ", ", pooled_height, ", ", pooled_width, "], got ", grad.sizes());

  const c10::cuda::CUDAGuard device_guard(grad.device());
  const int64_t num_grads = grad.numel();
  if (num_grads == 0 || batch_size * channels * height * width == 0) {
    return at::zeros({batch_size, channels, height, width}, grad.options());
  }

  const at::Tensor rois_c = rois.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const unsigned int blocks = cuda::grid_stride_blocks(num_grads, kThreadsPerBlock);
  at::Tensor grad_input;

  AT_DISPATCH_FLOATING_TYPES_AND_HALF(grad.scalar_type(), "roi_align_backward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    // Half atomics would lose most of the many small contributions to a value: half gradients are
    // accumulated in float and converted at the end.
    using grad_acc_t = std::conditional_t<std::is_same_v<scalar_t, at::Half>, float, scalar_t>;
    at::Tensor accumulator = at::zeros({batch_size, channels, height, width},
                                       grad.options().dtype(c10::CppTypeToScalarType<grad_acc_t>::value));
    auto launch = [&](auto index_zero) {
      using index_t = decltype(index_zero);
      roi_align_backward_kernel<scalar_t, grad_acc_t, index_t><<<blocks, kThreadsPerBlock, 0, stream>>>(
          grad.const_data_ptr<scalar_t>(), grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3),
          rois_c.const_data_ptr<scalar_t>(), static_cast<acc_t>(spatial_scale), static_cast<int>(batch_size),
          static_cast<int>(channels), static_cast<int>(height), static_cast<int>(width),
          static_cast<int>(pooled_height), static_cast<int>(pooled_width), static_cast<int>(sampling_ratio),
          aligned, static_cast<index_t>(num_grads), accumulator.mutable_data_ptr<grad_acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (fits_int32_indexing(num_grads) && fits_int32_indexing(accumulator.numel())) {
      launch(int32_t{0});
    } else {
      launch(int64_t{0});
    }
    grad_input = accumulator.to(grad.scalar_type());  // no copy unless half
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(detkit, CUDA, m) {
  m.impl("roi_align", &roi_align_forward_cuda);
  m.impl("_roi_align_backward", &roi_align_backward_cuda);
}

}  // namespace detkit
