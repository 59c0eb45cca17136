"""ultralytics' default training recipe (``cfg/default.yaml`` of 8.4, ``optimizer=SGD``) for
detkit's YOLOv8 / YOLO11 configs, as ``optimizer``, ``lr_schedule`` and ``train`` keys.

ultralytics: SGD lr0 0.01, Nesterov momentum 0.937, weight decay 5e-4 on conv/linear weights only
(norm weights and every bias undecayed), gradients accumulated to a nominal batch of ``nbs`` 64
images (``accumulate = round(nbs / batch)``, weight decay scaled by ``batch * accumulate / nbs``),
gradient norm clipped at 10, a 3-epoch warm-up (bias lr from 0.1 down, other lrs from 0 up,
momentum from 0.8 up), a linear decay by epoch to ``lrf`` 0.01 x, EMA decay 0.9999 with tau 2000,
mosaic closed for the last 10 epochs.

Scale: ultralytics back-propagates ``batch_size x`` the sum of the loss terms that
:class:`detkit.models.yolov8_loss.YOLOv8Loss` returns, summed over the ``accumulate`` batches,
where detkit's trainer averages the accumulated batches. With ``N = batch * accumulate`` images
per optimiser step, ultralytics' gradient is ``N`` times detkit's, so the same SGD steps are
``lr = lr0 * N``, ``weight decay = 5e-4 * N / nbs / N = 5e-4 / nbs`` and a clip at ``10 / N``
(SGD adds the decay to the gradient before the momentum, so the map is exact). The warm-up's
accumulation ramp (1 up to ``accumulate`` batches per step during warm-up) is not reproduced:
detkit accumulates the same number of batches throughout.

ultralytics' ``optimizer=auto`` (its default) picks AdamW for runs of at most 10000 optimiser
steps (``ceil(images / max(batch, nbs)) * epochs``): lr ``round(0.002 * 5 / (4 + num_classes), 6)``,
betas (0.9, 0.999), no bias warm-up (``warmup_bias_lr`` 0), and MuSGD (not in detkit) for longer
runs; :func:`ultralytics_adamw_recipe` is that AdamW choice. Adam's step does not depend on the
loss's scale and AdamW's decay is decoupled, so lr and weight decay map as they are
(``5e-4 * batch * accumulate / nbs``); only the clip scales (``10 / N``).

Use::

    recipe = ultralytics_sgd_recipe(batch_size=16)
    optimizer, lr_schedule = recipe["optimizer"], recipe["lr_schedule"]
    train = default_train(max_epochs=100, output_dir="runs/x", **recipe["train"])
"""

from __future__ import annotations

from typing import Any

from detkit.config import L
from detkit.engine.close_mosaic import CloseMosaic
from detkit.engine.optim import build_optimizer
from detkit.engine.yolo_schedule import YOLOLinearLR

# ultralytics 8.4 cfg/default.yaml (and BaseTrainer.build_optimizer's "auto" choice)
LR0 = 0.01
LRF = 0.01
MOMENTUM = 0.937
WEIGHT_DECAY = 5e-4
WARMUP_EPOCHS = 3.0
WARMUP_MOMENTUM = 0.8
WARMUP_BIAS_LR = 0.1
NBS = 64
CLOSE_MOSAIC = 10
CLIP_GRAD_NORM = 10.0  # BaseTrainer.optimizer_step
EMA_DECAY = 0.9999
EMA_TAU = 2000.0
AUTO_MAX_ITERATIONS = 10000  # optimizer=auto: AdamW up to this many steps, MuSGD beyond


def ultralytics_accumulation(batch_size: int, nbs: int = NBS) -> int:
    """Batches per optimiser step, ``max(round(nbs / batch_size), 1)`` (ultralytics' ``accumulate``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return max(round(nbs / batch_size), 1)


def ultralytics_sgd_recipe(batch_size: int, *, nbs: int = NBS, close_mosaic: int = CLOSE_MOSAIC) -> dict[str, Any]:
    """``optimizer``, ``lr_schedule`` and the ``train`` keys of ultralytics' SGD recipe on detkit's
    loss scale (module doc).

    Args:
        batch_size: Images per batch of ``dataloader.train`` (per process).
        nbs: ultralytics' nominal batch size.
        close_mosaic: Final epochs without mosaic (0: no :class:`CloseMosaic` hook).

    Returns:
        ``{"optimizer": L(build_optimizer), "lr_schedule": L(YOLOLinearLR), "train": {...}}``, the
        last holding ``grad_accum_steps``, ``clip_grad_norm``, ``ema`` and ``hooks``.
    """
    accumulate = ultralytics_accumulation(batch_size, nbs)
    images_per_step = batch_size * accumulate
    weight_decay = WEIGHT_DECAY / nbs  # (5e-4 * images_per_step / nbs) / images_per_step
    return {
        "optimizer": L(build_optimizer)(
            name="SGD", lr=LR0 * images_per_step, momentum=MOMENTUM, nesterov=True, weight_decay=weight_decay,
            weight_decay_norm=0.0, weight_decay_bias=0.0, bias_group=True,
        ),
        "lr_schedule": L(YOLOLinearLR)(
            lrf=LRF, warmup_epochs=WARMUP_EPOCHS, warmup_bias_factor=WARMUP_BIAS_LR / LR0,
            warmup_momentum=WARMUP_MOMENTUM,
        ),
        "train": {
            "grad_accum_steps": accumulate,
            "clip_grad_norm": CLIP_GRAD_NORM / images_per_step,
            "ema": {"decay": EMA_DECAY, "tau": EMA_TAU},
            "hooks": [L(CloseMosaic)(epochs=close_mosaic)] if close_mosaic else [],
        },
    }  # fmt: skip


def ultralytics_auto_lr(num_classes: int) -> float:
    """The AdamW learning rate ultralytics' ``optimizer=auto`` fits: ``round(0.002 * 5 / (4 + nc), 6)``."""
    return round(0.002 * 5 / (4 + num_classes), 6)


def ultralytics_adamw_recipe(
    batch_size: int, num_classes: int, *, nbs: int = NBS, close_mosaic: int = CLOSE_MOSAIC
) -> dict[str, Any]:
    """ultralytics' ``optimizer=auto`` recipe for runs of at most 10000 steps: AdamW at
    :func:`ultralytics_auto_lr`, betas (0.9, 0.999), decay on the weights only, no bias warm-up;
    the same schedule, accumulation, EMA and close-mosaic as :func:`ultralytics_sgd_recipe`.

    Args:
        batch_size: Images per batch of ``dataloader.train`` (per process).
        num_classes: Classes of the dataset (the fitted lr depends on it).
        nbs: ultralytics' nominal batch size.
        close_mosaic: Final epochs without mosaic (0: no :class:`CloseMosaic` hook).

    Returns:
        ``{"optimizer", "lr_schedule", "train"}`` as :func:`ultralytics_sgd_recipe`.
    """
    accumulate = ultralytics_accumulation(batch_size, nbs)
    images_per_step = batch_size * accumulate
    recipe = ultralytics_sgd_recipe(batch_size, nbs=nbs, close_mosaic=close_mosaic)
    recipe["optimizer"] = L(build_optimizer)(
        name="AdamW", lr=ultralytics_auto_lr(num_classes), betas=(0.9, 0.999),
        weight_decay=WEIGHT_DECAY * images_per_step / nbs, weight_decay_norm=0.0, weight_decay_bias=0.0,
        bias_group=True,
    )  # fmt: skip
    recipe["lr_schedule"].warmup_bias_factor = 0.0  # auto sets warmup_bias_lr = 0
    return recipe

