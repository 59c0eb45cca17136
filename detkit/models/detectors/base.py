"""The detector contract: ``detector(images, targets=None) -> (predictions, losses)``, once.

:class:`Detector` owns what every family shares, so that a family only wires its parts:

* **Inputs.** ``images`` is a non-empty list of ``[3, H_i, W_i]`` float RGB images in [0, 1]
  (:func:`~detkit.structures.check_image_list`), none empty and none with NaN or infinite values
  (:func:`check_image_values`). In training ``targets`` are required, one per
  image, and checked (:func:`~detkit.structures.validate_targets`: boxes xyxy in pixels, labels
  0-based below ``num_classes``, plus the keys in ``required_target_keys``); in eval mode they are
  ignored.
* **Preprocessing** through the ``preprocess`` module (:class:`~detkit.models.preprocess.Preprocess`):
  normalise, resize or letterbox, pad, and the targets mapped into the batch.
* **The family's stages**, :meth:`Detector.forward_batch` (the only method a family writes):
  ``(batch, targets) -> (predictions in batch pixels, losses)``.
* **Losses** of the stages merged by :meth:`Detector.merge_losses` (a dict union that fails on a
  duplicate name); training returns ``([], losses)``.
* **Predictions** mapped back to the input images by ``preprocess.postprocess``; eval returns
  ``(predictions, {})``.
* **Classes.** ``num_classes`` is read from the part that classifies (``classes_from``, the head);
  a ``num_classes`` argument is only checked against it, and ``class_names`` against it too.
* **Shapes.** :meth:`Detector.size_parts` sizes a neck from ``backbone.output_shape()`` and the
  heads from the neck's (or checks the shapes they were given: see :mod:`detkit.models.sizing`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from detkit.models.sizing import bind_in_shapes, output_shape_of
from detkit.structures import ImageList, check_image_list, validate_targets

__all__ = ["Detector", "check_image_values", "hand_on_settings", "preprocess_or_build"]

# What a required target key holds, for the error message.
_TARGET_KEY_FORMATS = {"masks": "[N, H, W]", "landmarks": "[N, K, 2]", "keypoints": "[N, K, 3]"}


def check_image_values(images: Sequence[Tensor], owner: str) -> None:
    """Refuse images with no pixels and floating-point images holding NaN or infinity.

    One sum per floating image, reduced on the device and read back once (one synchronisation
    per batch; ``isfinite`` of every value only when a sum is not finite); skipped while tracing, compiling or exporting, so that the
    model stays export-clean. Integer images cannot hold NaN and are not scanned.

    Args:
        images: ``[3, H_i, W_i]`` tensors (already checked by
            :func:`~detkit.structures.check_image_list`).
        owner: the detector's name, for the messages.

    Raises:
        ValueError: an image whose height or width is 0, or one with NaN or infinite values
            (its index, shape and the number of bad values named).
    """
    for index, image in enumerate(images):
        if image.shape[-2] == 0 or image.shape[-1] == 0:
            raise ValueError(f"{owner}: image {index} is empty: shape {list(image.shape)} (an image needs height "
                             "and width >= 1)")
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    floating = [(index, image) for index, image in enumerate(images) if image.is_floating_point()]
    if not floating:
        return
    # A sum is finite only if every value is (one pass, no image-sized temporaries); only when it
    # is not (a NaN or inf, or finite values overflowing the sum) are the values checked one by one.
    sums = torch.stack([image.sum(dtype=torch.float64 if image.dtype == torch.float64 else torch.float32)
                        for _, image in floating])
    if bool(torch.isfinite(sums).all()):
        return
    finite = torch.stack([torch.isfinite(image).all() for _, image in floating])
    if bool(finite.all()):
        return
    index, image = floating[int((~finite).nonzero()[0])]
    bad = int((~torch.isfinite(image)).sum())
    raise ValueError(f"{owner}: image {index} (shape {list(image.shape)}) has {bad} NaN or infinite values of "
                     f"{image.numel()}; images are RGB in [0, 1]")


def _differs(value: object, default: object) -> bool:
    if isinstance(value, Sequence) and not isinstance(value, str) and isinstance(default, Sequence):
        return tuple(value) != tuple(default)
    return value != default


def preprocess_or_build(
    owner: str,
    preprocess: nn.Module | None,
    build: Callable[[], nn.Module],
    settings: Mapping[str, tuple[object, object]],
) -> nn.Module:
    """The detector's preprocess module: the given one, or one built from the detector's settings.

    Args:
        owner: the detector's name, for the message.
        preprocess: the module the caller gave, or None.
        build: makes the module from the detector's own preprocessing arguments.
        settings: ``{argument: (value, default)}`` of those arguments.

    Raises:
        ValueError: a module was given and some of those arguments too (one place only).
    """
    if preprocess is None:
        return build()
    given = [name for name, (value, default) in settings.items() if _differs(value, default)]
    if given:
        raise ValueError(f"{owner}: got a preprocess module and also {given}; set those on the preprocess module")
    return preprocess


def hand_on_settings(owner: str, part: nn.Module, settings: Mapping[str, Any], apply: Callable[..., None]) -> None:
    """Apply settings a detector still accepts but that belong to one of its parts now, with a warning.

    Args:
        owner: the detector's name, for the message.
        part: the part that owns them (its class is named in the message).
        settings: ``{name: value}``, None where not given.
        apply: sets the given ones on the part (called with them as keyword arguments).
    """
    given = {key: value for key, value in settings.items() if value is not None}
    if given:
        warnings.warn(
            f"{owner}: {sorted(given)} are settings of its {type(part).__name__} now; pass them there",
            DeprecationWarning,
            stacklevel=3,
        )
        apply(**given)


class Detector(nn.Module):
    """Base of the detectors (see the module docstring).

    A subclass builds its parts, sets ``self.preprocess``, calls :meth:`size_parts` and
    :meth:`init_classes` in its ``__init__``, and implements :meth:`forward_batch`.

    Class attributes a family may set:
        classes_from: attribute name of the part whose ``num_classes`` the detector reports.
        require_float_images: reject integer images (their values are not RGB in [0, 1]).
        allow_empty_batch: accept ``images == []`` (the predictions are then ``[]``).
        required_target_keys: target keys needed in training beyond ``boxes`` and ``labels``.

    Attributes:
        preprocess: the input stage (a :class:`~detkit.models.preprocess.Preprocess`).
        class_names: name of each class, or None.
    """

    classes_from: ClassVar[str] = "head"
    require_float_images: ClassVar[bool] = True
    allow_empty_batch: ClassVar[bool] = False
    required_target_keys: ClassVar[tuple[str, ...]] = ()

    preprocess: nn.Module

    # ------------------------------------------------------------------ construction

    @property
    def num_classes(self) -> int:
        """Object classes (background excluded), read from the ``classes_from`` part."""
        return int(getattr(self, self.classes_from).num_classes)

    def init_classes(self, num_classes: int | None, class_names: Sequence[str] | None) -> None:
        """Check a given ``num_classes`` and ``class_names`` against the classifying part.

        Args:
            num_classes: what the caller said (None: nothing to check).
            class_names: one name per class, or None.

        Raises:
            ValueError: ``num_classes`` or the number of ``class_names`` differs from the part's
                ``num_classes`` (the message names both).
        """
        name, source = type(self).__name__, self.classes_from
        if num_classes is not None and int(num_classes) != self.num_classes:
            raise ValueError(
                f"{name}: num_classes={num_classes} but its {source} has {self.num_classes} classes "
                f"(the detector reads num_classes from {source}.num_classes; set it there)"
            )
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"{name}: got {len(class_names)} class_names for the {self.num_classes} classes of its {source}"
            )
        self.class_names = None if class_names is None else list(class_names)

    def size_parts(self, backbone: nn.Module, neck: nn.Module | None, heads: Sequence[nn.Module]) -> None:
        """Size ``neck`` from ``backbone.output_shape()`` and ``heads`` from the neck's (or the
        backbone's, without a neck); parts given their shapes are checked instead.

        Raises:
            ValueError: a part's given shapes differ from what feeds it (both named).
        """
        shapes, source = output_shape_of(backbone), "backbone"
        if neck is not None:
            bind_in_shapes(neck, shapes, source)
            shapes, source = output_shape_of(neck), "neck"
        for head in heads:
            bind_in_shapes(head, shapes, source)

    # ------------------------------------------------------------------ the call

    def check_inputs(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None
    ) -> list[tuple[int, int]]:
        """Check the images (and in training the targets); return the images' ``(H, W)``.

        Raises:
            TypeError, ValueError, KeyError: bad images (not ``[3, H, W]``, empty, NaN or
                infinite values: :func:`check_image_values`), missing targets in training, as
                many targets as images, or a target that breaks the format (image and box named).
        """
        name = type(self).__name__
        sizes = check_image_list(
            images, name, require_float=self.require_float_images, allow_empty=self.allow_empty_batch
        )
        check_image_values(images, name)
        if not self.training:
            return sizes
        if targets is None:
            raise ValueError(f"{name} needs targets in training mode (call .eval() to detect)")
        if len(targets) != len(images):
            raise ValueError(f"{name}: got {len(images)} images but {len(targets)} targets")
        validate_targets(targets, image_sizes=sizes, num_classes=self.num_classes)
        for key in self.required_target_keys:
            for index, target in enumerate(targets):
                if key not in target:
                    shape = _TARGET_KEY_FORMATS.get(key, "")
                    raise KeyError(f"image {index}: {name} targets need {key!r} {shape} (has {sorted(target)})")
        return sizes

    @staticmethod
    def merge_losses(*stage_losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The union of the stages' loss dicts, in the given order.

        Raises:
            KeyError: two stages report a loss of the same name.
        """
        merged: dict[str, Tensor] = {}
        for losses in stage_losses:
            for key, value in losses.items():
                if key in merged:
                    raise KeyError(f"two stages report a loss named {key!r}; rename one (losses: {sorted(merged)})")
                merged[key] = value
        return merged

    def forward_batch(
        self, batch: ImageList, targets: list[dict[str, Tensor]] | None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """The family's stages on the preprocessed batch.

        Args:
            batch: the network's input (``batch.image_sizes``: the images' sizes inside it).
            targets: in training, per image targets in pixels of ``batch``; None in eval mode.

        Returns:
            ``(predictions, losses)``: in eval mode per image ``boxes`` (pixels of ``batch``),
            ``scores``, ``labels`` ... and ``{}``; in training any predictions (ignored) and the
            merged losses.
        """
        raise NotImplementedError

    def forward(
        self, images: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]] | None = None
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Detect (eval) or compute the losses (training).

        Args:
            images: list of ``[3, H_i, W_i]`` float RGB in [0, 1]; sizes may differ.
            targets: training only: per image ``boxes [N, 4]`` xyxy pixels of that image and
                ``labels [N]`` int64 0-based (``N = 0`` is fine), plus the family's extra keys.

        Returns:
            Training: ``([], losses)``, each loss a weighted scalar. Eval: per image ``boxes [K, 4]``
            in pixels of that input image, ``labels [K]``, ``scores [K]`` by decreasing score (and
            the family's extra outputs), and ``{}``.
        """
        original_sizes = self.check_inputs(images, targets)
        if not self.training:
            targets = None  # losses are computed in training mode only
        batch, batch_targets = self.preprocess(images, targets)
        predictions, losses = self.forward_batch(batch, batch_targets)
        if self.training:
            return [], losses
        return self.preprocess.postprocess(predictions, batch.image_sizes, original_sizes), {}
