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
// vectorised across channels (AVX-512 or AVX2 where the CPU has them, chosen at run time, see
// parallel.h), while each channel still sums in torchvision's order without fused multiply-adds
// (the forward is bit-identical to torchvision's). The forward pass runs RoIs in parallel; the
// backward pass splits the channels between threads in blocks, each accumulated in a small
// channels-last buffer, so no two threads ever add into the same gradient cell (and the result is
// deterministic). Threads: parallel_chunks (parallel.h), as at::parallel_for is serial in this
// extension (no OpenMP).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/parallel.h"

// Bit-exact sums: a * b + c must not become a fused multiply-add in the AVX2 / AVX-512 variants.
#pragma GCC optimize("fp-contract=off")

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


// Rejects a RoI whose batch index names no image of the batch (before any thread starts).
template <typename T>
void check_batch_indices(const T* roi_data, int64_t num_rois, int64_t batch_size, const char* name) {
  for (int64_t r = 0; r < num_rois; ++r) {
    const int64_t batch_index = static_cast<int64_t>(roi_data[5 * r]);
    TORCH_CHECK(batch_index >= 0 && batch_index < batch_size, name, ": rois[", r, ", 0] = ", batch_index,
                " is not a valid batch index for an input of batch size ", batch_size);
  }
}

// The RoIs in a spatial order: by image, then band of rows of the feature map, then column of the
// RoI centre. Consecutive RoIs then overlap (proposals crowd around objects), so the map pixels
// (forward) and gradient cells (backward) one RoI touches are mostly still in the core's cache for
// the next, where the RoIs' given order would send every one to memory.
template <typename T>
std::vector<int64_t> spatial_order(const T* roi_data, int64_t num_rois, T spatial_scale) {
  constexpr double kBand = 16;  // feature-map rows per band
  struct Key {
    int64_t batch;
    double band, x;
  };
  // Non-finite centres (such RoIs sample nothing or NaN) sort as 0, so the order stays a strict one.
  const auto finite_or_zero = [](double v) { return std::isfinite(v) ? v : 0.0; };
  std::vector<Key> keys(num_rois);
  for (int64_t r = 0; r < num_rois; ++r) {
    const T* roi = roi_data + 5 * r;
    const double cy = 0.5 * (static_cast<double>(roi[2]) + roi[4]) * spatial_scale;
    const double cx = 0.5 * (static_cast<double>(roi[1]) + roi[3]) * spatial_scale;
    keys[r] = {static_cast<int64_t>(roi[0]), finite_or_zero(std::floor(cy / kBand)), finite_or_zero(cx)};
  }
  std::vector<int64_t> order(num_rois);
  for (int64_t r = 0; r < num_rois; ++r) order[r] = r;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const Key &ka = keys[a], &kb = keys[b];
    if (ka.batch != kb.batch) return ka.batch < kb.batch;
    return ka.band != kb.band ? ka.band < kb.band : ka.x < kb.x;
  });
  return order;
}

// Channels per block of the channel-blocked passes: one cache line of floats per sampling
// neighbour, a single AVX-512 register.
constexpr int64_t kBlock = 16;
// Pixels per tile when a block is moved between its planes and its channels-last buffer.
constexpr int64_t kTile = 64;

// What the channel-blocked passes (forward from an NCHW map with many RoIs, backward) share.
template <typename T>
struct BlockArgs {
  const T* source;                                      // forward: input [N, C, H, W]; backward: grad [K, C, bins]
  const T* rois;                                        // [K, 5]
  T* target;                                            // forward: output [K, C, bins]; backward: grad_input
  const RoIGeometry<T>* geometry;                       // [K]
  const std::vector<SamplePoint<T>>* cached_points;     // [K] or nullptr (recomputed per block)
  const int64_t* order;                                 // [K]: the order RoIs are visited in (spatial_order)
  int64_t num_rois, batch_size, channels, height, width, pooled_height, pooled_width, sampling_ratio;
  T spatial_scale;
  bool aligned;
};

// Whether the sampling points of all RoIs are computed once and stored for all channel blocks: when
// a fixed sampling_ratio bounds their number (adaptive sampling can ask for thousands per bin of a
// large RoI: those are recomputed per block instead of stored).
inline bool cache_all_points(int64_t num_rois, int64_t bins, int64_t sampling_ratio) {
  return sampling_ratio > 0 && num_rois * bins * sampling_ratio * sampling_ratio <= (int64_t{1} << 22);
}

