"""roi_align / RoIAlign against torchvision.ops.roi_align and hand-worked cases, for every implementation."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detkit.ops import RoIAlign, roi_align
from detkit.ops import _ext


def _random_rois(num: int, batch: int, image_size: float, generator: torch.Generator, dtype=torch.float32):
    """RoIs over an image of side ``image_size``: mostly inside, some partly outside, some zero-size."""
    corner = torch.rand(num, 2, generator=generator, dtype=torch.float64) * image_size * 1.1 - image_size * 0.1
    size = torch.rand(num, 2, generator=generator, dtype=torch.float64) * image_size * 0.6
    size[: max(1, num // 10)] = 0  # zero-size RoIs
    batch_index = torch.randint(0, batch, (num, 1), generator=generator).double()
    return torch.cat([batch_index, corner, corner + size], dim=1).to(dtype)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 1, 2])
@pytest.mark.parametrize("output_size, spatial_scale", [(7, 0.25), ((14, 14), 0.5), ((3, 5), 1.0), (7, 1 / 16)])
def test_forward_and_backward_equal_torchvision(impl, aligned, sampling_ratio, output_size, spatial_scale):
    generator = torch.Generator().manual_seed(sampling_ratio * 10 + int(aligned))
    features = torch.randn(2, 5, 24, 30, generator=generator)
    image_size = 30 / spatial_scale
    rois = _random_rois(40, 2, image_size, generator)
    grad = torch.randn(40, 5, *((output_size, output_size) if isinstance(output_size, int) else output_size),
                       generator=generator)

    reference_input = features.clone().requires_grad_()
    expected = torchvision.ops.roi_align(reference_input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    expected.backward(grad)

    detkit_input = features.to(impl.device).requires_grad_()
    pooled = roi_align(detkit_input, rois.to(impl.device), output_size, spatial_scale, sampling_ratio, aligned)
    pooled.backward(grad.to(impl.device))
    # Relative 1e-5; the absolute 1e-5 (features are of unit scale) covers outputs that cancel to
    # near zero, where the fallback's different summation order shows in the last bits.
    torch.testing.assert_close(pooled.detach().cpu(), expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(detkit_input.grad.cpu(), reference_input.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_rois", [3, 300])
@pytest.mark.parametrize("channels_last", [False, True])
def test_few_or_many_rois_on_either_memory_format(impl, num_rois, channels_last):
    """The CPU kernel reads a map sampled at fewer points than it has pixels plane by plane and
    otherwise from a channels-last copy (the fallback: gathers only the pixels it reads, or the
    whole map as a table); every combination gives torchvision's numbers, forward (the CPU
    kernel: the same bits) and backward."""
    generator = torch.Generator().manual_seed(num_rois)
    features = torch.randn(1, 8, 96, 120, generator=generator)
    rois = _random_rois(num_rois, 1, 480.0, generator)
    expected = torchvision.ops.roi_align(features, rois, 7, 0.25, 2, True)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    pooled = roi_align(features.to(impl.device), rois.to(impl.device), 7, 0.25, 2, True).cpu()
    exact = impl.name == "compiled-cpu"
    assert pooled.is_contiguous() or not exact
    torch.testing.assert_close(pooled, expected, rtol=0 if exact else 1e-5, atol=0 if exact else 1e-5)

    grad = torch.randn(expected.shape, generator=generator)
    reference_input = features.detach().contiguous().requires_grad_()
    torchvision.ops.roi_align(reference_input, rois, 7, 0.25, 2, True).backward(grad)
    detkit_input = features.detach().to(impl.device).requires_grad_()
    roi_align(detkit_input, rois.to(impl.device), 7, 0.25, 2, True).backward(grad.to(impl.device))
    torch.testing.assert_close(detkit_input.grad.cpu(), reference_input.grad, rtol=1e-5, atol=1e-5)


def test_aligned_half_pixel_convention(impl):
    # A ramp f(y, x) = x is reproduced exactly by bilinear interpolation, so the pooled value is the
    # mean x of the sampling points. Box [1, 1, 3, 3], one bin, 2x2 samples:
    #  aligned=False samples x = 1.5, 2.5 -> 2.0 (the box centre, in the old convention);
    #  aligned=True shifts by half a pixel: x = 1.0, 2.0 -> 1.5 (pixel k's centre is at k + 0.5).
    ramp = torch.arange(8, dtype=torch.float64).repeat(8, 1)[None, None].to(impl.device)
    rois = torch.tensor([[0, 1, 1, 3, 3]], dtype=torch.float64, device=impl.device)
    assert roi_align(ramp, rois, 1, 1.0, 2, aligned=False).item() == pytest.approx(2.0)
    assert roi_align(ramp, rois, 1, 1.0, 2, aligned=True).item() == pytest.approx(1.5)
    # Adaptive sampling: ceil(2 / 2) = 1 point per bin per axis, at the bin centres x = 1.5 and 2.5.
    assert roi_align(ramp, rois, (1, 2), 1.0, 0, aligned=False).flatten().tolist() == pytest.approx([1.5, 2.5])


def test_points_outside_map_contribute_zero(impl):
    ones = torch.ones(1, 1, 4, 4, device=impl.device)
    far_outside = torch.tensor([[0, 10, 10, 14, 14]], dtype=torch.float32, device=impl.device)
    assert roi_align(ones, far_outside, 2, 1.0, 2, True).abs().sum().item() == 0.0
    # Within one pixel of the border a point is clamped onto the map and sees the border value.
    just_outside = torch.tensor([[0, -0.9, -0.9, -0.1, -0.1]], dtype=torch.float32, device=impl.device)
    assert roi_align(ones, just_outside, 1, 1.0, 1, False).item() == pytest.approx(1.0)


def test_empty_inputs(impl):
    features = torch.randn(2, 3, 8, 8, device=impl.device, requires_grad=True)
    pooled = roi_align(features, torch.zeros(0, 5, device=impl.device), (2, 3), 1.0, 2, True)
    assert pooled.shape == (0, 3, 2, 3)
    pooled.sum().backward()
    assert features.grad is not None and features.grad.abs().sum().item() == 0.0


def test_list_of_boxes_equals_rois_and_module(impl):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 16, 16, generator=generator).to(impl.device)
    boxes = [torch.tensor([[1.0, 2.0, 9.0, 12.0]]), torch.tensor([[0.0, 0.0, 5.0, 5.0], [3.0, 3.0, 15.0, 8.0]])]
    rois = torch.tensor([[0, 1, 2, 9, 12], [1, 0, 0, 5, 5], [1, 3, 3, 15, 8]], dtype=torch.float32)
    from_list = roi_align(features, [b.to(impl.device) for b in boxes], 3, 1.0, 2, True)
    module = RoIAlign(3, 1.0, 2, aligned=True)
    assert "aligned=True" in repr(module)
    torch.testing.assert_close(from_list, roi_align(features, rois.to(impl.device), 3, 1.0, 2, True))
    torch.testing.assert_close(module(features, rois.to(impl.device)), from_list)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck_float64(impl, aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(1, 2, 6, 7, generator=generator, dtype=torch.float64).to(impl.device).requires_grad_()
    rois = torch.tensor([[0, 0.3, 0.7, 4.2, 5.1], [0, -1.5, 2.0, 3.0, 7.5]], dtype=torch.float64, device=impl.device)
    assert torch.autograd.gradcheck(lambda x: roi_align(x, rois, (2, 3), 1.0, sampling_ratio, aligned), (features,))


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda: (torch.randn(3, 8, 8), torch.zeros(1, 5), 2), r"input must be a \[N, C, H, W\]"),
        (lambda: (torch.randn(1, 3, 8, 8), torch.zeros(1, 4), 2), r"rois must have shape \[K, 5\]"),
        (lambda: (torch.randn(1, 3, 8, 8), torch.zeros(1, 5, dtype=torch.float64), 2), "dtype of input"),
        (lambda: (torch.randn(1, 3, 8, 8), torch.zeros(1, 5), (2, 2, 2)), "output_size must be"),
        (lambda: (torch.zeros(1, 3, 8, 8, dtype=torch.int64), torch.zeros(1, 5, dtype=torch.int64), 2), "floating point"),
    ],
)
def test_bad_arguments_are_named(make_args, message):
    features, rois, output_size = make_args()
    with pytest.raises(ValueError, match=message):
        roi_align(features, rois, output_size)


def test_bad_batch_index_is_an_error(impl):
    features = torch.randn(2, 3, 8, 8, device=impl.device)
    rois = torch.tensor([[2, 0, 0, 4, 4]], dtype=torch.float32, device=impl.device)
    with pytest.raises((ValueError, RuntimeError), match="batch index"):
        roi_align(features, rois, 2)


@pytest.mark.skipif(not _ext.ext_loaded(), reason="detkit._C is not built")
def test_opcheck_roi_align():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 10, 12, generator=generator, requires_grad=True)
    rois = torch.tensor([[0, 1, 1, 8, 9], [1, 0, 2, 11, 7]], dtype=torch.float32)
    torch.library.opcheck(torch.ops.detkit.roi_align.default, (features, rois, 0.5, 3, 3, 2, True))
    grad = torch.randn(2, 3, 3, 3, generator=generator)
    torch.library.opcheck(torch.ops.detkit._roi_align_backward.default,
                          (grad, rois, 0.5, 3, 3, 2, 3, 10, 12, 2, True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rois_dtype", ["same", "float32"])
def test_low_precision_is_the_exact_upcast_forward_and_backward(impl, dtype, rois_dtype):
    # bf16 / fp16 features (autocast): computed in float32 and rounded once to the input's dtype,
    # so the result equals the float32 op on the same values (tolerance 0 against that), and the
    # float32 op on the unrounded features within the dtype's rounding (rtol 2^-7 bf16, 2^-10 fp16).
    if torch.device(impl.device).type == "cuda" and dtype == torch.float16 and rois_dtype == "same":
        pytest.skip("the CUDA float16 kernel runs there (its own test)")
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 5, 24, 30, generator=generator)
    rois = _random_rois(40, 2, 120.0, generator)
    grad = torch.randn(40, 5, 7, 7, generator=generator)
    low = features.to(dtype).to(impl.device).requires_grad_()
    low_rois = (rois.to(dtype) if rois_dtype == "same" else rois).to(impl.device)
    pooled = roi_align(low, low_rois, 7, 0.25, 2, True)
    assert pooled.dtype == dtype
    pooled.backward(grad.to(dtype).to(impl.device))
    assert low.grad.dtype == dtype

    reference = features.to(dtype).float().to(impl.device).requires_grad_()  # the same values, in float32
    expected = roi_align(reference, low_rois.float(), 7, 0.25, 2, True)  # this implementation's float32
    expected.backward(grad.to(dtype).float().to(impl.device))
    torch.testing.assert_close(pooled, expected.detach().to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(low.grad, reference.grad.to(dtype), rtol=0, atol=0)
    rtol = 2 ** -7 if dtype == torch.bfloat16 else 2 ** -10
    unrounded = torchvision.ops.roi_align(features, low_rois.float().cpu(), 7, 0.25, 2, True)
    torch.testing.assert_close(pooled.cpu().float(), unrounded, rtol=rtol, atol=2e-2 if dtype == torch.bfloat16 else 3e-3)
