"""ImageList padding (against torchvision's GeneralizedRCNNTransform) and target validation."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from detkit.structures import (
    ImageList,
    ShapeSpec,
    check_image_list,
    format_shapes,
    validate_predictions,
    validate_targets,
)


def _torchvision_batch(images: list[torch.Tensor], size_divisible: int) -> torch.Tensor:
    transform = GeneralizedRCNNTransform(min_size=800, max_size=1333, image_mean=[0.0] * 3, image_std=[1.0] * 3)
    return transform.batch_images(images, size_divisible=size_divisible)


def _target(boxes: list[list[float]], labels: list[int] | None = None) -> dict[str, torch.Tensor]:
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    label_tensor = torch.tensor(labels if labels is not None else [0] * len(box_tensor), dtype=torch.int64)
    return {"boxes": box_tensor, "labels": label_tensor}


def test_from_tensors_matches_torchvision_batch_images() -> None:
    images = [torch.rand(3, 37, 50), torch.rand(3, 64, 31), torch.rand(3, 20, 20)]
    batch = ImageList.from_tensors(images, size_divisibility=32)
    expected = _torchvision_batch(images, 32)
    assert batch.tensor.shape == (3, 3, 64, 64)
    torch.testing.assert_close(batch.tensor, expected, rtol=0, atol=0)
    assert batch.image_sizes == [(37, 50), (64, 31), (20, 20)]
    assert len(batch) == 3


def test_from_tensors_without_divisibility_pads_to_max_with_pad_value() -> None:
    images = [torch.ones(1, 3, 5), torch.ones(1, 4, 2)]
    batch = ImageList.from_tensors(images, pad_value=-1.0)
    assert batch.tensor.shape == (2, 1, 4, 5)
    assert (batch.tensor[0, :, 3:, :] == -1).all() and (batch.tensor[0, :, :3, :] == 1).all()
    assert (batch.tensor[1, :, :, 2:] == -1).all() and (batch.tensor[1, :, :, :2] == 1).all()


def test_from_tensors_rejects_bad_images() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ImageList.from_tensors([])
    with pytest.raises(ValueError, match="image 1 has 1 channels"):
        ImageList.from_tensors([torch.rand(3, 4, 4), torch.rand(1, 4, 4)])
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        ImageList.from_tensors([torch.rand(4, 4)])


def test_to_keeps_sizes() -> None:
    batch = ImageList.from_tensors([torch.rand(3, 4, 6)]).to("cpu")
    assert batch.image_sizes == [(4, 6)] and batch.device.type == "cpu"


def test_valid_targets_including_empty_pass() -> None:
    targets = [_target([[1, 2, 10, 20], [0, 0, 5, 5]], [0, 3]), _target([])]
    validate_targets(targets, image_sizes=[(30, 30), (30, 30)], num_classes=4)


def test_degenerate_box_names_image_and_box() -> None:
    targets = [_target([[1, 2, 10, 20]]), _target([[0, 0, 5, 5], [3, 4, 3, 9]])]
    with pytest.raises(ValueError, match=r"image 1 \(id 'b'\): box 1 .*\[3\.0, 4\.0, 3\.0, 9\.0\]"):
        validate_targets(targets, image_ids=["a", "b"])
    with pytest.raises(ValueError, match=r"image 0: box 0 has zero or negative"):
        validate_targets([_target([[5, 5, 1, 9]])])


def test_bad_dtypes_shapes_and_values() -> None:
    bad_labels = {"boxes": torch.tensor([[0.0, 0, 1, 1]]), "labels": torch.tensor([1], dtype=torch.int32)}
    with pytest.raises(TypeError, match="labels must be int64"):
        validate_targets([bad_labels])
    with pytest.raises(TypeError, match="boxes must be floating"):
        validate_targets([{"boxes": torch.tensor([[0, 0, 1, 1]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        validate_targets([{"boxes": torch.zeros(2, 5), "labels": torch.zeros(2, dtype=torch.int64)}])
    with pytest.raises(ValueError, match=r"labels must have shape \[2\]"):
        validate_targets([{"boxes": torch.tensor([[0.0, 0, 1, 1]] * 2), "labels": torch.zeros(3, dtype=torch.int64)}])
    with pytest.raises(ValueError, match="not finite"):
        validate_targets([_target([[0, 0, float("nan"), 1]])])
    with pytest.raises(ValueError, match="negative"):
        validate_targets([_target([[0, 0, 1, 1]], [-1])])
    with pytest.raises(ValueError, match="num_classes=2"):
        validate_targets([_target([[0, 0, 1, 1]], [2])], num_classes=2)
    with pytest.raises(KeyError, match="labels"):
        validate_targets([{"boxes": torch.zeros(0, 4)}])
    with pytest.raises(ValueError, match="2 targets but 1 image_sizes"):
        validate_targets([_target([]), _target([])], image_sizes=[(3, 3)])
    with pytest.raises(ValueError, match="masks are"):
        target = _target([[0, 0, 1, 1]]) | {"masks": torch.zeros(1, 4, 4, dtype=torch.uint8)}
        validate_targets([target], image_sizes=[(5, 4)])


def test_predictions_need_scores_and_allow_zero_size_boxes() -> None:
    prediction = _target([[0, 0, 0, 5]]) | {"scores": torch.tensor([0.9])}
    validate_predictions([prediction])
    with pytest.raises(KeyError, match="scores"):
        validate_predictions([_target([[0, 0, 1, 5]])])


def test_check_image_list_returns_sizes_and_names_the_bad_input():
    images = [torch.zeros(3, 4, 5), torch.zeros(3, 6, 7, dtype=torch.uint8)]
    assert check_image_list(images, "Model") == [(4, 5), (6, 7)]
    with pytest.raises(TypeError, match="Model expects a non-empty list"):
        check_image_list([], "Model")
    with pytest.raises(TypeError, match="got Tensor"):
        check_image_list(torch.zeros(1, 3, 4, 5), "Model")
    with pytest.raises(ValueError, match=r"Model: image 1 must be a \[3, H, W\] tensor .* got \[1, 4, 5\]"):
        check_image_list([torch.zeros(3, 4, 5), torch.zeros(1, 4, 5)], "Model")
    with pytest.raises(TypeError, match="Model: image 1 must be floating point .* torch.uint8"):
        check_image_list(images, "Model", require_float=True)


def test_check_image_list_allows_an_empty_batch_only_when_asked() -> None:
    with pytest.raises(TypeError, match="non-empty list"):
        check_image_list([], "Detector")
    assert check_image_list([], "MTCNN", allow_empty=True) == []
    assert check_image_list([torch.rand(3, 4, 5)], "Detector", allow_empty=True) == [(4, 5)]


def test_shape_spec_is_shared_and_formats_for_messages() -> None:
    from detkit.models.backbones import ShapeSpec as BackboneShapeSpec

    assert BackboneShapeSpec is ShapeSpec and ShapeSpec(256, 8) == ShapeSpec(256, 8)
    assert format_shapes({"c3": ShapeSpec(256, 8), "c4": ShapeSpec(512, 16)}) == (
        "{'c3': (256 ch, stride 8), 'c4': (512 ch, stride 16)}"
    )
