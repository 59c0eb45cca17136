"""Small building blocks shared by backbones and necks.

- :class:`FrozenBatchNorm2d`: batch norm with fixed statistics and affine parameters, the usual
  choice for detection backbones trained with few images per GPU.
- :func:`make_norm`: builds a normalisation layer from a short name (``"bn"``, ``"frozen_bn"``,
  ``"syncbn"``, ``"gn"``) so that constructors can take a plain string.
- :func:`convert_batchnorm_to_frozen`: swaps every ``nn.BatchNorm2d`` of a module for a
  :class:`FrozenBatchNorm2d` holding the same numbers.
- :class:`ConvNormAct`: conv, optional norm, optional activation, laid out as an ``nn.Sequential``
  so that its state-dict keys are ``0.weight`` (conv), ``1.weight`` (norm): the layout of
  torchvision's ``Conv2dNormActivation``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

NORM_KINDS = ("bn", "frozen_bn", "syncbn", "gn")


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    Computes ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel, the
    same numbers as ``nn.BatchNorm2d`` in eval mode, in train mode too. ``weight``, ``bias``,
    ``running_mean`` and ``running_var`` are buffers (not parameters), so an optimiser never sees
    them; the state dict has the keys of ``nn.BatchNorm2d`` minus ``num_batches_tracked``, which is
    dropped when loading a BatchNorm2d checkpoint. Same semantics as
    ``torchvision.ops.FrozenBatchNorm2d``.

    Args:
        num_features: Number of channels ``C`` of the input ``[N, C, H, W]``.
        eps: Added to the variance before the square root. torchvision's default, 1e-5.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A BatchNorm2d checkpoint carries a step counter that has no meaning here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:
        """Normalises ``x`` of shape ``[N, C, H, W]``; returns the same shape."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def make_norm(kind: str, num_channels: int, *, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """Builds a 2-D normalisation layer from its short name.

    Args:
        kind: ``"bn"`` (``nn.BatchNorm2d``), ``"frozen_bn"`` (:class:`FrozenBatchNorm2d`),
            ``"syncbn"`` (``nn.SyncBatchNorm``) or ``"gn"`` (``nn.GroupNorm`` with 32 groups).
        num_channels: Channels of the input ``[N, C, H, W]``.
        eps: Added to the variance (1e-5 is torchvision's default; MobileNetV3 was trained with 1e-3).
        momentum: Running-statistics momentum of the batch-norm kinds.

    Returns:
        The layer.

    Raises:
        ValueError: For an unknown ``kind``.
    """
    if kind == "bn":
        return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(num_channels, eps=eps)
    if kind == "syncbn":
        return nn.SyncBatchNorm(num_channels, eps=eps, momentum=momentum)
    if kind == "gn":
        return nn.GroupNorm(32, num_channels, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORM_KINDS}")


def check_norm_kind(kind: str | None, *, allow_none: bool = False) -> None:
    """Raises ValueError naming the accepted kinds when ``kind`` is not one of them."""
    if kind is None and allow_none:
        return
    if kind not in NORM_KINDS:
        accepted = NORM_KINDS + ((None,) if allow_none else ())
        raise ValueError(f"unknown norm {kind!r}; expected one of {accepted}")


def convert_batchnorm_to_frozen(module: nn.Module) -> nn.Module:
    """Replaces every ``nn.BatchNorm2d`` and ``nn.SyncBatchNorm`` in ``module`` by a frozen copy.

    The frozen layer takes the running statistics, the affine parameters and ``eps`` of the
    original. A bare BatchNorm module is returned converted; otherwise children are replaced in
    place and ``module`` itself is returned.

    Args:
        module: Any module.

    Returns:
        The converted module.
    """
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        converted = convert_batchnorm_to_frozen(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


class ConvNormAct(nn.Sequential):
    """Conv2d, then an optional norm, then an optional activation.

    State-dict keys follow torchvision's ``Conv2dNormActivation``: ``0.*`` is the conv, ``1.*`` the
    norm when there is one. The conv has a bias only when there is no norm.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Conv stride.
        groups: Conv groups (``in_channels`` for a depthwise conv).
        dilation: Conv dilation; padding is ``(kernel_size - 1) // 2 * dilation`` ("same").
        norm: Norm kind for :func:`make_norm`, or None for no norm.
        norm_eps: ``eps`` of the norm.
        activation: Activation class (called with ``inplace=True``), or None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        dilation: int = 1,
        norm: str | None = "bn",
        norm_eps: float = 1e-5,
        activation: Callable[..., nn.Module] | None = nn.ReLU,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=norm is None,
            )
        ]
        if norm is not None:
            layers.append(make_norm(norm, out_channels, eps=norm_eps))
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


def freeze_module(module: nn.Module) -> None:
    """Stops gradients to every parameter of ``module`` and puts it in eval mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    module.eval()