// The geometry of every RoI and, when cached_points is not empty ([K] vectors), its sampling points.
template <typename T>
std::vector<RoIGeometry<T>> precompute_all(const T* roi_data, int64_t num_rois, T spatial_scale, int64_t height,
                                           int64_t width, int64_t pooled_height, int64_t pooled_width,
                                           int64_t sampling_ratio, bool aligned,
                                           std::vector<std::vector<SamplePoint<T>>>& cached_points) {
  std::vector<RoIGeometry<T>> geometry(num_rois);
  const bool cache = !cached_points.empty();
  cpu::parallel_chunks(num_rois, 64, [&](int64_t, int64_t begin, int64_t end) {
    std::vector<SamplePoint<T>> scratch;
    for (int64_t r = begin; r < end; ++r) {
      geometry[r] = precompute_roi(roi_data + 5 * r, spatial_scale, height, width, pooled_height, pooled_width,
                                   sampling_ratio, aligned, cache ? cached_points[r] : scratch);
    }
  });
  return geometry;
}

// The forward pass of channel block `block` from an NCHW map: its kBlock planes are copied into the
// channels-last `buffer` ([N, H, W, kBlock], reused block after block; lanes past the last channel
// stay 0), then every RoI's points read four contiguous kBlock-vectors each. The map is thus never
// copied whole (a 137 MB channels-last copy of an FPN level at batch 2 cost more than the sampling),
// the block's buffer stays in cache while all RoIs read it, and every cell still sums its points
// in torchvision's order (the same bits).
template <typename T>
DETKIT_ALWAYS_INLINE void forward_block(const BlockArgs<T>& a, int64_t block, T* __restrict__ buffer,
                                        std::vector<SamplePoint<T>>& scratch) {
  const int64_t channels = a.channels, plane = a.height * a.width;
  const int64_t bins = a.pooled_height * a.pooled_width;
  const int64_t c_begin = block * kBlock, slice = std::min(kBlock, channels - c_begin);
  for (int64_t n = 0; n < a.batch_size; ++n) {
    const T* image = a.source + (n * channels + c_begin) * plane;
    T* block_image = buffer + n * plane * kBlock;
    for (int64_t tile = 0; tile < plane; tile += kTile) {
      const int64_t tile_end = std::min(plane, tile + kTile);
      for (int64_t c = 0; c < slice; ++c) {
        const T* __restrict__ in = image + c * plane;
        T* __restrict__ out = block_image + c;
        for (int64_t pixel = tile; pixel < tile_end; ++pixel) out[pixel * kBlock] = in[pixel];
      }
    }
  }
  for (int64_t i = 0; i < a.num_rois; ++i) {
    const int64_t r = a.order[i];
    const RoIGeometry<T>& g = a.geometry[r];
    const int64_t per_bin = static_cast<int64_t>(g.grid_h) * g.grid_w;
    const T* image = buffer + g.batch_index * plane * kBlock;
    T* __restrict__ roi_out = a.target + (r * channels + c_begin) * bins;
    if (a.cached_points == nullptr) {
      precompute_roi(a.rois + 5 * r, a.spatial_scale, a.height, a.width, a.pooled_height, a.pooled_width,
                     a.sampling_ratio, a.aligned, scratch);
    }
    const SamplePoint<T>* point = a.cached_points != nullptr ? a.cached_points[r].data() : scratch.data();
    for (int64_t bin = 0; bin < bins; ++bin) {
      T sum[kBlock];
      for (int64_t c = 0; c < kBlock; ++c) sum[c] = 0;
      for (int64_t s = 0; s < per_bin; ++s, ++point) {
        const T* __restrict__ v1 = image + point->offset[0] * kBlock;
        const T* __restrict__ v2 = image + point->offset[1] * kBlock;
        const T* __restrict__ v3 = image + point->offset[2] * kBlock;
        const T* __restrict__ v4 = image + point->offset[3] * kBlock;
        const T w1 = point->weight[0], w2 = point->weight[1], w3 = point->weight[2], w4 = point->weight[3];
        for (int64_t c = 0; c < kBlock; ++c) sum[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c];
      }
      for (int64_t c = 0; c < slice; ++c) roi_out[c * bins + bin] = sum[c] / g.count;
    }
  }
}

