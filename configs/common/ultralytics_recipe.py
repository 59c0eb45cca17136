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

Use::

    recipe = ultralytics_sgd_recipe(batch_size=16, max_epochs=100)
    optimizer, lr_schedule = recipe["optimizer"], recipe["lr_schedule"]
    train = default_train(max_epochs=100, output_dir="runs/x", **recipe["train"])
"""

from __future__ import annotations

from typing import Any

from detkit.config import L
from detkit.engine.close_mosaic import CloseMosaic
from detkit.engine.optim import build_optimizer
from detkit.engine.yolo_schedule import YOLOLinearLR

# ultralytics 8.4 cfg/default.yaml
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
