// Non-maximum suppression on CUDA, with exactly torchvision.ops.nms's semantics.
//
// Boxes are sorted by decreasing score with a stable sort (equal scores keep their input order).
// In that order, box j is suppressed when some earlier *kept* box i overlaps it with
// IoU(i, j) > iou_threshold (strictly). IoU has no +1 in widths (see box_iou in cuda_helpers.h).
//
// The work is split in two kernels:
//
// 1. overlap_mask_kernel, fully parallel. The sorted boxes are cut into blocks of 64 ("column
//    blocks"). A CUDA block (row_block, col_block) compares the 64 boxes of row_block (one per
//    thread) with the 64 boxes of col_block and writes, for each of its rows i, one 64-bit word
//        mask[i * num_col_blocks + col_block], bit b set  <=>  IoU(i, col_block * 64 + b) > threshold
//    Only pairs with j > i matter (an earlier box suppresses a later one), so blocks below the
//    diagonal exit at once and their words are never written or read; on the diagonal only the
//    bits b with col_block * 64 + b > i are set.
//
// 2. reduce_mask_kernel, a single block. Whether box i is kept depends on whether the boxes that
//    suppress it were themselves kept, which depends on earlier boxes, and so on: a chain through
//    the whole sorted list, so this step is inherently sequential in the order of the boxes. It
//    runs on the GPU, walking the column blocks in order, which avoids copying the N x N/64 mask
//    (50 MB for 20k boxes) to the host. `removed` (in shared memory) holds one bit per box, set
//    once a kept box suppresses it. For each column block:
//      a. one warp resolves the block's 64 boxes among themselves: box b is kept iff its bit is
//         not set; if kept, its diagonal word (its overlaps with the later boxes of the same
//         block) is ORed in. This is the only sequential part, 64 steps of register bit logic.
//      b. all threads OR the mask rows of the boxes just kept into the `removed` words of the
//         later column blocks, one (kept row, column word) pair per item, in parallel.
//    That is two barriers per 64 boxes, however many of them are kept.
//
// The result is a bool per sorted position; the kept original indices are
// order.masked_select(keep), already in decreasing-score order.
//
// batched_nms passes a category per box: a pair of boxes in different categories never sets a bit,
// so the result is exactly NMS run on each category separately.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <string>

#include "cuda/cuda_helpers.h"

namespace detkit {
namespace {

using mask_word_t = unsigned long long;  // 64 bits, the type of CUDA's 64-bit atomics and intrinsics
constexpr int kBoxesPerBlock = 64;       // boxes per column block = bits per mask word
constexpr int kReduceThreads = 1024;     // threads of the single-block reduction
constexpr int kWarpSize = 32;

// Number of boxes in the block of 64 starting at sorted position `block_start` (64 but for the last).
__device__ __forceinline__ int boxes_in_block(int64_t num_boxes, int64_t block_start) {
  const int64_t remaining = num_boxes - block_start;
  return remaining < kBoxesPerBlock ? static_cast<int>(remaining) : kBoxesPerBlock;
}

// One CUDA block per (row_block, col_block) pair; kBoxesPerBlock threads, thread t owns the row
// box row_block * 64 + t. `sorted_boxes` is [num_boxes, 4] xyxy in decreasing-score order.
template <typename scalar_t>
__global__ void __launch_bounds__(kBoxesPerBlock)
    overlap_mask_kernel(const scalar_t* __restrict__ sorted_boxes, const int64_t* __restrict__ sorted_categories,
                        int64_t num_boxes, int64_t num_col_blocks, at::acc_type<scalar_t, true> iou_threshold,
                        bool min_overlap, mask_word_t* __restrict__ mask) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (col_block < row_block) {
    return;  // only later boxes can be suppressed: the lower triangle is never read
  }
  const int64_t row_start = row_block * kBoxesPerBlock;
  const int64_t col_start = col_block * kBoxesPerBlock;
  const int rows_here = boxes_in_block(num_boxes, row_start);
  const int cols_here = boxes_in_block(num_boxes, col_start);

