"""The exchange formats between detkit's stages: a padded image batch, feature-level shapes and
per-image instance dicts.

Per-image targets and predictions are plain ``dict[str, Tensor]`` (see design.md):

* ``boxes``  ``[N, 4]`` floating, xyxy in absolute pixels of the image the model sees;
* ``labels`` ``[N]`` int64, contiguous 0-based class ids (no background slot; a head adds its own);
* ``scores`` ``[N]`` floating, predictions only;
* ``masks``  ``[N, H, W]`` where present, ``H, W`` the image size.

:class:`Instances` names these keys for type checkers; :func:`validate_targets` and
:func:`validate_predictions` check them with messages that name the offending image and box.
:class:`ShapeSpec` is the channels and stride of one feature level, what ``output_shape()`` of a
backbone or neck reports per level so that the next part sizes itself from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Required, TypedDict

import torch
from torch import Tensor


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride of one feature level.

    Attributes:
        channels: Number of channels ``C`` of the feature map ``[B, C, h, w]``.
        stride: Input pixels per feature-map cell (nominal: ``h`` is about ``H / stride``).
    """

    channels: int
    stride: int


def format_shapes(shapes: Mapping[str, ShapeSpec]) -> str:
    """``{level: ShapeSpec}`` as ``{'c3': (256 ch, stride 8), ...}``, for error messages."""
    return "{" + ", ".join(f"{name!r}: ({s.channels} ch, stride {s.stride})" for name, s in shapes.items()) + "}"


class Instances(TypedDict, total=False):
    """Keys of a per-image target or prediction dict (shapes in the module docstring)."""

    boxes: Required[Tensor]
    labels: Required[Tensor]
    scores: Tensor
    masks: Tensor


