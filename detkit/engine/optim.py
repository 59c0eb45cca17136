"""Optimisers with parameter groups: no weight decay on norms and biases, a backbone lr multiplier.

:func:`build_optimizer` sorts the trainable parameters of a model into groups by (learning-rate
multiplier, weight decay):

- parameters of normalisation layers (BatchNorm, SyncBatchNorm, GroupNorm, LayerNorm,
  InstanceNorm, LocalResponseNorm) get ``weight_decay_norm`` (0 by default);
- other parameters named ``*.bias`` get ``weight_decay_bias`` (0 by default);
- parameters whose name starts with one of ``backbone_prefixes`` have their lr multiplied by
  ``backbone_lr_multiplier``;
- parameters with ``requires_grad=False`` (frozen stages, ``train.freeze``) are left out;
- with ``bias_group=True`` every parameter named ``*.bias`` (norm-layer biases included) forms its
  own group(s), tagged ``"param_group": "bias"`` (ultralytics' three groups: decayed weights,
  norm weights, biases; :class:`detkit.engine.yolo_schedule.YOLOLinearLR` warms the bias group
  up from a higher learning rate).

Every group records its ``base_lr``, the learning rate the schedule multiplies.

In a config the model is supplied by the engine, not written in the file::

    optimizer = L(build_optimizer)(name="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["NORM_TYPES", "OPTIMIZERS", "build_optimizer", "parameter_groups"]

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm,
)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}


def parameter_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    weight_decay_bias: float = 0.0,
    backbone_prefixes: Sequence[str] = ("backbone.",),
    backbone_lr_multiplier: float = 1.0,
    bias_group: bool = False,
) -> list[dict[str, Any]]:
    """Sort the trainable parameters of ``model`` into optimiser groups.

    Args:
        model: The (unwrapped) model.
        lr: Base learning rate.
        weight_decay: Weight decay of ordinary weights.
        weight_decay_norm: Weight decay of normalisation-layer parameters.
        weight_decay_bias: Weight decay of biases outside normalisation layers.
        backbone_prefixes: Parameter-name prefixes that mark backbone parameters.
        backbone_lr_multiplier: Learning-rate multiplier of backbone parameters.
        bias_group: Put every ``*.bias`` (norm layers' too, with ``weight_decay_bias``) in
            groups of their own, tagged ``"param_group": "bias"``.

    Returns:
        Groups ``{"params", "lr", "base_lr", "weight_decay", "names"}`` (and ``"param_group"``
        with ``bias_group``), in a fixed order (first appearance in
        ``model.named_parameters()``), each shared parameter listed once.
    """
    groups: dict[tuple[float, float, bool], dict[str, Any]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{param_name}" if module_name else param_name
            is_bias = bias_group and param_name == "bias"
            if is_bias:
                decay = weight_decay_bias
            elif is_norm:
                decay = weight_decay_norm
            elif param_name == "bias":
                decay = weight_decay_bias
            else:
                decay = weight_decay
            in_backbone = any(name.startswith(prefix) for prefix in backbone_prefixes)
            group_lr = lr * (backbone_lr_multiplier if in_backbone else 1.0)
            group = groups.setdefault((group_lr, decay, is_bias), {
                "params": [], "lr": group_lr, "base_lr": group_lr, "weight_decay": decay,
                "names": [], **({"param_group": "bias"} if is_bias else {}),
            })
            group["params"].append(param)
            group["names"].append(name)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all frozen?)")
    return list(groups.values())


def build_optimizer(
    model: nn.Module,
    name: str = "SGD",
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    alpha: float = 0.99,
    weight_decay_norm: float = 0.0,
    weight_decay_bias: float = 0.0,
    backbone_prefixes: Sequence[str] = ("backbone.",),
    backbone_lr_multiplier: float = 1.0,
    bias_group: bool = False,
) -> torch.optim.Optimizer:
    """Build an SGD, Adam, AdamW or RMSprop optimiser over parameter groups.

    Args:
        model: The (unwrapped) model; supplied by the engine, not by the config file.
        name: ``"SGD"``, ``"Adam"``, ``"AdamW"`` or ``"RMSprop"`` (any case).
        lr: Base learning rate (the schedule multiplies it).
        weight_decay: Weight decay of ordinary weights (AdamW: decoupled decay).
        momentum: SGD and RMSprop momentum.
        nesterov: SGD Nesterov momentum.
        betas: Adam/AdamW coefficients.
        eps: Adam/AdamW/RMSprop denominator term.
        alpha: RMSprop smoothing constant.
        weight_decay_norm: Weight decay of normalisation-layer parameters.
        weight_decay_bias: Weight decay of biases.
        backbone_prefixes: Parameter-name prefixes of the backbone.
        backbone_lr_multiplier: Learning-rate multiplier of the backbone.
        bias_group: Biases in groups of their own (see :func:`parameter_groups`).

    Raises:
        ValueError: unknown ``optimizer.name`` (the message lists the known ones).
    """
    key = name.lower()
    if key not in OPTIMIZERS:
        known = ", ".join(cls.__name__ for cls in OPTIMIZERS.values())
        raise ValueError(f"optimizer.name={name!r} is not a known optimiser; use one of {known}")
    groups = parameter_groups(model, lr, weight_decay, weight_decay_norm, weight_decay_bias,
                              backbone_prefixes, backbone_lr_multiplier, bias_group)
    if key == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    elif key in ("adam", "adamw"):
        optimizer = OPTIMIZERS[key](groups, lr=lr, betas=tuple(betas), eps=eps,
                                    weight_decay=weight_decay)
    else:
        optimizer = torch.optim.RMSprop(groups, lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                        weight_decay=weight_decay)
    for group in optimizer.param_groups:
        logger.debug("param group lr=%g weight_decay=%g: %d tensors", group["lr"],
                     group["weight_decay"], len(group["params"]))
    return optimizer
