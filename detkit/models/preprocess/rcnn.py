"""Normalise, resize and pad the input images of an R-CNN; map its detections back to the inputs.

Same numbers as torchvision's ``GeneralizedRCNNTransform``:

* Normalise first, ``(image - mean) / std`` per channel (images are RGB in [0, 1]).
* Resize each image so that its short side becomes ``min_size``, unless its long side would then
  exceed ``max_size``: ``scale = min(min_size / short, max_size / long)`` in Python floats, then
  ``F.interpolate(scale_factor=scale, recompute_scale_factor=True, mode="bilinear",
  align_corners=False)``, so the new size is ``floor(side * scale)`` per axis.
* In training, ``min_size`` is drawn per image from the given choices with one
  ``torch.empty(1).uniform_`` call on the global RNG (torchvision's ``torch_choice``), even when
  there is a single choice: that keeps the global RNG stream, hence the samplers' draws, in step
  with torchvision.
* Pad to the largest image of the batch, rounded up to a multiple of ``size_divisibility``.
* Target boxes and keypoints scale by ``new_size / old_size`` per axis (ratios in float32),
  target masks are resized with nearest-neighbour interpolation at the same scale.
* :meth:`RCNNPreprocess.postprocess` scales boxes (and keypoints) back and pastes ``[N, 1, M, M]`` mask
  probabilities into full masks of the input image size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.models.preprocess.base import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resize_boxes, resize_keypoints
from detkit.models.roi_heads.mask_head import paste_masks_in_image
from detkit.structures import ImageList

__all__ = ["RCNNPreprocess"]


class RCNNPreprocess(Preprocess):
    """The input stage of Faster / Mask R-CNN (see the module docstring).

    Args:
        min_size: target short side in pixels, or several choices (one is drawn per image in
            training; evaluation uses the last).
        max_size: largest long side in pixels after resizing.
        pixel_mean: per-channel mean of RGB pixels in [0, 1].
        pixel_std: per-channel standard deviation, same units.
        size_divisibility: the padded batch's height and width are multiples of this (32 suits
            an FPN up to stride 32).
    """

    def __init__(
        self,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        pixel_mean: Sequence[float] = IMAGENET_MEAN,
        pixel_std: Sequence[float] = IMAGENET_STD,
        size_divisibility: int = 32,
    ) -> None:
        super().__init__(pixel_mean, pixel_std)
        choices = (min_size,) if isinstance(min_size, int) else tuple(int(size) for size in min_size)
        if not choices or min(choices) <= 0 or max_size <= 0:
            raise ValueError(f"min_size and max_size must be positive, got {min_size!r} and {max_size!r}")
        self.min_size = choices
        self.max_size = int(max_size)
        self.size_divisibility = size_divisibility

    def extra_repr(self) -> str:
        return (
            f"min_size={self.min_size}, max_size={self.max_size}, pixel_mean={self.pixel_mean.tolist()}, "
            f"pixel_std={self.pixel_std.tolist()}, size_divisibility={self.size_divisibility}"
        )

    def _short_side(self) -> int:
        if not self.training:
            return self.min_size[-1]
        index = int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())
        return self.min_size[index]

    def _normalize(self, image: Tensor, index: int) -> Tensor:
        if image.dim() != 3 or image.shape[0] != self.pixel_mean.numel():
            raise ValueError(
                f"image {index} must be [{self.pixel_mean.numel()}, H, W] (RGB in [0, 1]), got {list(image.shape)}"
            )
        if not image.is_floating_point():
            raise TypeError(f"image {index} must be floating point RGB in [0, 1], got {image.dtype}")
        return self.normalize(image)

    def _resize(self, image: Tensor, target: dict[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor] | None]:
        height, width = image.shape[-2:]
        scale = min(self._short_side() / min(height, width), self.max_size / max(height, width))
        image = F.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
        if target is None:
            return image, None
        new_size = (int(image.shape[-2]), int(image.shape[-1]))
        target["boxes"] = resize_boxes(target["boxes"], (height, width), new_size)
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (height, width), new_size)
        if "masks" in target:
            masks = target["masks"]
            if masks.shape[0] == 0:
                target["masks"] = masks.new_zeros((0, *new_size), dtype=torch.uint8)
            else:
                resized = F.interpolate(
                    masks[:, None].float(), scale_factor=scale, recompute_scale_factor=True
                )  # nearest
                target["masks"] = resized[:, 0].byte()
        return image, target

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Normalise, resize and batch images (and resize their targets).

        Args:
            images: ``B`` tensors ``[3, H_i, W_i]``, float RGB in [0, 1].
            targets: optional per-image dicts with ``boxes [N, 4]`` (xyxy pixels of the input
                image) and optionally ``masks [N, H_i, W_i]``; they are not modified (shallow
                copies are returned).

        Returns:
            ``(batch, targets)``: the padded, normalised batch whose ``image_sizes`` are the
            resized sizes, and the targets in pixels of the resized images (None without targets).
        """
        if targets is not None and len(targets) != len(images):
            raise ValueError(f"got {len(images)} images but {len(targets)} targets")
        resized_images: list[Tensor] = []
        resized_targets: list[dict[str, Tensor]] | None = None if targets is None else []
        for index, image in enumerate(images):
            target = None if targets is None else dict(targets[index])
            image, target = self._resize(self._normalize(image, index), target)
            resized_images.append(image)
            if resized_targets is not None and target is not None:
                resized_targets.append(target)
        batch = ImageList.from_tensors(resized_images, self.size_divisibility)
        return batch, resized_targets

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Map detections from the resized images back to the input images.

        Args:
            detections: per image, ``boxes [N, 4]`` in pixels of the resized image and optionally
                ``masks [N, 1, M, M]`` mask probabilities inside the boxes.
            image_sizes: ``(height, width)`` of each resized image.
            original_sizes: ``(height, width)`` of each input image.

        Returns:
            The same dicts (updated in place) with ``boxes`` in input-image pixels and ``masks``
            ``[N, H, W]`` probabilities over the whole input image.
        """
        for detection, size, original in zip(detections, image_sizes, original_sizes):
            detection["boxes"] = resize_boxes(detection["boxes"], size, original)
            if "keypoints" in detection:
                detection["keypoints"] = resize_keypoints(detection["keypoints"], size, original)
            if "masks" in detection:
                detection["masks"] = paste_masks_in_image(detection["masks"][:, 0], detection["boxes"], original)
        return detections
