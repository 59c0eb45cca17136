"""Training MTCNN: per-stage samples cut from annotated images, the paper's losses with OHEM.

Zhang et al. 2016 train each network on square crops of its input size (PNet 12, RNet 24,
ONet 48) labelled by their IoU with the annotated faces:

* negatives ``IoU < 0.3`` (face classification only),
* part faces ``0.4 <= IoU < 0.65`` (box regression only),
* positives ``IoU >= 0.65`` (classification and box regression), and landmark regression where
  the face has five annotated landmarks (NaN or absent where it has none).

Regression targets are the box's and landmarks' offsets from the crop, in units of the crop's
side: ``(gt_x1 - x0) / side`` etc., landmarks as five x then five y (ONet's output layout). The
losses are weighted ``det / box / landmark = 1 / 0.5 / 0.5`` for PNet and RNet and ``1 / 0.5 / 1``
for ONet (facenet-pytorch's PNet and RNet have no landmark branch, so theirs is absent); the face
classification loss keeps only the hardest 70 % of its samples (online hard sample mining).

Samples are drawn at random around the faces and across the image (the "random crops" of the
paper's first stage); the paper's RNet and ONet use the previous stage's detections as extra hard
samples, which a training pipeline can add by passing them as candidates later. Crops lie inside
the image and are resized by area interpolation, the resampling of inference
(:func:`detkit.models.detectors.mtcnn.resampling.area_crop_resize`).

Training runs through the engine like any detector's: :class:`MTCNN`'s training-mode forward
draws the samples of each stage in ``train_stages`` from the batch's annotated images (on the
images' device) and returns :func:`mtcnn_losses`. One stage trains at a time with the configs
``configs/mtcnn/mtcnn_{pnet,rnet,onet}_train_wider_face.py`` (the other two networks frozen)::

    python tools/train.py configs/mtcnn/mtcnn_pnet_train_wider_face.py dataloader.train.dataset.root=DIR

Each checkpoint holds a whole MTCNN; :func:`stage_state_dict` takes one network out of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from detkit.models.detectors.base import Detector
from detkit.models.detectors.mtcnn.cascade import MTCNN
from detkit.models.detectors.mtcnn.networks import input_affine
from detkit.models.detectors.mtcnn.resampling import IntegralImages, area_crop_resize, summed_area_table
from detkit.ops import box_iou

__all__ = [
    "STAGE_INPUT_SIZES", "STAGE_LOSS_WEIGHTS", "StageSamples", "generate_samples", "mtcnn_losses",
    "ohem_cross_entropy", "stage_losses", "stage_state_dict",
]

STAGE_INPUT_SIZES = {"pnet": 12, "rnet": 24, "onet": 48}
# (face classification, box regression, landmark regression), from the paper (Sec. 2.3).
STAGE_LOSS_WEIGHTS = {"pnet": (1.0, 0.5, 0.5), "rnet": (1.0, 0.5, 0.5), "onet": (1.0, 0.5, 1.0)}
NEGATIVE_IOU, PART_IOU, POSITIVE_IOU = 0.3, 0.4, 0.65
NEGATIVE, PART, POSITIVE = 0, -1, 1


@dataclass
class StageSamples:
    """Training crops of one stage.

    Attributes:
        crops: ``[M, 3, S, S]`` float crops in the images' units ([0, 1]).
        labels: ``[M]`` int64: 1 positive, 0 negative, -1 part face.
        box_targets: ``[M, 4]`` box offsets in crop sides (zeros for negatives).
        landmark_targets: ``[M, 10]`` five x then five y in crop sides (zeros where absent).
        landmark_mask: ``[M]`` bool, samples with landmark targets.
    """

    crops: Tensor
    labels: Tensor
    box_targets: Tensor
    landmark_targets: Tensor
    landmark_mask: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _uniform(shape: Sequence[int], low: Tensor | float, high: Tensor | float, generator: torch.Generator | None,
             device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(tuple(shape), generator=generator, device=device)


def _candidates(
    sizes: Tensor, faces: Tensor, face_image: Tensor, size: int, per_image: int, per_face: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Random square crops: ``per_image`` anywhere in each image, ``per_face`` around each face.

    Returns ``(x0, y0, side)`` stacked as ``[C, 3]`` int64 and the image of each ``[C]``.
    """
    device = sizes.device
    num_images = sizes.shape[0]
    short = sizes.min(dim=1).values.to(torch.float32)
    # Anywhere: side in [size, short side / 2] (at least `size`), position uniform inside the image.
    side = _uniform((num_images, per_image), float(size), torch.clamp(short / 2, min=size)[:, None], generator, device)
    side = torch.minimum(side.floor(), short[:, None])
    x0 = _uniform(side.shape, 0.0, sizes[:, 1:2] - side, generator, device).floor()
    y0 = _uniform(side.shape, 0.0, sizes[:, 0:1] - side, generator, device).floor()
    anywhere = torch.stack([x0, y0, side], dim=-1).reshape(-1, 3)
    anywhere_image = torch.arange(num_images, device=device).repeat_interleave(per_image)
    # Around faces: side in [0.8 min(w, h), 1.25 max(w, h)], centre moved by up to 0.2 w / 0.2 h.
    wh = (faces[:, 2:] - faces[:, :2])[:, None, :]
    side = _uniform((faces.shape[0], per_face), 0.8 * wh.min(-1).values, 1.25 * wh.max(-1).values, generator, device)
    centre = (faces[:, None, :2] + faces[:, None, 2:]) / 2 + _uniform((faces.shape[0], per_face, 2), -0.2, 0.2,
                                                                       generator, device) * wh
    side = side.round()
    around = torch.cat([(centre - side[..., None] / 2).floor(), side[..., None]], dim=-1).reshape(-1, 3)
    around_image = face_image.repeat_interleave(per_face)
    boxes = torch.cat([anywhere, around]).to(torch.int64)
    image = torch.cat([anywhere_image, around_image])
    # Keep crops of at least 4 pixels that lie inside their image (no padding, as the paper's data).
    limits = sizes[image]
    inside = (boxes[:, 2] >= 4) & (boxes[:, :2] >= 0).all(1) & (boxes[:, 0] + boxes[:, 2] <= limits[:, 1]) \
        & (boxes[:, 1] + boxes[:, 2] <= limits[:, 0])
    return boxes[inside], image[inside]


