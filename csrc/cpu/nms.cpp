// Greedy non-maximum suppression on the CPU, with torchvision.ops.nms semantics: boxes are visited in
// order of decreasing score (stable sort, so ties keep input order), and a kept box suppresses every
// later box whose IoU with it is strictly greater than iou_threshold. IoU uses continuous coordinates
// (area = (x2 - x1) * (y2 - y1), no +1) and the same arithmetic order as torchvision, so the kept
// indices are identical bit for bit.
//
// Speed: instead of testing each kept box against every later box (O(N^2) for sparse scenes), the
// boxes are also sorted by x1, with a running maximum of x2. Only boxes with x1_j < x2_i and
// x2_j > x1_i can intersect box i; the first bound is a binary search on the sorted x1, the second a
// binary search on the running maximum of x2 (a box before that point ends left of x1_i). Inside that
// window the full IoU is computed exactly as torchvision does, for every box of the window without a
// branch (suppress_window: struct-of-arrays coordinates, a select for the result), so the compiler
// vectorises it; that is 3-4x faster than testing the boxes one by one behind their overlap filter. Boxes outside it have zero
// intersection and hence IoU 0 (or NaN for degenerate pairs), which never exceeds a threshold >= 0,
// so the result is unchanged; for the same reason boxes of zero or negative width or height are kept
// without being compared. Non-finite coordinates or a negative threshold take the plain O(N^2)
// loop, which reproduces torchvision's behaviour in those corner cases too.
//
// overlap="min" measures intersection over the smaller box's area instead of IoU (MTCNN's "Min");
// it is also zero without intersection, so the same window applies.
//
// batched_nms runs the same algorithm with a category per box: boxes are swept by (category, x1), so
// a window never leaves its category, and the IoU of boxes in different categories is never tested.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace detkit {
namespace {

template <typename T>
struct SortedBoxes {
  // Box coordinates and areas, indexed by rank in the score order.
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<int64_t> category;  // all zero for plain nms
};

// The overlap measure: IoU, or intersection over the smaller area ("min", MTCNN's last stage).
enum class Overlap { kIoU, kMin };

Overlap parse_overlap(c10::string_view overlap, const char* op) {
  if (overlap == "iou") return Overlap::kIoU;
  if (overlap == "min") return Overlap::kMin;
  TORCH_CHECK(false, op, ": overlap must be \"iou\" or \"min\", got \"", std::string(overlap), "\"");
  return Overlap::kIoU;
}

template <typename T>
inline bool suppresses(const SortedBoxes<T>& b, int64_t i, int64_t j, double iou_threshold, Overlap overlap) {
  const T xx1 = std::max(b.x1[i], b.x1[j]);
  const T yy1 = std::max(b.y1[i], b.y1[j]);
  const T xx2 = std::min(b.x2[i], b.x2[j]);
  const T yy2 = std::min(b.y2[i], b.y2[j]);
  const T w = std::max(static_cast<T>(0), xx2 - xx1);
  const T h = std::max(static_cast<T>(0), yy2 - yy1);
  const T inter = w * h;
  const T denominator = overlap == Overlap::kIoU ? b.area[i] + b.area[j] - inter : std::min(b.area[i], b.area[j]);
  return inter / denominator > iou_threshold;
}

// Reference greedy loop over all later boxes (torchvision's algorithm), for the corner cases.
template <typename T>
int64_t nms_all_pairs(const SortedBoxes<T>& b, double iou_threshold, Overlap overlap, int64_t* kept_ranks) {
  const int64_t n = static_cast<int64_t>(b.x1.size());
  std::vector<uint8_t> suppressed(n, 0);
  int64_t num_kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (suppressed[i]) continue;
    kept_ranks[num_kept++] = i;
    for (int64_t j = i + 1; j < n; ++j) {
      if (!suppressed[j] && b.category[j] == b.category[i] && suppresses(b, i, j, iou_threshold, overlap)) suppressed[j] = 1;
    }
  }
  return num_kept;
}

