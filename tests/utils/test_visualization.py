"""draw_predictions: boxes, labels kept inside the image, masks, landmarks, stable colours."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from detkit.apis.result import Result
from detkit.utils.visualization import (LANDMARK_COLORS, DrawStyle, class_color, draw_predictions,
                                        label_position)


def make_result(boxes: list[list[float]], labels: list[int], scores: list[float],
                image_size: tuple[int, int], masks: np.ndarray | None = None,
                landmarks: np.ndarray | None = None) -> Result:
    return Result(boxes=np.array(boxes, np.float32).reshape(-1, 4), scores=np.array(scores, np.float32),
                  labels=np.array(labels, np.int64), class_names=[f"c{i}" for i in labels],
                  image_size=image_size, masks=masks, landmarks=landmarks)


def close_to(pixel: np.ndarray, color: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(color)).max() <= tolerance)


def test_returns_a_new_image_and_leaves_the_input_alone() -> None:
    image = np.full((120, 160, 3), 50, np.uint8)
    before = image.copy()
    out = draw_predictions(image, make_result([[10, 40, 60, 90]], [0], [0.8], (120, 160)))
    np.testing.assert_array_equal(image, before)
    assert out.shape == image.shape and out.dtype == np.uint8 and out is not image
    assert (out != image).any()


def test_class_colours_are_stable_and_distinct() -> None:
    assert class_color(3) == class_color(3) == (lambda: class_color(3))()
    colors = [np.array(class_color(i), float) for i in range(30)]
    assert len({tuple(c) for c in colors}) == 30
    nearest = min(np.abs(a - b).max() for a, b in itertools.combinations(colors[:10], 2))
    assert nearest >= 30  # the first ten classes are clearly different
    assert all(0 <= v <= 255 for c in colors for v in c)


def test_box_outline_in_the_class_colour_and_label_above_the_box() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    out = draw_predictions(image, make_result([[20, 60, 80, 100]], [1], [0.9], (200, 200)))
    color = class_color(1)
    assert close_to(out[100, 50], color) and close_to(out[80, 80], color)  # bottom, right edge
    assert (out[70:95, 25:75] == 0).all()  # inside the box: untouched
    label_rows = out[40:59, 20:60]  # the filled label background sits just above the box
    assert (np.abs(label_rows.astype(int) - color).max(axis=2) <= 40).mean() > 0.5


def test_labels_stay_inside_the_image() -> None:
    # at the top edge the label goes inside the box; at the right edge it shifts left
    assert label_position((10, 0, 50, 40), (30, 12), (100, 100)) == (10, 0)
    assert label_position((95, 50, 99, 60), (30, 12), (100, 100)) == (70, 38)
    assert label_position((-20, -20, 30, 30), (30, 12), (100, 100)) == (0, 0)
    assert label_position((10, 95, 20, 99), (30, 12), (100, 100)) == (10, 83)
    assert label_position((0, 0, 5, 5), (300, 12), (100, 100)) == (0, 0)  # too wide: from x=0
    image = np.zeros((60, 80, 3), np.uint8)
    out = draw_predictions(image, make_result([[0, 0, 30, 30], [70, 50, 80, 60]], [0, 1],
                                              [0.9, 0.8], (60, 80)))
    assert (out[:3, :20] != 0).any()  # the first label is drawn at the top, inside the image


def test_masks_are_blended_with_alpha_and_nothing_outside_changes() -> None:
    image = np.full((100, 100, 3), 100, np.uint8)
    mask = np.zeros((1, 100, 100), bool)
    mask[0, 40:90, 40:90] = True
    result = make_result([[40, 40, 90, 90]], [2], [0.7], (100, 100), masks=mask)
    out = draw_predictions(image, result, mask_alpha=0.5)
    expected = np.round(100 * 0.5 + np.array(class_color(2)) * 0.5)
    np.testing.assert_allclose(out[65, 65], expected, atol=1)
    np.testing.assert_array_equal(out[95, 5], [100, 100, 100])
    np.testing.assert_array_equal(out[:25], image[:25])  # above the label
    np.testing.assert_array_equal(out[:, :38], image[:, :38])  # left of the box


def test_landmarks_are_points_in_fixed_colours() -> None:
    image = np.zeros((300, 300, 3), np.uint8)
    points = np.array([[[120, 130], [180, 130], [150, 160], [125, 190], [175, 190]]], np.float32)
    out = draw_predictions(image, make_result([[100, 100, 200, 220]], [0], [0.95], (300, 300),
                                              landmarks=points))
    for (x, y), color in zip(points[0].astype(int), LANDMARK_COLORS):
        np.testing.assert_array_equal(out[y, x], color)


def test_score_threshold_hides_low_scores() -> None:
    image = np.zeros((80, 80, 3), np.uint8)
    result = make_result([[10, 30, 40, 60]], [0], [0.2], (80, 80))
    np.testing.assert_array_equal(draw_predictions(image, result, score_threshold=0.5), image)
    assert (draw_predictions(image, result, score_threshold=0.1) != image).any()


def test_a_prediction_dict_of_tensors_draws_like_a_result() -> None:
    image = np.full((90, 120, 3), 30, np.uint8)
    masks = torch.zeros(1, 90, 120)
    masks[0, 30:60, 30:70] = 0.8
    prediction = {"boxes": torch.tensor([[30.0, 30.0, 70.0, 60.0]]), "labels": torch.tensor([4]),
                  "scores": torch.tensor([0.66]), "masks": masks}
    names = ["a", "b", "c", "d", "kite"]
    from_dict = draw_predictions(image, prediction, class_names=names)
    result = make_result([[30, 30, 70, 60]], [4], [0.66], (90, 120), masks=masks.numpy() >= 0.5)
    np.testing.assert_array_equal(from_dict, draw_predictions(image, result, class_names=names))


def test_sizes_follow_the_image_and_any_size_draws() -> None:
    small, full_hd, huge = (DrawStyle.for_image(48, 64), DrawStyle.for_image(1080, 1920),
                            DrawStyle.for_image(3000, 4000))
    assert small.font_scale < full_hd.font_scale < huge.font_scale
    assert small.text_thickness <= full_hd.text_thickness < huge.text_thickness
    assert small.line_thickness < huge.line_thickness
    for height, width in [(12, 16), (48, 64), (2160, 3840)]:
        box = [width * 0.1, height * 0.2, width * 0.6, height * 0.9]
        out = draw_predictions(np.zeros((height, width, 3), np.uint8),
                               make_result([box], [7], [0.5], (height, width)))
        assert out.shape == (height, width, 3)


def test_grayscale_images_and_bad_images() -> None:
    out = draw_predictions(np.zeros((40, 40), np.uint8), make_result([[5, 5, 30, 30]], [0], [0.9],
                                                                     (40, 40)))
    assert out.shape == (40, 40, 3)
    with pytest.raises(ValueError, match="uint8 BGR"):
        draw_predictions(np.zeros((40, 40, 3), np.float32), make_result([], [], [], (40, 40)))
