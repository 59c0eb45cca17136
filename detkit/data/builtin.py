"""COCO and PASCAL VOC by their root folder, in the layouts the datasets ship in (nothing is downloaded).

One ``root`` argument per dataset, so a config points at a local copy with one override per
loader (``dataloader.train.dataset.root=/data/coco``). Layouts (as detectron2's ``datasets/``)::

    coco/                                   VOCdevkit/
      annotations/instances_train2017.json    VOC2007/  Annotations/  JPEGImages/  ImageSets/Main/{trainval,test}.txt
      annotations/instances_val2017.json                SegmentationObject/  ImageSets/Segmentation/ (masks)
      train2017/  val2017/   (images)         VOC2012/  (same)

A missing root or file raises ``FileNotFoundError`` naming the path and the expected layout
before any image is read (the engine builds the datasets before the first step).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .base import Transforms
from .coco import CocoDetection
from .concat import ConcatDetection
from .voc import VOC_CLASSES, VOCDetection
from .voc_instances import VOCInstanceSegmentation

__all__ = ["coco_dataset", "voc_dataset"]

COCO_LAYOUT = "<root>/annotations/instances_<split>.json and <root>/<split>/ (images)"
VOC_LAYOUT = (
    "<root>/<YEAR>/{Annotations,JPEGImages}/ and <root>/<YEAR>/ImageSets/Main/<split>.txt "
    "(ImageSets/Segmentation/<split>.txt and SegmentationObject/ with masks)"
)


def _require(path: Path, what: str, layout: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path} (expected: {layout}); point the dataset's root at your copy")


def coco_dataset(
    root: str | Path = "datasets/coco",
    split: str = "train2017",
    *,
    transforms: Transforms | None = None,
    with_masks: bool = False,
    skip_empty: bool = False,
    class_names: Sequence[str] | None = None,
    with_keypoints: bool = False,
) -> CocoDetection:
    """A COCO split: ``root/annotations/instances_<split>.json`` with images in ``root/<split>/``
    (``person_keypoints_<split>.json`` with ``with_keypoints``).

    Args:
        root: the COCO folder.
        split: ``"train2017"``, ``"val2017"`` (any name with that layout).
        transforms: the dataset's pipeline (:mod:`detkit.data.transforms`).
        with_masks: decode instance masks into the targets (Mask R-CNN).
        skip_empty: leave out images without annotations (training: detectron2's
            ``FILTER_EMPTY_ANNOTATIONS``, torchvision's reference).
        class_names: a subset of the json's categories, in label order; ``None``: all, by id.
        with_keypoints: the person keypoints file, ``keypoints [N, 17, 3]`` in the targets
            (Keypoint R-CNN).

    Raises:
        FileNotFoundError: ``root``, the json or the image folder is missing (named).
    """
    root = Path(root)
    _require(root, "COCO root folder", COCO_LAYOUT)
    annotation_file = root / "annotations" / f"{'person_keypoints' if with_keypoints else 'instances'}_{split}.json"
    _require(annotation_file, f"COCO {split} annotations", COCO_LAYOUT)
    _require(root / split, f"COCO {split} image folder", COCO_LAYOUT)
    return CocoDetection(
        root / split, annotation_file, transforms=transforms, with_masks=with_masks, skip_empty=skip_empty,
        class_names=class_names, with_keypoints=with_keypoints,
    )  # fmt: skip


def voc_dataset(
    root: str | Path = "datasets/VOCdevkit",
    image_sets: Sequence[str] = ("VOC2007/trainval", "VOC2012/trainval"),
    *,
    transforms: Transforms | None = None,
    with_masks: bool = False,
    class_names: Sequence[str] = VOC_CLASSES,
    keep_difficult: bool = True,
    image_suffix: str = ".jpg",
    skip_empty: bool = False,
) -> VOCDetection | VOCInstanceSegmentation | ConcatDetection:
    """PASCAL VOC image sets under ``root``, joined in order (VOC07+12: the default).

    Args:
        root: the ``VOCdevkit`` folder.
        image_sets: ``"<year folder>/<split>"`` each, e.g. ``"VOC2007/test"``; the ids come from
            ``ImageSets/Main/<split>.txt``, or ``ImageSets/Segmentation/<split>.txt`` with masks.
        transforms: the pipeline, applied to the joined dataset.
        with_masks: read the object-segmentation subset with instance masks
            (:class:`~detkit.data.voc_instances.VOCInstanceSegmentation`).
        class_names: names in label order (default the 20 VOC classes).
        keep_difficult: keep ``difficult`` objects (flagged; VOC evaluation ignores them).
            detectron2 trains on them too.
        image_suffix: the image files' suffix.
        skip_empty: leave out images with no box.

    Returns:
        One image set as its reader, several as a :class:`~detkit.data.concat.ConcatDetection`.

    Raises:
        FileNotFoundError: ``root``, a year folder or an image-set file is missing (named).
        ValueError: an image set not of the form ``"<year folder>/<split>"``.
    """
    root = Path(root)
    _require(root, "PASCAL VOC root folder", VOC_LAYOUT)
    parts = []
    for image_set in image_sets:
        year, sep, split = image_set.partition("/")
        if not sep or not year or not split or "/" in split:
            raise ValueError(f"VOC image set {image_set!r} is not '<year folder>/<split>', e.g. 'VOC2007/test'")
        _require(root / year, f"PASCAL VOC {year} folder", VOC_LAYOUT)
        common = dict(
            image_suffix=image_suffix, class_names=class_names, keep_difficult=keep_difficult, skip_empty=skip_empty
        )
        if with_masks:
            parts.append(VOCInstanceSegmentation(root / year, split, **common))
        else:
            parts.append(VOCDetection(root / year, split, **common))
    if not parts:
        raise ValueError("voc_dataset: image_sets is empty")
    if len(parts) == 1:
        parts[0].transforms = transforms
        return parts[0]
    return ConcatDetection(parts, transforms=transforms)
