// RoIAlign (He et al., Mask R-CNN 2017) forward and backward on the CPU, with torchvision.ops.roi_align
// semantics. Conventions:
// * rois [K, 5] = (batch index, x1, y1, x2, y2) in the coordinates of the input image; multiplying by
//   spatial_scale maps them onto the feature map.
// * aligned=true subtracts half a pixel so that a box corner at pixel coordinate x samples the feature
//   centred at x - 0.5 (pixel centres sit at half-integers); aligned=false keeps the original
//   (Detectron v1) convention and forces malformed RoIs to at least 1x1.
// * Each of the pooled_height x pooled_width bins averages a grid of sampling points,
//   sampling_ratio per axis, or ceil(roi_size / pooled_size) per RoI when sampling_ratio <= 0.
// * A point more than one pixel outside the map contributes 0; otherwise it is clamped into the map
//   and bilinearly interpolated from its four neighbours.
//
// The bilinear weights and neighbour offsets of every sampling point depend on the RoI only, so they
// are computed once per RoI and reused for every channel. Both passes work channels-last where it
// pays (the forward on a channels-last copy of the map when many points sample it, the backward on
// channel blocks): a sampling point then reads (or, backward, writes) four contiguous C-vectors,
// which the compiler vectorises across channels, while each channel still sums in torchvision's
// order (forward and backward are bit-identical to torchvision's). The forward pass runs RoIs in parallel; the
// backward pass splits the channels between threads in blocks, each accumulated in a small
// channels-last buffer, so no two threads ever add into the same gradient cell (and the result is
// deterministic).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace detkit {
namespace {

template <typename T>
struct SamplePoint {
  // Offsets of the four neighbours in an H*W plane and their bilinear weights. Points that fall
  // outside the map have all weights 0 (and offsets 0, a valid address).
  int64_t offset[4];
  T weight[4];
};

template <typename T>
struct RoIGeometry {
  int64_t batch_index;
  int grid_h, grid_w;  // sampling points per bin along y and x
  T count;             // points per bin, the averaging divisor (at least 1)
};

// Fills `points` with the grid_h*grid_w sampling points of every bin, bin-major (ph, pw, iy, ix),
// and returns the RoI's geometry.
template <typename T>
RoIGeometry<T> precompute_roi(const T* roi, T spatial_scale, int64_t height, int64_t width, int64_t pooled_height,
                              int64_t pooled_width, int64_t sampling_ratio, bool aligned,
                              std::vector<SamplePoint<T>>& points) {
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  const T start_w = roi[1] * spatial_scale - offset;
  const T start_h = roi[2] * spatial_scale - offset;
  const T end_w = roi[3] * spatial_scale - offset;
  const T end_h = roi[4] * spatial_scale - offset;
  T roi_width = end_w - start_w;
  T roi_height = end_h - start_h;
  if (!aligned) {
    roi_width = std::max(roi_width, static_cast<T>(1));
    roi_height = std::max(roi_height, static_cast<T>(1));
  }
  const T bin_h = roi_height / static_cast<T>(pooled_height);
  const T bin_w = roi_width / static_cast<T>(pooled_width);

  RoIGeometry<T> geometry;
  geometry.batch_index = static_cast<int64_t>(roi[0]);
  geometry.grid_h = sampling_ratio > 0 ? static_cast<int>(sampling_ratio)
                                       : static_cast<int>(std::ceil(roi_height / pooled_height));
  geometry.grid_w = sampling_ratio > 0 ? static_cast<int>(sampling_ratio)
                                       : static_cast<int>(std::ceil(roi_width / pooled_width));
  geometry.count = static_cast<T>(std::max(geometry.grid_h * geometry.grid_w, 1));

  points.resize(static_cast<size_t>(pooled_height * pooled_width) * geometry.grid_h * geometry.grid_w);
  size_t p = 0;
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      for (int iy = 0; iy < geometry.grid_h; ++iy) {
        const T yy = start_h + ph * bin_h + static_cast<T>(iy + .5f) * bin_h / static_cast<T>(geometry.grid_h);
        for (int ix = 0; ix < geometry.grid_w; ++ix, ++p) {
          const T xx = start_w + pw * bin_w + static_cast<T>(ix + .5f) * bin_w / static_cast<T>(geometry.grid_w);
          SamplePoint<T>& point = points[p];
          if (yy < -1.0 || yy > height || xx < -1.0 || xx > width) {
            for (int q = 0; q < 4; ++q) point.offset[q] = 0, point.weight[q] = 0;
            continue;
          }
          T y = yy <= 0 ? static_cast<T>(0) : yy;
          T x = xx <= 0 ? static_cast<T>(0) : xx;
          int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x), y_high, x_high;
          if (y_low >= height - 1) {
            y_high = y_low = height - 1;
            y = static_cast<T>(y_low);
          } else {
            y_high = y_low + 1;
          }
          if (x_low >= width - 1) {
            x_high = x_low = width - 1;
            x = static_cast<T>(x_low);
          } else {
            x_high = x_low + 1;
          }
          const T ly = y - y_low, lx = x - x_low;
          const T hy = static_cast<T>(1) - ly, hx = static_cast<T>(1) - lx;
          point.offset[0] = y_low * width + x_low;
          point.offset[1] = y_low * width + x_high;
          point.offset[2] = y_high * width + x_low;
          point.offset[3] = y_high * width + x_high;
          point.weight[0] = hy * hx;
          point.weight[1] = hy * lx;
          point.weight[2] = ly * hx;
          point.weight[3] = ly * lx;
        }
      }
    }
  }
  return geometry;
}

