"""The Detector base: the input and targets contract, num_classes read from the head, loss merging,
and necks and heads sized from backbone.output_shape() (or checked against it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.anchors import AnchorGenerator
from detkit.models.backbones import DarknetTiny, ResNet, SSDLiteMobileNetV3
from detkit.models.box_coder import BoxCoder
from detkit.models.default_boxes import DefaultBoxGenerator
from detkit.models.dense_heads import RPN, RPNHead, SSDLiteHead, YOLOv3Head
from detkit.models.dense_heads.base import DenseHead
from detkit.models.detectors import SSD, FasterRCNN, YOLOv3
from detkit.models.detectors.base import Detector
from detkit.models.necks import FPN, YOLOv3Neck
from detkit.models.postprocess import select_detections
from detkit.models.preprocess import RCNNPreprocess
from detkit.models.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from detkit.models.zoo import build, yolov3_tiny_config
from detkit.ops import MultiScaleRoIAlign, box_iou, clip_boxes_to_image
from detkit.structures import ShapeSpec


class PointHead(DenseHead):
    """A dense head in a few lines: one class-score map and one box-delta map per level, priors are
    the anchors; the whole of what a new one-stage family writes besides its detector wiring."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scores = nn.Conv2d(channels, num_classes, 1)
        self.deltas = nn.Conv2d(channels, 4, 1)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        def flat(maps: list[Tensor], k: int) -> Tensor:
            return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, k) for m in maps], 1)

        return flat([self.scores(f) for f in features], self.num_classes), flat([self.deltas(f) for f in features], 4)

    def loss(self, raw, priors, targets, image_sizes):
        logits, deltas = raw
        labels = torch.zeros_like(logits)
        for index, target in enumerate(targets):
            if len(target["boxes"]):
                best = box_iou(priors, target["boxes"]).max(dim=1)
                positive = best.values > 0.5
                labels[index, positive, target["labels"][best.indices[positive]]] = 1.0
        return {"loss_cls": F.binary_cross_entropy_with_logits(logits, labels), "loss_box": deltas.abs().mean()}

    def predict(self, raw, priors, image_sizes):
        logits, deltas = raw
        return [
            select_detections(clip_boxes_to_image(self.box_coder.decode(d, priors), size), s.sigmoid(),
                              score_thresh=0.05, pre_nms_topk=100, nms_thresh=0.5, detections_per_img=10).as_dict()
            for s, d, size in zip(logits, deltas, image_sizes)
        ]  # fmt: skip


class PointDetector(Detector):
    """Its detector wiring: a backbone, the head, anchors, and the base does the rest."""

    def __init__(self, num_classes: int = 3, **kwargs) -> None:
        super().__init__()
        self.preprocess = RCNNPreprocess(min_size=64, max_size=96)
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=8, padding=1), nn.ReLU())
        self.head = PointHead(8, num_classes)
        self.anchors = AnchorGenerator(((24.0,),), ((1.0,),))
        self.init_classes(kwargs.get("num_classes_check"), kwargs.get("class_names"))

    def forward_batch(self, batch, targets):
        features = [self.backbone(batch.tensor)]
        raw = self.head(features)
        return self.head.train_or_predict(raw, self.anchors(batch, features)[0], batch.image_sizes, targets)