  // The column boxes and their areas, staged once per block in the compute type.
  __shared__ acc_t col_x1[kBoxesPerBlock], col_y1[kBoxesPerBlock], col_x2[kBoxesPerBlock],
      col_y2[kBoxesPerBlock], col_area[kBoxesPerBlock];
  __shared__ int64_t col_category[kBoxesPerBlock];  // only used when sorted_categories != nullptr
  const int t = threadIdx.x;
  if (t < cols_here) {
    const scalar_t* box = sorted_boxes + (col_start + t) * 4;
    col_x1[t] = static_cast<acc_t>(box[0]);
    col_y1[t] = static_cast<acc_t>(box[1]);
    col_x2[t] = static_cast<acc_t>(box[2]);
    col_y2[t] = static_cast<acc_t>(box[3]);
    col_area[t] = cuda::box_area(col_x1[t], col_y1[t], col_x2[t], col_y2[t]);
    if (sorted_categories != nullptr) col_category[t] = sorted_categories[col_start + t];
  }
  __syncthreads();
  if (t >= rows_here) {
    return;
  }

  const int64_t row = row_start + t;
  const scalar_t* row_box = sorted_boxes + row * 4;
  const acc_t x1 = static_cast<acc_t>(row_box[0]), y1 = static_cast<acc_t>(row_box[1]);
  const acc_t x2 = static_cast<acc_t>(row_box[2]), y2 = static_cast<acc_t>(row_box[3]);
  const acc_t area = cuda::box_area(x1, y1, x2, y2);
  const int64_t category = sorted_categories != nullptr ? sorted_categories[row] : 0;