void check_rois(const at::Tensor& input, const at::Tensor& rois, const char* name) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, name, ": rois must have shape [K, 5], got ", rois.sizes());
  TORCH_CHECK(input.scalar_type() == rois.scalar_type(), name, ": input (", input.scalar_type(), ") and rois (",
              rois.scalar_type(), ") must have the same dtype");
}

template <typename T>
void forward_impl(const at::Tensor& input, bool channels_last, const at::Tensor& rois, T spatial_scale,
                  int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned,
                  at::Tensor& output) {
  // input [N, C, H, W], memory either channels-last (NHWC) or contiguous (NCHW); output [K, C, bins],
  // contiguous. Channels-last: each bin is summed into a C-vector (vectorised across channels) and
  // then scattered to its C strided cells while the RoI's block of the output is still in cache,
  // which fuses the transpose a [K, bins, C] result would need (with the 1000 proposals of
  // inference that pass cost as much as the sampling). NCHW: channel by channel, reading one plane
  // at a time (no copy of the map, for few RoIs on a large map). Both sum every cell's points in
  // the same order, so they give the same bits.
  const int64_t num_rois = rois.size(0), batch_size = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  const int64_t pixel_stride = channels_last ? channels : 1;
  const int64_t channel_stride = channels_last ? 1 : height * width;
  const T* input_data = input.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* output_data = output.data_ptr<T>();
  const int64_t bins = pooled_height * pooled_width;

  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<SamplePoint<T>> points;
    std::vector<T> accumulator(channels);
    for (int64_t r = begin; r < end; ++r) {
      const RoIGeometry<T> g = precompute_roi(roi_data + 5 * r, spatial_scale, height, width, pooled_height,
                                              pooled_width, sampling_ratio, aligned, points);
      TORCH_CHECK(g.batch_index >= 0 && g.batch_index < batch_size, "roi_align: rois[", r, ", 0] = ",
                  g.batch_index, " is not a valid batch index for an input of batch size ", batch_size);
      const int64_t per_bin = static_cast<int64_t>(g.grid_h) * g.grid_w;
      const T* image = input_data + g.batch_index * height * width * channels;
      T* __restrict__ roi_out = output_data + r * channels * bins;
      if (!channels_last) {
        for (int64_t c = 0; c < channels; ++c) {
          const T* __restrict__ plane = image + c * channel_stride;
          const SamplePoint<T>* point = points.data();
          for (int64_t bin = 0; bin < bins; ++bin) {
            T sum = 0;
            for (int64_t s = 0; s < per_bin; ++s, ++point) {
              sum += point->weight[0] * plane[point->offset[0]] + point->weight[1] * plane[point->offset[1]] +
                     point->weight[2] * plane[point->offset[2]] + point->weight[3] * plane[point->offset[3]];
            }
            roi_out[c * bins + bin] = sum / g.count;
          }
        }
        continue;
      }
      const SamplePoint<T>* point = points.data();
      for (int64_t bin = 0; bin < bins; ++bin) {
        T* __restrict__ out = accumulator.data();
        std::fill(out, out + channels, static_cast<T>(0));
        for (int64_t s = 0; s < per_bin; ++s, ++point) {
          const T* __restrict__ v1 = image + point->offset[0] * pixel_stride;
          const T* __restrict__ v2 = image + point->offset[1] * pixel_stride;
          const T* __restrict__ v3 = image + point->offset[2] * pixel_stride;
          const T* __restrict__ v4 = image + point->offset[3] * pixel_stride;
          const T w1 = point->weight[0], w2 = point->weight[1], w3 = point->weight[2], w4 = point->weight[3];
          for (int64_t c = 0; c < channels; ++c) out[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c];
        }
        for (int64_t c = 0; c < channels; ++c) roi_out[c * bins + bin] = out[c] / g.count;
      }
    }
  });
}

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                 int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must have shape [N, C, H, W], got ", input.sizes());
  check_rois(input, rois, "roi_align");
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  if (num_rois == 0 || input.numel() == 0 || pooled_height * pooled_width == 0) {
    return at::zeros({num_rois, channels, pooled_height, pooled_width}, input.options());
  }
  // Channels-last pays when many sampling points share the map (training's 512 RoIs per image, the
  // 1000 proposals of inference): its reads are vectorised but the map must be copied unless it is
  // channels-last already. A map sampled at fewer points than it has pixels (a few detections on
  // a large level) is read where it lies, plane by plane, like torchvision does.
  const int64_t points_per_bin = sampling_ratio > 0 ? sampling_ratio * sampling_ratio : 4;
  const int64_t sampled = num_rois * pooled_height * pooled_width * points_per_bin * 4;
  const bool use_channels_last = input.is_contiguous(at::MemoryFormat::ChannelsLast) ||
                                 sampled >= input.size(0) * input.size(2) * input.size(3);
  const at::Tensor source = use_channels_last ? input.contiguous(at::MemoryFormat::ChannelsLast) : input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detkit_roi_align_forward_cpu", [&] {
    forward_impl<scalar_t>(source, use_channels_last, rois_c, static_cast<scalar_t>(spatial_scale), pooled_height,
                           pooled_width, sampling_ratio, aligned, output);
  });
  return output;
}