template <typename T>
void forward_block_baseline(const BlockArgs<T>& a, int64_t block, T* buffer, std::vector<SamplePoint<T>>& scratch) {
  forward_block(a, block, buffer, scratch);
}
#ifdef DETKIT_X86_DISPATCH
template <typename T>
DETKIT_TARGET_AVX2 void forward_block_avx2(const BlockArgs<T>& a, int64_t block, T* buffer,
                                           std::vector<SamplePoint<T>>& scratch) {
  forward_block(a, block, buffer, scratch);
}
template <typename T>
DETKIT_TARGET_AVX512 void forward_block_avx512(const BlockArgs<T>& a, int64_t block, T* buffer,
                                               std::vector<SamplePoint<T>>& scratch) {
  forward_block(a, block, buffer, scratch);
}
#endif

// Runs a channel-blocked pass (forward_block* or backward_block*) over all blocks in parallel, one
// zeroed [N, H, W, kBlock] buffer per thread, made by the thread on its first block.
template <typename T>
void run_blocks(const BlockArgs<T>& args,
                void (*kernel)(const BlockArgs<T>&, int64_t, T*, std::vector<SamplePoint<T>>&)) {
  const int64_t num_blocks = (args.channels + kBlock - 1) / kBlock;
  const size_t buffer_size = static_cast<size_t>(args.batch_size * args.height * args.width * kBlock);
  std::vector<std::vector<T>> buffers(cpu::max_workers());
  cpu::parallel_chunks(num_blocks, 1, [&](int64_t worker, int64_t begin, int64_t end) {
    std::vector<T>& buffer = buffers[worker];
    if (buffer.empty()) buffer.assign(buffer_size, static_cast<T>(0));
    std::vector<SamplePoint<T>> scratch;
    for (int64_t block = begin; block < end; ++block) kernel(args, block, buffer.data(), scratch);
  });
}

// Sampling-point x channel products below which the forward pass runs on the calling thread only.
constexpr int64_t kMinParallelWork = int64_t{1} << 21;

template <typename T>
struct ForwardArgs {
  const T* input;  // [N, C, H, W], channels-last (NHWC) or contiguous (NCHW) memory
  const T* rois;   // [K, 5]
  const int64_t* order;  // [K]: the RoIs in the order they are computed (spatial_order)
  T* output;       // [K, C, bins], contiguous
  bool channels_last;
  int64_t channels, height, width, pooled_height, pooled_width, sampling_ratio;
  T spatial_scale;
  bool aligned;
};

// The forward pass of RoIs [begin, end). Channels-last: each bin is summed into a C-vector
// (vectorised across channels) and then scattered to its C strided cells while the RoI's block of
// the output is still in cache, which fuses the transpose a [K, bins, C] result would need (with the
// 1000 proposals of inference that pass cost as much as the sampling). NCHW: channel by channel,
// reading one plane at a time (no copy of the map, for few RoIs on a large map). Both sum every
// cell's points in the same order, so they give the same bits.
template <typename T>
DETKIT_ALWAYS_INLINE void forward_rois(const ForwardArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t channels = a.channels, plane = a.height * a.width;
  const int64_t bins = a.pooled_height * a.pooled_width;
  std::vector<SamplePoint<T>> points;
  std::vector<T> accumulator(channels);
  for (int64_t i = begin; i < end; ++i) {
    const int64_t r = a.order[i];
    const RoIGeometry<T> g = precompute_roi(a.rois + 5 * r, a.spatial_scale, a.height, a.width, a.pooled_height,
                                            a.pooled_width, a.sampling_ratio, a.aligned, points);
    const int64_t per_bin = static_cast<int64_t>(g.grid_h) * g.grid_w;
    const T* image = a.input + g.batch_index * plane * channels;
    T* __restrict__ roi_out = a.output + r * channels * bins;
    const SamplePoint<T>* point = points.data();
    if (!a.channels_last) {
      for (int64_t c = 0; c < channels; ++c) {
        const T* __restrict__ channel_plane = image + c * plane;
        point = points.data();
        for (int64_t bin = 0; bin < bins; ++bin) {
          T sum = 0;
          for (int64_t s = 0; s < per_bin; ++s, ++point) {
            sum += point->weight[0] * channel_plane[point->offset[0]] +
                   point->weight[1] * channel_plane[point->offset[1]] +
                   point->weight[2] * channel_plane[point->offset[2]] +
                   point->weight[3] * channel_plane[point->offset[3]];
          }
          roi_out[c * bins + bin] = sum / g.count;
        }
      }
      continue;
    }
    T* __restrict__ out = accumulator.data();
    for (int64_t bin = 0; bin < bins; ++bin) {
      for (int64_t c = 0; c < channels; ++c) out[c] = 0;
      for (int64_t s = 0; s < per_bin; ++s, ++point) {
        const T* __restrict__ v1 = image + point->offset[0] * channels;
        const T* __restrict__ v2 = image + point->offset[1] * channels;
        const T* __restrict__ v3 = image + point->offset[2] * channels;
        const T* __restrict__ v4 = image + point->offset[3] * channels;
        const T w1 = point->weight[0], w2 = point->weight[1], w3 = point->weight[2], w4 = point->weight[3];
        for (int64_t c = 0; c < channels; ++c) out[c] += w1 * v1[c] + w2 * v2[c] + w3 * v3[c] + w4 * v4[c];
      }
      for (int64_t c = 0; c < channels; ++c) roi_out[c * bins + bin] = out[c] / g.count;
    }
  }
}

