"""Convolutions with their weights reordered once for oneDNN, and the activation fused in.

PyTorch's CPU convolution (``mkldnn_convolution``) hands oneDNN the weight as a dense tensor, and
oneDNN reorders it into its blocked layout on every call. For a large weight on a small map this
reorder is a good part of the call: YOLOv3-tiny's ``512 -> 1024`` 3x3 conv on a 13x13 map reads
and writes 19 MB of weights per call in the reorder alone (one core: 24 ms for the call, 17 ms with
the weight reordered beforehand; measured by tools/benchmark_yolo.py's model on dog.jpg). And a
1x1 conv on one thread runs PyTorch's own GEMM kernel rather than oneDNN's.

:class:`PackedConv2d` is an ``nn.Conv2d`` (same parameters, state dict and ``isinstance``) whose
eager CPU float32 inference calls oneDNN's ``_convolution_pointwise`` with the weight reordered once
per input shape (the layout oneDNN picks for that shape; at most :data:`MAX_PACKED_SHAPES` kept, a
further shape runs with the dense weight) and an optional ``relu`` / ``leaky_relu`` applied by
oneDNN as a post-op of the convolution (no second pass over the map). The numbers are oneDNN's
own convolution's: the same kernels as ``F.conv2d`` on channels-last weights (tested equal).
Everywhere else (gradients needed, another device or dtype, tracing, ``torch.compile``,
``torch.export``) it is ``F.conv2d`` then the activation: the graph a tracer sees is the plain one.

:func:`pack_convolutions` puts them into a model in place, for :func:`detkit.models.fuse.
inference_copy` (the inference fast path); a model opts in with a ``prepack_convs = True`` class
attribute (YOLOv3: one fixed input size, so one packed weight per conv). A packed weight is a cache,
not state: it is rebuilt when the weight changes and is neither saved nor copied.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MAX_PACKED_SHAPES", "PackedConv2d", "pack_convolutions", "packing_available"]

MAX_PACKED_SHAPES = 4  # input shapes with their own reordered weight per conv

# Activations oneDNN applies as a post-op: module type -> (attr name, scalars of the module).
_POST_OPS = {
    nn.ReLU: lambda module: ("relu", []),
    nn.LeakyReLU: lambda module: ("leaky_relu", [float(module.negative_slope)]),
}


def packing_available() -> bool:
    """Whether this PyTorch build has oneDNN's weight reorder and pointwise convolution ops."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._convolution_pointwise.default  # noqa: B018 - resolves the op or raises
        torch.ops.mkldnn._reorder_convolution_weight.default  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


class PackedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (then an optional ReLU / LeakyReLU) running oneDNN with a pre-reordered weight.

    Build it with :meth:`from_conv`; see the module docstring for when the packed path runs.

    Attributes:
        post_op: ``"none"``, ``"relu"`` or ``"leaky_relu"``: the activation applied after the conv.
        post_op_scalars: Its scalars (``[negative_slope]`` for ``leaky_relu``).
    """

    post_op: str
    post_op_scalars: list[float]

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, activation: nn.Module | None = None) -> PackedConv2d:
        """A packed conv sharing ``conv``'s parameters, applying ``activation`` after it.

        Args:
            conv: A plain ``nn.Conv2d`` with zero padding given as numbers (not ``"same"``).
            activation: None, or an ``nn.ReLU`` / ``nn.LeakyReLU`` to fuse.

        Raises:
            ValueError: a conv or activation the packed path cannot run.
        """
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"PackedConv2d.from_conv: cannot pack {conv} (a plain zero-padded nn.Conv2d only)")
        if activation is not None and type(activation) not in _POST_OPS:
            raise ValueError(f"PackedConv2d.from_conv: cannot fuse {activation} (ReLU or LeakyReLU only)")
        packed = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, bias=conv.bias is not None, device="meta")
        packed.train(conv.training)
        packed.weight = conv.weight  # shared parameters, as inference_copy shares its tensors
        packed.bias = conv.bias
        packed.post_op, packed.post_op_scalars = _POST_OPS[type(activation)](activation) if activation else ("none", [])
        packed._packed = {}
        return packed

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        state["_packed"] = {}  # a cache of opaque oneDNN tensors: neither copied nor pickled
        return state

    def _packed_weight(self, x: Tensor) -> Tensor:
        """The weight reordered for inputs of ``x``'s shape (the dense weight past the cache's size)."""
        weight = self.weight
        owner = (weight.data_ptr(), weight._version, tuple(weight.stride()))
        if self._packed.get("owner") != owner:  # a new or changed weight: drop the old layouts
            self._packed = {"owner": owner}
        key = tuple(x.shape)
        packed = self._packed.get(key)
        if packed is None:
            if len(self._packed) > MAX_PACKED_SHAPES:
                return weight
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                weight.detach(), list(self.padding), list(self.stride), list(self.dilation), self.groups,
                list(x.shape),
            )  # fmt: skip
            self._packed[key] = packed
        return packed

    def _runs_packed(self, x: Tensor) -> bool:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return False
        weight = self.weight
        return (type(x) is torch.Tensor and x.device.type == "cpu" and weight.device.type == "cpu"
                and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.dim() == 4
                and not x.is_mkldnn
                and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W] -> [B, C_out, H', W']``: the conv, then the post-op."""
        if self._runs_packed(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self._packed_weight(x), self.bias, list(self.padding), list(self.stride), list(self.dilation),
                self.groups, self.post_op, self.post_op_scalars, "",
            )  # fmt: skip
        out = super().forward(x)
        if self.post_op == "relu":
            return F.relu(out)
        if self.post_op == "leaky_relu":
            return F.leaky_relu(out, self.post_op_scalars[0])
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", post_op={self.post_op}" if self.post_op != "none" else "")


def _packable(conv: nn.Module) -> bool:
    return type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def pack_convolutions(model: nn.Module) -> int:
    """Replace every plain ``nn.Conv2d`` of ``model`` by a :class:`PackedConv2d`, in place.

    In an ``nn.Sequential`` a conv followed by ``nn.Identity`` slots (folded batch norms, see
    :func:`detkit.models.fuse.fold_batch_norms`) and then an ``nn.ReLU`` / ``nn.LeakyReLU`` takes
    that activation as its post-op; the activation's slot becomes an ``nn.Identity`` (the module
    tree keeps its names). For inference: run it after folding the batch norms (a conv followed by
    a batch norm keeps its activation apart).

    Args:
        model: Any module.

    Returns:
        The number of convolutions packed (0 when :func:`packing_available` is False).
    """
    if not packing_available():
        return 0
    count = 0
    for module in list(model.modules()):
        if isinstance(module, PackedConv2d):
            continue
        names = list(module._modules)
        for index, name in enumerate(names):
            conv = module._modules[name]
            if conv is None or not _packable(conv):
                continue
            activation = None
            if isinstance(module, nn.Sequential):
                after = index + 1
                while after < len(names) and type(module._modules[names[after]]) is nn.Identity:
                    after += 1
                candidate = module._modules[names[after]] if after < len(names) else None
                if candidate is not None and type(candidate) in _POST_OPS:
                    activation = candidate
                    module._modules[names[after]] = nn.Identity()
            module._modules[name] = PackedConv2d.from_conv(conv, activation)
            count += 1
    return count