  mask_word_t word = 0;
  // On the diagonal block, compare only with the boxes after this one.
  const int first_col = (col_block == row_block) ? t + 1 : 0;
  for (int b = first_col; b < cols_here; ++b) {
    if (sorted_categories != nullptr && col_category[b] != category) {
      continue;  // boxes of different categories never suppress each other
    }
    const acc_t iou =
        min_overlap ? cuda::box_overlap_min(x1, y1, x2, y2, area, col_x1[b], col_y1[b], col_x2[b], col_y2[b], col_area[b])
                    : cuda::box_iou(x1, y1, x2, y2, area, col_x1[b], col_y1[b], col_x2[b], col_y2[b], col_area[b]);
    if (iou > iou_threshold) {
      word |= mask_word_t{1} << b;
    }
  }
  mask[row * num_col_blocks + col_block] = word;
}

// The words of rows `block`*64 + lane and `block`*64 + lane + 32 in column block `block`: those
// rows' overlaps with the later boxes of their own block (0 for rows past the last box).
__device__ __forceinline__ void load_diagonal_words(const mask_word_t* __restrict__ mask, int64_t num_boxes,
                                                    int64_t num_col_blocks, int64_t block, int lane,
                                                    mask_word_t& diag_low, mask_word_t& diag_high) {
  const int64_t row_low = block * kBoxesPerBlock + lane;
  const int64_t row_high = row_low + kWarpSize;
  diag_low = row_low < num_boxes ? mask[row_low * num_col_blocks + block] : 0;
  diag_high = row_high < num_boxes ? mask[row_high * num_col_blocks + block] : 0;
}

// Single block of kReduceThreads threads; dynamic shared memory holds `removed`, one word per
// column block. Writes keep[i] (i in sorted order) for every box.
__global__ void __launch_bounds__(kReduceThreads)
    reduce_mask_kernel(const mask_word_t* __restrict__ mask, int64_t num_boxes, int64_t num_col_blocks,
                       bool* __restrict__ keep) {
  extern __shared__ mask_word_t removed[];     // bit b of word k: box k * 64 + b is suppressed
  __shared__ int kept_rows[kBoxesPerBlock];    // offsets in the current block of the boxes kept
  __shared__ int num_kept_rows;

  const int t = threadIdx.x;
  for (int64_t k = t; k < num_col_blocks; k += blockDim.x) {
    removed[k] = 0;
  }
  __syncthreads();

  // Warp 0's lane l holds the diagonal words of rows l and l + 32 of the current column block
  // (0 past the last box). They do not depend on `removed`, so the next block's are fetched while
  // the current one's suppressions are applied (step b), hiding one global-memory latency per block.
  mask_word_t diag_low = 0, diag_high = 0;
  if (t < kWarpSize) {
    load_diagonal_words(mask, num_boxes, num_col_blocks, 0, t, diag_low, diag_high);
  }

  for (int64_t block = 0; block < num_col_blocks; ++block) {
    const int64_t block_start = block * kBoxesPerBlock;
    const int boxes_here = boxes_in_block(num_boxes, block_start);

    // a. Warp 0 resolves this block's boxes among themselves: every lane runs the same 64-step
    //    chain on broadcast diagonal words, so all lanes end with the same `suppressed` word.
    if (t < kWarpSize) {
      const int lane = t;
      mask_word_t suppressed = removed[block];
#pragma unroll
      for (int b = 0; b < kBoxesPerBlock; ++b) {
        const mask_word_t diag = __shfl_sync(0xffffffffu, b < kWarpSize ? diag_low : diag_high, b % kWarpSize);
        // Bits of later boxes only, so `suppressed` bit b is final once boxes 0..b-1 are done.
        if (!((suppressed >> b) & 1)) {
          suppressed |= diag;
        }
      }
      const mask_word_t valid = boxes_here == kBoxesPerBlock ? ~mask_word_t{0} : (mask_word_t{1} << boxes_here) - 1;
      const mask_word_t kept = ~suppressed & valid;

      // Each lane handles bits `lane` and `lane + 32`: the keep flag, and the kept box's slot in
      // the compact list kept_rows (its rank among the kept bits).
      for (int b = lane; b < kBoxesPerBlock; b += kWarpSize) {
        const bool is_kept = (kept >> b) & 1;
        if (b < boxes_here) {
          keep[block_start + b] = is_kept;
        }
        if (is_kept) {
          const mask_word_t lower_bits = (mask_word_t{1} << b) - 1;
          kept_rows[__popcll(kept & lower_bits)] = b;
        }
      }
      if (lane == 0) {
        num_kept_rows = __popcll(kept);
      }
    }
    __syncthreads();
    if (t < kWarpSize && block + 1 < num_col_blocks) {
      load_diagonal_words(mask, num_boxes, num_col_blocks, block + 1, t, diag_low, diag_high);
    }

    // b. The kept boxes suppress boxes of the later column blocks: item = (kept row r, column
    //    word) with the column fastest, so consecutive threads read consecutive words of one mask
    //    row. Most words are zero (boxes overlap few others); only non-zero ones touch shared memory.
    //    32-bit item arithmetic: at most 65535 column words x 64 kept rows.
    const int later_cols = static_cast<int>(num_col_blocks - block - 1);
    const int items = later_cols * num_kept_rows;
#pragma unroll 4
    for (int item = t; item < items; item += blockDim.x) {
      const int r = item / later_cols;
      const int64_t col = block + 1 + (item - r * later_cols);
      const mask_word_t word = mask[(block_start + kept_rows[r]) * num_col_blocks + col];
      if (word != 0) {
        atomicOr(&removed[col], word);
      }
    }
    __syncthreads();  // `removed[block + 1]` and kept_rows are read/written by the next step
  }
}

// Shared by nms and batched_nms: `categories` is undefined for plain nms.
at::Tensor nms_with_categories_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                    const at::Tensor& categories, double iou_threshold, c10::string_view overlap) {
  TORCH_CHECK(overlap == "iou" || overlap == "min", "nms: overlap must be \"iou\" or \"min\", got \"",
              std::string(overlap), "\"");
  const bool min_overlap = overlap == "min";
  TORCH_CHECK(boxes.is_cuda(), "nms: boxes must be a CUDA tensor");
  TORCH_CHECK(scores.device() == boxes.device(), "nms: boxes (", boxes.device(), ") and scores (",
              scores.device(), ") must be on the same device");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must have shape [N, 4], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must have shape [N] with N = boxes.size(0) = ", boxes.size(0), ", got ",
              scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "nms: boxes (", boxes.scalar_type(),
              ") and scores (", scores.scalar_type(), ") must have the same dtype");

  const c10::cuda::CUDAGuard device_guard(boxes.device());
  const int64_t num_boxes = boxes.size(0);
  if (num_boxes == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }

  // Stable: equal scores keep their input order, as in torchvision.
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted_boxes = boxes.index_select(0, order).contiguous();
  at::Tensor sorted_categories;
  if (categories.defined()) {
    TORCH_CHECK(categories.device() == boxes.device() && categories.scalar_type() == at::kLong &&
                    categories.dim() == 1 && categories.size(0) == num_boxes,
                "batched_nms: idxs must be an int64 tensor of shape [N] on the device of boxes");
    sorted_categories = categories.index_select(0, order).contiguous();
  }

  const int64_t num_col_blocks = cuda::ceil_div<int64_t>(num_boxes, kBoxesPerBlock);
  TORCH_CHECK(num_col_blocks <= 65535, "nms: too many boxes (", num_boxes, "); at most ",
              int64_t{65535} * kBoxesPerBlock, " are supported");
  // Words below the diagonal are never written nor read, so no zero fill.
  at::Tensor mask = at::empty({num_boxes * num_col_blocks}, boxes.options().dtype(at::kLong));
  at::Tensor keep = at::empty({num_boxes}, boxes.options().dtype(at::kBool));
  mask_word_t* mask_data = reinterpret_cast<mask_word_t*>(mask.data_ptr<int64_t>());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND_HALF(boxes.scalar_type(), "nms_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const dim3 blocks(static_cast<unsigned int>(num_col_blocks), static_cast<unsigned int>(num_col_blocks));
    overlap_mask_kernel<scalar_t><<<blocks, kBoxesPerBlock, 0, stream>>>(
        sorted_boxes.const_data_ptr<scalar_t>(),
        sorted_categories.defined() ? sorted_categories.const_data_ptr<int64_t>() : nullptr, num_boxes, num_col_blocks,
        cuda::threshold_for_greater_than<acc_t>(iou_threshold), min_overlap, mask_data);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  // `removed` needs one word per column block: 48 KB (the default limit) covers 393k boxes; above
  // that, opt in to the device's larger limit (the mask itself is then already ~19 GB).
  const size_t removed_bytes = static_cast<size_t>(num_col_blocks) * sizeof(mask_word_t);
  constexpr size_t kDefaultSharedBytes = 48 * 1024;
  if (removed_bytes > kDefaultSharedBytes) {
    int optin_bytes = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                          boxes.device().index()));
    // the kernel's static shared memory (kept_rows, num_kept_rows) comes on top
    TORCH_CHECK(removed_bytes + 1024 <= static_cast<size_t>(optin_bytes), "nms: too many boxes (", num_boxes,
                ") for the on-GPU reduction on this device");
    C10_CUDA_CHECK(cudaFuncSetAttribute(reduce_mask_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(removed_bytes)));
  }
  reduce_mask_kernel<<<1, kReduceThreads, removed_bytes, stream>>>(mask_data, num_boxes, num_col_blocks,
                                                                   keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  return order.masked_select(keep);
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                    c10::string_view overlap) {
  return nms_with_categories_cuda(boxes, scores, at::Tensor(), iou_threshold, overlap);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold, c10::string_view overlap) {
  return nms_with_categories_cuda(boxes, scores, idxs, iou_threshold, overlap);
}

}  // namespace

TORCH_LIBRARY_IMPL(detkit, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("batched_nms", &batched_nms_cuda);
}

}  // namespace detkit
