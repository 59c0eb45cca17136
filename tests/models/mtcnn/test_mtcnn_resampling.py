"""Area resampling on integral images equals F.interpolate(mode="area") (facenet-pytorch's
resampling), for batched crops and for pyramid levels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detkit.models.detectors.mtcnn.resampling import IntegralImages, area_crop_resize, area_resize, summed_area_table


def test_area_crop_resize_equals_interpolate_area_per_box():
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 37, 51, generator=generator), torch.rand(3, 64, 29, generator=generator)]
    integral = IntegralImages([summed_area_table(im) for im in images])
    image_idx = torch.randint(0, 2, (40,), generator=generator)
    sizes = torch.tensor([[37, 51], [64, 29]])[image_idx]
    start = (torch.rand(40, 2, generator=generator) * (sizes - 1)).long()
    stop = start + 1 + (torch.rand(40, 2, generator=generator) * (sizes - start)).long().clamp(max=(sizes - start - 1))
    for size in (12, 24):
        crops = area_crop_resize(integral, image_idx, start[:, 1], start[:, 0], stop[:, 1], stop[:, 0], size)
        for k in range(40):
            (y0, x0), (y1, x1) = start[k].tolist(), stop[k].tolist()
            expected = F.interpolate(images[image_idx[k]][None, :, y0:y1, x0:x1], (size, size), mode="area")[0]
            torch.testing.assert_close(crops[k], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("size", [(13, 20), (40, 7), (64, 64)])
def test_area_resize_equals_interpolate_area(size):
    images = torch.rand(2, 3, 45, 61, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(area_resize(summed_area_table(images), size),
                               F.interpolate(images, size, mode="area"), atol=1e-6, rtol=1e-6)


def test_summed_area_table_is_exact_in_integers_for_8_bit_images():
    images = torch.randint(0, 256, (2, 3, 9, 7), generator=torch.Generator().manual_seed(2)).float()
    table = summed_area_table(images)
    assert table.dtype == torch.int32 and table.shape == (2, 10, 8, 3)
    assert int(table[1, 9, 7, 2]) == int(images[1, 2].sum())
    assert summed_area_table(images / 255).dtype == torch.float64  # not integral: float64 sums


def test_opencv_table_equals_cumulative_sums_and_declines_non_8_bit_values():
    from detkit.models.detectors.mtcnn.resampling import _opencv_uint8_table

    generator = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (2, 3, 31, 17), generator=generator)
    pixels[0, 0, 0, :2] = torch.tensor([0, 255])  # both ends of the range, for the checks below
    unit = pixels.float() / 255  # what image readers give: uint8 / 255
    table = _opencv_uint8_table(unit * 255)
    assert table is not None and table.dtype == torch.int32 and table.shape == (2, 32, 18, 3)
    exact = pixels.movedim(1, -1).cumsum(1).cumsum(2)
    assert torch.equal(table[:, 1:, 1:], exact.to(torch.int32)) and not table[:, 0].any() and not table[:, :, 0].any()
    assert torch.equal(summed_area_table(unit * 255), table)  # the public function takes that path
    one = _opencv_uint8_table(unit[0, :1] * 255)  # one channel, no batch dimension
    assert one is not None and torch.equal(one, table[0, :, :, :1])
    # Fractional, negative and out-of-range values are left to the cumulative sums.
    for values in (unit, unit * 255 - 1, unit * 255 + 1, (unit * 255).double()):
        assert _opencv_uint8_table(values) is None
    torch.testing.assert_close(summed_area_table(unit * 255 + 1)[:, 1:, 1:], (exact + exact.new_ones(1).expand_as(exact)
                                                                             .cumsum(1).cumsum(2)).to(torch.int32))
