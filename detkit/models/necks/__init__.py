"""Necks: ``{level: feature map}`` -> ``{level: feature map}`` with ``output_shape()``."""

from detkit.models.necks.fpn import FPN, fpn_state_dict_from_torchvision

__all__ = ["FPN", "fpn_state_dict_from_torchvision"]
