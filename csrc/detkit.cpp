// The schemas of detkit's operators, declared once. Each backend registers its kernels for its
// dispatch key in its own file (csrc/cpu/*.cpp for CPU, csrc/cuda/*.cu for CUDA); autograd and
// fake (meta) kernels are registered from Python in detkit/ops/_ext.py.
#include <Python.h>
#include <torch/library.h>

#ifdef WITH_CUDA
#include <cuda.h>
#endif

namespace detkit {

// CUDA version the extension was compiled against (e.g. 13000), or -1 without CUDA kernels.
int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDA_VERSION;
#else
  return -1;
#endif
}

TORCH_LIBRARY(detkit, m) {
  // boxes [N, 4] xyxy, scores [N] (same floating dtype) -> kept indices [K] int64, by decreasing score.
  // overlap: "iou" (intersection over union) or "min" (intersection over the smaller box's area, the
  // "Min" NMS of MTCNN's last stage).
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold, str overlap=\"iou\") -> Tensor");
  // Class-aware NMS: boxes with different idxs [N] (int64) never suppress each other. Exact per-class
  // semantics (no coordinate offsets, which would perturb the IoU's rounding).
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, str overlap=\"iou\") -> Tensor");
  // Soft-NMS (Bodla et al. 2017). method: 0 = linear, 1 = gaussian. Returns (kept indices [K] int64
  // in the order they were selected, their decayed scores [K]); boxes whose decayed score falls
  // below score_threshold are dropped.
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma, float score_threshold, "
      "int method) -> (Tensor, Tensor)");
  // input [N, C, H, W], rois [K, 5] (batch index, x1, y1, x2, y2) -> [K, C, pooled_height, pooled_width]
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  // grad [K, C, pooled_height, pooled_width] -> grad_input [batch_size, channels, height, width]
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width, int sampling_ratio, "
      "bool aligned) -> Tensor");
  m.def("_cuda_version() -> int", &cuda_version);
}

}  // namespace detkit

// `import detkit._C` loads the library (running the registrations above); the module itself is empty.
static struct PyModuleDef detkit_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&detkit_module); }