def _rank_within_groups(group: Tensor, generator: torch.Generator | None) -> Tensor:
    """A random rank 0, 1, ... of each element among the elements of its group."""
    order = torch.randperm(group.shape[0], generator=generator, device=group.device)
    order = order[torch.argsort(group[order], stable=True)]
    sorted_group = group[order]
    starts = torch.searchsorted(sorted_group, sorted_group, right=False)
    rank = torch.empty_like(group)
    rank[order] = torch.arange(group.shape[0], device=group.device) - starts
    return rank


def generate_samples(
    images: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]],
    size: int,
    num_negatives: int,
    num_parts: int,
    num_positives: int,
    generator: torch.Generator | None = None,
    candidates_per_face: int = 24,
) -> StageSamples:
    """Draws labelled training crops for one stage from annotated images (no loop over faces).

    Args:
        images: ``[3, H_i, W_i]`` float images in [0, 1].
        targets: per image ``boxes [G, 4]`` xyxy, optionally ``landmarks [G, 5, 2]`` (NaN where not
            annotated) and ``ignore [G]`` bool (faces no crop is drawn around; a crop overlapping
            one at IoU >= 0.3 is not used as a negative).
        size: crop side the stage takes (12, 24, 48).
        num_negatives, num_parts, num_positives: at most this many samples of each kind per image.
        generator: random generator (default: torch's global one).
        candidates_per_face: random crops tried around each face.

    Returns:
        The samples, in random order within each image and kind.
    """
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    device = images[0].device
    sizes = torch.tensor([[im.shape[1], im.shape[2]] for im in images], dtype=torch.int64, device=device)
    gt = torch.cat([t["boxes"].to(device, torch.float32).reshape(-1, 4) for t in targets])
    gt_image = torch.cat([torch.full((len(t["boxes"]),), i, dtype=torch.int64, device=device) for i, t in enumerate(targets)])
    ignore = torch.cat([t.get("ignore", torch.zeros(len(t["boxes"]), dtype=torch.bool)).to(device).reshape(-1)
                        for t in targets])
    landmarks = torch.cat([t["landmarks"].to(device, torch.float32).reshape(-1, 5, 2) if "landmarks" in t
                           else torch.full((len(t["boxes"]), 5, 2), math.nan, device=device) for t in targets])
    usable = ~ignore & ((gt[:, 2:] - gt[:, :2]) >= 1).all(1)
    crops, crop_image = _candidates(sizes, gt[usable], gt_image[usable], size, 2 * num_negatives + 4,
                                    candidates_per_face, generator)

    # Best IoU of each crop with the faces of its own image; a last dummy face (IoU -1) stands in
    # for images without faces.
    crop_xyxy = torch.cat([crops[:, :2], crops[:, :2] + crops[:, 2:3]], dim=1).to(torch.float32)
    iou = torch.where(crop_image[:, None] == gt_image[None, :], box_iou(crop_xyxy, gt), -1.0)
    best_iou, best = torch.cat([iou, iou.new_full((len(crops), 1), -1.0)], dim=1).max(dim=1)
    gt = torch.cat([gt, gt.new_zeros((1, 4))])
    landmarks = torch.cat([landmarks, landmarks.new_full((1, 5, 2), math.nan)])
    best_ignored = torch.cat([ignore, ignore.new_zeros((1,))])[best]
    kind = torch.full_like(crop_image, -2)  # -2: unused
    kind[best_iou < NEGATIVE_IOU] = NEGATIVE
    kind[(best_iou >= PART_IOU) & (best_iou < POSITIVE_IOU) & ~best_ignored] = PART
    kind[(best_iou >= POSITIVE_IOU) & ~best_ignored] = POSITIVE

    # At most the requested number of each kind per image, chosen at random.
    quota = torch.tensor([num_negatives, num_positives, num_parts], device=device)  # by kind 0, 1, -1
    used = kind > -2
    crops, crop_image, kind, best = crops[used], crop_image[used], kind[used], best[used]
    rank = _rank_within_groups(crop_image * 3 + kind % 3, generator)
    chosen = rank < quota[kind]
    crops, crop_image, kind, best = crops[chosen], crop_image[chosen], kind[chosen], best[chosen]

    x0, y0, side = crops[:, 0], crops[:, 1], crops[:, 2]
    integral = IntegralImages([summed_area_table(im.to(torch.float32)) for im in images])
    pixels = area_crop_resize(integral, crop_image, x0, y0, x0 + side, y0 + side, size)
    origin = crops[:, :2].to(torch.float32)
    scale = side.to(torch.float32)[:, None]
    is_face = (kind != NEGATIVE)[:, None]
    box_targets = torch.where(is_face, (gt[best] - origin.repeat(1, 2)) / scale, 0.0)
    points = landmarks[best]
    landmark_mask = (kind == POSITIVE) & torch.isfinite(points).all(dim=2).all(dim=1)
    relative = ((points - origin[:, None, :]) / scale[:, :, None]).transpose(1, 2).reshape(-1, 10)
    landmark_targets = torch.where(landmark_mask[:, None], torch.nan_to_num(relative), 0.0)
    return StageSamples(pixels, kind, box_targets, landmark_targets, landmark_mask)


