"""Helpers of the R-CNN export tests: seeded models with calibrated statistics, the test photos at
the graph's input size, and a tie-tolerant comparison of detections (a unique basename)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from export_testing import BOX_ATOL, SAMPLE_PHOTOS, SCORE_ATOL, load_rgb
from torch import Tensor, nn

# The export modules import detkit.ops, so the tests' skip conditions (torch.ops.detkit.*) see its ops.
from detkit.config import instantiate, load_config
from detkit.export.onnx_export import export_onnx
from detkit.export.rcnn import RCNNExport
from detkit.models.layers import FrozenBatchNorm2d

ROOT = Path(__file__).resolve().parents[2]
INPUT_SIZE = (336, 448)  # the photos are resized to it; the model resizes them to 320 x 426
MASK_IOU = 0.99

# config, score_thresh, calibrate, box tolerance (px): with these seeded weights the photos give detections and the
# blank image none. MobileNetV3's default initialisation gives features ~1e-9 (every RoI alike), so
# its norms are calibrated on a photo; the ResNets keep theirs (calibrated, 50 random layers amplify
# float rounding 40 times more: 5e-5 relative in the FPN maps between PyTorch and onnxruntime).
FAMILIES = {
    "faster_rcnn_r50_fpn": ("configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py", 0.1, False, BOX_ATOL),
    "faster_rcnn_mobilenetv3_fpn": ("configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_1x_coco.py", 0.016, True, 0.02),
    "mask_rcnn_r50_fpn": ("configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", 0.1, False, BOX_ATOL),
}
# tools/benchmark_export.py scales the box deltas of Mask R-CNN R50-FPN's seeded RPN and box
# predictor by this (``build_model(..., delta_scale=)``, weights and biases). Random weights give RPN
# deltas of median |t| 0.44 (proposals moved by half a box, resized by e^0.5) and box-head deltas of
# 1.2 (0.12 box after the coder's weights 10): a box's float rounding, ~4e-5 of its size from the
# random ResNet-50 on, is multiplied by them. On dog.jpg at 320 and 800 px eager float32 is then
# 0.012 / 0.014 px from the same model in float64, and onnxruntime as far (0.012 / 0.014 px: float
# rounding, no convention difference), over the 0.01 px check. Scaled by 0.25 (median |t| 0.11 and
# 0.38, a trained model's order) both stay within 0.0007 px of float64 at 800 px. The tests keep
# the unscaled model: scaled, one mask of photo 2 differs in onnxruntime (test_rcnn_onnx.py's xfail).
DELTA_SCALES = {"mask_rcnn_r50_fpn": 0.25}
# Keypoint R-CNN (tests/export/test_keypoint_rcnn_onnx.py, not in FAMILIES: its outputs add keypoints).
# One class: softmax scores of the seeded model sit near 0.5-0.7, so 0.6 gives the photos a few
# detections and the blank image none.
KEYPOINT_FAMILIES = {
    "keypoint_rcnn_r50_fpn": ("configs/keypoint_rcnn/keypoint_rcnn_r50_fpn_1x_coco.py", 0.6, False, BOX_ATOL),
}
# The seeded keypoint head's last layer (He-normal init after eight random convs) gives heat-map
# logits of magnitude ~20, whose float rounding between PyTorch and onnxruntime (2.5e-5 of the
# value, from the FPN maps on) would be 5e-4 absolute: its weights are scaled down to O(1) logits.
KEYPOINT_LOGIT_SCALE = 0.1
# MobileNetV3 with calibrated random norms: onnxruntime's and PyTorch's convolutions round
# differently by ~7e-6 of the FPN maps, up to 0.014 px on a 270 px box of person.jpg (scores still
# agree to 5e-6); the ResNets with their own initialisation stay within 0.01 px.


def photo_at(index: int, size: tuple[int, int] = INPUT_SIZE) -> Tensor:
    """Sample photo ``index`` (detkit/model_data/samples/*.jpg) resized to ``size``, ``[3, H, W]``."""
    image = load_rgb(SAMPLE_PHOTOS[index % len(SAMPLE_PHOTOS)])
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


def calibrate_norms(model: nn.Module, image: Tensor) -> nn.Module:
    """Give the backbone's frozen norms the statistics of their inputs on ``image`` (weight 1,
    bias 0: each norm standardises its input), so that seeded random weights give varied,
    non-degenerate detections (MobileNetV3's default initialisation makes its features ~1e-9,
    every RoI alike). Random affine weights on top would amplify float rounding (boxes 0.012 px
    apart between PyTorch and onnxruntime instead of < 0.01)."""

    def calibrate(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        module.running_mean.copy_(inputs[0].mean((0, 2, 3)))
        module.running_var.copy_(inputs[0].var((0, 2, 3)))
        module.weight.fill_(1.0)
        module.bias.zero_()

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.backbone.modules()
             if isinstance(m, FrozenBatchNorm2d)]  # fmt: skip
    with torch.no_grad():
        model.backbone(model.preprocess.normalize(image)[None])
    for hook in hooks:
        hook.remove()
    return model


def build_model(family: str, min_size: int = 320, delta_scale: float = 1.0) -> nn.Module:
    """A seeded (calibrated) eval-mode model of ``family`` (a key of :data:`FAMILIES` or
    :data:`KEYPOINT_FAMILIES`) resizing the short side to ``min_size`` (the long side at most
    ``min_size * 5 // 3``; 320: the tests'), the RPN's and box head's box deltas scaled by
    ``delta_scale`` (see :data:`DELTA_SCALES`)."""
    config_path, score_thresh, calibrate, _ = {**FAMILIES, **KEYPOINT_FAMILIES}[family]
    torch.manual_seed(0)
    overrides = [f"model.preprocess.min_size={min_size}", f"model.preprocess.max_size={min_size * 5 // 3}"]
    config = load_config(ROOT / config_path, overrides + [f"model.roi_heads.score_thresh={score_thresh}"])
    model = instantiate(config.model).eval()
    with torch.no_grad():
        if getattr(model.roi_heads, "has_keypoint", False):
            model.roi_heads.keypoint_head.keypoint_logits.weight.mul_(KEYPOINT_LOGIT_SCALE)
        if delta_scale != 1.0:
            for layer in (model.rpn.head.bbox_pred, model.roi_heads.box_predictor.bbox_pred):
                layer.weight.mul_(delta_scale)
                layer.bias.mul_(delta_scale)
    return calibrate_norms(model, photo_at(0)) if calibrate else model


def _mask_iou(first: Tensor, second: Tensor) -> float:
    a, b = first > 0.5, second > 0.5
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def assert_matching_detections(
    expected: dict[str, Tensor], actual: dict[str, Tensor | np.ndarray], box_atol: float = BOX_ATOL
) -> None:
    """As many detections; each expected one has an actual one of the same label, score within
    1e-4, box within ``box_atol`` (0.01 px; and mask IoU >= 0.99; keypoints within ``box_atol``
    and keypoint scores within 1e-4); detections of equal scores may
    come in any order (seeded random weights give exact ties), otherwise the order is the same."""
    actual = {key: torch.as_tensor(np.asarray(value)) for key, value in actual.items()}
    count = expected["labels"].shape[0]
    assert actual["labels"].shape[0] == count, (actual["labels"].shape, count)
    unmatched = list(range(count))
    for index in range(count):
        for position, other in enumerate(unmatched):
            if (
                int(actual["labels"][other]) == int(expected["labels"][index])
                and abs(float(actual["scores"][other]) - float(expected["scores"][index])) <= SCORE_ATOL
                and float((actual["boxes"][other] - expected["boxes"][index]).abs().max()) <= box_atol
            ):
                if "masks" in expected:
                    iou = _mask_iou(expected["masks"][index], actual["masks"][other])
                    assert iou >= MASK_IOU, f"detection {index}: mask IoU {iou:.4f}"
                if "keypoints" in expected:
                    point_error = float((actual["keypoints"][other] - expected["keypoints"][index]).abs().max())
                    assert point_error <= box_atol, f"detection {index}: keypoints {point_error:.4f} px apart"
                    score_error = float((actual["keypoint_scores"][other] - expected["keypoint_scores"][index]).abs().max())
                    assert score_error <= SCORE_ATOL, f"detection {index}: keypoint scores {score_error:.2e} apart"
                del unmatched[position]
                break
        else:
            same = torch.nonzero(actual["labels"] == expected["labels"][index])[:, 0]
            box_error = (actual["boxes"][same] - expected["boxes"][index]).abs().amax(1)
            nearest = int(same[box_error.argmin()]) if same.numel() else -1
            raise AssertionError(
                f"detection {index} (label {int(expected['labels'][index])}, score "
                f"{float(expected['scores'][index]):.6f}, box {expected['boxes'][index].tolist()}) has no match; "
                f"nearest of its label: box error {float(box_error.min()) if same.numel() else None}, score "
                f"{float(actual['scores'][nearest]) if same.numel() else None}"
            )
    # Same order, up to ties: the actual scores are in the expected (decreasing) order.
    assert bool((actual["scores"][1:] <= actual["scores"][:-1] + SCORE_ATOL).all())


def unpad_outputs(outputs: tuple, names: tuple[str, ...]) -> list[dict[str, Tensor]]:
    """Padded outputs (``boxes [B, K, 4]`` ... ``num_detections [B]``, ``masks [B, K, H, W]``)
    -> per image dicts of the first ``num_detections[b]`` rows."""
    values = {name: torch.as_tensor(np.asarray(output)) for name, output in zip(names, outputs)}
    counts = values.pop("num_detections").tolist()
    return [{name: value[b, :n] for name, value in values.items()} for b, n in enumerate(counts)]


def export_rcnn(model: nn.Module, path: Path, size: tuple[int, int], batch_size: int = 2) -> tuple[nn.Module, object]:
    """``(RCNNExport module, onnxruntime session)`` of ``model`` exported (dynamic batch) at
    ``size`` with the first ``batch_size`` photos as the example input."""
    import onnxruntime as ort

    module = RCNNExport(model, size)
    example = torch.stack([photo_at(i, size) for i in range(batch_size)])
    export_onnx(module, path, example=example, dynamic=True)
    return module, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_unpadded(session: object, names: tuple[str, ...], images: list[Tensor]) -> list[dict[str, Tensor]]:
    """The session on the stacked ``images``: per image dicts of its detections (:func:`unpad_outputs`)."""
    return unpad_outputs(tuple(session.run(None, {"images": torch.stack(images).numpy()})), names)