template <typename T>
void backward_impl(const at::Tensor& grad, const at::Tensor& rois, T spatial_scale, int64_t pooled_height,
                   int64_t pooled_width, int64_t sampling_ratio, bool aligned, at::Tensor& grad_input) {
  // grad [K, C, bins] contiguous; grad_input [N, C, H, W] contiguous, every value written here.
  //
  // The channels are split into blocks of kBlock. A thread accumulates one block at a time into a
  // small channels-last buffer [N, H, W, kBlock] (each sampling point adds to four contiguous
  // kBlock-vectors, vectorised), then copies the block out into its kBlock planes of grad_input.
  // So there is no channels-last copy of the whole gradient map (which, at the peak of a training
  // step's memory, cost as much as the map itself), and no two threads ever add into the same
  // cell. Every cell still sums its contributions in the order RoI, bin, point, neighbour: the
  // result does not depend on the blocking or the thread count, and equals torchvision's.
  constexpr int64_t kBlock = 16;
  const int64_t num_rois = rois.size(0), batch_size = grad_input.size(0), channels = grad_input.size(1);
  const int64_t height = grad_input.size(2), width = grad_input.size(3), plane = height * width;
  const T* grad_data = grad.data_ptr<T>();
  const T* roi_data = rois.data_ptr<T>();
  T* grad_input_data = grad_input.data_ptr<T>();
  const int64_t bins = pooled_height * pooled_width;

  // Sampling points of every RoI, computed once and shared by all channel blocks when a fixed
  // sampling_ratio bounds their number (adaptive sampling can ask for thousands per bin of a large
  // RoI: those are recomputed per block instead of stored).
  const bool cache_points = sampling_ratio > 0 &&
                            num_rois * bins * sampling_ratio * sampling_ratio <= (int64_t{1} << 22);
  std::vector<std::vector<SamplePoint<T>>> cached_points(cache_points ? num_rois : 0);
  std::vector<RoIGeometry<T>> geometry(num_rois);
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<SamplePoint<T>> scratch;
    for (int64_t r = begin; r < end; ++r) {
      geometry[r] = precompute_roi(roi_data + 5 * r, spatial_scale, height, width, pooled_height, pooled_width,
                                   sampling_ratio, aligned, cache_points ? cached_points[r] : scratch);
    }
  });
  for (int64_t r = 0; r < num_rois; ++r) {
    TORCH_CHECK(geometry[r].batch_index >= 0 && geometry[r].batch_index < batch_size, "roi_align backward: rois[",
                r, ", 0] = ", geometry[r].batch_index, " is not a valid batch index for batch size ", batch_size);
  }

  const int64_t num_blocks = (channels + kBlock - 1) / kBlock;
  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    std::vector<T> buffer(static_cast<size_t>(batch_size * plane * kBlock));
    std::vector<T> g_bin(kBlock);
    std::vector<SamplePoint<T>> scratch;
    for (int64_t block = block_begin; block < block_end; ++block) {
      const int64_t c_begin = block * kBlock, slice = std::min(kBlock, channels - c_begin);
      std::fill(buffer.begin(), buffer.end(), static_cast<T>(0));
      for (int64_t r = 0; r < num_rois; ++r) {
        const RoIGeometry<T>& g = geometry[r];
        const int64_t per_bin = static_cast<int64_t>(g.grid_h) * g.grid_w;
        T* image = buffer.data() + g.batch_index * plane * kBlock;
        const T* roi_grad = grad_data + (r * channels + c_begin) * bins;
        if (!cache_points) {
          precompute_roi(roi_data + 5 * r, spatial_scale, height, width, pooled_height, pooled_width,
                         sampling_ratio, aligned, scratch);
        }
        const SamplePoint<T>* point = cache_points ? cached_points[r].data() : scratch.data();
        for (int64_t bin = 0; bin < bins; ++bin) {
          // The bin's gradient is shared equally by its sampling points (the forward pass averages).
          for (int64_t c = 0; c < slice; ++c) g_bin[c] = roi_grad[c * bins + bin];
          for (int64_t s = 0; s < per_bin; ++s, ++point) {
            for (int q = 0; q < 4; ++q) {
              const T w = point->weight[q] / g.count;
              if (w == 0) continue;
              T* __restrict__ row = image + point->offset[q] * kBlock;
              const T* __restrict__ source = g_bin.data();
              for (int64_t c = 0; c < slice; ++c) row[c] += w * source[c];
            }
          }
        }
      }
      for (int64_t n = 0; n < batch_size; ++n) {
        const T* block_image = buffer.data() + n * plane * kBlock;
        for (int64_t c = 0; c < slice; ++c) {
          T* __restrict__ out = grad_input_data + (n * channels + c_begin + c) * plane;
          for (int64_t pixel = 0; pixel < plane; ++pixel) out[pixel] = block_image[pixel * kBlock + c];
        }
      }
    }
  });
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                  int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  check_rois(grad, rois, "roi_align backward");
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "roi_align backward: grad must have shape [K, C, pooled_height, pooled_width], got ", grad.sizes());
  if (grad.numel() == 0 || batch_size * channels * height * width == 0) {
    return at::zeros({batch_size, channels, height, width}, grad.options());
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  at::Tensor grad_input = at::empty({batch_size, channels, height, width}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "detkit_roi_align_backward_cpu", [&] {
    backward_impl<scalar_t>(grad_c, rois_c, static_cast<scalar_t>(spatial_scale), pooled_height, pooled_width,
                            sampling_ratio, aligned, grad_input);
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(detkit, CPU, m) {
  m.impl("roi_align", &roi_align_forward_cpu);
  m.impl("_roi_align_backward", &roi_align_backward_cpu);
}

}  // namespace detkit