// Marks dead (live = -inf) every box of [begin, end) whose overlap with the kept box exceeds the
// threshold. Branch-free over the window, the arithmetic of suppresses() (torchvision's), so the
// compiler vectorises it; boxes already dead stay dead, and boxes without intersection have overlap
// 0, which exceeds no threshold >= 0.
template <typename T, bool kMinArea>
inline void suppress_window(const SortedBoxes<T>& x, T* __restrict live, int64_t begin, int64_t end, T ix1, T iy1,
                            T ix2, T iy2, T iarea, double iou_threshold) {
  const T* __restrict x1 = x.x1.data();
  const T* __restrict y1 = x.y1.data();
  const T* __restrict x2 = x.x2.data();
  const T* __restrict y2 = x.y2.data();
  const T* __restrict area = x.area.data();
  const T threshold = static_cast<T>(iou_threshold);
  const bool exact_threshold = static_cast<double>(threshold) == iou_threshold;
  constexpr T kDead = -std::numeric_limits<T>::infinity();
  for (int64_t k = begin; k < end; ++k) {
    const T xx1 = std::max(x1[k], ix1);
    const T yy1 = std::max(y1[k], iy1);
    const T xx2 = std::min(x2[k], ix2);
    const T yy2 = std::min(y2[k], iy2);
    const T w = std::max(static_cast<T>(0), xx2 - xx1);
    const T h = std::max(static_cast<T>(0), yy2 - yy1);
    const T inter = w * h;
    const T ratio = kMinArea ? inter / std::min(iarea, area[k]) : inter / (iarea + area[k] - inter);
    const bool dead = exact_threshold ? ratio > threshold : static_cast<double>(ratio) > iou_threshold;
    live[k] = dead ? kDead : live[k];
  }
}

template <typename T>
int64_t nms_sweep(const SortedBoxes<T>& b, double iou_threshold, Overlap overlap, int64_t* kept_ranks) {
  const int64_t n = static_cast<int64_t>(b.x1.size());
  // A box with zero or negative width or height intersects nothing (min(x2) - max(x1) <= 0), so it is
  // always kept and never suppresses: it stays out of the sweep. The others are laid out by category,
  // then x1 (struct of arrays), so that scanning a window of candidates reads memory sequentially and
  // stays inside one category.
  std::vector<int64_t> rank;  // rank[k]: score rank of the k-th swept box in (category, x1) order
  rank.reserve(n);
  for (int64_t r = 0; r < n; ++r) {
    if (b.x2[r] > b.x1[r] && b.y2[r] > b.y1[r]) rank.push_back(r);
  }
  std::sort(rank.begin(), rank.end(), [&](int64_t a, int64_t c) {
    return b.category[a] != b.category[c] ? b.category[a] < b.category[c] : b.x1[a] < b.x1[c];
  });
  const int64_t m = static_cast<int64_t>(rank.size());
  SortedBoxes<T> x;
  for (auto* v : {&x.x1, &x.y1, &x.x2, &x.y2, &x.area}) v->resize(m);
  // Running maximum of x2 within each category's segment [segment_begin, segment_end).
  std::vector<T> x2_running_max(m);
  std::vector<int64_t> segment_begin(m), segment_end(m);
  // live_x2[k] is x2 while box k may still be suppressed, and -inf once it has been suppressed or
  // visited as a kept box: then the overlap filter below rejects it without a separate flag or rank test.
  std::vector<T> live_x2(m);
  std::vector<int64_t> position_of_rank(n, -1);
  T running = -std::numeric_limits<T>::infinity();
  int64_t begin_of_segment = 0;
  for (int64_t k = 0; k < m; ++k) {
    const int64_t r = rank[k];
    if (k > 0 && b.category[r] != b.category[rank[k - 1]]) {
      for (int64_t q = begin_of_segment; q < k; ++q) segment_end[q] = k;
      begin_of_segment = k;
      running = -std::numeric_limits<T>::infinity();
    }
    segment_begin[k] = begin_of_segment;
    x.x1[k] = b.x1[r];
    x.y1[k] = b.y1[r];
    x.x2[k] = b.x2[r];
    x.y2[k] = b.y2[r];
    x.area[k] = b.area[r];
    live_x2[k] = x.x2[k];
    running = std::max(running, x.x2[k]);
    x2_running_max[k] = running;
    position_of_rank[r] = k;
  }
  for (int64_t q = begin_of_segment; q < m; ++q) segment_end[q] = m;
  constexpr T kDead = -std::numeric_limits<T>::infinity();

  int64_t num_kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = position_of_rank[i];
    if (p < 0) {  // degenerate box: kept, suppresses nothing
      kept_ranks[num_kept++] = i;
      continue;
    }
    if (live_x2[p] == kDead) continue;  // suppressed by an earlier box
    kept_ranks[num_kept++] = i;
    live_x2[p] = kDead;
    // Window [begin, end) within the category's segment: x2_running_max > x1_i and x1 < x2_i.
    const auto max_first = x2_running_max.begin() + segment_begin[p], max_last = x2_running_max.begin() + segment_end[p];
    const int64_t begin = std::upper_bound(max_first, max_last, x.x1[p]) - x2_running_max.begin();
    const auto x1_first = x.x1.begin() + segment_begin[p], x1_last = x.x1.begin() + segment_end[p];
    const int64_t end = std::lower_bound(x1_first, x1_last, x.x2[p]) - x.x1.begin();
    const T ix1 = x.x1[p], iy1 = x.y1[p], ix2 = x.x2[p], iy2 = x.y2[p], iarea = x.area[p];
    if (overlap == Overlap::kIoU) {
      suppress_window<T, false>(x, live_x2.data(), begin, end, ix1, iy1, ix2, iy2, iarea, iou_threshold);
    } else {
      suppress_window<T, true>(x, live_x2.data(), begin, end, ix1, iy1, ix2, iy2, iarea, iou_threshold);
    }
  }
  return num_kept;
}

