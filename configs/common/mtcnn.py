"""MTCNN model trees (facenet-pytorch's inference settings), as functions returning fresh L() trees.

Children set attributes, e.g. ``model.thresholds = (0.6, 0.7, 0.8)`` or ``model.min_face_size = 40``.
"""

from __future__ import annotations

from collections.abc import Sequence

from detkit.config import L, LazyCall
from detkit.models.detectors.mtcnn import MTCNN, ONet, PNet, RNet


def mtcnn(
    min_face_size: float = 20.0,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    train_stages: Sequence[str] = ("pnet", "rnet", "onet"),
) -> LazyCall:
    """The three-stage cascade: pyramid factor 0.709, NMS 0.5 / 0.7 (PNet), 0.7 (RNet), 0.7 Min (ONet)."""
    return L(MTCNN)(
        pnet=L(PNet)(),
        rnet=L(RNet)(),
        onet=L(ONet)(),
        min_face_size=min_face_size,
        scale_factor=0.709,
        thresholds=tuple(thresholds),
        nms_thresholds=(0.5, 0.7, 0.7, 0.7),
        pixel_scale=255.0,
        clip_boxes=True,
        train_samples=(24, 8, 8),
        train_stages=tuple(train_stages),
    )
