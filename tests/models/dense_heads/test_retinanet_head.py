"""RetinaNetHead against torchvision's RetinaNetHead / RetinaNet on the same weights: raw outputs,
losses (L1 and GIoU, an image without objects) and detections, on small random feature maps."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from dense_head_testing import logit_sized_saved_tensors
from torch import nn
from torchvision.models.detection import retinanet as tv_retinanet

from detkit.models.anchors import AnchorGenerator
from detkit.models.dense_heads import RetinaNetHead
from detkit.models.dense_heads.fpn_dense_head import DenseOutputs
from detkit.structures import ImageList

CHANNELS, NUM_CLASSES = 64, 4
IMAGE = (96, 128)
GRIDS = [(12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]  # strides 8 .. 128 of a 96 x 128 batch


def _anchors() -> AnchorGenerator:
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (16, 32, 64, 128, 256))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)


def _twins(version: int) -> tuple[RetinaNetHead, tv_retinanet.RetinaNet]:
    torch.manual_seed(0)
    norm_layer = None if version == 1 else partial(nn.GroupNorm, 32)
    tv_head = tv_retinanet.RetinaNetHead(CHANNELS, 9, NUM_CLASSES, norm_layer=norm_layer)
    if version == 2:
        tv_head.regression_head._loss_type = "giou"
    for module in tv_head.modules():  # spread the outputs: random, not the initial constants
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.05)
    nn.init.zeros_(tv_head.classification_head.cls_logits.bias)
    backbone = nn.Identity()
    backbone.out_channels = CHANNELS
    theirs = tv_retinanet.RetinaNet(backbone, NUM_CLASSES, head=tv_head, score_thresh=0.2, detections_per_img=50)
    ours = RetinaNetHead(CHANNELS, NUM_CLASSES, norm=None if version == 1 else "gn",
                         box_loss="l1" if version == 1 else "giou", score_thresh=0.2, detections_per_img=50)
    renamed = {key.replace("classification_head", "cls_subnet").replace("regression_head", "box_subnet"): value
               for key, value in tv_head.state_dict().items()}
    ours.load_state_dict(renamed, strict=True)
    return ours, theirs


def _features() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(2, CHANNELS, h, w, generator=generator) for h, w in GRIDS]


def _targets() -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[10.0, 8.0, 50.0, 60.0], [40.0, 30.0, 120.0, 90.0], [70.0, 5.0, 90.0, 25.0]])
    return [{"boxes": boxes, "labels": torch.tensor([0, 3, 1])},
            {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}]


@pytest.mark.parametrize("version", [1, 2])
def test_outputs_losses_and_detections_equal_torchvision(version):
    ours, theirs = _twins(version)
    features = _features()
    raw = ours(features)
    their_raw = theirs.head(features)
    assert isinstance(raw, DenseOutputs) and raw.num_per_level == tuple(9 * h * w for h, w in GRIDS)
    torch.testing.assert_close(raw.maps["cls_logits"], their_raw["cls_logits"], rtol=0, atol=0)
    torch.testing.assert_close(raw.maps["bbox_reg"], their_raw["bbox_regression"], rtol=0, atol=0)

    batch = ImageList(torch.zeros(2, 3, *IMAGE), [IMAGE, (80, 100)])
    anchors = _anchors()(batch, features)
    losses = ours.loss(raw, anchors[0], _targets(), batch.image_sizes)
    their_losses = theirs.compute_loss(_targets(), their_raw, anchors)
    torch.testing.assert_close(losses["loss_classifier"], their_losses["classification"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(losses["loss_box_reg"], their_losses["bbox_regression"], rtol=1e-5, atol=1e-7)
    assert float(losses["loss_box_reg"].detach()) > 0

    ours.eval()
    detections = ours.predict(raw, anchors[0], batch.image_sizes)
    split = [n for n in raw.num_per_level]
    their_detections = theirs.postprocess_detections(
        {key: list(value.split(split, dim=1)) for key, value in their_raw.items()},
        [list(a.split(split)) for a in anchors], batch.image_sizes,
    )
    for our, their in zip(detections, their_detections):
        assert our["boxes"].shape[0] > 5 and our["scores"].unique().numel() == our["scores"].numel()
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(our[key], their[key], rtol=0, atol=1e-5, msg=key)


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="box_loss must be one of"):
        RetinaNetHead(64, 3, box_loss="smooth_l1")
    with pytest.raises(ValueError, match="prior_probability must be in"):
        RetinaNetHead(64, 3, prior_probability=1.0)
    with pytest.raises(RuntimeError, match="built without in_channels"):
        RetinaNetHead(None, 3)(_features())



@pytest.mark.parametrize("version", [1, 2])
def test_classification_loss_keeps_one_logit_sized_tensor(version):
    """The focal loss of every (anchor, class) pair keeps one [B, A, C] tensor for backward (its
    gradient), not torchvision's one-hot targets and ten intermediates: peak training memory."""
    ours, _ = _twins(version)
    features = _features()
    raw = ours(features)
    batch = ImageList(torch.zeros(2, 3, *IMAGE), [IMAGE, (80, 100)])
    anchors = _anchors()(batch, features)[0]
    count = logit_sized_saved_tensors(lambda: ours.loss(raw, anchors, _targets(), batch.image_sizes),
                                      raw.maps["cls_logits"])
    assert count == 1