template <typename T>
void forward_rois_baseline(const ForwardArgs<T>& a, int64_t begin, int64_t end) {
  forward_rois(a, begin, end);
}
#ifdef DETKIT_X86_DISPATCH
template <typename T>
DETKIT_TARGET_AVX2 void forward_rois_avx2(const ForwardArgs<T>& a, int64_t begin, int64_t end) {
  forward_rois(a, begin, end);
}
template <typename T>
DETKIT_TARGET_AVX512 void forward_rois_avx512(const ForwardArgs<T>& a, int64_t begin, int64_t end) {
  forward_rois(a, begin, end);
}
#endif

template <typename T>
void forward_impl(const at::Tensor& input, bool channels_last, const at::Tensor& rois, T spatial_scale,
                  int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned,
                  at::Tensor& output) {
  const int64_t num_rois = rois.size(0);
  const std::vector<int64_t> order = spatial_order(rois.data_ptr<T>(), num_rois, spatial_scale);
  const ForwardArgs<T> args{input.data_ptr<T>(), rois.data_ptr<T>(), order.data(), output.data_ptr<T>(), channels_last,
                            input.size(1), input.size(2), input.size(3), pooled_height, pooled_width,
                            sampling_ratio, spatial_scale, aligned};
  check_batch_indices(args.rois, num_rois, input.size(0), "roi_align");
  void (*kernel)(const ForwardArgs<T>&, int64_t, int64_t) = forward_rois_baseline<T>;
#ifdef DETKIT_X86_DISPATCH
  if (cpu::cpu_isa() == cpu::Isa::kAvx512) kernel = forward_rois_avx512<T>;
  if (cpu::cpu_isa() == cpu::Isa::kAvx2) kernel = forward_rois_avx2<T>;
#endif
  // Chunks of a few RoIs, several per thread: RoIs differ in cost (adaptive sampling grids). A small
  // job (a few RoIs, the mask head at inference) runs on the calling thread alone: it takes a few
  // milliseconds, and on a loaded machine waiting for a descheduled helper thread could cost more.
  const int64_t points_per_bin = sampling_ratio > 0 ? sampling_ratio * sampling_ratio : 4;
  const int64_t work = num_rois * pooled_height * pooled_width * points_per_bin * args.channels;
  if (work < kMinParallelWork) {
    kernel(args, 0, num_rois);
    return;
  }
  const int64_t workers = cpu::max_workers();
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(16, num_rois / (8 * workers)));
  cpu::parallel_chunks(num_rois, chunk, [&](int64_t, int64_t begin, int64_t end) { kernel(args, begin, end); });
}

