"""SSD's photometric distortion: an albumentations transform that leaves boxes alone and follows SSD's rules."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from detkit.data.ssd_transforms import SSDPhotometricDistort
from detkit.data.transforms import MinIoURandomCrop, ZoomOut


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (60, 80, 3), dtype=np.uint8)


def _boxes() -> np.ndarray:
    return np.array([[5.0, 6.0, 40.0, 50.0], [30.0, 10.0, 75.0, 35.0]], dtype=np.float32)


def test_in_compose_keeps_boxes_and_labels():
    compose = A.Compose(
        [SSDPhotometricDistort(distort_prob=1.0)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
        seed=0,
    )
    image = _image()
    out = compose(image=image, bboxes=_boxes(), labels=np.array([3, 7]))
    assert out["image"].shape == image.shape and out["image"].dtype == np.uint8
    assert not np.array_equal(out["image"], image)
    np.testing.assert_allclose(out["bboxes"], _boxes(), atol=1e-4)
    assert list(out["labels"]) == [3, 7]


def test_probability_zero_is_identity_and_permutation_alone_permutes():
    image = _image(1)
    unchanged = A.Compose([SSDPhotometricDistort(distort_prob=0.0)], seed=0)(image=image)["image"]
    np.testing.assert_array_equal(unchanged, image)
    transform = SSDPhotometricDistort()
    permuted = transform.apply(image, permutation=[2, 0, 1])
    np.testing.assert_array_equal(permuted, image[..., [2, 0, 1]])


def test_each_distortion_is_drawn_with_its_probability():
    transform = SSDPhotometricDistort(distort_prob=0.5)
    transform.set_random_seed(0)
    draws = [transform.get_params() for _ in range(2000)]
    for key in ("brightness", "contrast", "saturation", "hue", "permutation"):
        rate = np.mean([d[key] is not None for d in draws])
        assert 0.45 < rate < 0.55, (key, rate)
    assert 0.45 < np.mean([d["contrast_first"] for d in draws]) < 0.55
    factors = [d["brightness"] for d in draws if d["brightness"] is not None]
    assert 0.875 <= min(factors) and max(factors) <= 1.125


def test_contrast_position_matters():
    image = _image(2)
    transform = SSDPhotometricDistort()
    first = transform.apply(image, contrast=1.4, saturation=0.6, contrast_first=True)
    last = transform.apply(image, contrast=1.4, saturation=0.6, contrast_first=False)
    assert not np.array_equal(first, last)


def test_full_ssd_pipeline_in_compose():
    compose = A.Compose(
        [SSDPhotometricDistort(), ZoomOut(p=1.0), MinIoURandomCrop(), A.HorizontalFlip(), A.Resize(300, 300)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
        seed=3,
    )
    for _ in range(5):
        out = compose(image=_image(), bboxes=_boxes(), labels=np.array([3, 7]))
        assert out["image"].shape == (300, 300, 3)
        boxes = np.asarray(out["bboxes"]).reshape(-1, 4)
        assert len(boxes) == len(out["labels"])
        assert (boxes >= 0).all() and (boxes <= 300).all()


@pytest.mark.parametrize("kwargs", [{"brightness": (1.2, 0.8)}, {"hue": (-0.7, 0.0)}, {"distort_prob": 1.5}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        SSDPhotometricDistort(**kwargs)
