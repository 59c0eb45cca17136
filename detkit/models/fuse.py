"""The inference fast path: batch norms folded into their convolutions, channels-last weights.

A batch norm with fixed statistics (``FrozenBatchNorm2d``, or ``nn.BatchNorm2d`` in eval mode) is
an affine map per channel, so after a convolution it folds into that convolution's weight and
bias::

    scale = gamma / sqrt(running_var + eps)
    conv'.weight = conv.weight * scale[:, None, None, None]
    conv'.bias   = (conv.bias - running_mean) * scale + beta

one op instead of two and one feature map less to write and read; the outputs agree to float32
rounding (a few ulp per layer). :func:`fold_batch_norms` finds the pairs of every detkit family
(a convolution followed by a batch norm in an ``nn.Sequential``: darknet's, MobileNet's and SSDLite's
``ConvNormAct``, ResNet's downsample; the ``conv{k}`` / ``bn{k}`` attributes of the ResNet stem and
blocks, the ``conv`` / ``bn`` of the YOLOv8 / YOLO11 ``Conv``) and replaces the pair by the folded convolution and an ``nn.Identity``, in place.

:func:`inference_copy` is what :class:`~detkit.apis.Predictor`, ``detkit infer`` and
:func:`~detkit.evaluation.evaluate` run: a deep copy of the model in eval mode, folded, with
channels-last weights on the CPU (oneDNN's convolutions are faster in NHWC, and a convolution with
NHWC weights returns NHWC maps, so the whole network runs in it); the model given is left
untouched (its weights, mode and structure), so a trainer can evaluate the model it trains. The
copy has its own modules but shares what needs no copy: the tensors it does not change (only the
folded and channels-last convolution weights are new) and the plain attributes of its modules
(lists, counters, settings objects), so the copy costs little memory and what a model records
about its calls stays visible on it.

    fast = inference_copy(model)                 # fold + channels-last where faster
    plain = inference_copy(model, fuse=False)    # the opt-out: an eval-mode copy as it is

On the CPU with channels-last weights, the convolutions of a model that declares
``prepack_convs = True`` (a class attribute; YOLOv3, whose input has one fixed size) become
:class:`~detkit.models.packed_conv.PackedConv2d`: oneDNN's weight reorder done once per input shape
instead of on every call, and the ReLU / LeakyReLU after a folded conv applied as its post-op
(:func:`~detkit.models.packed_conv.pack_convolutions`; YOLOv3-tiny on one core: about 14 % less time
per image). An ONNX / TorchScript export copy is NCHW (``channels_last="off"``) and never packed.

A folded model has no batch norms left to train: it is for inference only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from itertools import pairwise

import torch
from torch import nn

from detkit.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from detkit.models.backbones.yolov8_blocks import Conv as YOLOv8Conv
from detkit.models.layers import FrozenBatchNorm2d
from detkit.models.packed_conv import pack_convolutions

__all__ = ["CHANNELS_LAST_MODES", "fold_batch_norms", "fold_conv_bn", "inference_copy", "pack_declared_convs",
           "use_channels_last"]

CHANNELS_LAST_MODES = ("auto", "on", "off")

# Modules whose forward applies ``getattr(module, norm)(getattr(module, conv)(x))``: the pairs
# that are attributes rather than neighbours in an nn.Sequential.
ATTRIBUTE_PAIRS: dict[type[nn.Module], tuple[tuple[str, str], ...]] = {
    ResNet: (("conv1", "bn1"),),
    BasicBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    YOLOv8Conv: (("conv", "bn"),),
}


def _is_fixed_norm(module: nn.Module) -> bool:
    """A batch norm whose output is a fixed per-channel affine map (frozen, or BN in eval mode)."""
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return (isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.training
            and module.track_running_stats and module.running_mean is not None)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and _is_fixed_norm(norm)
            and int(norm.num_features) == conv.out_channels)


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """The convolution equal to ``norm(conv(x))`` for a batch norm with fixed statistics.

    Args:
        conv: A ``nn.Conv2d`` with ``C_out`` output channels (left unchanged).
        norm: ``FrozenBatchNorm2d`` or an eval-mode ``nn.BatchNorm2d`` over ``C_out`` channels.

    Returns:
        A new ``nn.Conv2d`` (with a bias) on the device and dtype of ``conv``'s weight.
    """
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_mean)
    shift = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = weight * (norm.running_var + norm.eps).rsqrt()
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      ).to(conv.weight)  # fmt: skip
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    fused.bias.copy_((bias - norm.running_mean) * scale + shift)
    fused.weight.requires_grad_(conv.weight.requires_grad)
    fused.bias.requires_grad_(conv.weight.requires_grad)
    return fused


def _pairs(module: nn.Module) -> Iterator[tuple[str, str]]:
    """The (conv, norm) child names of ``module`` that form a foldable pair."""
    if isinstance(module, nn.Sequential):
        yield from pairwise(module._modules)
    for kind, pairs in ATTRIBUTE_PAIRS.items():
        if isinstance(module, kind):
            yield from pairs


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every fixed batch norm of ``model`` into the convolution before it, in place.

    A batch norm in train mode is left alone (its statistics still move): put the model in eval
    mode first to fold them all. Each folded pair becomes ``(folded conv, nn.Identity())`` under
    the same names, so the module tree and every forward stay as they were.

    Args:
        model: Any module; detkit's families are recognised (see the module docstring).

    Returns:
        The number of batch norms folded.
    """
    count = 0
    for module in list(model.modules()):
        for conv_name, norm_name in list(_pairs(module)):
            conv, norm = module._modules.get(conv_name), module._modules.get(norm_name)
            if conv is None or norm is None or not _foldable(conv, norm):
                continue
            module._modules[conv_name] = fold_conv_bn(conv, norm)
            module._modules[norm_name] = nn.Identity()
            count += 1
    return count


