"""The inference fast path: batch norms folded into their convs, channels-last, for every family.

Each family's fast copy (:func:`inference_copy`: folded + channels-last on the CPU) gives the
detections of the model as built within the tolerances of that family's parity tests (R-CNN and
SSD against torchvision: scores 1e-5, boxes 1e-3 px; YOLO against OpenCV: scores 1e-4, boxes
0.01 px; MTCNN against facenet-pytorch: probabilities 1e-4, boxes and landmarks 1 px), and the
model it was made from is left as it was (weights, mode, modules).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from detkit.config import instantiate, load_config
from detkit.models.fuse import (
    fold_batch_norms,
    fold_conv_bn,
    inference_copy,
    use_channels_last,
)
from detkit.models.layers import FrozenBatchNorm2d
from detkit.models.packed_conv import PackedConv2d, packing_available

REPO_ROOT = Path(__file__).resolve().parents[2]
PHOTO = REPO_ROOT / "detkit" / "model_data" / "samples" / "dog.jpg"

# config, extra overrides, tolerances (score / probability, box px) of the family's parity tests
FAMILIES = {
    "yolov3_tiny": ("configs/yolo/yolov3_tiny_320_shapes.py", ["model.head.score_thresh=0.01"], 1e-4, 0.01),
    "yolov3_d53": ("configs/yolo/yolov3_d53_416_voc.py", ["model.head.score_thresh=0.2"], 1e-4, 0.01),
    "ssd300": ("configs/ssd/ssd300_vgg16_120e_voc.py", [], 1e-5, 1e-3),
    "ssdlite": ("configs/ssd/ssdlite320_mobilenetv3_shapes.py", [], 1e-5, 1e-3),
    "faster_rcnn_r18": ("configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py", [], 1e-5, 1e-3),
    "faster_rcnn_mobilenetv3": ("configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_1x_coco.py",
                                ["model.roi_heads.score_thresh=0.0"], 1e-5, 1e-3),
    "mask_rcnn_r18": ("configs/mask_rcnn/mask_rcnn_r18_fpn_1x_shapes.py", [], 1e-5, 1e-3),
    "mtcnn": ("configs/mtcnn/mtcnn_facenet_wider_face.py", ["model.thresholds=(0.5, 0.5, 0.5)"], 1e-4, 1.0),
}
# the families whose model declares ``prepack_convs`` (one fixed input size): YOLOv3
PACKED_FAMILIES = ("yolov3_tiny", "yolov3_d53")


def perturb_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random statistics and affine values in every batch norm, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                size = module.running_mean.shape
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
    return model


def norms(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)) for m in model.modules())


def assert_same_detections(fast: dict[str, Tensor], plain: dict[str, Tensor], score_tol: float,
                           box_tol: float) -> None:
    """Every detection of one has a twin in the other: same label, score and box (landmarks,
    mask probabilities) within the tolerances; paired by assignment, so that the order of
    near-tied scores does not matter."""
    assert fast["boxes"].shape == plain["boxes"].shape, (fast["boxes"].shape, plain["boxes"].shape)
    cost = torch.maximum((fast["boxes"][:, None] - plain["boxes"][None]).abs().amax(-1) / box_tol,
                         (fast["scores"][:, None] - plain["scores"][None]).abs() / score_tol)
    cost[fast["labels"][:, None] != plain["labels"][None]] = float("inf")
    if "landmarks" in plain:
        flat_fast, flat_plain = fast["landmarks"].flatten(1), plain["landmarks"].flatten(1)
        cost = torch.maximum(cost, (flat_fast[:, None] - flat_plain[None]).abs().amax(-1) / box_tol)
    rows, cols = linear_sum_assignment(torch.nan_to_num(cost, posinf=1e30).double().numpy())
    worst = float(cost[rows, cols].max()) if len(rows) else 0.0
    assert worst <= 1.0, f"a detection without a twin within the tolerances (cost {worst:.3g})"
    if "masks" in plain:  # pasted mask probabilities: the Mask R-CNN parity test's 1e-5, per pixel
        torch.testing.assert_close(fast["masks"][rows], plain["masks"][cols], rtol=0, atol=1e-4)


def photo() -> Tensor:
    image = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (256, 192), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255)


def build(name: str) -> nn.Module:
    path, extra, _, _ = FAMILIES[name]
    path = REPO_ROOT / path
    torch.manual_seed(0)
    cfg = load_config(path, list(load_config(path).get("test_overrides", [])) + extra)
    return perturb_norms(instantiate(cfg.model))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_fast_copy_detects_as_the_model_and_leaves_it_untouched(name: str):
    model = build(name).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    modules_before = [type(m) for m in model.modules()]
    fast = inference_copy(model)
    # the model given: still training, same weights, same modules (norms not folded)
    assert model.training and all(m.training for m in model.modules() if isinstance(m, nn.Dropout))
    assert [type(m) for m in model.modules()] == modules_before
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not fast.training
    if norms(model):
        assert norms(fast) == 0, "every batch norm of the eval copy is folded"
    assert use_channels_last(fast)  # the CPU: NHWC weights
    assert any(m.weight.is_contiguous(memory_format=torch.channels_last) and m.weight.shape[-1] > 1
               for m in fast.modules() if isinstance(m, nn.Conv2d))

    images = [photo()]
    with torch.no_grad():
        plain = model.eval()(images)[0][0]
        quick = fast(images)[0][0]
    _, _, score_tol, box_tol = FAMILIES[name]
    assert plain["boxes"].shape[0] > 0, "a test that compares nothing"
    assert_same_detections(quick, plain, score_tol, box_tol)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("frozen", [False, True])
def test_fold_conv_bn_equals_conv_then_norm(bias: bool, frozen: bool):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=bias)
    norm = perturb_norms(FrozenBatchNorm2d(6, eps=1e-3) if frozen else nn.BatchNorm2d(6, eps=1e-3)).eval()
    x = torch.randn(2, 4, 9, 11)
    torch.testing.assert_close(fold_conv_bn(conv, norm)(x), norm(conv(x)), rtol=1e-5, atol=1e-6)


def test_only_fixed_norms_after_a_conv_are_folded():
    unit = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4),
                         nn.Conv2d(4, 5, 1), nn.GroupNorm(1, 5))
    assert fold_batch_norms(unit) == 0  # train mode: the statistics still move
    assert fold_batch_norms(unit.eval()) == 1
    assert [type(m) for m in unit] == [nn.Conv2d, nn.Identity, nn.ReLU, nn.BatchNorm2d, nn.Conv2d, nn.GroupNorm]


def test_the_opt_out_and_bad_modes():
    model = build("yolov3_tiny")
    plain = inference_copy(model, fuse=False, channels_last="off")
    assert norms(plain) == norms(model) > 0 and plain is not model
    assert inference_copy(model, inplace=True) is model and norms(model) == 0
    with pytest.raises(ValueError, match="channels_last"):
        inference_copy(model, channels_last="yes")


@pytest.mark.skipif(not packing_available(), reason="this PyTorch has no oneDNN pointwise convolution")
@pytest.mark.parametrize("name", list(FAMILIES))
def test_only_the_families_that_declare_it_get_packed_convs(name: str):
    fast = inference_copy(build(name))
    packed = [m for m in fast.modules() if isinstance(m, PackedConv2d)]
    if name in PACKED_FAMILIES:
        assert len(packed) == sum(isinstance(m, nn.Conv2d) for m in fast.modules()) > 0
        # every LeakyReLU followed a folded conv: all became post-ops of their conv
        assert not any(isinstance(m, nn.LeakyReLU) for m in fast.modules())
        assert sum(m.post_op == "leaky_relu" for m in packed) == len(packed) - len(fast.head.preds)  # not the 1x1 preds
    else:
        assert not packed, "a family that did not ask for it keeps the plain convs"


@pytest.mark.skipif(not packing_available(), reason="this PyTorch has no oneDNN pointwise convolution")
def test_no_packed_convs_in_an_nchw_or_unfused_copy():
    model = build("yolov3_tiny")
    for copy_ in (inference_copy(model, channels_last="off"), inference_copy(model, fuse=False)):
        assert not any(isinstance(m, PackedConv2d) for m in copy_.modules())
