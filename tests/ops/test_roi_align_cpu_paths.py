"""The CPU RoIAlign kernel's ways through a map (csrc/cpu/roi_align.cpp) against torchvision.ops.roi_align.

Many RoIs on an NCHW map take the channel-blocked pass (16 channels a block, each block made
channels-last in a per-thread buffer), a channels-last map is read RoI by RoI, adaptive sampling
with many RoIs reads a channels-last copy, few RoIs read the planes in place; the work is split
between threads (parallel.h). Each must give torchvision's forward bits (the fallback: within 1e-5)
and its gradient within 1e-5, for channel counts on and off the block size, whatever the thread count.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from detkit.ops import roi_align


def _rois(num: int, batch: int, image_size: float, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """RoIs mostly inside an image of side ``image_size``, some across its border, a few of zero size."""
    corner = torch.rand(num, 2, generator=generator, dtype=torch.float64) * image_size * 1.1 - image_size * 0.1
    size = torch.rand(num, 2, generator=generator, dtype=torch.float64) * image_size * 0.5
    size[: num // 10] = 0
    batch_index = torch.randint(0, batch, (num, 1), generator=generator).double()
    return torch.cat([batch_index, corner, corner + size], dim=1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 16, 21, 40])
@pytest.mark.parametrize("aligned, sampling_ratio", [(True, 2), (False, 2), (True, 0), (False, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_many_rois_equal_torchvision(impl, dtype, channels, aligned, sampling_ratio, channels_last):
    generator = torch.Generator().manual_seed(channels * 4 + sampling_ratio * 2 + int(aligned))
    features = torch.randn(2, channels, 20, 26, generator=generator, dtype=dtype)
    rois = _rois(150, 2, 26 / 0.25, generator, dtype)
    grad = torch.randn(150, channels, 7, 7, generator=generator, dtype=dtype)
    reference_input = features.clone().requires_grad_()
    expected = torchvision.ops.roi_align(reference_input, rois, 7, 0.25, sampling_ratio, aligned)
    expected.backward(grad)

    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    detkit_input = features.to(impl.device).requires_grad_()
    pooled = roi_align(detkit_input, rois.to(impl.device), 7, 0.25, sampling_ratio, aligned)
    pooled.backward(grad.to(impl.device))
    exact = impl.name == "compiled-cpu"
    tolerance = 0 if exact else 1e-5
    torch.testing.assert_close(pooled.detach().cpu(), expected.detach(), rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(detkit_input.grad.cpu(), reference_input.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_rois", [4, 400])
def test_results_do_not_depend_on_the_thread_count(impl, num_rois):
    if impl.name != "compiled-cpu":
        pytest.skip("the threading of the compiled CPU kernel")
    generator = torch.Generator().manual_seed(num_rois)
    features = torch.randn(2, 37, 30, 40, generator=generator)
    rois = _rois(num_rois, 2, 160.0, generator, torch.float32)
    grad = torch.randn(num_rois, 37, 7, 7, generator=generator)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            x = features.clone().requires_grad_()
            pooled = roi_align(x, rois, 7, 0.25, 2, True)
            pooled.backward(grad)
            results.append((pooled.detach(), x.grad))
    finally:
        torch.set_num_threads(threads)
    for pooled, grad_input in results[1:]:
        assert torch.equal(pooled, results[0][0])
        assert torch.equal(grad_input, results[0][1])


def test_bad_batch_index_among_many_rois_is_an_error(impl):
    # Many RoIs take the threaded passes: the error still reaches the caller, naming the RoI.
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 20, 16, 16, generator=generator, device=impl.device)
    rois = _rois(300, 2, 64.0, generator, torch.float32)
    rois[123, 0] = 2
    with pytest.raises((ValueError, RuntimeError), match="batch index"):
        roi_align(features, rois.to(impl.device), 7, 0.25, 2, True)
    if impl.name == "compiled-cpu":
        grad = torch.randn(300, 20, 7, 7, generator=generator)
        with pytest.raises(RuntimeError, match=r"rois\[123, 0\] = 2"):
            torch.ops.detkit._roi_align_backward(grad, rois, 0.25, 7, 7, 2, 20, 16, 16, 2, True)
