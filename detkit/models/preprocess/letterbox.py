"""ultralytics' input stage: ``LetterBox`` as its predictor runs it, and ``scale_boxes`` back.

For an image of ``(h, w)`` and a target ``(H, W)`` (:func:`letterbox_params`, in Python floats as
ultralytics computes it):

- ratio ``r = min(H / h, W / w)`` (``scaleup=False``: at most 1); the image is resized to
  ``(max(round(h * r), 1), max(round(w * r), 1))`` (Python's round, half to even) with OpenCV's
  8-bit ``INTER_LINEAR`` (``cv2.resize`` itself on the CPU, :func:`~detkit.ops.image_resize.resize_bilinear_opencv` elsewhere, bit for bit;
  an exact 2x reduction on both axes is OpenCV's ``INTER_AREA`` average, which ``cv2.resize``
  switches to), unless it already has that size;
- padding ``dw = W - new_w``, ``dh = H - new_h``, with ``rect`` (ultralytics' ``auto``) only their
  remainder modulo ``stride`` (the smallest stride-multiple rectangle), halved, then
  ``top = round(dh / 2 - 0.1)``, ``bottom = round(dh / 2 + 0.1)`` (likewise left / right), filled
  with 114 (``pad_value`` 114 / 255).

The predictor letterboxes with ``rect`` (its ``rect=True`` default) when all images of a batch
share one shape, else to the full ``input_size``; a batch of different rectangles is then padded
at the bottom-right to the largest (a single shape in the usual batch). Training letterboxes to
the square ``input_size`` (ultralytics' ``rect=False`` training), targets mapped by
``x * r + (left, top)``.

Back (:meth:`LetterboxPreprocess.postprocess`, ultralytics' ``scale_boxes`` with no ratio given):
the gain and padding are derived again from the network input and image shapes,
``gain = min(H / h, W / w)``, ``new = round(side * gain)``, ``pad = round((H - new_h) / 2 - 0.1)``,
and boxes become ``(x - pad_x) / (new_w / w)``, clipped to the image.

Pixels are RGB in [0, 1]; they are taken to their 8-bit levels for the resize (an image decoded
from an 8-bit file and divided by 255 gives back its exact bytes), as ultralytics works on uint8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.models.preprocess.base import Preprocess
from detkit.ops.image_resize import resize_bilinear_opencv, resize_unit_image_opencv, to_uint8_levels
from detkit.structures import ImageList

__all__ = ["LETTERBOX_PAD_VALUE", "LetterboxParams", "LetterboxPreprocess", "letterbox_params", "resize_opencv"]

LETTERBOX_PAD_VALUE = 114 / 255  # ultralytics pads with grey 114 of 255


class LetterboxParams(NamedTuple):
    """Where an image lands in its letterboxed input.

    Attributes:
        ratio: scale of the image (``r``).
        new_h, new_w: size of the resized image.
        top, bottom, left, right: padding in pixels.
    """

    ratio: float
    new_h: int
    new_w: int
    top: int
    bottom: int
    left: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the letterboxed image."""
        return (self.new_h + self.top + self.bottom, self.new_w + self.left + self.right)


def letterbox_params(
    image_size: tuple[int, int], new_shape: tuple[int, int], rect: bool = False, stride: int = 32, scaleup: bool = True
) -> LetterboxParams:
    """ultralytics' ``LetterBox.get_params`` (see the module docstring).

    Args:
        image_size: ``(h, w)`` of the image.
        new_shape: ``(H, W)`` target.
        rect: pad only to the next multiple of ``stride`` (ultralytics' ``auto``).
        stride: the model's largest stride.
        scaleup: allow ``r > 1``.
    """
    height, width = int(image_size[0]), int(image_size[1])
    ratio = min(new_shape[0] / height, new_shape[1] / width)
    if not scaleup:
        ratio = min(ratio, 1.0)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    pad_w, pad_h = new_shape[1] - new_w, new_shape[0] - new_h
    if rect:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    half_w, half_h = pad_w / 2, pad_h / 2
    return LetterboxParams(
        ratio, new_h, new_w, round(half_h - 0.1), round(half_h + 0.1), round(half_w - 0.1), round(half_w + 0.1)
    )


def resize_opencv(levels: Tensor, size: tuple[int, int]) -> Tensor:
    """``cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)`` on 8-bit levels ``[C, h, w]``.

    OpenCV replaces ``INTER_LINEAR`` by ``INTER_AREA`` for an exact 2x reduction of both sides,
    which averages each 2x2 block as ``(a + b + c + d + 2) >> 2``.

    Returns:
        ``[C, H, W]`` int32 levels.
    """
    in_h, in_w = levels.shape[-2:]
    if (in_h, in_w) == (2 * size[0], 2 * size[1]):
        blocks = levels.to(torch.int32).reshape(levels.shape[0], size[0], 2, size[1], 2)
        return (blocks.sum((2, 4)) + 2) >> 2
    return resize_bilinear_opencv(levels, size)


