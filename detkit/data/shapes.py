"""A synthetic detection dataset of coloured shapes, with exact masks, written as COCO and VOC.

The default data of detkit's demo and tests: fast (a few milliseconds an image), deterministic
from a seed (same seed -> byte-identical json, xml and PNG files), and with ground truth that is
exact by construction:

* each shape is drawn on the image with one OpenCV call (``cv2.circle`` / ``cv2.fillPoly``,
  ``LINE_8``: no anti-aliasing, so a shape's pixels all have exactly its colour), and its mask is
  drawn with the *same call* on a blank canvas, so mask and pixels agree exactly;
* later shapes hide earlier ones: each new mask is removed from the earlier masks, so a mask is
  the shape's *visible* region; an object whose visible area falls below ``min_visible_area``
  pixels is dropped from the annotations (its few visible pixels stay in the image);
* the box is the visible mask's bounding box in continuous pixels: ``x1 = min column``,
  ``x2 = max column + 1`` (pixel ``i`` covers ``[i, i + 1)``).

On disk (``out_dir``), one layout that both readers understand::

    JPEGImages/{train,val}_NNNNNN.png        images (PNG: lossless, byte-deterministic)
    Annotations/{train,val}_NNNNNN.xml       VOC xml (1-based inclusive: xmin = x1 + 1, xmax = x2)
    ImageSets/Main/{train,val,trainval}.txt  VOC image sets
    annotations/instances_{train,val}.json   COCO json, masks as compressed RLE (exact)

Keypoints (``with_keypoints=True``): the corners of the triangles and squares, in COCO's keypoint
format. All classes share one list of ``K = 7`` keypoints (COCO evaluates one keypoint layout per
file): ``triangle_top, triangle_right, triangle_left`` (indices 0-2) and ``square_top,
square_right, square_bottom, square_left`` (3-6). A shape's corners are numbered clockwise from
the one nearest the top (its angle from straight up in ``[-180/n, 180/n)`` degrees), so the
numbering is a function of the image and a horizontal flip is the fixed swap
:data:`SHAPE_KEYPOINT_FLIP_PAIRS` (right <-> left). Triangles label indices 0-2, squares 3-6, the
other indices stay ``(0, 0, 0)``; circles have no corners: every index unlabelled,
``num_keypoints = 0`` (COCO keypoint evaluation ignores them). A corner is the centre of the pixel
its vertex is drawn at (``rint(vertex) + 0.5``); visibility 2 where that pixel shows the shape, 1
where a later shape hides it, 0 (not labelled, ``(0, 0, 0)``) outside the image. Each category
holds the names, its skeleton (its polygon, 1-based as COCO) and ``keypoint_sigmas`` for OKS:
:data:`SHAPE_KEYPOINT_SIGMA` for every corner.

Read it with ``CocoDetection(paths.image_dir, paths.coco_json("train"))`` or
``VOCDetection(paths.root, "train", image_suffix=".png", class_names=paths.class_names)``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from detkit.utils.image_io import write_image_rgb

from .parsing import read_json

if TYPE_CHECKING:
    from .coco import CocoDetection

__all__ = [
    "SHAPE_CLASSES", "SHAPE_KEYPOINTS", "SHAPE_KEYPOINT_FLIP_PAIRS", "SHAPE_KEYPOINT_SIGMA", "SHAPE_SKELETONS",
    "ShapeInstance", "ShapesDatasetPaths", "render_shapes_image", "generate_shapes_dataset",
]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
# The keypoints of the shapes data (module docstring): one shared list, each polygon its own indices.
SHAPE_KEYPOINTS: tuple[str, ...] = (
    "triangle_top", "triangle_right", "triangle_left", "square_top", "square_right", "square_bottom", "square_left",
)
_FIRST_KEYPOINT = {"triangle": 0, "square": 3}
_CORNERS = {"triangle": 3, "square": 4}
SHAPE_KEYPOINT_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (4, 6))
# 0-based skeleton of each class: its polygon's sides.
SHAPE_SKELETONS: dict[str, tuple[tuple[int, int], ...]] = {
    "circle": (),
    "triangle": ((0, 1), (1, 2), (2, 0)),
    "square": ((3, 4), (4, 5), (5, 6), (6, 3)),
}
# OKS sigma of every corner: 0.067, the mean of COCO's 17 person keypoint sigmas (the corners are
# exact, so any value is a choice of tolerance; this one asks about COCO's average precision).
SHAPE_KEYPOINT_SIGMA = 0.067
_SPLITS = ("train", "val")


@dataclass
class ShapeInstance:
    """One visible shape: ``label`` (index into the class list), ``color`` (RGB), ``mask``
    ``[H, W]`` uint8 visible region, ``box`` ``(x1, y1, x2, y2)`` int pixels of the mask,
    ``corners`` ``[n, 2]`` the drawn vertex pixels of a polygon (column, row; None for a circle)."""

    label: int
    color: tuple[int, int, int]
    mask: np.ndarray
    box: tuple[int, int, int, int]
    corners: np.ndarray | None = None


@dataclass(frozen=True)
class ShapesDatasetPaths:
    """Where :func:`generate_shapes_dataset` wrote things.

    Attributes:
        root: ``out_dir``; also the VOC root (``Annotations``, ``JPEGImages``, ``ImageSets``).
        image_dir: the PNG images (``root/JPEGImages``).
        class_names: label order of both formats (COCO category id = label + 1).
        image_suffix: ``".png"``.
    """

    root: Path
    image_dir: Path
    class_names: tuple[str, ...]
    image_suffix: str = ".png"

    def coco_json(self, split: str) -> Path:
        """``root/annotations/instances_<split>.json``."""
        return self.root / "annotations" / f"instances_{split}.json"

    def image_set(self, split: str) -> Path:
        """``root/ImageSets/Main/<split>.txt``."""
        return self.root / "ImageSets" / "Main" / f"{split}.txt"


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A linear gradient between two random colours in a random direction, plus Gaussian noise."""
    start, end = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    image = start + ramp[..., None] * (end - start)
    image += rng.normal(0.0, 8.0, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _polygon(name: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray | None:
    """The integer vertex pixels ``[n, 2]`` (column, row) a polygon is drawn with; None for a circle."""
    if name == "circle":
        return None
    if name == "square":  # corners at the circumradius, 45 degrees apart from the sides
        corner_angles = angle + np.pi / 4 + np.arange(4) * np.pi / 2
    elif name == "triangle":  # equilateral
        corner_angles = angle + np.arange(3) * 2 * np.pi / 3
    else:
        raise ValueError(f"unknown shape {name!r}; the shapes generator draws {SHAPE_CLASSES}")
    corners = centre + radius * np.stack([np.cos(corner_angles), np.sin(corner_angles)], axis=1)
    return np.rint(corners).astype(np.int32)


def _draw_shape(canvas: np.ndarray, name: str, centre: np.ndarray, radius: float, angle: float, color) -> None:
    """Draw one filled shape; called once on the image and once (colour 1) on the mask."""
    polygon = _polygon(name, centre, radius, angle)
    if polygon is None:
        cv2.circle(canvas, (int(centre[0]), int(centre[1])), int(radius), color, thickness=-1, lineType=cv2.LINE_8)
    else:
        cv2.fillPoly(canvas, [polygon], color, lineType=cv2.LINE_8)


def shape_keypoints(name: str, corners: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    """A shape's ``[K, 3]`` keypoints ``(x, y, visibility)`` in the shared layout (module docstring).

    Args:
        name: the shape's class name.
        corners: its drawn vertex pixels ``[n, 2]`` (column, row), None for a circle.
        mask: its visible ``[H, W]`` mask (a hidden vertex pixel gets visibility 1).
    """
    keypoints = np.zeros((len(SHAPE_KEYPOINTS), 3), dtype=np.float32)
    if corners is None:
        return keypoints
    count = len(corners)
    centre = corners.mean(axis=0)
    # clockwise angle from straight up (rows grow downwards), shifted so the top corner comes first
    angles = np.arctan2(corners[:, 0] - centre[0], centre[1] - corners[:, 1])
    order = np.argsort(np.mod(angles + np.pi / count, 2 * np.pi))
    height, width = mask.shape
    for slot, (column, row) in enumerate(corners[order]):
        if 0 <= column < width and 0 <= row < height:
            visibility = 2 if mask[row, column] else 1
            keypoints[_FIRST_KEYPOINT[name] + slot] = (column + 0.5, row + 0.5, visibility)
    return keypoints


def _check_object_counts(min_objects: int, max_objects: int) -> None:
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"min_objects must be in [1, max_objects = {max_objects}], got {min_objects}")


def render_shapes_image(
    rng: np.random.Generator,
    image_size: tuple[int, int] = (256, 256),
    max_objects: int = 6,
    size_range: tuple[float, float] = (0.06, 0.25),
    min_visible_area: int = 40,
    class_names: Sequence[str] = SHAPE_CLASSES,
    min_objects: int = 1,
    centre_margin: float = 0.1,
) -> tuple[np.ndarray, list[ShapeInstance]]:
    """Draw one image of ``min_objects`` to ``max_objects`` random shapes over a noisy gradient.

    Args:
        rng: the random source (all randomness comes from it).
        image_size: ``(height, width)`` in pixels.
        max_objects: most shapes drawn (before occlusion drops any).
        size_range: shape circumradius as a fraction of ``min(height, width)``.
        min_visible_area: objects with fewer visible pixels are dropped.
        class_names: shapes to draw, a subset of :data:`SHAPE_CLASSES`; labels index this list.
        min_objects: fewest shapes drawn (1 to ``max_objects``; the default 1 draws what
            earlier versions drew, byte for byte).
        centre_margin: shape centres are drawn in ``[m, 1 - m]`` of each side (default 0.1, as
            earlier versions; 0 lets shapes be cut by the image border, as objects entering a
            video frame are).

    Returns:
        ``(image [H, W, 3] uint8 RGB, instances)`` with the instances' masks exact and disjoint.

    Raises:
        ValueError: ``min_objects`` outside ``[1, max_objects]``.
    """
    _check_object_counts(min_objects, max_objects)
    if not 0.0 <= centre_margin < 0.5:
        raise ValueError(f"centre_margin must be in [0, 0.5), got {centre_margin}")
    height, width = image_size
    image = _background(rng, height, width)
    drawn: list[tuple[int, tuple[int, int, int], np.ndarray, np.ndarray | None]] = []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        label = int(rng.integers(len(class_names)))
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        radius = rng.uniform(*size_range) * min(height, width)
        centre = rng.uniform([centre_margin * width, centre_margin * height],
                             [(1 - centre_margin) * width, (1 - centre_margin) * height])
        angle = rng.uniform(0, 2 * np.pi)
        _draw_shape(image, class_names[label], centre, radius, angle, color)
        mask = np.zeros((height, width), dtype=np.uint8)
        _draw_shape(mask, class_names[label], centre, radius, angle, 1)
        # the new shape hides what it covers; only pixels inside its bounding box can be covered
        # (a large image with many small shapes: no full-image pass per earlier shape)
        ys, xs = np.nonzero(mask)
        if len(ys):
            window = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
            covered = mask[window] == 1
            for _, _, earlier, _ in drawn:
                earlier[window][covered] = 0
        drawn.append((label, color, mask, _polygon(class_names[label], centre, radius, angle)))

    instances = []
    for label, color, mask, corners in drawn:
        if int(mask.sum()) < min_visible_area:
            continue
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        instances.append(ShapeInstance(label, color, mask, box, corners))
    return image, instances


def _voc_xml(file_name: str, height: int, width: int, instances, class_names) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "shapes"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for instance in instances:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[instance.label]
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = instance.box
        # detkit continuous [x1, x2) -> VOC 1-based inclusive pixel indices [x1 + 1, x2].
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def generate_shapes_dataset(
    out_dir: str | Path,
    num_train: int,
    num_val: int,
    image_size: int | tuple[int, int] = (256, 256),
    seed: int = 0,
    *,
    max_objects: int = 6,
    size_range: tuple[float, float] = (0.06, 0.25),
    min_visible_area: int = 40,
    class_names: Sequence[str] = SHAPE_CLASSES,
    min_objects: int = 1,
    centre_margin: float = 0.1,
    with_keypoints: bool = False,
) -> ShapesDatasetPaths:
    """Write a shapes dataset in COCO and VOC formats (layout in the module docstring).

    Image ``i`` of a split draws from ``np.random.default_rng([seed, split_index, i])``, so the
    output is deterministic, and the train images do not change when ``num_val`` does.

    Args:
        out_dir: created if needed; files already there are overwritten.
        num_train: images in the ``train`` split.
        num_val: images in the ``val`` split.
        image_size: ``(height, width)`` in pixels, or one int for a square.
        seed: the random seed.
        max_objects: most shapes an image (see :func:`render_shapes_image`).
        size_range: shape circumradius as a fraction of the shorter image side.
        min_visible_area: occluded objects with fewer visible pixels are dropped.
        class_names: the shapes, a subset of :data:`SHAPE_CLASSES` in label order.
        min_objects: fewest shapes an image (1 to ``max_objects``).
        centre_margin: shape centres in ``[m, 1 - m]`` of each side (0: shapes cut by the border).
        with_keypoints: also write the corners as COCO keypoints (module docstring); the images
            and every other field are the same as without.

    Returns:
        The paths written.
    """
    unknown = [name for name in class_names if name not in SHAPE_CLASSES]
    if unknown:
        raise ValueError(f"unknown shape classes {unknown}; choose from {SHAPE_CLASSES}")
    _check_object_counts(min_objects, max_objects)
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    paths = ShapesDatasetPaths(Path(out_dir), Path(out_dir) / "JPEGImages", tuple(class_names))
    for folder in (
        paths.image_dir,
        paths.root / "Annotations",
        paths.root / "ImageSets" / "Main",
        paths.root / "annotations",
    ):
        folder.mkdir(parents=True, exist_ok=True)
    categories = [{"id": label + 1, "name": name, "supercategory": "shape"} for label, name in enumerate(class_names)]
    if with_keypoints:
        for category in categories:
            category.update(keypoints=list(SHAPE_KEYPOINTS),
                            skeleton=[[a + 1, b + 1] for a, b in SHAPE_SKELETONS[category["name"]]],
                            keypoint_sigmas=[SHAPE_KEYPOINT_SIGMA] * len(SHAPE_KEYPOINTS))

    next_image_id, next_annotation_id, all_ids = 1, 1, []
    for split_index, (split, count) in enumerate(zip(_SPLITS, (num_train, num_val))):
        images, annotations, ids = [], [], []
        for index in range(count):
            rng = np.random.default_rng([seed, split_index, index])
            image, instances = render_shapes_image(
                rng, (height, width), max_objects, size_range, min_visible_area, class_names, min_objects,
                centre_margin,
            )
            stem = f"{split}_{index:06d}"
            file_name = stem + paths.image_suffix
            write_image_rgb(paths.image_dir / file_name, image)
            (paths.root / "Annotations" / f"{stem}.xml").write_bytes(
                _voc_xml(file_name, height, width, instances, class_names)
            )
            images.append({"id": next_image_id, "file_name": file_name, "height": height, "width": width})
            for instance in instances:
                rle = mask_utils.encode(np.asfortranarray(instance.mask))
                x1, y1, x2, y2 = instance.box
                annotations.append(
                    {
                        "id": next_annotation_id,
                        "image_id": next_image_id,
                        "category_id": instance.label + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],  # COCO xywh
                        "area": int(instance.mask.sum()),
                        "iscrowd": 0,
                        "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                    }
                )
                if with_keypoints:
                    keypoints = shape_keypoints(class_names[instance.label], instance.corners, instance.mask)
                    annotations[-1]["keypoints"] = [float(v) if i % 3 < 2 else int(v)
                                                    for i, v in enumerate(keypoints.reshape(-1))]
                    annotations[-1]["num_keypoints"] = int((keypoints[:, 2] > 0).sum())
                next_annotation_id += 1
            next_image_id += 1
            ids.append(stem)
        coco = {
            "info": {"description": f"detkit synthetic shapes, split {split}, seed {seed}"},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        paths.coco_json(split).write_text(json.dumps(coco) + "\n")
        paths.image_set(split).write_text("".join(f"{stem}\n" for stem in ids))
        all_ids.extend(ids)
    paths.image_set("trainval").write_text("".join(f"{stem}\n" for stem in all_ids))
    return paths


def shapes_coco_dataset(
    root: str | Path,
    split: str = "train",
    *,
    num_train: int = 400,
    num_val: int = 100,
    image_size: int | tuple[int, int] = (256, 256),
    seed: int = 0,
    transforms: Callable | None = None,
    with_masks: bool = False,
    with_keypoints: bool = False,
) -> "CocoDetection":
    """The synthetic shapes dataset as a :class:`~detkit.data.coco.CocoDetection`, generated on first use.

    detkit's built-in default data: configs point here, so training and evaluation run on a fresh
    machine with nothing downloaded. The dataset is written once under ``root`` (with a
    ``generation.json`` recording the parameters); a later call with the same parameters reuses it,
    and different parameters are an error naming the folder (choose another ``root``). Generation
    goes to a temporary folder that is renamed into place, so concurrent or interrupted runs never
    see half a dataset.

    Args:
        root: folder of the dataset.
        split: ``"train"`` or ``"val"``.
        num_train, num_val, image_size, seed: as in :func:`generate_shapes_dataset`.
        transforms: a :class:`~detkit.data.transforms.DetectionTransform` (or any callable of the
            dataset's transform interface).
        with_masks: decode instance masks into the targets.
        with_keypoints: generate the corners as keypoints and put ``keypoints [N, 7, 3]`` into the
            targets (recorded in ``generation.json``: use a root of its own).

    Returns:
        The split as a COCO dataset (class names ``circle``, ``square``, ``triangle``).
    """
    from detkit.data.coco import CocoDetection

    if split not in ("train", "val"):
        raise ValueError(f"shapes_coco_dataset: split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    parameters = {"num_train": num_train, "num_val": num_val, "image_size": [height, width], "seed": seed,
                  "class_names": list(SHAPE_CLASSES)}
    if with_keypoints:  # only then, so that the records of earlier datasets still match
        parameters["keypoints"] = True
    record = root / "generation.json"
    if record.is_file():
        existing = read_json(record, "shapes generation record")
        if existing != parameters:
            raise ValueError(
                f"shapes dataset at {root} was generated with {existing}, not {parameters}; "
                "use another root folder or delete this one"
            )
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
        try:
            generate_shapes_dataset(staging, num_train, num_val, (height, width), seed, with_keypoints=with_keypoints)
            (staging / "generation.json").write_text(json.dumps(parameters))
            try:
                os.rename(staging, root)
            except OSError:
                if not record.is_file():  # not a concurrent run that finished first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    paths = ShapesDatasetPaths(root, root / "JPEGImages", tuple(SHAPE_CLASSES))
    return CocoDetection(paths.image_dir, paths.coco_json(split), transforms=transforms, with_masks=with_masks,
                         with_keypoints=with_keypoints)