def _images_and_targets():
    images = [torch.rand(3, 60, 80), torch.rand(3, 64, 64)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 40.0, 40.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


def test_a_dense_detector_from_the_contract_trains_and_detects():
    torch.manual_seed(0)
    model = PointDetector(num_classes=3, class_names=["a", "b", "c"])
    images, targets = _images_and_targets()
    model.train()
    predictions, losses = model(images, targets)
    assert predictions == [] and set(losses) == {"loss_cls", "loss_box"}
    sum(losses.values()).backward()
    model.eval()
    predictions, losses = model(images)
    assert losses == {} and len(predictions) == 2
    for prediction, image in zip(predictions, images):
        assert prediction["boxes"].shape[0] > 0  # and back in input pixels:
        assert float(prediction["boxes"][:, 2].max()) <= image.shape[2]
        assert float(prediction["boxes"][:, 3].max()) <= image.shape[1]
        assert prediction["labels"].dtype == torch.int64


def test_training_needs_one_valid_target_per_image():
    model = PointDetector().train()
    images, targets = _images_and_targets()
    with pytest.raises(ValueError, match=r"PointDetector needs targets in training mode \(call .eval\(\) to detect\)"):
        model(images)
    with pytest.raises(ValueError, match="PointDetector: got 2 images but 1 targets"):
        model(images, targets[:1])
    with pytest.raises(ValueError, match="image 0: label 0 is 3, not below num_classes=3"):
        model(images, [{**targets[0], "labels": torch.tensor([3])}, targets[1]])
    model.eval()
    assert len(model(images, targets[:1])[0]) == 2  # eval mode ignores targets
    with pytest.raises(TypeError, match="non-empty list"):
        model([])
    with pytest.raises(TypeError, match="floating point"):
        model([torch.zeros(3, 8, 8, dtype=torch.uint8)])


def test_num_classes_comes_from_the_head_and_is_checked():
    model = PointDetector(num_classes=4)
    assert model.num_classes == 4 and model.class_names is None
    with pytest.raises(ValueError, match=r"PointDetector: num_classes=20 but its head has 4 classes"):
        model.init_classes(20, None)
    with pytest.raises(ValueError, match=r"got 2 class_names for the 3 classes of its head"):
        PointDetector(num_classes=3, class_names=["a", "b"])


def test_merge_losses_fails_on_a_duplicate_name():
    one, two = torch.tensor(1.0), torch.tensor(2.0)
    merged = Detector.merge_losses({"loss_a": one}, {"loss_b": two})
    assert list(merged) == ["loss_a", "loss_b"]
    with pytest.raises(KeyError, match="loss named 'loss_a'"):
        Detector.merge_losses({"loss_a": one}, {"loss_a": two})


def _faster_rcnn(depth: int, fpn_shapes=None, rpn_channels=None, num_classes: int = 3) -> FasterRCNN:
    return FasterRCNN(
        ResNet(depth, out_levels=("c2", "c3", "c4", "c5")),
        FPN(fpn_shapes, 32, extra_levels="maxpool"),
        RPN(RPNHead(rpn_channels, 3), AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5),
            pre_nms_topk_train=50, pre_nms_topk_test=50, post_nms_topk_train=20, post_nms_topk_test=20),
        RoIHeads(MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], 7, 2), TwoMLPHead(32, 7, 64),
                 FastRCNNPredictor(64, num_classes), num_classes, batch_size_per_image=32),
        RCNNPreprocess(min_size=64, max_size=96),
        num_classes=num_classes,
    )  # fmt: skip


@pytest.mark.parametrize("depth", [18, 50])
def test_fpn_and_rpn_size_themselves_for_resnet_18_and_50(depth):
    torch.manual_seed(0)
    model = _faster_rcnn(depth)
    expected = ResNet(depth, out_levels=("c2", "c3", "c4", "c5")).output_shape()
    assert model.neck.in_shapes == expected and model.rpn.head.in_channels == 32
    assert model.neck.lateral_convs["c5"][0].in_channels == expected["c5"].channels
    images, targets = _images_and_targets()
    model.train()
    _, losses = model(images, [{**targets[0], "labels": torch.tensor([1])}, targets[1]])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    model.eval()
    with torch.no_grad():
        assert len(model(images)[0]) == 2


