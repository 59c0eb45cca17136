"""Loading of the compiled extension ``detkit._C`` and the choice between kernels and fallbacks.

The op schemas live in ``csrc/detkit.cpp``; importing ``detkit._C`` registers them together with the
CPU (and, when compiled, CUDA) kernels. Autograd and fake (meta) kernels are registered here, from
Python. Nothing is compiled at import or first use: without a built extension every op runs its
pure-PyTorch fallback, and ``DETKIT_DISABLE_EXT=1`` forces the fallbacks even when it is built.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

logger = logging.getLogger(__name__)

_EXT_LOADED = False
_EXT_ERROR: str | None = None
_WARNED_FALLBACK = False

try:  # pragma: no branch - which side runs depends on the install
    from detkit import _C  # noqa: F401  (import registers the torch.ops.detkit.* operators)

    _EXT_LOADED = True
except ImportError as exc:  # not built (DETKIT_NO_EXT=1 or no compiler): fallbacks only
    _EXT_ERROR = str(exc)


def ext_disabled() -> bool:
    """Whether ``DETKIT_DISABLE_EXT`` asks for the pure-PyTorch fallbacks (read at every call)."""
    return os.environ.get("DETKIT_DISABLE_EXT", "0").lower() in ("1", "true", "yes", "on")


def ext_loaded() -> bool:
    """Whether ``detkit._C`` was built and imported (regardless of ``DETKIT_DISABLE_EXT``)."""
    return _EXT_LOADED


def ext_load_error() -> str | None:
    """Why ``detkit._C`` could not be imported, or ``None`` when it loaded."""
    return _EXT_ERROR


def cuda_version() -> int:
    """CUDA version the extension's kernels were compiled against (e.g. 13000), -1 without CUDA kernels."""
    if not _EXT_LOADED:
        return -1
    return int(torch.ops.detkit._cuda_version())


def has_ext(device: torch.device | str = "cpu") -> bool:
    """Whether a compiled detkit kernel will run for tensors on ``device``.

    Args:
        device: a device or device string, e.g. ``"cpu"``, ``"cuda:0"``.

    Returns:
        True when the extension is loaded, has kernels for that device type, and
        ``DETKIT_DISABLE_EXT`` is not set.
    """
    if not _EXT_LOADED or ext_disabled():
        return False
    device_type = torch.device(device).type
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return cuda_version() > 0
    return False


def use_ext(op_name: str, device: torch.device) -> bool:
    """Decide whether ``op_name`` runs its compiled kernel on ``device``; warn once when falling back."""
    if has_ext(device):
        return True
    global _WARNED_FALLBACK
    if not _WARNED_FALLBACK:
        _WARNED_FALLBACK = True
        if ext_disabled():
            reason = "DETKIT_DISABLE_EXT is set"
        elif not _EXT_LOADED:
            reason = f"detkit._C is not built ({_EXT_ERROR})"
        else:
            reason = f"detkit._C has no kernels for device type '{device.type}'"
        logger.warning("detkit: %s; %s and the other ops run their pure-PyTorch fallbacks", reason, op_name)
    return False


def _register_python_kernels() -> None:
    """Fake kernels (for meta tensors / torch.compile) and autograd for the compiled ops."""

    @torch.library.register_fake("detkit::nms")
    def _nms_fake(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, overlap: str = "iou") -> torch.Tensor:
        num_kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((num_kept,), dtype=torch.int64)

    @torch.library.register_fake("detkit::batched_nms")
    def _batched_nms_fake(
        boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float, overlap: str = "iou"
    ) -> torch.Tensor:
        num_kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((num_kept,), dtype=torch.int64)

    @torch.library.register_fake("detkit::soft_nms")
    def _soft_nms_fake(
        boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, sigma: float, score_threshold: float,
        method: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((num_kept,), dtype=torch.int64), scores.new_empty((num_kept,))

    @torch.library.register_fake("detkit::roi_align")
    def _roi_align_fake(
        input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
        sampling_ratio: int, aligned: bool,
    ) -> torch.Tensor:
        return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))

    @torch.library.register_fake("detkit::_roi_align_backward")
    def _roi_align_backward_fake(
        grad: torch.Tensor, rois: torch.Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
        batch_size: int, channels: int, height: int, width: int, sampling_ratio: int, aligned: bool,
    ) -> torch.Tensor:
        return grad.new_empty((batch_size, channels, height, width))

    def _roi_align_setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
        ctx.save_for_backward(rois)
        ctx.input_shape = tuple(input.shape)
        ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)

    def _roi_align_backward(ctx: Any, grad_output: torch.Tensor) -> tuple:
        (rois,) = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.params
        batch_size, channels, height, width = ctx.input_shape
        grad_input = torch.ops.detkit._roi_align_backward(
            grad_output.contiguous(), rois, spatial_scale, pooled_height, pooled_width,
            batch_size, channels, height, width, sampling_ratio, aligned,
        )
        # RoI coordinates get no gradient (as in torchvision and detectron2).
        return grad_input, None, None, None, None, None, None

    torch.library.register_autograd(
        "detkit::roi_align", _roi_align_backward, setup_context=_roi_align_setup_context
    )


if _EXT_LOADED:
    _register_python_kernels()
