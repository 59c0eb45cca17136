"""YOLOv8 / YOLO11 on detkit's default inference path (detkit.models.fuse.inference_copy: batch
norms folded, channels-last on the CPU, what Predictor runs) against ultralytics on the same
weights: every batch norm folded, the same detections as ultralytics' pipeline.

The reference is ultralytics' model as built, not its fused one: with a thousand-odd candidates of
random weights, folding moves boxes by a few 1e-5 px, enough to flip near-tie NMS decisions, and
ultralytics' own fused model keeps 300 detections on ivan.jpg where its unfused one keeps 298
(detkit's model as built, folded, and folded + channels-last all keep those 298)."""

from __future__ import annotations

import cv2
import pytest
import torch
from torch import nn

from detkit.apis import Predictor
from detkit.models.fuse import inference_copy
from yolov8_testing import SAMPLES, detkit_twin, import_ultralytics, ultralytics_model


def _matched(prediction: dict[str, torch.Tensor], det: torch.Tensor, score_tol: float, box_tol: float) -> bool:
    """The same detections (label, score, box within the tolerances) in any order: near-tied
    scores of two differently folded networks may sort either way."""
    labels, scores, boxes = (torch.as_tensor(prediction[k]) for k in ("labels", "scores", "boxes"))
    if labels.shape[0] != det.shape[0]:
        return False
    match = ((labels[:, None].long() == det[None, :, 5].long())
             & ((scores[:, None] - det[None, :, 4]).abs() <= score_tol)
             & ((boxes[:, None] - det[None, :, :4]).abs() <= box_tol).all(-1))
    return bool(match.any(1).all() and match.any(0).all())


@pytest.mark.parametrize("arch", ["yolov8n", "yolo11n"])
def test_every_batch_norm_is_folded_and_the_predictor_detects_as_ultralytics(arch: str):
    augment = import_ultralytics("data.augment")
    nms = import_ultralytics("utils.nms")
    ops = import_ultralytics("utils.ops")
    reference = ultralytics_model(arch, cls_bias=-3.0)
    model = detkit_twin(reference, arch)
    model.head.configure(score_thresh=0.25, nms_thresh=0.7, multi_label=False, detections_per_img=300)
    model.preprocess.input_size = (320, 320)
    fast = inference_copy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules()), "a batch norm left unfolded"
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model given is untouched
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in fast.modules() if isinstance(m, nn.Conv2d))  # fmt: skip
    predictor = Predictor(model, device="cpu")
    for path in SAMPLES:
        bgr = cv2.imread(str(path))
        boxed = augment.LetterBox((320, 320), auto=True, stride=32)(image=bgr)
        tensor = torch.from_numpy(boxed).permute(2, 0, 1)[None].flip(1).float() / 255
        with torch.no_grad():
            det = nms.non_max_suppression(reference(tensor), 0.25, 0.7, None, False, max_det=300)[0]
        det[:, :4] = ops.scale_boxes(tensor.shape[2:], det[:, :4], bgr.shape)
        assert det.shape[0] > 0, f"{path.name}: nothing to compare"
        (result,) = predictor(bgr)
        assert _matched({"labels": result.labels, "scores": result.scores, "boxes": result.boxes}, det, 1e-4, 1e-2), (
            path.name
        )
