"""What RetinaNet and FCOS share: conv subnets run on every FPN level, and their detection step.

:class:`DenseSubnet` is one subnet (Lin et al. 2017, "Focal Loss for Dense Object Detection",
sec. 4 and Fig. 3): ``num_convs`` 3x3 convs of the input width, each followed by an optional norm
and a ReLU, then 3x3 predictor convs giving ``A * K`` channels per cell (``A`` anchors, ``K``
columns); the same weights run on every level. Outputs are flattened as torchvision's heads do:
``[B, A * K, H, W]`` read as ``[B, A, K, H, W]``, permuted to ``[B, H, W, A, K]``, levels one after
the other: the order of :class:`~detkit.models.anchors.AnchorGenerator`.

:class:`FPNDenseHead` is the base of the two heads: a classification subnet ``cls_subnet`` and a
box subnet ``box_subnet``, sized from the neck's channels, and :meth:`FPNDenseHead.predict`
(torchvision's ``postprocess_detections``): per image and per level, the ``pre_nms_topk`` best
(anchor, class) scores above ``score_thresh``, only those decoded and clipped to the image, NMS
over the levels within each class, and the ``detections_per_img`` best. A family writes
:meth:`FPNDenseHead.class_scores`, :meth:`FPNDenseHead.decode` and ``loss``.

The NMS step is :func:`~detkit.models.postprocess.select_detections`'s, so Soft-NMS and
class-agnostic NMS are settings of every such head (``nms_method``, ``class_agnostic_nms``, ...,
see :class:`~detkit.models.postprocess.NMSOptions`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from detkit.models.dense_heads.base import DenseHead
from detkit.models.layers import check_norm_kind, make_norm
from detkit.models.postprocess import select_detections, topk_per_level
from detkit.ops import clip_boxes_to_image
from detkit.structures import ShapeSpec, format_shapes

__all__ = ["DenseOutputs", "DenseSubnet", "FPNDenseHead", "prior_bias"]


def prior_bias(prior_probability: float) -> float:
    """Bias giving ``sigmoid(bias) = prior_probability`` (the paper's initialisation, sec. 4.1)."""
    return -math.log((1 - prior_probability) / prior_probability)


class DenseOutputs(NamedTuple):
    """A dense head's raw output.

    Attributes:
        maps: name -> ``[B, A_total, K]`` predictions of every anchor, levels concatenated.
        num_per_level: anchors of each level (they sum to ``A_total``).
    """

    maps: dict[str, Tensor]
    num_per_level: tuple[int, ...]


class DenseSubnet(nn.Module):
    """A conv tower and its predictors, shared across levels (see the module docstring).

    Keys: ``conv.<i>.0`` the i-th conv, ``conv.<i>.1`` its norm (if any), and one conv per output,
    named as the output (``cls_logits``, ``bbox_reg``, ...).

    Args:
        channels: input (and tower) channels.
        outputs: output name -> columns ``K`` per anchor (e.g. ``{"cls_logits": num_classes}``).
        num_anchors: anchors per cell ``A``.
        num_convs: convs of the tower.
        norm: norm kind after each tower conv (``"gn"``: GroupNorm with 32 groups), or None.
        conv_bias: tower convs have a bias (default: only without a norm; FCOS has both).
    """

    def __init__(
        self,
        channels: int,
        outputs: Mapping[str, int],
        num_anchors: int,
        num_convs: int = 4,
        norm: str | None = None,
        conv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        check_norm_kind(norm, allow_none=True)
        bias = norm is None if conv_bias is None else conv_bias
        self.conv = nn.Sequential()
        for _ in range(num_convs):
            block = [nn.Conv2d(channels, channels, 3, padding=1, bias=bias)]
            if norm is not None:
                block.append(make_norm(norm, channels))
            self.conv.append(nn.Sequential(*block, nn.ReLU(inplace=True)))
        self.columns = dict(outputs)
        self.num_anchors = num_anchors
        for name, columns in self.columns.items():
            self.add_module(name, nn.Conv2d(channels, num_anchors * columns, 3, padding=1))
        for module in self.modules():  # torchvision's (and the paper's) initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        """``[B, C, H_l, W_l]`` per level -> name -> ``[B, sum_l H_l W_l A, K]``."""
        flat: dict[str, list[Tensor]] = {name: [] for name in self.columns}
        for feature in features:
            hidden = self.conv(feature)
            for name, columns in self.columns.items():
                output = getattr(self, name)(hidden)
                batch, _, height, width = output.shape
                output = output.view(batch, -1, columns, height, width).permute(0, 3, 4, 1, 2)
                flat[name].append(output.reshape(batch, -1, columns))
        return {name: torch.cat(outputs, dim=1) for name, outputs in flat.items()}


class FPNDenseHead(DenseHead):
    """Base of :class:`~detkit.models.dense_heads.retinanet_head.RetinaNetHead` and
    :class:`~detkit.models.dense_heads.fcos_head.FCOSHead` (see the module docstring).

    Args:
        in_channels: channels of every level; None: sized by its detector from the neck.
        num_classes: object classes ``C`` (one sigmoid each, no background column).
        num_anchors: anchors per cell.
        box_outputs: outputs of the box subnet (name -> columns).
        num_convs: convs of each subnet's tower.
        norm: norm of the tower convs, or None.
        conv_bias: tower convs have a bias (None: only without a norm).
        prior_probability: initial foreground probability of every class logit.
        score_thresh, nms_thresh, pre_nms_topk, detections_per_img: the detection step
            (``pre_nms_topk`` candidates per level).
        nms_method, class_agnostic_nms, soft_nms_method, soft_nms_sigma, soft_nms_min_score:
            the NMS of :func:`~detkit.models.postprocess.select_detections`.
    """

    def __init__(
        self,
        in_channels: int | None,
        num_classes: int,
        num_anchors: int,
        box_outputs: Mapping[str, int],
        *,
        num_convs: int = 4,
        norm: str | None = None,
        conv_bias: bool | None = None,
        prior_probability: float = 0.01,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        pre_nms_topk: int = 1000,
        detections_per_img: int = 300,
        nms_method: str = "hard",
        class_agnostic_nms: bool = False,
        soft_nms_method: str = "linear",
        soft_nms_sigma: float = 0.5,
        soft_nms_min_score: float = 0.001,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes (object classes) must be >= 1, got {num_classes}")
        if not 0 < prior_probability < 1:
            raise ValueError(f"{name}: prior_probability must be in (0, 1), got {prior_probability}")
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.box_outputs = dict(box_outputs)
        self.subnet_settings = dict(num_convs=num_convs, norm=norm, conv_bias=conv_bias)
        self.prior_probability = prior_probability
        self.in_channels: int | None = None
        self.cls_subnet: DenseSubnet | None = None
        self.box_subnet: DenseSubnet | None = None
        self.configure(
            score_thresh=score_thresh, nms_thresh=nms_thresh, pre_nms_topk=pre_nms_topk,
            detections_per_img=detections_per_img, nms_method=nms_method, class_agnostic_nms=class_agnostic_nms,
            soft_nms_method=soft_nms_method, soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        if in_channels is not None:
            self._build(int(in_channels))

    def configure(
        self,
        *,
        score_thresh: float | None = None,
        nms_thresh: float | None = None,
        pre_nms_topk: int | None = None,
        detections_per_img: int | None = None,
        nms_method: str | None = None,
        class_agnostic_nms: bool | None = None,
        soft_nms_method: str | None = None,
        soft_nms_sigma: float | None = None,
        soft_nms_min_score: float | None = None,
    ) -> None:
        """Set the detection settings that are given (see the class docstring)."""
        self.configure_nms(
            nms_method=nms_method, class_agnostic_nms=class_agnostic_nms, soft_nms_method=soft_nms_method,
            soft_nms_sigma=soft_nms_sigma, soft_nms_min_score=soft_nms_min_score,
        )  # fmt: skip
        self.set_given(
            score_thresh=score_thresh, nms_thresh=nms_thresh, pre_nms_topk=pre_nms_topk,
            detections_per_img=detections_per_img,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, num_anchors={self.num_anchors}, score_thresh={self.score_thresh}, "
            f"nms_thresh={self.nms_thresh}, pre_nms_topk={self.pre_nms_topk}, "
            f"detections_per_img={self.detections_per_img}, nms_method={self.nms_method!r}"
        )

    # ------------------------------------------------------------------ layers

    @property
    def is_sized(self) -> bool:
        """Whether the subnets exist (``in_channels`` known)."""
        return self.in_channels is not None

    def _build(self, in_channels: int) -> None:
        self.in_channels = in_channels
        settings, anchors = self.subnet_settings, self.num_anchors
        self.cls_subnet = DenseSubnet(in_channels, {"cls_logits": self.num_classes}, anchors, **settings)
        self.box_subnet = DenseSubnet(in_channels, self.box_outputs, anchors, **settings)
        nn.init.constant_(self.cls_subnet.cls_logits.bias, prior_bias(self.prior_probability))

    def bind_in_shapes(self, shapes: Mapping[str, ShapeSpec], source: str = "neck") -> None:
        """Build from the channels of ``shapes`` (one value for every level), or check ``in_channels``.

        Raises:
            ValueError: the levels' channels differ, or differ from the given ``in_channels``.
        """
        name = type(self).__name__
        channels = sorted({shape.channels for shape in shapes.values()})
        if len(channels) != 1:
            raise ValueError(f"{name} shares its subnets across levels, but the {source}'s {format_shapes(shapes)} "
                             "differ in channels")
        if self.in_channels is None:
            self._build(channels[0])
        elif self.in_channels != channels[0]:
            raise ValueError(
                f"{name}: in_channels={self.in_channels} but the {source}'s levels {format_shapes(shapes)} have "
                f"{channels[0]} channels; leave in_channels out to size it from the {source}"
            )

    def forward(self, features: Sequence[Tensor]) -> DenseOutputs:
        """Raw predictions of every anchor.

        Args:
            features: ``[B, C, H_l, W_l]`` per level, shallowest first.

        Returns:
            :class:`DenseOutputs`: ``maps`` has ``cls_logits [B, A, num_classes]`` and the box
            subnet's outputs ``[B, A, K]``, ``A = sum_l H_l W_l * num_anchors``.
        """
        if self.cls_subnet is None or self.box_subnet is None:
            raise RuntimeError(f"{type(self).__name__} was built without in_channels: pass them or let its "
                               "detector size it")
        maps = {**self.cls_subnet(features), **self.box_subnet(features)}
        num_per_level = tuple(int(f.shape[-2] * f.shape[-1]) * self.num_anchors for f in features)
        return DenseOutputs(maps, num_per_level)

    # ------------------------------------------------------------------ detection

    def class_scores(self, raw: DenseOutputs) -> Tensor:
        """``[B, A, num_classes]`` detection scores in [0, 1] of every anchor and class."""
        raise NotImplementedError

    def decode(self, raw: DenseOutputs, priors: Tensor, batch_index: Tensor, anchor_index: Tensor) -> Tensor:
        """``[B, M, 4]`` xyxy boxes of the anchors ``anchor_index [B, M]`` (``batch_index [B, 1]``)."""
        raise NotImplementedError

    def predict(
        self, raw: DenseOutputs, priors: Tensor, image_sizes: Sequence[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Per-level top-k, decoding, clipping and NMS (module docstring).

        Args:
            raw: :meth:`forward`'s output for ``B`` images.
            priors: ``[A, 4]`` anchors, xyxy pixels of the padded batch.
            image_sizes: ``(height, width)`` of each resized image.

        Returns:
            Per image ``boxes [K, 4]``, ``scores [K]`` by decreasing score, ``labels [K]`` 0-based.
        """
        scores = self.class_scores(raw)
        num_classes = scores.shape[-1]
        # The k best (anchor, class) pairs of each level, then the threshold: the same set as
        # torchvision's threshold-then-top-k. Anchor-major, as torchvision flattens them.
        per_level = [count * num_classes for count in raw.num_per_level]
        flat_scores = scores.flatten(1)
        indices, _ = topk_per_level(flat_scores, per_level, self.pre_nms_topk)
        batch_index = torch.arange(scores.shape[0], device=scores.device)[:, None]
        top_scores = flat_scores[batch_index, indices]
        anchor_index, labels = indices // num_classes, indices % num_classes
        boxes = self.decode(raw, priors, batch_index, anchor_index)
        nms = self.nms_options()
        return [
            select_detections(
                clip_boxes_to_image(image_boxes, tuple(size)), image_scores, image_labels,
                score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                detections_per_img=self.detections_per_img, **nms,
            ).as_dict()
            for image_boxes, image_scores, image_labels, size in zip(boxes, top_scores, labels, image_sizes)
        ]  # fmt: skip
