"""Seeded models of the exported families whose detections are distinct and unsaturated (a unique
basename: importable anywhere; tests/export and tools/benchmark_export.py build the same models).

Random weights as a framework initialises them give a detector nearly equal scores everywhere,
or scores that saturate at 1.0 in float32: exact ties, whose order (and whose cut at a top-k) no
exporter can promise. Each builder here spreads the weights so that every family detects on the
sample photos with distinct scores, and sets the score threshold (where it says so) just above
the best score of :func:`~export_testing.blank_image`, so that image gives no detection.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from export_testing import blank_image
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[2]


def randomised(model: nn.Module, seed: int = 0, conv_bias: bool = True) -> nn.Module:
    """Variance-preserving convs and random batch-norm statistics: detections with spread scores
    (as tests/models/ssd's ``healthy_weights``; with ``conv_bias`` the convs' biases are random too).

    Returns:
        ``model`` itself, in eval mode.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in")
                if module.bias is not None and conv_bias:
                    nn.init.normal_(module.bias, std=0.1)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(std=0.1)
                module.running_mean.normal_(std=0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def yolov3_model(arch: str = "darknet53", num_classes: int = 20, calibrate_on: Tensor | None = None,
                 **kwargs: object) -> nn.Module:
    """A seeded YOLOv3 (:func:`randomised`); ``kwargs`` go to :func:`~detkit.models.zoo.build_yolov3`.

    Args:
        calibrate_on: ``[3, H, W]`` a photo: Darknet-53's 23 random residual blocks grow the
            features by orders of magnitude at 416 px, so that every score saturates at 1.0 (exact
            ties); given a photo, each prediction conv is scaled by the inverse RMS of its input on
            it (logits of order 1, boxes of sane sizes) and the score threshold is set 1e-3 above
            the best score of the blank image of the photo's size.
    """
    from detkit.models.zoo import build_yolov3

    model = randomised(build_yolov3(arch, num_classes, **kwargs))
    if calibrate_on is None:
        return model
    scales: list[float] = []
    hooks = [conv.register_forward_pre_hook(lambda _, inputs: scales.append(float(inputs[0].square().mean().sqrt())))
             for conv in model.head.preds]  # fmt: skip
    with torch.no_grad():
        model([calibrate_on])
        for hook in hooks:
            hook.remove()
        for conv, rms in zip(model.head.preds, scales):
            conv.weight.div_(rms)
        model.head.configure(score_thresh=0.0)
        best_on_blank = model([blank_image(*calibrate_on.shape[1:])])[0][0]["scores"].max()
    model.head.configure(score_thresh=float(best_on_blank) + 1e-3)
    return model


def calm_ssdlite_head(model: nn.Module) -> nn.Module:
    """Prediction convs scaled down: random-weight SSDLite logits saturate the softmax (scores tied
    at 1.0 in float32, whose order no exporter can promise) and its deltas push boxes far out."""
    with torch.no_grad():
        for predictors in (model.head.cls_logits, model.head.bbox_pred):
            for module in predictors.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.mul_(0.1)
    return model


def ssd_model(name: str, num_classes: int = 20, detections_per_img: int = 50) -> nn.Module:
    """A seeded ``"ssd300"``, ``"ssd512"`` or ``"ssdlite"`` (SSDLite 320, MobileNetV3) in eval mode."""
    from configs.common.ssd import SSD512_SCALES_COCO, ssd_vgg16, ssdlite320_mobilenet_v3

    from detkit.config import instantiate

    if name == "ssd300":
        config = ssd_vgg16(num_classes, input_size=300)
    elif name == "ssd512":
        config = ssd_vgg16(num_classes, input_size=512, scales=SSD512_SCALES_COCO)
    elif name == "ssdlite":
        config = ssdlite320_mobilenet_v3(num_classes)
    else:
        raise ValueError(f"ssd_model: name must be ssd300, ssd512 or ssdlite, got {name!r}")
    config.head.detections_per_img = detections_per_img
    torch.manual_seed(0)
    model = instantiate(config).eval()
    # VGG's own initialisation keeps the logits moderate (distinct scores); SSDLite's would make
    # its eval-mode features vanish (tests/models/ssd/ssd_testing.py), so it gets healthy weights.
    return calm_ssdlite_head(randomised(model, conv_bias=False)) if name == "ssdlite" else model


def spread_outputs(model: nn.Module, layers: list[tuple[nn.Conv2d, float, bool]], image: Tensor) -> nn.Module:
    """Rescale output convs of ``model`` on ``image`` (``[3, H, W]``): each conv's weight so that its
    outputs over every call of one forward (all levels / RoIs) have standard deviation ``std``,
    and, where ``centred``, its bias so that each channel's mean is 0 (no class favoured).

    The idea of tools/benchmark_models.py's ``_spread_scores`` for torchvision models: random
    weights stacked on a deep random backbone give logits of magnitude 100+ (sigmoid scores tied at
    1.0 in float32) and box deltas that push every box out of the image. The layers are rescaled
    one after the other (each changes what the next one sees).

    Args:
        layers: ``(conv, std, centred)`` in the order to rescale.

    Returns:
        ``model`` itself.
    """
    for layer, std, centred in layers:
        captured: list[Tensor] = []  # [N, channels] outputs of every call
        handle = layer.register_forward_hook(
            lambda _m, _i, output, captured=captured: captured.append(output.movedim(1, -1).flatten(0, -2))
        )
        with torch.no_grad():
            model([image])
            handle.remove()
            outputs = torch.cat(captured)
            mean = outputs.mean(dim=0)
            scale = std / float((outputs - mean).std())
            layer.weight.mul_(scale)
            layer.bias.mul_(scale)
            if centred:
                layer.bias.sub_(mean * scale)
    return model


# Standard deviation of the spread class logits (:func:`one_stage_fpn_model`): 1 (tools/benchmark_models.py's)
# gives RetinaNet R50's ~10M anchor-class pairs at 800 px top scores of 0.9998, exact ties in float32.
CLS_STD = 0.5


def one_stage_fpn_model(config_path: str, seed: int, size: tuple[int, int], overrides: tuple[str, ...] = (),
                        spread_on: Tensor | None = None) -> nn.Module:
    """A seeded RetinaNet / FCOS (any config of theirs) whose head's convs are He-normal (the prior
    bias alone makes every score ~0.01), its score threshold 1e-3 above the best score of the
    blank image of ``size`` (``(H, W)``, the size the model resizes to).

    Args:
        config_path: the config, relative to the repository root.
        seed: ``torch.manual_seed`` before the model is built (random weights may score a flat
            image highest: pick a seed whose photos score above it).
        size: ``(H, W)`` of the blank image.
        overrides: config overrides (``"model.preprocess.min_size=800"`` ...).
        spread_on: ``[3, H, W]`` a photo: the head's output convs are then rescaled on it
            (:func:`spread_outputs`: class logits centred, standard deviation :data:`CLS_STD`;
            box outputs standard deviation 0.5). Needed on ResNet-50: RetinaNet's norm-free head
            on its random features scores every anchor 1.0 in float32 (dog.jpg, seeds 0, 2, 3);
            FCOS's GroupNorm keeps its scores below 0.7 without it.
    """
    from detkit.config import instantiate, load_config

    torch.manual_seed(seed)
    model = instantiate(load_config(ROOT / config_path, list(overrides)).model).eval()
    with torch.no_grad():
        for module in model.head.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=(2.0 / module.weight[0].numel()) ** 0.5)
    model.head.configure(score_thresh=0.0)
    if spread_on is not None:
        box_subnet = model.head.box_subnet
        spread_outputs(model, [(model.head.cls_subnet.cls_logits, CLS_STD, True)]
                       + [(getattr(box_subnet, name), 0.5, False) for name in box_subnet.columns], spread_on)
    with torch.no_grad():
        best_on_blank = model([blank_image(*size)])[0][0]["scores"].max()
    model.head.configure(score_thresh=float(best_on_blank) + 1e-3)
    return model


def yolov8_model(arch: str, size: tuple[int, int], detections_per_img: int = 100,
                 score_thresh: float | None = None) -> nn.Module:
    """detkit's twin of a seeded ultralytics ``arch`` (``"yolov8n"``, ``"yolo11n"``; spread weights,
    class biases -4, tests/models/yolov8's helpers; needs ultralytics) at input ``size``, one label
    per box, its score threshold ``score_thresh`` or (None) 2e-4 above the best class score of the
    blank image (random YOLO11n weights at 640 score the blank image above every photo: give one)."""
    sys.path.insert(0, str(ROOT / "tests" / "models" / "yolov8"))
    from yolov8_testing import detkit_twin, ultralytics_model

    model = detkit_twin(ultralytics_model(arch, seed=0, cls_bias=-4.0), arch)
    model.preprocess.input_size = tuple(size)
    if score_thresh is None:
        with torch.no_grad():
            batch, _ = model.preprocess([blank_image()])
            _, scores = model.head.decode(model.head(model.neck(model.backbone(batch.tensor))))
        score_thresh = float(scores.max()) + 2e-4
    model.head.configure(score_thresh=score_thresh, multi_label=False,
                         detections_per_img=detections_per_img)  # fmt: skip
    return model