// The channel-blocked forward pass from an NCHW map (see forward_block).
template <typename T>
void forward_blocked(const at::Tensor& input, const at::Tensor& rois, T spatial_scale, int64_t pooled_height,
                     int64_t pooled_width, int64_t sampling_ratio, bool aligned, at::Tensor& output) {
  const int64_t num_rois = rois.size(0), batch_size = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  const T* roi_data = rois.data_ptr<T>();
  check_batch_indices(roi_data, num_rois, batch_size, "roi_align");
  std::vector<std::vector<SamplePoint<T>>> cached_points(num_rois);
  const std::vector<RoIGeometry<T>> geometry = precompute_all(roi_data, num_rois, spatial_scale, height, width,
                                                              pooled_height, pooled_width, sampling_ratio, aligned,
                                                              cached_points);
  const std::vector<int64_t> order = spatial_order(roi_data, num_rois, spatial_scale);
  const BlockArgs<T> args{input.data_ptr<T>(), roi_data, output.data_ptr<T>(), geometry.data(), cached_points.data(),
                          order.data(), num_rois, batch_size, channels, height, width, pooled_height, pooled_width,
                          sampling_ratio, spatial_scale, aligned};
  void (*kernel)(const BlockArgs<T>&, int64_t, T*, std::vector<SamplePoint<T>>&) = forward_block_baseline<T>;
#ifdef DETKIT_X86_DISPATCH
  if (cpu::cpu_isa() == cpu::Isa::kAvx512) kernel = forward_block_avx512<T>;
  if (cpu::cpu_isa() == cpu::Isa::kAvx2) kernel = forward_block_avx2<T>;
#endif
  run_blocks(args, kernel);
}

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                 int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must have shape [N, C, H, W], got ", input.sizes());
  check_rois(input, rois, "roi_align");
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t bins = pooled_height * pooled_width;
  if (num_rois == 0 || input.numel() == 0 || bins == 0) {
    return at::zeros({num_rois, channels, pooled_height, pooled_width}, input.options());
  }
  // Three ways to read the map:
  // * channels-last already: RoI by RoI, each point reading four contiguous C-vectors;
  // * NCHW sampled at more points than it has pixels (training's 512 RoIs per image, the 1000
  //   proposals of inference): channel block by channel block (forward_block), each block's planes
  //   made channels-last in a small buffer, when the points of all RoIs can be stored (a fixed
  //   sampling_ratio), and otherwise RoI by RoI from a channels-last copy of the map;
  // * NCHW sampled at fewer points (a few detections on a large level): where it lies, plane by
  //   plane, like torchvision does.
  const int64_t points_per_bin = sampling_ratio > 0 ? sampling_ratio * sampling_ratio : 4;
  const bool many_points = num_rois * bins * points_per_bin * 4 >= input.size(0) * input.size(2) * input.size(3);
  const bool channels_last = input.is_contiguous(at::MemoryFormat::ChannelsLast);
  const bool blocked = !channels_last && many_points && cache_all_points(num_rois, bins, sampling_ratio);
  const bool read_channels_last = !blocked && (channels_last || many_points);
  const at::Tensor source = read_channels_last ? input.contiguous(at::MemoryFormat::ChannelsLast) : input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "detkit_roi_align_forward_cpu", [&] {
    if (blocked) {
      forward_blocked<scalar_t>(source, rois_c, static_cast<scalar_t>(spatial_scale), pooled_height, pooled_width,
                                sampling_ratio, aligned, output);
    } else {
      forward_impl<scalar_t>(source, read_channels_last, rois_c, static_cast<scalar_t>(spatial_scale), pooled_height,
                             pooled_width, sampling_ratio, aligned, output);
    }
  });
  return output;
}

