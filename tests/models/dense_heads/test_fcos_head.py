"""FCOSHead against torchvision's FCOSHead / FCOS on the same weights: raw outputs, matching and
losses (centre sampling, level ranges, an image without objects) and detections, on small random maps."""

from __future__ import annotations

import pytest
import torch
from dense_head_testing import logit_sized_saved_tensors
from torch import nn
from torchvision.models.detection import fcos as tv_fcos

from detkit.models.anchors import AnchorGenerator
from detkit.models.convert.torchvision_dense import _tower_key
from detkit.models.dense_heads import FCOSHead
from detkit.structures import ImageList

CHANNELS, NUM_CLASSES = 64, 4
IMAGE = (192, 256)
GRIDS = [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]  # strides 8 .. 128


def _twins() -> tuple[FCOSHead, tv_fcos.FCOS]:
    torch.manual_seed(0)
    tv_head = tv_fcos.FCOSHead(CHANNELS, 1, NUM_CLASSES)
    for module in tv_head.modules():  # spread the outputs: random, not the initial constants
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.05)
    nn.init.zeros_(tv_head.classification_head.cls_logits.bias)
    nn.init.constant_(tv_head.regression_head.bbox_reg.bias, 1.0)  # distances of about a stride
    backbone = nn.Identity()
    backbone.out_channels = CHANNELS
    theirs = tv_fcos.FCOS(backbone, NUM_CLASSES, head=tv_head, score_thresh=0.2, detections_per_img=50)
    ours = FCOSHead(CHANNELS, NUM_CLASSES, score_thresh=0.2, detections_per_img=50)
    renamed = {}
    for key, value in tv_head.state_dict().items():
        subnet, rest = key.split(".", 1)
        renamed[{"classification_head": "cls_subnet", "regression_head": "box_subnet"}[subnet] + "."
                + _tower_key(rest, fcos=True)] = value
    ours.load_state_dict(renamed, strict=True)
    return ours, theirs


def _features() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, CHANNELS, h, w, generator=generator) for h, w in GRIDS]


def _targets() -> list[dict[str, torch.Tensor]]:
    # small (P3), medium, large (P5+) and a box inside another: the smaller one wins a shared point
    boxes = torch.tensor([[10.0, 8.0, 40.0, 44.0], [60.0, 30.0, 180.0, 150.0], [0.0, 0.0, 256.0, 192.0],
                          [90.0, 60.0, 130.0, 100.0]])
    return [{"boxes": boxes, "labels": torch.tensor([0, 3, 1, 2])},
            {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}]


def test_outputs_losses_and_detections_equal_torchvision():
    ours, theirs = _twins()
    features = _features()
    raw = ours(features)
    their_raw = theirs.head(features)
    assert raw.num_per_level == tuple(h * w for h, w in GRIDS)
    for key, their_key in (("cls_logits", "cls_logits"), ("bbox_reg", "bbox_regression"),
                           ("bbox_ctrness", "bbox_ctrness")):
        torch.testing.assert_close(raw.maps[key], their_raw[their_key], rtol=0, atol=0, msg=key)
    assert float(raw.maps["bbox_reg"].detach().min()) >= 0  # distances through a ReLU

    batch = ImageList(torch.zeros(2, 3, *IMAGE), [IMAGE, (160, 200)])
    points = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)(batch, features)
    matches = ours.match(points[0], _targets(), raw.num_per_level)
    assert set(matches[0].unique().tolist()) == {-1, 0, 1, 2, 3} and bool((matches[1] == -1).all())
    losses = ours.loss(raw, points[0], _targets(), batch.image_sizes)
    their_losses = theirs.compute_loss(_targets(), their_raw, points, list(raw.num_per_level))
    for key, their_key in (("loss_classifier", "classification"), ("loss_box_reg", "bbox_regression"),
                           ("loss_centerness", "bbox_ctrness")):
        torch.testing.assert_close(losses[key], their_losses[their_key], rtol=1e-5, atol=1e-7, msg=key)

    ours.eval()
    detections = ours.predict(raw, points[0], batch.image_sizes)
    split = list(raw.num_per_level)
    their_detections = theirs.postprocess_detections(
        {key: list(value.split(split, dim=1)) for key, value in their_raw.items()},
        [list(p.split(split)) for p in points], batch.image_sizes,
    )
    for our, their in zip(detections, their_detections):
        assert our["boxes"].shape[0] > 5 and our["scores"].unique().numel() == our["scores"].numel()
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(our[key], their[key], rtol=0, atol=1e-5, msg=key)


def test_settings_and_errors():
    head = FCOSHead(64, 3)
    assert (head.score_thresh, head.nms_thresh, head.detections_per_img, head.num_anchors) == (0.2, 0.6, 100, 1)
    assert head.center_sampling_radius == 1.5 and head.range_factors == (4.0, 8.0)
    with pytest.raises(ValueError, match="differ in channels"):
        from detkit.structures import ShapeSpec

        FCOSHead(None, 3).bind_in_shapes({"p3": ShapeSpec(64, 8), "p4": ShapeSpec(128, 16)})


def test_classification_loss_keeps_one_logit_sized_tensor():
    """As RetinaNet's: the focal loss keeps only its [B, A, C] gradient for backward (peak memory)."""
    ours, _ = _twins()
    features = _features()
    raw = ours(features)
    batch = ImageList(torch.zeros(2, 3, *IMAGE), [IMAGE, (160, 200)])
    points = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)(batch, features)[0]
    count = logit_sized_saved_tensors(lambda: ours.loss(raw, points, _targets(), batch.image_sizes),
                                      raw.maps["cls_logits"])
    assert count == 1