def use_channels_last(model: nn.Module, device: torch.device | str | None = None) -> bool:
    """Whether channels-last weights are the faster choice for ``model`` on ``device``.

    On the CPU (oneDNN) NHWC convolutions are faster for every detkit family measured; on CUDA
    in float32 cuDNN's NCHW kernels are as fast or faster, so NCHW stays there.

    Args:
        model: The model (its convolutions decide; a model without any gains nothing).
        device: Where it runs; default the device of its first parameter.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    has_convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return torch.device(device).type == "cpu" and has_convs


def _holds_module(value: object) -> bool:
    """Whether a module attribute is, or contains, a module (such values are copied, not shared)."""
    if isinstance(value, nn.Module):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_module(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_module(item) for item in value.values())
    return False


def _copy_sharing_state(model: nn.Module) -> nn.Module:
    """A deep copy of the module tree whose tensors and plain attributes are the model's own.

    Every module is a new object (its mode, children and parameter slots are its own), the
    parameters, buffers and attributes that hold no module are shared by reference.
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is not None:
                memo[id(tensor)] = tensor
        for key, value in vars(module).items():
            if not key.startswith("_") and key != "training" and not _holds_module(value):
                memo[id(value)] = value
    return copy.deepcopy(model, memo)


@torch.no_grad()
def _to_channels_last(model: nn.Module) -> None:
    """New NHWC weights in every convolution (the shared NCHW tensors stay as they are)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not module.weight.is_contiguous(memory_format=torch.channels_last):
            weight = module.weight
            module.weight = nn.Parameter(weight.detach().contiguous(memory_format=torch.channels_last),
                                         requires_grad=weight.requires_grad)


def pack_declared_convs(model: nn.Module) -> int:
    """Pack the convolutions of every submodule of ``model`` that declares ``prepack_convs = True``.

    Args:
        model: An inference model (folded, channels-last, on the CPU); changed in place.

    Returns:
        The number of convolutions packed (:func:`~detkit.models.packed_conv.pack_convolutions`).
    """
    declared = [module for module in model.modules() if getattr(type(module), "prepack_convs", False)]
    return sum(pack_convolutions(module) for module in declared)


def inference_copy(model: nn.Module, *, fuse: bool = True, channels_last: str = "auto",
                   device: torch.device | str | None = None, inplace: bool = False) -> nn.Module:
    """An eval-mode model for inference: batch norms folded, channels-last where faster.

    Args:
        model: A detector (or any module). Left untouched unless ``inplace``: its modules are
            not changed (mode, children, weights); the copy shares its unchanged tensors and plain
            attributes (see the module docstring). ``device`` moves the shared tensors too.
        fuse: Fold the batch norms into their convolutions (:func:`fold_batch_norms`).
        channels_last: ``"auto"`` (:func:`use_channels_last` decides), ``"on"`` or ``"off"``. With
            channels-last on the CPU, the convolutions of a model declaring ``prepack_convs`` are
            packed too (:func:`pack_declared_convs`).
        device: Move the copy there (default: where the model is).
        inplace: Change ``model`` itself instead of a copy (for a model nobody else holds, such
            as one just built from a config).

    Returns:
        The model for inference, in eval mode; ``model`` itself with ``inplace``.

    Raises:
        ValueError: an unknown ``channels_last`` mode.
    """
    if channels_last not in CHANNELS_LAST_MODES:
        raise ValueError(f"channels_last must be one of {', '.join(CHANNELS_LAST_MODES)}, got {channels_last!r}")
    fast = model if inplace else _copy_sharing_state(model)
    fast.eval()
    if device is not None:
        fast.to(device)
    if fuse:
        fold_batch_norms(fast)
    if channels_last == "on" or (channels_last == "auto" and use_channels_last(fast)):
        _to_channels_last(fast)
        if fuse and use_channels_last(fast):  # on the CPU
            pack_declared_convs(fast)
    return fast