// The backward pass of channel block `block` into `buffer` ([N, H, W, kBlock], all zero on entry
// and again on return). Each sampling point adds its share of the bin's gradient to four contiguous
// kBlock-vectors (the lanes past the last channel add zeros and are never read), then the block is
// copied out tile by tile into its planes of grad_input, zeroing the tile behind it.
template <typename T>
DETKIT_ALWAYS_INLINE void backward_block(const BlockArgs<T>& a, int64_t block, T* __restrict__ buffer,
                                         std::vector<SamplePoint<T>>& scratch) {
  const int64_t channels = a.channels, plane = a.height * a.width;
  const int64_t bins = a.pooled_height * a.pooled_width;
  const int64_t c_begin = block * kBlock, slice = std::min(kBlock, channels - c_begin);
  T g_bin[kBlock];
  for (int64_t c = 0; c < kBlock; ++c) g_bin[c] = 0;
  for (int64_t i = 0; i < a.num_rois; ++i) {
    const int64_t r = a.order[i];
    const RoIGeometry<T>& g = a.geometry[r];
    const int64_t per_bin = static_cast<int64_t>(g.grid_h) * g.grid_w;
    T* image = buffer + g.batch_index * plane * kBlock;
    const T* roi_grad = a.source + (r * channels + c_begin) * bins;
    if (a.cached_points == nullptr) {
      precompute_roi(a.rois + 5 * r, a.spatial_scale, a.height, a.width, a.pooled_height, a.pooled_width,
                     a.sampling_ratio, a.aligned, scratch);
    }
    const SamplePoint<T>* point = a.cached_points != nullptr ? a.cached_points[r].data() : scratch.data();
    for (int64_t bin = 0; bin < bins; ++bin) {
      // The bin's gradient is shared equally by its sampling points (the forward pass averages).
      for (int64_t c = 0; c < slice; ++c) g_bin[c] = roi_grad[c * bins + bin];
      for (int64_t s = 0; s < per_bin; ++s, ++point) {
        for (int q = 0; q < 4; ++q) {
          const T w = point->weight[q] / g.count;
          if (w == 0) continue;
          T* __restrict__ row = image + point->offset[q] * kBlock;
          for (int64_t c = 0; c < kBlock; ++c) row[c] += w * g_bin[c];
        }
      }
    }
  }
  for (int64_t n = 0; n < a.batch_size; ++n) {
    T* block_image = buffer + n * plane * kBlock;
    T* grad_image = a.target + (n * channels + c_begin) * plane;
    for (int64_t tile = 0; tile < plane; tile += kTile) {
      const int64_t tile_end = std::min(plane, tile + kTile);
      for (int64_t c = 0; c < slice; ++c) {
        T* __restrict__ out = grad_image + c * plane;
        const T* __restrict__ in = block_image + c;
        for (int64_t pixel = tile; pixel < tile_end; ++pixel) out[pixel] = in[pixel * kBlock];
      }
      T* __restrict__ used = block_image + tile * kBlock;
      for (int64_t i = 0; i < (tile_end - tile) * kBlock; ++i) used[i] = 0;
    }
  }
}

template <typename T>
void backward_block_baseline(const BlockArgs<T>& a, int64_t block, T* buffer,
                             std::vector<SamplePoint<T>>& scratch) {
  backward_block(a, block, buffer, scratch);
}
#ifdef DETKIT_X86_DISPATCH
template <typename T>
DETKIT_TARGET_AVX2 void backward_block_avx2(const BlockArgs<T>& a, int64_t block, T* buffer,
                                            std::vector<SamplePoint<T>>& scratch) {
  backward_block(a, block, buffer, scratch);
}
template <typename T>
DETKIT_TARGET_AVX512 void backward_block_avx512(const BlockArgs<T>& a, int64_t block, T* buffer,
                                                std::vector<SamplePoint<T>>& scratch) {
  backward_block(a, block, buffer, scratch);
}
#endif

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
  // cell. Every cell sums its contributions in one fixed order (RoIs in spatial_order, then bin,
  // point, neighbour): the result does not depend on the blocking or the thread count.
  const int64_t num_rois = rois.size(0), batch_size = grad_input.size(0), channels = grad_input.size(1);
  const int64_t height = grad_input.size(2), width = grad_input.size(3);
  const T* roi_data = rois.data_ptr<T>();
  const int64_t bins = pooled_height * pooled_width;
  check_batch_indices(roi_data, num_rois, batch_size, "roi_align backward");

  std::vector<std::vector<SamplePoint<T>>> cached_points(cache_all_points(num_rois, bins, sampling_ratio) ? num_rois : 0);
  const std::vector<RoIGeometry<T>> geometry = precompute_all(roi_data, num_rois, spatial_scale, height, width,
                                                              pooled_height, pooled_width, sampling_ratio, aligned,
                                                              cached_points);
  const std::vector<int64_t> order = spatial_order(roi_data, num_rois, spatial_scale);
  const BlockArgs<T> args{grad.data_ptr<T>(), roi_data, grad_input.data_ptr<T>(), geometry.data(),
                          cached_points.empty() ? nullptr : cached_points.data(), order.data(), num_rois,
                          batch_size, channels, height, width, pooled_height, pooled_width, sampling_ratio,
                          spatial_scale, aligned};
  void (*kernel)(const BlockArgs<T>&, int64_t, T*, std::vector<SamplePoint<T>>&) = backward_block_baseline<T>;
#ifdef DETKIT_X86_DISPATCH
  if (cpu::cpu_isa() == cpu::Isa::kAvx512) kernel = backward_block_avx512<T>;
  if (cpu::cpu_isa() == cpu::Isa::kAvx2) kernel = backward_block_avx2<T>;
#endif
  run_blocks(args, kernel);
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