def test_given_shapes_that_differ_from_the_backbone_name_both():
    resnet50 = ResNet(50, out_levels=("c2", "c3", "c4", "c5")).output_shape()
    with pytest.raises(ValueError, match=r"FPN: in_shapes \{'c2': \(256 ch, stride 4\).*differ from the backbone's "
                                         r"output_shape\(\) \{'c2': \(64 ch, stride 4\)"):
        _faster_rcnn(18, fpn_shapes=resnet50)
    _faster_rcnn(50, fpn_shapes=resnet50)  # the right shapes are accepted
    with pytest.raises(ValueError, match=r"RPNHead: in_channels=64 but the neck's levels .* have 32 channels"):
        _faster_rcnn(18, rpn_channels=64)


def test_num_classes_mismatch_on_a_two_stage_detector_names_both():
    with pytest.raises(ValueError, match=r"FasterRCNN: num_classes=20 but its roi_heads has 3 classes"):
        model = _faster_rcnn(18)
        model.init_classes(20, None)


def test_yolo_neck_and_head_size_themselves_like_the_explicit_config():
    torch.manual_seed(0)
    explicit = build(yolov3_tiny_config(2, input_size=(64, 64)))
    sized = YOLOv3(
        DarknetTiny(out_levels=("c4", "c5")), YOLOv3Neck(None, channels=(128, 256), depths=(0, 1)),
        YOLOv3Head(None, 2, anchors=explicit.head.anchors.tolist(), anchor_masks=((0, 1, 2), (3, 4, 5)),
                   mid_channels=(256, 512)),
        input_size=(64, 64),
    )  # fmt: skip
    assert sized.neck.in_shapes == explicit.neck.in_shapes and sized.head.in_shapes == explicit.head.in_shapes
    shapes = {key: value.shape for key, value in explicit.state_dict().items()}
    assert {key: value.shape for key, value in sized.state_dict().items()} == shapes
    wrong = {"c4": ShapeSpec(128, 16), "c5": ShapeSpec(1024, 32)}
    with pytest.raises(ValueError, match=r"YOLOv3Neck: in_shapes \{'c4': \(128 ch, stride 16\).*\{'c4': \(256 ch"):
        YOLOv3(DarknetTiny(out_levels=("c4", "c5")), YOLOv3Neck(wrong, (128, 256), (0, 1)), explicit.head)


def test_ssd_head_sizes_itself_from_the_backbone():
    boxes = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    model = SSD(SSDLiteMobileNetV3(), SSDLiteHead(None, boxes.num_anchors_per_location(), 3), boxes, 3,
                image_size=(64, 64))
    assert model.head.in_channels == model.backbone.out_channels
    with pytest.raises(ValueError, match="backbone gives channels"):
        SSD(SSDLiteMobileNetV3(), SSDLiteHead([8] * 6, boxes.num_anchors_per_location(), 3), boxes, 3)


def test_an_unsized_part_used_alone_says_how_to_size_it():
    with pytest.raises(RuntimeError, match="built without in_shapes"):
        FPN(None, 8)({"c3": torch.zeros(1, 8, 4, 4)})
    with pytest.raises(RuntimeError, match="without in_channels"):
        RPNHead(None, 3)([torch.zeros(1, 8, 4, 4)])
    fpn = FPN(None, 8)
    fpn.bind_in_shapes({"c3": ShapeSpec(16, 8)})
    assert list(fpn({"c3": torch.zeros(1, 16, 4, 4)})) == ["p3"]


def test_a_preprocess_module_or_its_settings_not_both():
    from detkit.models.preprocess import YOLOPreprocess

    explicit = build(yolov3_tiny_config(2, input_size=(64, 64)))
    stage = YOLOPreprocess((96, 96), "letterbox")
    model = YOLOv3(explicit.backbone, explicit.neck, explicit.head, preprocess=stage)
    assert model.preprocess is stage and model.input_size == (96, 96)
    with pytest.raises(ValueError, match=r"YOLOv3: got a preprocess module and also \['input_size'\]"):
        YOLOv3(explicit.backbone, explicit.neck, explicit.head, preprocess=stage, input_size=(64, 64))
