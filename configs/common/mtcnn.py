"""MTCNN trees (facenet-pytorch's inference settings) and per-stage training, as functions
returning fresh L() trees.

Children set attributes, e.g. ``model.thresholds = (0.6, 0.7, 0.8)`` or ``model.min_face_size = 40``.
"""

from __future__ import annotations

from collections.abc import Sequence

from detkit.config import Inherit, L, LazyCall
from detkit.data.transforms import rcnn_train_transforms
from detkit.data.wider_face import wider_face_dataset
from detkit.engine import MultiStepLR, build_optimizer, build_train_loader, default_train
from detkit.models.detectors.mtcnn import MTCNN, ONet, PNet, RNet
from detkit.models.mtcnn_training import STAGE_INPUT_SIZES

MTCNN_STAGES = tuple(STAGE_INPUT_SIZES)  # ("pnet", "rnet", "onet")


def mtcnn(
    min_face_size: float = 20.0,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    train_stages: Sequence[str] = ("pnet", "rnet", "onet"),
) -> LazyCall:
    """The three-stage cascade: pyramid factor 0.709, NMS 0.5 / 0.7 (PNet), 0.7 (RNet), 0.7 Min (ONet)."""
    return L(MTCNN)(
        pnet=L(PNet)(),
        rnet=L(RNet)(),
        onet=L(ONet)(),
        min_face_size=min_face_size,
        scale_factor=0.709,
        thresholds=tuple(thresholds),
        nms_thresholds=(0.5, 0.7, 0.7, 0.7),
        pixel_scale=255.0,
        clip_boxes=True,
        train_samples=(24, 8, 8),
        train_stages=tuple(train_stages),
    )


def mtcnn_stage_training(
    stage: str,
    root: str = "datasets/wider_face",
    batch_size: int = 16,
    train_samples: Sequence[int] = (24, 8, 8),
    lr: float = 0.01,
    max_iter: int = 24000,
    num_workers: int = 4,
) -> dict:
    """``model``, ``dataloader``, ``optimizer``, ``lr_schedule`` and ``train`` of one MTCNN stage on
    WIDER FACE, through the engine.

    The model is the whole cascade with ``train_stages=(stage,)``: its training forward draws
    ``train_samples`` (negatives, part faces, positives: the paper's 3 : 1 : 1) crops per image
    from each batch and returns that stage's losses (paper weights, OHEM 70 %), and the other two
    networks are frozen (``train.freeze``). The stages' samples come from the annotations only, so
    the three runs are independent; to end with one checkpoint holding the whole trained cascade,
    start each run from the previous one's (for RNet:
    ``train.init_checkpoint=runs/mtcnn_pnet_train_wider_face/model_final.pth``), or join separate
    runs with :func:`detkit.models.mtcnn_training.stage_state_dict`.

    WIDER FACE has no landmarks, so ONet's landmark loss is 0 on it (it trains where the targets
    carry ``landmarks``). About 30 epochs of WIDER's 12,880 training images at the defaults.

    Args:
        stage: ``"pnet"``, ``"rnet"`` or ``"onet"``.
        root: WIDER FACE folder (:func:`wider_face_dataset`); ``dataloader.root``.
        batch_size: images per step and process (each gives ``sum(train_samples)`` crops).
        train_samples: ``(negatives, parts, positives)`` drawn per image; ``model.train_samples``.
        lr: SGD learning rate (momentum 0.9, weight decay 5e-4), divided by 10 at 55 % and 80 %.
        max_iter: optimiser steps.
        num_workers: data loader processes.

    Raises:
        ValueError: an unknown ``stage``.
    """
    if stage not in MTCNN_STAGES:
        raise ValueError(f"stage must be one of {list(MTCNN_STAGES)}, got {stage!r}")
    model = mtcnn(train_stages=(stage,))
    model.train_samples = tuple(train_samples)
    name = f"mtcnn_{stage}_train_wider_face"
    # Horizontal flip only (WIDER's targets have no landmarks, which a flip would have to mirror).
    dataset = L(wider_face_dataset)(
        root=Inherit("root"), split="train", transforms=L(rcnn_train_transforms)(flip_prob=0.5)
    )
    return dict(
        model=model,
        dataloader=dict(
            root=root, train=L(build_train_loader)(dataset=dataset, batch_size=batch_size, num_workers=num_workers)
        ),
        optimizer=L(build_optimizer)(name="SGD", lr=lr, momentum=0.9, weight_decay=5e-4),
        lr_schedule=L(MultiStepLR)(  # fractions of the run: they follow a train.max_iter override
            milestones=None, milestone_fractions=[0.55, 0.8], gamma=0.1, warmup_iters=None,
            warmup_fraction=min(500, max_iter // 10) / max_iter,
            warmup_factor=0.01,
        ),
        train=default_train(
            max_iter=max_iter, output_dir=f"runs/{name}", checkpoint_period=2000, log_period=50,
            freeze=[other for other in MTCNN_STAGES if other != stage],
        ),
    )
