"""YOLOv8 / YOLO11 against ultralytics 8.4 on the same weights (its model built from its yaml with
a seed, the state dict converted): raw head outputs, decoded boxes and scores, and detections on the
sample photos through ultralytics' own LetterBox + non_max_suppression + scale_boxes pipeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from yolov8_testing import SAMPLES, detkit_twin, import_ultralytics, ultralytics_model


def _raw_and_decoded(model, images: torch.Tensor):
    with torch.no_grad():
        raw = model.head(model.neck(model.backbone(images)))
        return raw, model.head.decode(raw)


@pytest.mark.parametrize("arch", ["yolov8n", "yolo11n"])
@pytest.mark.parametrize("size", [(640, 640), (320, 416)])
def test_raw_outputs_and_decoded_boxes_equal_ultralytics(arch: str, size: tuple[int, int]):
    ops = import_ultralytics("utils.ops")
    reference = ultralytics_model(arch)
    model = detkit_twin(reference, arch)
    images = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        decoded, raw_ref = reference(images)
    raw, (boxes, scores) = _raw_and_decoded(model, images)
    box_channels = 4 * model.head.reg_max
    assert all(level.shape[1] == box_channels + 80 for level in raw)
    torch.testing.assert_close(torch.cat([r[:, :box_channels].flatten(2) for r in raw], 2), raw_ref["boxes"],
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat([r[:, box_channels:].flatten(2) for r in raw], 2), raw_ref["scores"],
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes, ops.xywh2xyxy(decoded[:, :4].transpose(1, 2)), rtol=0, atol=1e-3)
    torch.testing.assert_close(scores, decoded[:, 4:].transpose(1, 2), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["yolov8s", "yolov8m", "yolo11s", "yolo11m"])
def test_other_scales_build_convert_and_equal_ultralytics(arch: str):
    reference = ultralytics_model(arch)
    model = detkit_twin(reference, arch)
    # ultralytics' parameters, less the fixed DFL bins (a buffer in detkit)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for name, p in reference.named_parameters() if ".dfl." not in name
    )
    images = torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        decoded, _ = reference(images)
    _, (boxes, scores) = _raw_and_decoded(model, images)
    torch.testing.assert_close(scores, decoded[:, 4:].transpose(1, 2), rtol=0, atol=1e-5)
    torch.testing.assert_close(boxes[..., 2:] - boxes[..., :2], decoded[:, 2:4].transpose(1, 2), rtol=0, atol=1e-3)


def _ultralytics_detect(reference, bgr: np.ndarray, imgsz: int, conf: float, multi_label: bool):
    """ultralytics' predictor steps: LetterBox (rect, as model.predict), uint8 -> RGB float / 255,
    the model, non_max_suppression (IoU 0.7, 300), scale_boxes to the photo."""
    augment = import_ultralytics("data.augment")
    nms = import_ultralytics("utils.nms")
    ops = import_ultralytics("utils.ops")
    letterboxed = augment.LetterBox((imgsz, imgsz), auto=True, stride=32)(image=bgr)
    tensor = torch.from_numpy(letterboxed).permute(2, 0, 1)[None].flip(1).float() / 255
    with torch.no_grad():
        prediction = reference(tensor)
    det = nms.non_max_suppression(prediction, conf, 0.7, None, False, multi_label=multi_label, max_det=300)[0]
    det[:, :4] = ops.scale_boxes(tensor.shape[2:], det[:, :4], bgr.shape)
    return tensor, det


@pytest.mark.parametrize("arch", ["yolov8n", "yolo11n"])
@pytest.mark.parametrize(("imgsz", "multi_label"), [(640, False), (320, False), (320, True)])
def test_detections_on_the_sample_photos_equal_ultralytics_pipeline(arch: str, imgsz: int, multi_label: bool):
    reference = ultralytics_model(arch, cls_bias=-4.0)  # random weights: raise the scores to detect
    model = detkit_twin(reference, arch)
    conf = 0.12  # thousands of candidates, some boxes above it in several classes
    model.head.configure(score_thresh=conf, nms_thresh=0.7, multi_label=multi_label, detections_per_img=300)
    model.preprocess.input_size = (imgsz, imgsz)
    assert SAMPLES
    for path in SAMPLES:
        bgr = cv2.imread(str(path))
        letterboxed, det = _ultralytics_detect(reference, bgr, imgsz, conf, multi_label)
        image = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255
        batch, _ = model.preprocess([image])
        assert torch.equal(batch.tensor, letterboxed), path.name  # the same network input, bit for bit
        with torch.no_grad():
            (prediction,), _ = model([image])
        assert det.shape[0] > 0, f"{path.name}: ultralytics detects nothing, the comparison is empty"
        assert torch.equal(prediction["labels"], det[:, 5].long()), path.name
        torch.testing.assert_close(prediction["scores"], det[:, 4], rtol=0, atol=1e-5)
        torch.testing.assert_close(prediction["boxes"], det[:, :4], rtol=0, atol=1e-3)


def test_a_batch_of_photos_of_different_shapes_is_letterboxed_square_and_detected_per_image():
    # ultralytics' predictor letterboxes a batch of different shapes to the full square (auto=False).
    augment = import_ultralytics("data.augment")
    nms = import_ultralytics("utils.nms")
    ops = import_ultralytics("utils.ops")
    reference = ultralytics_model("yolov8n", cls_bias=-4.0)
    model = detkit_twin(reference, "yolov8n")
    model.head.configure(score_thresh=0.12, multi_label=False)
    model.preprocess.input_size = (320, 320)
    photos = [cv2.imread(str(path)) for path in SAMPLES]
    assert len({p.shape for p in photos}) > 1
    boxed = [augment.LetterBox((320, 320), auto=False, stride=32)(image=p) for p in photos]
    tensor = torch.from_numpy(np.stack(boxed)).permute(0, 3, 1, 2).flip(1).float() / 255
    with torch.no_grad():
        dets = nms.non_max_suppression(reference(tensor), 0.12, 0.7, None, False, max_det=300)
        predictions, _ = model([torch.from_numpy(p[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255 for p in photos])
    for photo, det, prediction in zip(photos, dets, predictions):
        det[:, :4] = ops.scale_boxes(tensor.shape[2:], det[:, :4], photo.shape)
        assert det.shape[0] > 0
        assert torch.equal(prediction["labels"], det[:, 5].long())
        torch.testing.assert_close(prediction["scores"], det[:, 4], rtol=0, atol=1e-5)
        torch.testing.assert_close(prediction["boxes"], det[:, :4], rtol=0, atol=1e-3)