template <typename T>
at::Tensor nms_impl(const at::Tensor& boxes, const at::Tensor& scores, const int64_t* categories,
                    double iou_threshold, Overlap overlap) {
  const int64_t n = boxes.size(0);
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor boxes_c = boxes.contiguous();
  const T* box_data = boxes_c.data_ptr<T>();
  const int64_t* order_data = order.data_ptr<int64_t>();

  SortedBoxes<T> b;
  for (auto* v : {&b.x1, &b.y1, &b.x2, &b.y2, &b.area}) v->resize(n);
  b.category.assign(n, 0);
  bool all_finite = true;
  for (int64_t r = 0; r < n; ++r) {
    const T* box = box_data + 4 * order_data[r];
    b.x1[r] = box[0];
    b.y1[r] = box[1];
    b.x2[r] = box[2];
    b.y2[r] = box[3];
    b.area[r] = (box[2] - box[0]) * (box[3] - box[1]);
    if (categories != nullptr) b.category[r] = categories[order_data[r]];
    all_finite = all_finite && std::isfinite(box[0]) && std::isfinite(box[1]) && std::isfinite(box[2]) &&
                 std::isfinite(box[3]);
  }

  std::vector<int64_t> kept_ranks(n);
  const int64_t num_kept = (all_finite && iou_threshold >= 0)
                               ? nms_sweep(b, iou_threshold, overlap, kept_ranks.data())
                               : nms_all_pairs(b, iou_threshold, overlap, kept_ranks.data());

  at::Tensor keep = at::empty({num_kept}, boxes.options().dtype(at::kLong));
  int64_t* keep_data = keep.data_ptr<int64_t>();
  for (int64_t k = 0; k < num_kept; ++k) keep_data[k] = order_data[kept_ranks[k]];
  return keep;
}

void check_nms_inputs(const at::Tensor& boxes, const at::Tensor& scores, const char* op) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op, ": boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), op,
              ": scores must have shape [N] matching boxes [N, 4], got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), op, ": boxes (", boxes.scalar_type(), ") and scores (",
              scores.scalar_type(), ") must have the same dtype");
}

at::Tensor nms_dispatch(const at::Tensor& boxes, const at::Tensor& scores, const int64_t* categories,
                        double iou_threshold, Overlap overlap) {
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "detkit_nms_cpu",
                             [&] { keep = nms_impl<scalar_t>(boxes, scores, categories, iou_threshold, overlap); });
  return keep;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                   c10::string_view overlap) {
  check_nms_inputs(boxes, scores, "nms");
  return nms_dispatch(boxes, scores, nullptr, iou_threshold, parse_overlap(overlap, "nms"));
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold, c10::string_view overlap) {
  check_nms_inputs(boxes, scores, "batched_nms");
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0) && idxs.scalar_type() == at::kLong,
              "batched_nms: idxs must be an int64 tensor of shape [N], got ", idxs.scalar_type(), " ", idxs.sizes());
  const at::Tensor idxs_c = idxs.contiguous();
  return nms_dispatch(boxes, scores, idxs_c.data_ptr<int64_t>(), iou_threshold,
                      parse_overlap(overlap, "batched_nms"));
}

}  // namespace

TORCH_LIBRARY_IMPL(detkit, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace detkit
