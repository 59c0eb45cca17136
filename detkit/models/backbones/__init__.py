"""Backbones: images ``[B, 3, H, W]`` -> ``{level: feature map}`` with ``output_shape()``."""

from detkit.models.backbones.base import Backbone, ShapeSpec
from detkit.models.backbones.mobilenet import MobileNetV2, MobileNetV3
from detkit.models.backbones.resnet import ResNet
from detkit.models.backbones.vgg import VGG

from detkit.models.backbones.darknet import Darknet53, DarknetTiny
from detkit.models.backbones.ssd_vgg import SSDVGG
from detkit.models.backbones.ssdlite_mobilenet import SSDLiteMobileNetV3
from detkit.models.backbones.yolov8 import YOLOv8Backbone

__all__ = [
    "Backbone",
    "Darknet53",
    "DarknetTiny",
    "MobileNetV2",
    "MobileNetV3",
    "ResNet",
    "SSDLiteMobileNetV3",
    "SSDVGG",
    "ShapeSpec",
    "VGG",
    "YOLOv8Backbone",
]
