"""The detections of a whole batch as fixed-shape tensors: :func:`select_batched`.

What :func:`detkit.models.postprocess.select_detections` does per image, written for export: one
batch, no Python branch on data, and outputs padded to ``detections_per_img``.

1. **Candidates.** ``scores [B, N, C]``: with ``multi_label`` every (box, class) pair (box-major),
   else each box's best class.
2. **Pre-NMS top-k** (``pre_nms_topk``): the ``k`` best of each image (``topk_per="image"``) or
   of each class (``"class"``, the per-class top-k of torchvision's SSD), computed on the scores
   with the candidates under the threshold masked out, so it is the threshold then the top-k of
   ``select_detections`` (the same set; only exactly equal scores at the cut may differ).
3. **Score threshold** ``score > score_thresh``: the candidates above it are gathered
   (``nonzero``: a data-dependent count, which the exported graph keeps dynamic).
4. **NMS** at ``nms_thresh`` within each (image, class), or each image with
   ``class_agnostic_nms``: one ``detkit.ops`` ``batched_nms`` call for the whole batch (in ONNX a
   ``NonMaxSuppression``, see :mod:`detkit.export.onnx_ops`).
5. **Cap and padding**: per image the ``detections_per_img`` best kept candidates, by decreasing
   score; rows past ``num_detections`` hold boxes 0, scores 0 and labels -1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.ops import batched_nms
from detkit.ops._ext import ext_loaded

__all__ = ["PAD_LABEL", "select_batched"]

PAD_LABEL = -1  # the label of a padding row (rows past num_detections)


def _batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """The compiled op itself where it is built (what an exported graph holds and ONNX translates;
    it takes zero boxes with no Python branch), else detkit's fallback (eager use only)."""
    if ext_loaded():
        return torch.ops.detkit.batched_nms(boxes, scores, groups, iou_threshold, "iou")
    return batched_nms(boxes, scores, groups, iou_threshold)


def _candidates(scores: Tensor, multi_label: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(candidate scores [B, M], box index [B, M], labels [B, M])`` of step 1."""
    batch, num_boxes, num_classes = scores.shape
    if multi_label:
        flat = scores.reshape(batch, num_boxes * num_classes)
        pair = torch.arange(num_boxes * num_classes, device=scores.device)
        box = (pair // num_classes).expand(batch, -1)
        return flat, box, (pair % num_classes).expand(batch, -1)
    best, labels = scores.max(dim=2)
    box = torch.arange(num_boxes, device=scores.device).expand(batch, -1)
    return best, box, labels


def select_batched(
    boxes: Tensor,
    scores: Tensor,
    *,
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
    multi_label: bool = False,
    pre_nms_topk: int | None = None,
    topk_per: str = "image",
    class_agnostic_nms: bool = False,
    nms_class_offset: float | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Threshold, top-k, NMS, cap and padding for a batch (see the module docstring).

    Args:
        boxes: ``[B, N, 4]`` xyxy pixels.
        scores: ``[B, N, C]`` class scores in [0, 1] (background excluded).
        score_thresh: candidates need ``score > score_thresh`` (>= 0).
        nms_thresh: IoU above which NMS suppresses.
        detections_per_img: ``K``, the detections kept (and the padded length) per image.
        multi_label: every class of a box above the threshold is a candidate.
        pre_nms_topk: candidates kept per image (or per class) before NMS; None: all.
        topk_per: ``"image"`` or ``"class"`` (needs ``multi_label``).
        class_agnostic_nms: one NMS per image over all classes.
        nms_class_offset: per-class NMS as ultralytics does it (``select_detections``' argument):
            the boxes shifted by ``label * nms_class_offset`` pixels, one NMS per image, so that
            the IoUs round as the eager model's; None: exact per-class NMS.

    Returns:
        ``boxes [B, K, 4]``, ``scores [B, K]``, ``labels [B, K]`` int64 (``PAD_LABEL`` on padding
        rows), ``num_detections [B]`` int64; the first ``num_detections[b]`` rows of image ``b``
        are its detections by decreasing score.
    """
    if topk_per not in ("image", "class") or (topk_per == "class" and not multi_label):
        raise ValueError(f"select_batched: topk_per must be 'image', or 'class' with multi_label; got {topk_per!r}")
    batch, num_boxes, num_classes = scores.shape
    if topk_per == "class" and pre_nms_topk is not None:
        # Per class the k best boxes (masked scores: under the threshold is -1), class-major.
        k = min(int(pre_nms_topk), num_boxes)
        masked = torch.where(scores > score_thresh, scores, torch.full_like(scores, -1.0)).transpose(1, 2)
        cand_scores, box = masked.topk(k, dim=2)  # [B, C, k]
        labels = torch.arange(num_classes, device=scores.device)[None, :, None].expand(batch, -1, k)
        cand_scores, box, labels = (t.reshape(batch, num_classes * k) for t in (cand_scores, box, labels))
    else:
        cand_scores, box, labels = _candidates(scores, multi_label)
        if pre_nms_topk is not None and int(pre_nms_topk) < cand_scores.shape[1]:
            masked = torch.where(cand_scores > score_thresh, cand_scores, torch.full_like(cand_scores, -1.0))
            cand_scores, top = masked.topk(int(pre_nms_topk), dim=1)
            box, labels = box.gather(1, top), labels.gather(1, top)
    num_candidates = cand_scores.shape[1]

    # Step 3: the candidates above the threshold, all images at once.
    flat_scores = cand_scores.reshape(-1)
    chosen = torch.nonzero(flat_scores > score_thresh).reshape(-1)  # [V] into B * M
    image = chosen // num_candidates
    chosen_labels = labels.reshape(-1)[chosen]
    chosen_boxes = boxes.gather(1, box[..., None].expand(-1, -1, 4)).reshape(-1, 4)[chosen]
    chosen_scores = flat_scores[chosen]
    if class_agnostic_nms or nms_class_offset is not None:
        groups = image
        if not class_agnostic_nms:
            nms_boxes = chosen_boxes + chosen_labels[:, None].to(chosen_boxes.dtype) * float(nms_class_offset)
        else:
            nms_boxes = chosen_boxes
    else:
        groups, nms_boxes = image * num_classes + chosen_labels, chosen_boxes
    keep = _batched_nms(nms_boxes, chosen_scores, groups, float(nms_thresh))

    # Step 5: kept scores back on the [B, M] grid (-inf elsewhere), the K best per image.
    kept = torch.full_like(flat_scores, float("-inf")).index_put((chosen[keep],), chosen_scores[keep])
    kept = kept.reshape(batch, num_candidates)
    count = min(int(detections_per_img), num_candidates)
    top_scores, top = kept.topk(count, dim=1)
    valid = top_scores > float("-inf")
    top_boxes = boxes.gather(1, box.gather(1, top)[..., None].expand(-1, -1, 4))
    out_boxes = torch.where(valid[..., None], top_boxes, torch.zeros_like(top_boxes))
    out_scores = torch.where(valid, top_scores, torch.zeros_like(top_scores))
    out_labels = torch.where(valid, labels.gather(1, top), torch.full_like(top, PAD_LABEL))
    missing = int(detections_per_img) - count
    if missing > 0:  # fewer candidates than detections_per_img (a static shape): pad
        out_boxes = F.pad(out_boxes, (0, 0, 0, missing))
        out_scores = F.pad(out_scores, (0, missing))
        out_labels = F.pad(out_labels, (0, missing), value=PAD_LABEL)
    return out_boxes, out_scores, out_labels, valid.sum(dim=1)
