"""Backbones: images ``[B, 3, H, W]`` -> ``{level: feature map}`` with ``output_shape()``."""

from detkit.models.backbones.base import Backbone, ShapeSpec
from detkit.models.backbones.mobilenet import MobileNetV2, MobileNetV3
from detkit.models.backbones.resnet import ResNet
from detkit.models.backbones.vgg import VGG

__all__ = ["Backbone", "MobileNetV2", "MobileNetV3", "ResNet", "ShapeSpec", "VGG"]
