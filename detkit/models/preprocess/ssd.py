"""SSD's input stage: normalise, then stretch every image to one fixed size; boxes back after.

torchvision's SSD (``GeneralizedRCNNTransform`` with ``fixed_size``):

* ``(image - pixel_mean) / pixel_std`` on RGB in [0, 1], then a bilinear resize
  (``align_corners=False``) to ``image_size``; the aspect ratio is not kept, and an image that
  already has that size is used as it is (bilinear would be the identity).
* Target boxes scale by ``image_size / image size`` per axis (:func:`resize_boxes`).
* Back: boxes scale by ``image size / image_size`` and are clipped to the input image (float32
  scaling can land 1e-4 px outside it; torchvision does not clip again).

``channels_last`` picks the batch's memory format: oneDNN (CPU) and cuDNN run convolutions faster
in NHWC. ``"train"`` gives an NHWC batch in training only (evaluation reproduces torchvision bit
for bit), ``"always"`` in both modes, ``"off"`` never.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.models.preprocess.base import Preprocess, resize_boxes
from detkit.ops import clip_boxes_to_image
from detkit.structures import ImageList

__all__ = ["CHANNELS_LAST_MODES", "SSDPreprocess"]

CHANNELS_LAST_MODES = ("off", "train", "always")


class SSDPreprocess(Preprocess):
    """Normalise, resize to ``image_size`` and stack (see the module docstring).

    Args:
        image_size: ``(height, width)`` every image is resized to (300x300 for SSD300).
        pixel_mean: per-channel mean of RGB pixels in [0, 1].
        pixel_std: per-channel std, same units.
        channels_last: ``"off"``, ``"train"`` or ``"always"``: when the batch is NHWC in memory.
    """

    def __init__(
        self,
        image_size: Sequence[int] = (300, 300),
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
        channels_last: str = "train",
    ) -> None:
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError(f"pixel_mean and pixel_std need 3 values (std > 0), got {pixel_mean}, {pixel_std}")
        super().__init__(pixel_mean, pixel_std)
        if len(image_size) != 2 or min(image_size) <= 0:
            raise ValueError(f"image_size must be (height, width) > 0, got {image_size}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.channels_last = channels_last

    @property
    def channels_last(self) -> str:
        """``"off"``, ``"train"`` or ``"always"`` (see the module docstring)."""
        return self._channels_last

    @channels_last.setter
    def channels_last(self, mode: str) -> None:
        if mode not in CHANNELS_LAST_MODES:
            raise ValueError(f"channels_last must be 'off', 'train' or 'always', got {mode!r}")
        self._channels_last = mode

    def extra_repr(self) -> str:
        return (
            f"image_size={self.image_size}, pixel_mean={self.pixel_mean.tolist()}, "
            f"pixel_std={self.pixel_std.tolist()}, channels_last={self.channels_last!r}"
        )

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Normalise each image, then resize it to ``image_size`` (torchvision's order).

        Args:
            images: ``B`` tensors ``[3, H_i, W_i]``, RGB in [0, 1].
            targets: optional per-image dicts with ``boxes [N, 4]`` in pixels of the input image.

        Returns:
            ``(batch, targets)``: ``batch.tensor`` is ``[B, 3, image_size[0], image_size[1]]``
            (NHWC in memory when ``channels_last`` asks for it), every ``image_sizes`` entry is
            ``image_size``; the targets' boxes are in its pixels (None without targets).
        """
        batch = []
        for image in images:
            image = self.normalize(image)
            if tuple(image.shape[-2:]) != self.image_size:  # same size: bilinear would be the identity
                image = F.interpolate(image[None], size=self.image_size, mode="bilinear", align_corners=False)[0]
            batch.append(image)
        nhwc = self.channels_last == "always" or (self.channels_last == "train" and self.training)
        tensor = torch.stack(batch).contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        resized = None
        if targets is not None:
            resized = [
                {**target, "boxes": resize_boxes(target["boxes"], tuple(image.shape[-2:]), self.image_size)}
                for target, image in zip(targets, images)
            ]
        return ImageList(tensor, [self.image_size] * len(batch)), resized

    def postprocess(
        self,
        predictions: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Scale boxes from ``image_size`` back to each input image and clip them to it.

        Args:
            predictions: per image ``boxes [N, 4]`` in pixels of the resized image.
            image_sizes: ``(height, width)`` of each resized image.
            original_sizes: ``(height, width)`` of each input image.

        Returns:
            The same dicts (updated in place), boxes in input-image pixels.
        """
        for prediction, size, original in zip(predictions, image_sizes, original_sizes):
            prediction["boxes"] = clip_boxes_to_image(resize_boxes(prediction["boxes"], size, original), original)
        return predictions