class LetterboxPreprocess(Preprocess):
    """ultralytics' letterbox to ``input_size`` and ``scale_boxes`` back (module docstring).

    Args:
        input_size: ``(H, W)`` target (ultralytics' ``imgsz``), multiples of ``stride``.
        rect: at inference, the smallest stride-multiple rectangle when the batch's images share
            a shape (ultralytics' predictor); False: always ``input_size`` (its ``auto=False``).
        stride: the model's largest stride (32).
        scaleup: allow enlarging images (ultralytics: True).
        pixel_mean, pixel_std: normalisation after the letterbox (ultralytics: none).
    """

    def __init__(
        self,
        input_size: Sequence[int] = (640, 640),
        rect: bool = True,
        stride: int = 32,
        scaleup: bool = True,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(pixel_mean, pixel_std)
        size = tuple(int(s) for s in input_size)
        if len(size) != 2 or stride <= 0 or any(s <= 0 or s % stride for s in size):
            raise ValueError(f"LetterboxPreprocess: input_size {tuple(input_size)} must be two positive multiples "
                             f"of stride {stride}")  # fmt: skip
        self.input_size: tuple[int, int] = size  # type: ignore[assignment]
        self.rect = bool(rect)
        self.stride = int(stride)
        self.scaleup = bool(scaleup)
        self.normalizes = any(float(m) != 0.0 for m in pixel_mean) or any(float(s) != 1.0 for s in pixel_std)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, rect={self.rect}, stride={self.stride}, scaleup={self.scaleup}"

    def letterbox(self, image: Tensor, params: LetterboxParams) -> Tensor:
        """One image ``[3, h, w]`` (RGB in [0, 1]) letterboxed: ``[3, *params.size]``, not normalised.

        The resize is ``cv2.resize`` itself on the CPU (:func:`resize_unit_image_opencv`), the PyTorch
        kernels of :func:`resize_opencv` elsewhere and for an exact 2x reduction: the same bits.
        """
        size = (params.new_h, params.new_w)
        in_size = tuple(image.shape[-2:])
        if in_size == (2 * size[0], 2 * size[1]):
            image = resize_opencv(to_uint8_levels(image), size).to(image.dtype) / 255
        elif size != in_size:
            image = resize_unit_image_opencv(image, size)
        if params.left == params.right == params.top == params.bottom == 0:
            return image
        return F.pad(image, (params.left, params.right, params.top, params.bottom), value=LETTERBOX_PAD_VALUE)

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Letterbox and stack the images (and map the targets into them).

        Args:
            images: ``B`` tensors ``[3, h_i, w_i]``, RGB in [0, 1] (moved to this module's device).
            targets: optional per-image ``boxes [N, 4]`` (image pixels) and ``labels [N]``.

        Returns:
            ``(batch [B, 3, H, W], targets in batch pixels or None)``; ``batch.image_sizes`` are the
            letterboxed sizes (each image's network input).
        """
        sizes = [tuple(int(s) for s in image.shape[-2:]) for image in images]
        rect = self.rect and not self.training and len(set(sizes)) == 1
        params = [letterbox_params(size, self.input_size, rect, self.stride, self.scaleup) for size in sizes]
        boxed = [self.letterbox(image.to(self.pixel_mean.device, self.pixel_mean.dtype), p)
                 for image, p in zip(images, params)]  # fmt: skip
        height = max(image.shape[-2] for image in boxed)
        width = max(image.shape[-1] for image in boxed)
        batch = torch.stack([
            image if image.shape[-2:] == (height, width)
            else F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]), value=LETTERBOX_PAD_VALUE)
            for image in boxed
        ])  # fmt: skip
        if self.normalizes:
            batch = self.normalize(batch)
        mapped = None
        if targets is not None:
            mapped = []
            for target, p in zip(targets, params):
                offset = torch.tensor([p.left, p.top, p.left, p.top], dtype=batch.dtype, device=batch.device)
                mapped.append({**target, "boxes": target["boxes"].to(batch) * p.ratio + offset})
        return ImageList(batch, [tuple(image.shape[-2:]) for image in boxed]), mapped

    def postprocess(
        self,
        predictions: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """ultralytics' ``scale_boxes``: boxes from each letterboxed input back to its image, clipped.

        Args:
            predictions: per image ``boxes [N, 4]`` in network-input pixels.
            image_sizes: ``(H, W)`` of each image's letterboxed input.
            original_sizes: ``(h, w)`` of each input image.

        Returns:
            The same dicts (updated in place), boxes in image pixels.
        """
        for prediction, (in_h, in_w), (height, width) in zip(predictions, image_sizes, original_sizes):
            gain = min(in_h / height, in_w / width)
            new_h, new_w = max(round(height * gain), 1), max(round(width * gain), 1)
            pad_x, pad_y = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
            boxes = prediction["boxes"].clone()
            boxes[:, 0::2] -= pad_x
            boxes[:, 1::2] -= pad_y
            boxes[:, 0::2] /= new_w / width
            boxes[:, 1::2] /= new_h / height
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            prediction["boxes"] = boxes
        return predictions
