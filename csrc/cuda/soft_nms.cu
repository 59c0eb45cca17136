// Soft-NMS (Bodla et al., "Soft-NMS: Improving Object Detection With One Line of Code", 2017) on CUDA.
//
// Instead of discarding the boxes that overlap a selected box, Soft-NMS lowers their scores:
//   repeat while boxes remain:
//     select the remaining box with the highest current score (ties: the lowest index), output it
//     with its current score, and remove it;
//     decay every other remaining box j by its IoU with the selected box:
//       linear   (method 0): score_j *= 1 - IoU        if IoU > iou_threshold (else unchanged)
//       gaussian (method 1): score_j *= exp(-IoU^2 / sigma)
//     drop every remaining box whose score is now < score_threshold (it is never selected).
// Boxes whose input score is already < score_threshold are dropped before the first selection
// (as in the CPU kernel), so every output score is >= score_threshold. A NaN score is never >= the
// threshold, so such boxes are dropped too. IoU has no +1 (see box_iou in cuda_helpers.h).
//
// Each step depends on the scores left by the previous one, so the steps are sequential; one
// block of 1024 threads runs them all inside a single kernel launch (no launch or host round trip
// per step), each step being one parallel pass over the remaining boxes:
//   - the pass decays each remaining box, drops those below the threshold, appends the survivors
//     to the other of two candidate lists (double-buffered in global memory, order irrelevant),
//     and keeps each thread's best survivor;
//   - a block-wide argmax (warp shuffles, then one warp over the per-warp winners) picks the next
//     selection. Comparing (score, index) pairs makes the winner independent of the list order.
// The remaining boxes shrink as boxes are selected and dropped, so a step costs O(remaining / 1024)
// plus two barriers; this is meant for the N <= ~10^4 boxes left after a score threshold.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "cuda/cuda_helpers.h"

namespace detkit {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;  // = 32, so one warp can reduce the per-warp winners
constexpr unsigned int kFullWarp = 0xffffffffu;
constexpr int kNoBox = -1;  // index of "no candidate", worse than every real candidate

enum class Decay : int64_t { kLinear = 0, kGaussian = 1 };

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// Whether candidate a = (score_a, index_a) beats b: higher score, then lower index; kNoBox loses.
template <typename acc_t>
__device__ __forceinline__ bool beats(acc_t score_a, int index_a, acc_t score_b, int index_b) {
  if (index_a == kNoBox) {
    return false;
  }
  if (index_b == kNoBox) {
    return true;
  }
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

// Shared state of the kernel; see the barrier notes in soft_nms_kernel.
template <typename acc_t>
struct SharedState {
  acc_t warp_best_score[kWarps];
  int warp_best_index[kWarps];
  acc_t selected_score;
  int selected_index;
  int survivor_count[2];  // survivor_count[p]: length of candidate list p (see soft_nms_kernel)
};

// Block-wide argmax of each thread's (score, index). The result lands in state.selected_*, readable
// by every thread on return. Contains two __syncthreads. Between them thread 0 also zeroes
// `counter_to_reset`, which the caller guarantees every thread has finished reading before the
// first barrier and which is appended to only after the second.
template <typename acc_t>
__device__ void block_argmax(acc_t score, int index, SharedState<acc_t>& state, int* counter_to_reset) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const acc_t other_score = __shfl_down_sync(kFullWarp, score, offset);
    const int other_index = __shfl_down_sync(kFullWarp, index, offset);
    if (beats(other_score, other_index, score, index)) {
      score = other_score;
      index = other_index;
    }
  }
  if (lane == 0) {
    state.warp_best_score[warp] = score;
    state.warp_best_index[warp] = index;
  }
  __syncthreads();
  if (warp == 0) {
    score = state.warp_best_score[lane];
    index = state.warp_best_index[lane];
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      const acc_t other_score = __shfl_down_sync(kFullWarp, score, offset);
      const int other_index = __shfl_down_sync(kFullWarp, index, offset);
      if (beats(other_score, other_index, score, index)) {
        score = other_score;
        index = other_index;
      }
    }
    if (lane == 0) {
      state.selected_score = score;
      state.selected_index = index;
      *counter_to_reset = 0;
    }
  }
  __syncthreads();
}

