"""PASCAL VOC's object-segmentation subset: boxes from the xml, instance masks from ``SegmentationObject``.

Only the images listed in ``ImageSets/Segmentation/<split>.txt`` have instance masks (VOC2012:
1464 ``train``, 1449 ``val``). ``SegmentationObject/<id>.png`` is a palette PNG whose pixel values
are object indices: value ``k`` (1-based) is the ``k``-th ``<object>`` of ``Annotations/<id>.xml``,
0 is background and 255 the "void" band VOC draws along object boundaries (and over ambiguous
regions). The palette indices are read with PIL (OpenCV would convert them to colours). A mask is
``png == k``: void pixels belong to no mask.

Boxes, labels and ``difficult`` come from the xml exactly as in :class:`~detkit.data.voc.VOCDetection`
(same coordinate convention). Every box keeps its object index in the per-box field
``instance_id [N] int64`` (the ``k`` above), so masks stay matched to boxes when the load-time checks
drop a degenerate box or ``keep_difficult=False`` drops difficult objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detkit.utils.image_io import ImageReadError

from .base import DetectionDataset, ImageRecord, Transforms
from .parsing import read_text_lines
from .validation import DatasetError, DatasetReport, check_image_files
from .voc import VOC_CLASSES, parse_voc_xml

__all__ = ["VOCInstanceSegmentation", "read_palette_png"]


def read_palette_png(path: str | Path) -> np.ndarray:
    """The indices of a palette (mode ``"P"``) or grey PNG as a ``[H, W]`` uint8 array.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        DatasetError: the PNG holds colours, not indices.
        ImageReadError: the file is not a readable image, is truncated, or is empty (named).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VOC object segmentation not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DatasetError(f"{path}: expected a palette or grey PNG of object indices, got mode {image.mode!r}")
            indices = np.asarray(image, dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError) as error:  # PIL: unidentified, truncated or broken file
        if isinstance(error, DatasetError):
            raise
        raise ImageReadError(f"cannot read VOC object segmentation {path}: {error}") from None
    if indices.size == 0:
        raise ImageReadError(f"VOC object segmentation {path} is empty ({indices.shape[1]}x{indices.shape[0]})")
    return indices


class VOCInstanceSegmentation(DetectionDataset):
    """Images of VOC's segmentation image set with boxes, labels and instance ``masks [N, H, W]`` uint8.

    Args:
        root: the year folder, e.g. ``VOCdevkit/VOC2012`` (holding ``Annotations``, ``JPEGImages``,
            ``SegmentationObject``, ``ImageSets/Segmentation``).
        split: reads ``root/ImageSets/Segmentation/<split>.txt`` (``"train"``, ``"val"``, ``"trainval"``).
        image_suffix: the image files' suffix.
        class_names: names in label order; default :data:`~detkit.data.voc.VOC_CLASSES`.
        keep_difficult: keep ``difficult`` objects (flagged in ``target["difficult"]``).
        transforms: ``(image ndarray, target) -> (image tensor, target)``.
        skip_empty: leave out images with no box.
        check_files: check every image and segmentation file exists now.

    Raises:
        FileNotFoundError: the image-set file or an annotation file is missing (named).
        ImageReadError: images or segmentation PNGs are missing (``check_files``; named).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        image_suffix: str = ".jpg",
        class_names: Sequence[str] = VOC_CLASSES,
        keep_difficult: bool = True,
        transforms: Transforms | None = None,
        skip_empty: bool = False,
        check_files: bool = True,
    ) -> None:
        root = Path(root)
        set_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        lines = read_text_lines(set_file, "VOC segmentation image-set file")
        source = str(set_file)
        if len(set(class_names)) != len(class_names):
            raise DatasetError(f"{source}: class_names has duplicates: {list(class_names)}")
        class_to_label = {name: label for label, name in enumerate(class_names)}
        self.segmentation_dir = root / "SegmentationObject"

        records = []
        for image_id in (line.split()[0] for line in lines if line.strip()):
            xml_path = root / "Annotations" / f"{image_id}.xml"
            if not xml_path.is_file():
                raise FileNotFoundError(f"{source}: annotation file not found for image {image_id!r}: {xml_path}")
            # All objects first, so that object k of the xml keeps its PNG value k + 1.
            _, size, boxes, labels, difficult = parse_voc_xml(xml_path, class_to_label, keep_difficult=True)
            record = ImageRecord(
                image_id=image_id,
                path=root / "JPEGImages" / f"{image_id}{image_suffix}",
                size=size,
                boxes=boxes,
                labels=labels,
                box_fields={"difficult": difficult, "instance_id": np.arange(1, len(boxes) + 1, dtype=np.int64)},
                where=str(xml_path),
            )
            if not keep_difficult:
                record.select(~difficult)
            records.append(record)
        if check_files:
            check_image_files((self._segmentation_path(r) for r in records), source)
        super().__init__(
            records,
            class_names,
            source,
            transforms=transforms,
            check_files=check_files,
            skip_empty=skip_empty,
            report=DatasetReport(source),
        )

    def _segmentation_path(self, record: ImageRecord) -> Path:
        return self.segmentation_dir / f"{record.image_id}.png"

    def _decode_masks(self, record: ImageRecord, size: tuple[int, int]) -> np.ndarray | None:
        indices = read_palette_png(self._segmentation_path(record))
        if indices.shape != tuple(size):
            raise DatasetError(
                f"{self._segmentation_path(record)}: segmentation is {indices.shape[1]}x{indices.shape[0]} (WxH) "
                f"but the image is {size[1]}x{size[0]}"
            )
        instance_ids = record.box_fields["instance_id"]
        return (indices[None] == instance_ids[:, None, None]).astype(np.uint8)