def ohem_cross_entropy(logits: Tensor, labels: Tensor, keep_ratio: float = 0.7) -> Tensor:
    """Face / non-face cross entropy averaged over the hardest ``keep_ratio`` of the samples.

    Args: logits ``[M, 2]``, labels ``[M]`` in {0, 1}. Returns a scalar (0 with a graph when M = 0).
    """
    if labels.numel() == 0:
        return logits.sum() * 0.0
    losses = F.cross_entropy(logits, labels, reduction="none")
    keep = max(1, math.ceil(keep_ratio * losses.numel()))
    return losses.topk(keep).values.mean()


def _masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked samples' coordinates (0 with a graph when none)."""
    if not bool(mask.any()):
        return prediction.sum() * 0.0
    return F.mse_loss(prediction[mask], target[mask])


def stage_losses(
    stage: str, outputs: Sequence[Tensor], samples: StageSamples, ohem_ratio: float = 0.7
) -> dict[str, Tensor]:
    """The weighted losses of one stage.

    Args:
        stage: ``"pnet"``, ``"rnet"`` or ``"onet"`` (picks the paper's weights).
        outputs: the network's outputs on ``samples.crops``: ``logits``, ``box_deltas`` and for
            ONet ``landmarks`` (PNet's ``[M, C, 1, 1]`` maps are flattened here).
        samples: the crops' labels and targets.
        ohem_ratio: share of the hardest classification samples kept.

    Returns:
        ``{f"{stage}_cls", f"{stage}_box"[, f"{stage}_landmark"]}`` scalars, already weighted.
    """
    if stage not in STAGE_LOSS_WEIGHTS:
        raise ValueError(f"unknown MTCNN stage {stage!r}; expected one of {list(STAGE_LOSS_WEIGHTS)}")
    w_cls, w_box, w_landmark = STAGE_LOSS_WEIGHTS[stage]
    logits, deltas = outputs[0].flatten(1), outputs[1].flatten(1)
    labelled = samples.labels >= 0
    losses = {
        f"{stage}_cls": w_cls * ohem_cross_entropy(logits[labelled], samples.labels[labelled], ohem_ratio),
        f"{stage}_box": w_box * _masked_mse(deltas, samples.box_targets, samples.labels != NEGATIVE),
    }
    if len(outputs) > 2:
        losses[f"{stage}_landmark"] = w_landmark * _masked_mse(
            outputs[2].flatten(1), samples.landmark_targets, samples.landmark_mask)
    return losses