// Appends `box` to `list` when `survives`, warp by warp: one shared atomic per warp reserves the
// slots of its surviving lanes (list order is irrelevant). Must be called by whole warps.
__device__ __forceinline__ void append_survivor(bool survives, int box, int* list, int* list_length) {
  const int lane = threadIdx.x % kWarpSize;
  const unsigned int survivor_lanes = __ballot_sync(kFullWarp, survives);
  if (survivor_lanes == 0) {
    return;
  }
  int warp_offset = 0;
  if (lane == 0) {
    warp_offset = atomicAdd(list_length, __popc(survivor_lanes));
  }
  warp_offset = __shfl_sync(kFullWarp, warp_offset, 0);
  if (survives) {
    const unsigned int lanes_below = (1u << lane) - 1u;
    list[warp_offset + __popc(survivor_lanes & lanes_below)] = box;
  }
}

// Single block of kThreads threads.
//   boxes [N, 4] xyxy, scores [N]: the inputs.
//   current_scores [N]: workspace, the decayed score of each box still remaining.
//   candidates [2 * N]: workspace, two lists of remaining box indices (read one, write the other).
//   kept_indices [N], kept_scores [N], num_kept [1]: the outputs; the first *num_kept are valid.
// Thresholds are pre-rounded (cuda_helpers.h) so `iou > iou_threshold` and
// `score >= score_threshold` decide exactly as in double.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    soft_nms_kernel(const scalar_t* __restrict__ boxes, const scalar_t* __restrict__ scores, int num_boxes,
                    at::acc_type<scalar_t, true> iou_threshold, at::acc_type<scalar_t, true> sigma,
                    at::acc_type<scalar_t, true> score_threshold, Decay decay,
                    at::acc_type<scalar_t, true>* current_scores, int* candidates, int64_t* kept_indices,
                    scalar_t* kept_scores, int64_t* num_kept) {
  using acc_t = at::acc_type<scalar_t, true>;
  __shared__ SharedState<acc_t> state;
  const int tid = threadIdx.x;

  // Candidate list p (p = 0, 1) is candidates[p * N, p * N + survivor_count[p]). Step k reads list
  // k % 2 and appends its survivors to list (k + 1) % 2; the initial filter writes list 0. The
  // counter appended to at step k was zeroed inside the block_argmax of step k - 1 (of the initial
  // filter for k = 0), after every thread had read its previous value (the length of the list that
  // step k - 2 wrote, read before step k - 1's pass).
  if (tid == 0) {
    state.survivor_count[0] = 0;
  }
  __syncthreads();

  // Initial filter: the boxes whose score is >= score_threshold become list 0; the first selection
  // is their argmax.
  acc_t best_score = 0;
  int best_index = kNoBox;
  for (int round_start = 0; round_start < num_boxes; round_start += kThreads) {
    const int box = round_start + tid;
    bool survives = false;
    acc_t score = 0;
    if (box < num_boxes) {
      score = static_cast<acc_t>(scores[box]);
      current_scores[box] = score;
      survives = score >= score_threshold;
    }
    append_survivor(survives, box, candidates, &state.survivor_count[0]);
    if (survives && beats(score, box, best_score, best_index)) {
      best_score = score;
      best_index = box;
    }
  }
  block_argmax(best_score, best_index, state, &state.survivor_count[1]);
  int num_candidates = state.survivor_count[0];

  int64_t kept = 0;
  for (int step = 0;; ++step) {
    // Every thread reads the selection left by the previous block_argmax (same value everywhere,
    // so the loop exits uniformly).
    const int selected = state.selected_index;
    if (selected == kNoBox) {
      break;
    }
    if (tid == 0) {
      kept_indices[kept] = selected;
      kept_scores[kept] = static_cast<scalar_t>(state.selected_score);
    }
    ++kept;

    const scalar_t* selected_box = boxes + static_cast<int64_t>(selected) * 4;
    const acc_t sx1 = static_cast<acc_t>(selected_box[0]), sy1 = static_cast<acc_t>(selected_box[1]);
    const acc_t sx2 = static_cast<acc_t>(selected_box[2]), sy2 = static_cast<acc_t>(selected_box[3]);
    const acc_t selected_area = cuda::box_area(sx1, sy1, sx2, sy2);

    const int read_parity = step % 2;
    const int write_parity = 1 - read_parity;
    const int* read_list = candidates + read_parity * num_boxes;
    int* write_list = candidates + write_parity * num_boxes;

    best_index = kNoBox;
    best_score = 0;
    // All threads run the same number of rounds so that whole warps take part in the ballot.
    for (int round_start = 0; round_start < num_candidates; round_start += kThreads) {
      const int slot = round_start + tid;
      bool survives = false;
      int box = kNoBox;
      acc_t score = 0;
      if (slot < num_candidates) {
        box = read_list[slot];
        if (box != selected) {
          const scalar_t* b = boxes + static_cast<int64_t>(box) * 4;
          const acc_t bx1 = static_cast<acc_t>(b[0]), by1 = static_cast<acc_t>(b[1]);
          const acc_t bx2 = static_cast<acc_t>(b[2]), by2 = static_cast<acc_t>(b[3]);
          const acc_t iou = cuda::box_iou(sx1, sy1, sx2, sy2, selected_area, bx1, by1, bx2, by2,
                                          cuda::box_area(bx1, by1, bx2, by2));
          score = current_scores[box];
          if (decay == Decay::kLinear) {
            if (iou > iou_threshold) {
              score = score * (acc_t(1) - iou);
            }
          } else {
            score = score * exp_acc(-(iou * iou) / sigma);
          }
          survives = score >= score_threshold;
          if (survives) {
            current_scores[box] = score;
          }
        }
      }
      append_survivor(survives, box, write_list, &state.survivor_count[write_parity]);
      if (survives && beats(score, box, best_score, best_index)) {
        best_score = score;
        best_index = box;
      }
    }
    // The barriers in block_argmax also publish this step's current_scores and write_list.
    block_argmax(best_score, best_index, state, &state.survivor_count[read_parity]);
    num_candidates = state.survivor_count[write_parity];
  }
  if (tid == 0) {
    *num_kept = kept;
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                 double iou_threshold, double sigma, double score_threshold,
                                                 int64_t method) {
  TORCH_CHECK(boxes.is_cuda(), "soft_nms: boxes must be a CUDA tensor");
  TORCH_CHECK(scores.device() == boxes.device(), "soft_nms: boxes (", boxes.device(), ") and scores (",
              scores.device(), ") must be on the same device");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "soft_nms: boxes must have shape [N, 4], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "soft_nms: scores must have shape [N] with N = boxes.size(0) = ", boxes.size(0), ", got ",
              scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "soft_nms: boxes (", boxes.scalar_type(),
              ") and scores (", scores.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(method == static_cast<int64_t>(Decay::kLinear) || method == static_cast<int64_t>(Decay::kGaussian),
              "soft_nms: method must be 0 (linear) or 1 (gaussian), got ", method);
  // Each candidate list holds N int32 indices; 2^30 also keeps the list offsets within int.
  TORCH_CHECK(boxes.size(0) <= (int64_t{1} << 30), "soft_nms: too many boxes (", boxes.size(0), ")");

  const c10::cuda::CUDAGuard device_guard(boxes.device());
  const int64_t num_boxes = boxes.size(0);
  if (num_boxes == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  }

  const at::Tensor boxes_c = boxes.contiguous();
  const at::Tensor scores_c = scores.contiguous();
  at::Tensor kept_indices = at::empty({num_boxes}, boxes.options().dtype(at::kLong));
  at::Tensor kept_scores = at::empty({num_boxes}, scores.options());
  at::Tensor num_kept = at::empty({1}, boxes.options().dtype(at::kLong));
  at::Tensor candidates = at::empty({2 * num_boxes}, boxes.options().dtype(at::kInt));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND_HALF(boxes.scalar_type(), "soft_nms_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    at::Tensor current_scores =
        at::empty({num_boxes}, scores.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    soft_nms_kernel<scalar_t><<<1, kThreads, 0, stream>>>(
        boxes_c.const_data_ptr<scalar_t>(), scores_c.const_data_ptr<scalar_t>(), static_cast<int>(num_boxes),
        cuda::threshold_for_greater_than<acc_t>(iou_threshold), static_cast<acc_t>(sigma),
        cuda::threshold_for_less_than<acc_t>(score_threshold), static_cast<Decay>(method),
        current_scores.mutable_data_ptr<acc_t>(), candidates.mutable_data_ptr<int>(),
        kept_indices.mutable_data_ptr<int64_t>(), kept_scores.mutable_data_ptr<scalar_t>(),
        num_kept.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });

  const int64_t count = num_kept.item<int64_t>();  // waits for the kernel
  return {kept_indices.narrow(0, 0, count), kept_scores.narrow(0, 0, count)};
}

}  // namespace

TORCH_LIBRARY_IMPL(detkit, CUDA, m) { m.impl("soft_nms", &soft_nms_cuda); }

}  // namespace detkit
