"""The input stage of a detector: images in, a normalised batch out, and the way back.

A :class:`Preprocess` module is the ``preprocess`` attribute of every :class:`~detkit.models.
detectors.base.Detector`. Its call turns the user's images (``[3, H_i, W_i]`` float RGB in [0, 1],
sizes may differ) and, in training, their targets into what the network sees: an
:class:`~detkit.structures.ImageList` (normalised, resized or letterboxed, padded) and the targets
in pixels of that batch. :meth:`Preprocess.postprocess` maps the predictions back to the pixels of
the input images. Each family keeps its own numerics (order of normalising and resizing, rounding)
in its subclass: :class:`~detkit.models.preprocess.rcnn.RCNNPreprocess`,
:class:`~detkit.models.preprocess.ssd.SSDPreprocess`, :class:`~detkit.models.preprocess.yolo.YOLOPreprocess`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from detkit.structures import ImageList

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "resize_boxes"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_boxes(boxes: Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Scale xyxy boxes from an image of ``old_size`` to one of ``new_size``.

    Args:
        boxes: ``[N, 4]`` xyxy pixels of the old image.
        old_size: ``(height, width)`` of the old image.
        new_size: ``(height, width)`` of the new image.

    Returns:
        ``[N, 4]`` boxes in pixels of the new image.
    """
    # float32 ratios computed as tensors, as torchvision, so the products round identically.
    ratio_height, ratio_width = (
        torch.tensor(new, dtype=torch.float32, device=boxes.device)
        / torch.tensor(old, dtype=torch.float32, device=boxes.device)
        for new, old in zip(new_size, old_size)
    )
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_width, y1 * ratio_height, x2 * ratio_width, y2 * ratio_height), dim=1)


def resize_keypoints(keypoints: Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Scale ``[N, K, 3]`` keypoints ``(x, y, v)`` (or ``[N, K, 2]``) from ``old_size`` to ``new_size``
    (``(height, width)``); the third column is kept. Same float32 ratios as :func:`resize_boxes`."""
    ratio_height, ratio_width = (
        torch.tensor(new, dtype=torch.float32, device=keypoints.device)
        / torch.tensor(old, dtype=torch.float32, device=keypoints.device)
        for new, old in zip(new_size, old_size)
    )
    scaled = torch.stack((keypoints[..., 0] * ratio_width, keypoints[..., 1] * ratio_height), dim=-1)
    return torch.cat((scaled.to(keypoints.dtype), keypoints[..., 2:]), dim=-1)


class Preprocess(nn.Module):
    """Base of the input stages (see the module docstring).

    Args:
        pixel_mean: per-channel mean of RGB pixels in [0, 1], subtracted by :meth:`normalize`.
        pixel_std: per-channel standard deviation, same units (> 0), divides afterwards.

    Attributes:
        pixel_mean, pixel_std: ``[3]`` float32 buffers (not saved in the state dict).
    """

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> None:
        super().__init__()
        name = type(self).__name__
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(
                f"{name}: pixel_mean {tuple(pixel_mean)} and pixel_std {tuple(pixel_std)} differ in length"
            )
        if min(pixel_std) <= 0:
            raise ValueError(f"{name}: pixel_std must be > 0, got {tuple(pixel_std)}")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """``(images - pixel_mean) / pixel_std`` per channel, in the images' dtype.

        Args:
            images: ``[3, H, W]`` or ``[B, 3, H, W]``.

        Returns:
            The normalised tensor, same shape.
        """
        mean = self.pixel_mean.to(images.dtype)[:, None, None]
        std = self.pixel_std.to(images.dtype)[:, None, None]
        return (images - mean) / std

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Batch the images (and map their targets).

        Args:
            images: ``B`` tensors ``[3, H_i, W_i]``, float RGB in [0, 1].
            targets: optional per-image dicts with ``boxes [N, 4]`` in pixels of the input image
                (and ``masks`` where the family has them); they are not modified.

        Returns:
            ``(batch, targets)``: the network's input, whose ``image_sizes`` are the sizes of the
            images inside it, and shallow copies of the targets in its pixels (None without targets).
        """
        raise NotImplementedError

    def postprocess(
        self,
        predictions: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Map predictions from the batch back to the input images.

        Args:
            predictions: per image ``boxes [N, 4]`` in pixels of the batch image (and whatever
                else the family predicts).
            image_sizes: ``(height, width)`` of each image in the batch (``batch.image_sizes``).
            original_sizes: ``(height, width)`` of each input image.

        Returns:
            The same dicts (updated in place) in pixels of the input images.
        """
        raise NotImplementedError
