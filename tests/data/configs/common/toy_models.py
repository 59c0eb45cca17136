"""Base for the toy configs: a function returning a fresh tree (no shared mutable base)."""

from config_toys import ToyBackbone, ToyDetector, ToyHead

from detkit.config import L, LazyCall


def toy_detector(num_classes: int = 3, depth: int = 2, width: int = 8) -> LazyCall:
    return L(ToyDetector)(
        backbone=L(ToyBackbone)(depth=depth, width=width),
        heads=[L(ToyHead)(in_channels=width, num_classes=num_classes)],
    )
