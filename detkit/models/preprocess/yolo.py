"""YOLO's input stage: resize or letterbox every image to the network input, then normalise.

``resize_mode`` (both reproduce their reference exactly, see :mod:`detkit.ops.image_resize`):

- ``"resize"`` (the default): a plain bilinear resize to ``input_size`` ignoring the aspect ratio,
  exactly as OpenCV DNN's ``cv2.dnn.blobFromImage(img, 1 / 255, (W, H), swapRB=True, crop=False)``
  does it: the image is taken back to its 8-bit levels (``round(x * 255)``; an image decoded from
  an 8-bit file and divided by 255 gives its exact bytes), resized with OpenCV's fixed-point
  ``INTER_LINEAR`` (:func:`~detkit.ops.image_resize.resize_bilinear_opencv`, bit for bit) and
  divided by 255. It is the default because OpenCV's darknet reader is the reference detkit's
  YOLOv3 is checked against from the photo itself (the COCO ``yolov3-tiny.weights`` give OpenCV's
  scores to 1e-4) and because it is what most deployments of darknet weights run.
- ``"letterbox"``: darknet's ``letterbox_image`` (pjreddie's ``detector test``): the side that
  limits gets the input size and the other ``side * input // image`` (integer division, as darknet
  does), the image is resized with darknet's own ``resize_image``
  (:func:`~detkit.ops.image_resize.resize_bilinear_darknet`: corners aligned, float32) and put at
  offset ``((W - new_w) // 2, (H - new_h) // 2)`` on a grey 0.5 canvas. The training configs use
  it (aspect ratio kept, as in their data pipeline). Detections map back through the offset that
  was used; darknet's ``correct_yolo_boxes`` uses ``(W - new_w) / 2`` unrounded, half a pixel away
  when the padding is odd.

An image that already has the network input size is used as it is in both modes.

A ``uint8`` image is read as its 8-bit levels: ``k`` means ``k / 255``, the same input as the float
image ``image.float() / 255`` (bit for bit), without the trip to float and back that the 8-bit resize
would otherwise make (:class:`~detkit.apis.Predictor` hands the decoded photo over as it is).

Either way a point ``x`` of the image lands at ``x * scale_x + offset_x`` in the network input
(``scale = resized size / image size`` per axis, ``offset`` the letterbox padding, 0 for resize):
targets go forward that way, and :meth:`YOLOPreprocess.postprocess` maps detections back with
``(x - offset_x) / scale_x``, then clips them to the image.

``pixel_mean`` / ``pixel_std`` apply after the resize (darknet: none, mean 0 and std 1, which is
the identity). ``train_sizes`` enables multi-scale training: each training batch draws its
(square) input size from that list with one ``torch.randint`` on the global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from detkit.models.preprocess.base import Preprocess
from detkit.ops.image_resize import resize_bilinear_darknet, resize_unit_image_opencv
from detkit.structures import ImageList

__all__ = ["LETTERBOX_FILL", "RESIZE_MODES", "YOLOPreprocess"]

RESIZE_MODES = ("resize", "letterbox")
LETTERBOX_FILL = 0.5  # darknet pads letterboxed images with grey 0.5


class YOLOPreprocess(Preprocess):
    """Resize or letterbox to ``input_size``, normalise, stack (see the module docstring).

    Args:
        input_size: ``(H, W)`` of the network input for inference; multiples of 32.
        resize_mode: ``"resize"`` or ``"letterbox"``.
        train_sizes: square input sizes drawn per training batch (multiples of 32), or None to
            train at ``input_size``.
        pixel_mean: subtracted from the resized [0, 1] RGB pixels (darknet: 0).
        pixel_std: divides them afterwards (darknet: 1).
    """

    def __init__(
        self,
        input_size: Sequence[int] = (416, 416),
        resize_mode: str = "resize",
        train_sizes: Sequence[int] | None = None,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__(pixel_mean, pixel_std)
        input_size = tuple(int(s) for s in input_size)
        sizes = [*input_size, *(train_sizes or ())]
        if len(input_size) != 2 or any(s <= 0 or s % 32 for s in sizes):
            raise ValueError(
                f"YOLOPreprocess: input_size {input_size} and train_sizes {train_sizes} must be positive "
                "multiples of 32"
            )
        self.input_size: tuple[int, int] = input_size  # type: ignore[assignment]
        self.resize_mode = resize_mode
        self.train_sizes = None if train_sizes is None else [int(s) for s in train_sizes]
        # Decided once from the arguments: mean 0 and std 1 skip two passes over the batch (the
        # result would be the same), with no data-dependent branch in forward.
        self.normalizes = any(float(m) != 0.0 for m in pixel_mean) or any(float(s) != 1.0 for s in pixel_std)

    @property
    def resize_mode(self) -> str:
        """``"resize"`` or ``"letterbox"`` (see the module docstring)."""
        return self._resize_mode

    @resize_mode.setter
    def resize_mode(self, mode: str) -> None:
        if mode not in RESIZE_MODES:
            raise ValueError(
                f"YOLOPreprocess: resize_mode (YOLOv3's former preprocess=) must be one of {RESIZE_MODES}, got {mode!r}"
            )
        self._resize_mode = mode

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, resize_mode={self.resize_mode!r}, train_sizes={self.train_sizes}, "
            f"pixel_mean={self.pixel_mean.tolist()}, pixel_std={self.pixel_std.tolist()}"
        )

    def _fit(self, height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(new_h, new_w, left, top)``: the resized image's size and its offset in the input."""
        if self.resize_mode == "resize":
            new_h, new_w = size
        else:  # darknet's letterbox_image: a float32 comparison, then integer division
            in_h, in_w = size
            if float(torch.tensor(in_w, dtype=torch.float32) / width) < float(
                torch.tensor(in_h, dtype=torch.float32) / height
            ):
                new_w, new_h = in_w, max(1, height * in_w // width)
            else:
                new_h, new_w = in_h, max(1, width * in_h // height)
        return new_h, new_w, (size[1] - new_w) // 2, (size[0] - new_h) // 2

    def transform(self, image_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
        """``(scale_x, scale_y, offset_x, offset_y)`` float32 of an image of ``image_size`` ``(h, w)``
        in a network input of ``size`` ``(H, W)``: ``x_input = x_image * scale_x + offset_x``."""
        height, width = image_size
        new_h, new_w, left, top = self._fit(height, width, size)
        return torch.tensor([new_w / width, new_h / height, left, top], dtype=torch.float32)

    def prepare(self, image: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Resizes or letterboxes one image to the network input.

        Args:
            image: ``[3, h, w]`` float RGB in [0, 1], or ``uint8`` RGB levels (``k`` is ``k / 255``).
            size: ``(H, W)`` network input.

        Returns:
            The input ``[3, H, W]`` (not normalised; a ``uint8`` image in the module's float
            dtype) and its :meth:`transform`.
        """
        height, width = image.shape[-2:]
        new_h, new_w, left, top = self._fit(height, width, size)
        resized = (new_h, new_w) != (height, width)
        dtype = self.pixel_mean.dtype
        if image.dtype == torch.uint8 and not (resized and self.resize_mode == "resize"):
            image = image.to(dtype).div_(255)  # what the 8-bit resize below returns for uint8 too
        if resized:
            if self.resize_mode == "resize":
                image = resize_unit_image_opencv(image, (new_h, new_w)).to(dtype)  # cv2.resize on the CPU
            else:
                image = resize_bilinear_darknet(image, (new_h, new_w)).to(image.dtype)
        if (new_h, new_w) != tuple(size):
            canvas = image.new_full((image.shape[0], *size), LETTERBOX_FILL)
            canvas[:, top : top + new_h, left : left + new_w] = image
            image = canvas
        return image, torch.tensor([new_w / width, new_h / height, left, top], dtype=torch.float32)

    def _as_input(self, image: Tensor) -> Tensor:
        """``image`` on this module's device: ``uint8`` levels as they are, else in its float dtype."""
        if image.dtype == torch.uint8:
            return image.to(self.pixel_mean.device)
        return image.to(self.pixel_mean.device, self.pixel_mean.dtype)

    def _input_size(self) -> tuple[int, int]:
        if self.training and self.train_sizes:
            side = self.train_sizes[int(torch.randint(len(self.train_sizes), ()))]
            return (side, side)
        return self.input_size

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Stack the network inputs (and map the targets into them).

        Args:
            images: ``B`` tensors ``[3, H_i, W_i]``, RGB in [0, 1] or ``uint8`` levels (see the module
                docstring), moved to this module's device.
            targets: optional per-image ``boxes [N, 4]`` (input-image pixels) and ``labels [N]``.

        Returns:
            ``(batch, targets)``: ``[B, 3, H, W]`` normalised inputs (every ``image_sizes`` entry
            ``(H, W)``: ``input_size``, or in training a size drawn from ``train_sizes``) and per
            image ``boxes`` in input pixels with their ``labels`` (None without targets).
        """
        size = self._input_size()
        prepared = [self.prepare(self._as_input(image), size) for image in images]
        batch = torch.stack([image for image, _ in prepared])
        transforms = torch.stack([t for _, t in prepared]).to(batch.device)
        if self.normalizes:
            batch = self.normalize(batch)
        mapped = None
        if targets is not None:
            mapped = [
                {"boxes": t["boxes"].to(batch) * tf[:2].repeat(2) + tf[2:].repeat(2), "labels": t["labels"]}
                for t, tf in zip(targets, transforms)
            ]
        return ImageList(batch, [size] * len(prepared)), mapped

    def postprocess(
        self,
        predictions: list[dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        original_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Map boxes from the network input back to each image and clip them to it.

        Args:
            predictions: per image ``boxes [N, 4]`` in network-input pixels.
            image_sizes: ``(H, W)`` of the network input, per image.
            original_sizes: ``(h, w)`` of each input image.

        Returns:
            The same dicts (updated in place), boxes in image pixels.
        """
        for prediction, size, (height, width) in zip(predictions, image_sizes, original_sizes):
            transform = self.transform((height, width), tuple(size)).to(prediction["boxes"].device)
            scale, offset = transform[:2].repeat(2), transform[2:].repeat(2)
            mapped = (prediction["boxes"] - offset) / scale
            mapped[:, 0::2] = mapped[:, 0::2].clamp(0, width)
            mapped[:, 1::2] = mapped[:, 1::2].clamp(0, height)
            prediction["boxes"] = mapped
        return predictions