@dataclass
class ImageList:
    """A batch of images of different sizes, zero-padded at the bottom and right to one tensor.

    Attributes:
        tensor: ``[B, C, H_max, W_max]`` padded batch.
        image_sizes: ``B`` pairs ``(height, width)`` in pixels: the unpadded size of each image,
            i.e. the region of ``tensor[i]`` that holds real pixels (top-left aligned).
    """

    tensor: Tensor
    image_sizes: list[tuple[int, int]]

    def __post_init__(self) -> None:
        if self.tensor.dim() != 4:
            raise ValueError(f"ImageList.tensor must be [B, C, H, W], got shape {list(self.tensor.shape)}")
        if len(self.image_sizes) != self.tensor.shape[0]:
            raise ValueError(
                f"ImageList has {self.tensor.shape[0]} images in its tensor but {len(self.image_sizes)} image_sizes"
            )

    def __len__(self) -> int:
        return len(self.image_sizes)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def to(self, device: torch.device | str) -> ImageList:
        """A copy of the batch on ``device`` (image sizes unchanged)."""
        return ImageList(self.tensor.to(device), list(self.image_sizes))

    @classmethod
    def from_tensors(
        cls, images: Sequence[Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> ImageList:
        """Pad images to a common size and stack them.

        Same result as torchvision's ``GeneralizedRCNNTransform.batch_images``: pad to the largest
        height and width in the batch, then round each up to a multiple of ``size_divisibility``
        (so every stride-``size_divisibility`` feature map tiles the batch exactly).

        Args:
            images: ``B`` tensors ``[C, H_i, W_i]`` with the same ``C``, dtype and device.
            size_divisibility: round the padded height and width up to a multiple of this; ``0``
                (or ``1``) pads to the largest image only.
            pad_value: value written in the padding.

        Returns:
            An :class:`ImageList` with ``tensor`` ``[B, C, H_max, W_max]``.
        """
        if len(images) == 0:
            raise ValueError("ImageList.from_tensors needs at least one image")
        for index, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3:
                shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"image {index} must be a [C, H, W] tensor, got {shape}")
            if image.shape[0] != images[0].shape[0]:
                raise ValueError(
                    f"image {index} has {image.shape[0]} channels but image 0 has {images[0].shape[0]}"
                )
        if size_divisibility < 0:
            raise ValueError(f"size_divisibility must be >= 0, got {size_divisibility}")

        max_height = max(image.shape[1] for image in images)
        max_width = max(image.shape[2] for image in images)
        if size_divisibility > 1:
            max_height = -(-max_height // size_divisibility) * size_divisibility  # ceil to a multiple
            max_width = -(-max_width // size_divisibility) * size_divisibility

        batch = images[0].new_full((len(images), images[0].shape[0], max_height, max_width), pad_value)
        for padded, image in zip(batch, images):
            padded[:, : image.shape[1], : image.shape[2]].copy_(image)
        image_sizes = [(int(image.shape[1]), int(image.shape[2])) for image in images]
        return cls(batch, image_sizes)


def check_image_list(
    images: Sequence[Tensor], owner: str, *, require_float: bool = False, allow_empty: bool = False
) -> list[tuple[int, int]]:
    """Check a detector's input, a non-empty list of ``[3, H_i, W_i]`` images, and return their sizes.

    Args:
        images: what the caller passed as the images.
        owner: the detector's name, for the messages.
        require_float: also require floating-point images (RGB in [0, 1]).
        allow_empty: accept an empty list (the detector then returns no predictions).

    Returns:
        ``[(H_i, W_i), ...]``.

    Raises:
        TypeError: not a non-empty sequence of tensors (a batched tensor included), or an integer
            image when ``require_float``.
        ValueError: an image that is not ``[3, H, W]`` (its index and shape named).
    """
    if isinstance(images, Tensor) or not isinstance(images, Sequence) or (len(images) == 0 and not allow_empty):
        raise TypeError(f"{owner} expects a non-empty list of [3, H, W] images, got {type(images).__name__}")
    for index, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"{owner}: image {index} must be a [3, H, W] tensor (RGB in [0, 1]), got {shape}")
        if require_float and not image.is_floating_point():
            raise TypeError(f"{owner}: image {index} must be floating point RGB in [0, 1], got {image.dtype}")
    return [(int(image.shape[-2]), int(image.shape[-1])) for image in images]


def _describe(index: int, image_ids: Sequence[object] | None) -> str:
    if image_ids is None:
        return f"image {index}"
    return f"image {index} (id {image_ids[index]!r})"


def _validate_instances(
    instances: Mapping[str, Tensor],
    where: str,
    image_size: tuple[int, int] | None,
    num_classes: int | None,
    is_prediction: bool,
) -> None:
    """Check one per-image dict; ``where`` names the image in error messages.

    Predictions must carry ``scores`` and may hold zero-size boxes (a box clipped to the image
    border); targets may not.
    """
    if not isinstance(instances, Mapping):
        raise TypeError(f"{where}: expected a dict with 'boxes' and 'labels', got {type(instances).__name__}")
    required = ("boxes", "labels", "scores") if is_prediction else ("boxes", "labels")
    for key in required:
        if key not in instances:
            raise KeyError(f"{where}: missing key {key!r} (has {sorted(instances)})")
        if not isinstance(instances[key], Tensor):
            raise TypeError(f"{where}: {key!r} must be a torch.Tensor, got {type(instances[key]).__name__}")

    boxes, labels = instances["boxes"], instances["labels"]
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{where}: boxes must be floating point, got {boxes.dtype}")
    num_boxes = boxes.shape[0]
    if labels.dtype != torch.int64:
        raise TypeError(f"{where}: labels must be int64 (contiguous 0-based class ids), got {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != num_boxes:
        raise ValueError(f"{where}: labels must have shape [{num_boxes}] to match boxes, got {list(labels.shape)}")
    if num_boxes > 0:  # an image with no objects is valid
        not_finite = ~torch.isfinite(boxes).all(dim=1)
        if not_finite.any():
            bad = int(not_finite.nonzero()[0, 0])
            raise ValueError(f"{where}: box {bad} is not finite: {boxes[bad].tolist()}")
        # Degenerate: zero or negative width or height (continuous coordinates, no +1).
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        if is_prediction:
            degenerate, expected = (widths < 0) | (heights < 0), "x1 <= x2 and y1 <= y2"
        else:
            degenerate, expected = (widths <= 0) | (heights <= 0), "x1 < x2 and y1 < y2"
        if degenerate.any():
            bad = int(degenerate.nonzero()[0, 0])
            raise ValueError(
                f"{where}: box {bad} has {'negative' if is_prediction else 'zero or negative'} width or height: "
                f"{boxes[bad].tolist()} (expected {expected}, xyxy in pixels)"
            )
        if (labels < 0).any():
            bad = int((labels < 0).nonzero()[0, 0])
            raise ValueError(f"{where}: label {bad} is negative ({int(labels[bad])}); labels are 0-based class ids")
        if num_classes is not None and (labels >= num_classes).any():
            bad = int((labels >= num_classes).nonzero()[0, 0])
            raise ValueError(f"{where}: label {bad} is {int(labels[bad])}, not below num_classes={num_classes}")

    if "scores" in instances:
        scores = instances["scores"]
        if not scores.is_floating_point() or scores.shape != (num_boxes,):
            raise ValueError(
                f"{where}: scores must be a floating [{num_boxes}] tensor, got {scores.dtype} {list(scores.shape)}"
            )
    if "masks" in instances:
        masks = instances["masks"]
        if masks.dim() != 3 or masks.shape[0] != num_boxes:
            raise ValueError(f"{where}: masks must have shape [{num_boxes}, H, W], got {list(masks.shape)}")
        if image_size is not None and tuple(masks.shape[1:]) != tuple(image_size):
            raise ValueError(f"{where}: masks are {tuple(masks.shape[1:])} but the image is {tuple(image_size)}")


def _validate_batch(
    batch: Sequence[Mapping[str, Tensor]],
    image_sizes: Sequence[tuple[int, int]] | None,
    image_ids: Sequence[object] | None,
    num_classes: int | None,
    is_prediction: bool,
    what: str,
) -> None:
    if not isinstance(batch, Sequence) or isinstance(batch, Mapping):
        raise TypeError(f"{what} must be a list with one dict per image, got {type(batch).__name__}")
    for other, name in ((image_sizes, "image_sizes"), (image_ids, "image_ids")):
        if other is not None and len(other) != len(batch):
            raise ValueError(f"got {len(batch)} {what} but {len(other)} {name}")
    for index, instances in enumerate(batch):
        _validate_instances(
            instances,
            _describe(index, image_ids),
            None if image_sizes is None else image_sizes[index],
            num_classes,
            is_prediction,
        )


def validate_targets(
    targets: Sequence[Mapping[str, Tensor]],
    image_sizes: Sequence[tuple[int, int]] | None = None,
    image_ids: Sequence[object] | None = None,
    num_classes: int | None = None,
) -> None:
    """Raise a clear error unless ``targets`` follow detkit's per-image convention.

    Checks, per image: ``boxes`` is a floating ``[N, 4]`` tensor of finite values with
    ``x1 < x2`` and ``y1 < y2``; ``labels`` is int64 ``[N]`` with values in ``[0, num_classes)``;
    optional ``scores`` ``[N]`` and ``masks`` ``[N, H, W]`` (``H, W`` the image size when
    ``image_sizes`` is given). Images with zero boxes are valid. Errors name the image index (and
    id when ``image_ids`` is given) and the offending box.

    Args:
        targets: one dict per image.
        image_sizes: ``(height, width)`` per image in pixels, to check mask sizes and batch length.
        image_ids: an identifier per image (e.g. dataset id) quoted in error messages.
        num_classes: when given, labels must be below it.

    Raises:
        TypeError: a value has the wrong type or dtype.
        KeyError: ``boxes`` or ``labels`` is missing.
        ValueError: a shape, a length or a value is wrong.
    """
    _validate_batch(targets, image_sizes, image_ids, num_classes, is_prediction=False, what="targets")


def validate_predictions(
    predictions: Sequence[Mapping[str, Tensor]],
    image_sizes: Sequence[tuple[int, int]] | None = None,
    image_ids: Sequence[object] | None = None,
    num_classes: int | None = None,
) -> None:
    """As :func:`validate_targets`, but ``scores`` ``[N]`` floating is required and zero-size boxes
    (``x1 == x2`` or ``y1 == y2``, e.g. clipped at the border) are allowed."""
    _validate_batch(predictions, image_sizes, image_ids, num_classes, is_prediction=True, what="predictions")
