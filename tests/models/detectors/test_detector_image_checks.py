"""Every detector refuses an empty image ([3, 0, 0], [3, 0, 5]) and a NaN or inf image with one
line naming the detector, the image's index and its shape, in eval and in training (R-CNN, SSD,
YOLO, MTCNN: the Detector base's check_inputs), before any work is done."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from detkit.models.anchors import AnchorGenerator
from detkit.models.backbones import ResNet, SSDLiteMobileNetV3
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads import RPN, RPNHead, SSDLiteHead
from detkit.models.detectors import MTCNN, SSD, FasterRCNN
from detkit.models.detectors.base import check_image_values
from detkit.models.necks import FPN
from detkit.models.preprocess import RCNNPreprocess
from detkit.models.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from detkit.models.zoo import build_yolov3
from detkit.ops import MultiScaleRoIAlign


def _faster_rcnn() -> nn.Module:
    return FasterRCNN(
        ResNet(18, out_levels=("c2", "c3", "c4", "c5")),
        FPN(None, 16, extra_levels="maxpool"),
        RPN(RPNHead(None, 3), AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),
            pre_nms_topk_train=20, pre_nms_topk_test=20, post_nms_topk_train=10, post_nms_topk_test=10),
        RoIHeads(MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2), TwoMLPHead(16, 7, 32),
                 FastRCNNPredictor(32, 3), 3, batch_size_per_image=16),
        RCNNPreprocess(min_size=64, max_size=96),
    )  # fmt: skip


def _ssd() -> nn.Module:
    boxes = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    return SSD(SSDLiteMobileNetV3(), SSDLiteHead(None, boxes.num_anchors_per_location(), 3), boxes, 3,
               image_size=(64, 64))


def _yolo() -> nn.Module:
    return build_yolov3("tiny", 3, input_size=(64, 64))


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "FasterRCNN": _faster_rcnn, "SSD": _ssd, "YOLOv3": _yolo, "MTCNN": MTCNN,
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def detector(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return BUILDERS[request.param]()


def _nan_image() -> torch.Tensor:
    image = torch.rand(3, 40, 48)
    image[1, 5, 7] = float("nan")
    return image


def _inf_image() -> torch.Tensor:
    image = torch.rand(3, 40, 48)
    image[0, :2, 0] = float("inf")
    return image


BAD_IMAGES = {
    "0x0": (lambda: torch.zeros(3, 0, 0), r"image 1 is empty: shape \[3, 0, 0\]"),
    "0x5": (lambda: torch.zeros(3, 0, 5), r"image 1 is empty: shape \[3, 0, 5\]"),
    "5x0": (lambda: torch.zeros(3, 5, 0), r"image 1 is empty: shape \[3, 5, 0\]"),
    "nan": (_nan_image, r"image 1 \(shape \[3, 40, 48\]\) has 1 NaN or infinite values of 5760"),
    "inf": (_inf_image, r"image 1 \(shape \[3, 40, 48\]\) has 2 NaN or infinite values"),
}


def _targets(count: int) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]), "labels": torch.tensor([0])} for _ in range(count)]


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_detector_refuses_empty_and_non_finite_images(detector: nn.Module, case: str, mode: str) -> None:
    make, pattern = BAD_IMAGES[case]
    images = [torch.rand(3, 40, 48), make()]
    detector.train(mode == "train")
    targets = _targets(2) if mode == "train" else None
    with pytest.raises(ValueError) as caught:
        detector(images, targets)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{type(detector).__name__}: ")
    assert re.search(pattern, message), message


def test_good_images_pass_and_uint8_images_are_not_scanned() -> None:
    images = [torch.rand(3, 4, 5), torch.full((3, 2, 2), 255, dtype=torch.uint8)]
    check_image_values(images, "Owner")  # no error
    with pytest.raises(ValueError, match=r"^Owner: image 0 is empty"):
        check_image_values([torch.zeros(3, 0, 4, dtype=torch.uint8)], "Owner")


def test_check_is_skipped_while_compiling() -> None:
    """The value scan is data-dependent: skipped under torch.compile so the model stays
    export-clean (the shape check, which is static, stays)."""

    def scan(image: torch.Tensor) -> torch.Tensor:
        check_image_values([image], "Owner")
        return image * 2

    compiled = torch.compile(scan, fullgraph=True, backend="eager")
    assert compiled(torch.ones(3, 2, 2)).sum() == 24


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_mtcnn_detect_checks_its_images_too(case: str) -> None:
    make, pattern = BAD_IMAGES[case]
    with pytest.raises(ValueError, match=r"^MTCNN: " + pattern):
        MTCNN().detect([torch.rand(3, 40, 48), make()])
