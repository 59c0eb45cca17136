// Soft-NMS (Bodla et al., "Soft-NMS -- Improving Object Detection With One Line of Code", ICCV 2017)
// on the CPU. Repeatedly select the remaining box with the highest current score (ties: the lower
// input index), emit it with that score, and decay the scores of the other remaining boxes by their
// IoU with it: linear, s *= 1 - IoU when IoU > iou_threshold; gaussian, s *= exp(-IoU^2 / sigma).
// A box whose decayed score falls below score_threshold is dropped. IoU as in nms (no +1).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace detkit {
namespace {

constexpr int64_t kLinear = 0;
constexpr int64_t kGaussian = 1;

template <typename T>
std::tuple<at::Tensor, at::Tensor> soft_nms_impl(const at::Tensor& boxes, const at::Tensor& scores,
                                                 double iou_threshold, double sigma, double score_threshold,
                                                 int64_t method) {
  const int64_t n = boxes.size(0);
  const at::Tensor boxes_c = boxes.contiguous();
  const at::Tensor scores_c = scores.contiguous();
  const T* box = boxes_c.data_ptr<T>();
  std::vector<T> current(scores_c.data_ptr<T>(), scores_c.data_ptr<T>() + n);
  std::vector<T> area(n);
  for (int64_t i = 0; i < n; ++i) area[i] = (box[4 * i + 2] - box[4 * i]) * (box[4 * i + 3] - box[4 * i + 1]);

  // Remaining boxes in increasing input index, so the first maximum found is the lowest index.
  std::vector<int64_t> remaining;
  remaining.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (current[i] >= score_threshold) remaining.push_back(i);
  }
  std::vector<int64_t> kept;
  std::vector<T> kept_scores;
  while (!remaining.empty()) {
    size_t best_pos = 0;
    for (size_t p = 1; p < remaining.size(); ++p) {
      if (current[remaining[p]] > current[remaining[best_pos]]) best_pos = p;
    }
    const int64_t best = remaining[best_pos];
    kept.push_back(best);
    kept_scores.push_back(current[best]);
    remaining.erase(remaining.begin() + best_pos);

    const T* bb = box + 4 * best;
    size_t write = 0;
    for (size_t p = 0; p < remaining.size(); ++p) {
      const int64_t j = remaining[p];
      const T* bj = box + 4 * j;
      const T w = std::max(static_cast<T>(0), std::min(bb[2], bj[2]) - std::max(bb[0], bj[0]));
      const T h = std::max(static_cast<T>(0), std::min(bb[3], bj[3]) - std::max(bb[1], bj[1]));
      const T inter = w * h;
      const T iou = inter / (area[best] + area[j] - inter);
      if (method == kLinear) {
        if (iou > iou_threshold) current[j] *= (1 - iou);
      } else {
        current[j] *= std::exp(-(iou * iou) / static_cast<T>(sigma));
      }
      if (current[j] >= score_threshold) remaining[write++] = j;
    }
    remaining.resize(write);
  }

  const int64_t k = static_cast<int64_t>(kept.size());
  at::Tensor keep = at::empty({k}, boxes.options().dtype(at::kLong));
  at::Tensor keep_scores = at::empty({k}, scores.options());
  std::copy(kept.begin(), kept.end(), keep.data_ptr<int64_t>());
  std::copy(kept_scores.begin(), kept_scores.end(), keep_scores.data_ptr<T>());
  return {keep, keep_scores};
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                double iou_threshold, double sigma, double score_threshold,
                                                int64_t method) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "soft_nms: boxes must have shape [N, 4], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "soft_nms: scores must have shape [N] matching boxes [N, 4], got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), "soft_nms: boxes and scores must have the same dtype");
  TORCH_CHECK(method == kLinear || method == kGaussian, "soft_nms: method must be 0 (linear) or 1 (gaussian), got ",
              method);
  TORCH_CHECK(method != kGaussian || sigma > 0, "soft_nms: sigma must be > 0 for the gaussian method, got ", sigma);
  std::tuple<at::Tensor, at::Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "detkit_soft_nms_cpu", [&] {
    result = soft_nms_impl<scalar_t>(boxes, scores, iou_threshold, sigma, score_threshold, method);
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(detkit, CPU, m) { m.impl("soft_nms", &soft_nms_cpu); }

}  // namespace detkit