def mtcnn_losses(
    model: MTCNN, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]],
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Losses of every stage in ``model.train_stages`` on samples drawn from ``images`` now.

    What :class:`MTCNN`'s training-mode forward returns; ``model.train_samples`` gives the
    negatives, parts and positives drawn per image.
    """
    losses = []
    for stage in model.train_stages:
        samples = generate_samples(images, targets, STAGE_INPUT_SIZES[stage], *model.train_samples, generator=generator)
        net = getattr(model, stage)
        losses.append(stage_losses(stage, net(samples.crops, *input_affine(model.pixel_scale)), samples))
    return Detector.merge_losses(*losses)


def stage_state_dict(state_dict: Mapping[str, Tensor], stage: str) -> dict[str, Tensor]:
    """One network's weights out of a whole :class:`MTCNN`'s state dict.

    A stage trains through the engine as a whole MTCNN whose other two networks are frozen
    (``configs/mtcnn/mtcnn_{stage}_train_wider_face.py``), so its checkpoints' ``model`` holds
    ``pnet.*``, ``rnet.*`` and ``onet.*``. Stages trained in separate runs are put together with
    ``detector.pnet.load_state_dict(stage_state_dict(pnet_run["model"], "pnet"))`` etc.

    Args:
        state_dict: ``MTCNN.state_dict()``, e.g. ``torch.load(path, weights_only=True)["model"]``.
        stage: ``"pnet"``, ``"rnet"`` or ``"onet"``.

    Returns:
        The ``{stage}.*`` tensors with the prefix removed (``conv1.weight`` ...).

    Raises:
        ValueError: an unknown ``stage``.
        KeyError: ``state_dict`` holds no ``{stage}.*`` tensor (not an MTCNN's).
    """
    if stage not in STAGE_INPUT_SIZES:
        raise ValueError(f"stage must be one of {list(STAGE_INPUT_SIZES)}, got {stage!r}")
    prefix = f"{stage}."
    weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not weights:
        heads = sorted({key.split(".", 1)[0] for key in state_dict})
        raise KeyError(f"the state dict holds no {prefix}* weights (not an MTCNN's?); its top-level names: {heads}")
    return weights
