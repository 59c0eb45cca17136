"""Sliced inference, the pieces: tile geometry, merging on hand-made boxes, masks and points."""

from __future__ import annotations

import pytest
import torch

from detkit.apis.slicing import SliceSettings, slice_windows
from detkit.apis.slicing_merge import box_overlap, merge_boxes, merge_tile_predictions


def _coverage(windows: list[tuple[int, int, int, int]], size: tuple[int, int]) -> torch.Tensor:
    count = torch.zeros(size, dtype=torch.int64)
    for x1, y1, x2, y2 in windows:
        count[y1:y2, x1:x2] += 1
    return count


# --- tile geometry ---------------------------------------------------------------------------

def test_windows_hand_worked_last_tile_aligned_to_the_border() -> None:
    # step 100 - floor(20) = 80: starts 0, 80, 160 -> 150 (moved back to end at 250)
    assert slice_windows((100, 250), 100, 0.2) == [(0, 0, 100, 100), (80, 0, 180, 100), (150, 0, 250, 100)]
    # no overlap and an exact fit: a plain grid, row by row
    assert slice_windows((200, 200), 100, 0.0) == [(0, 0, 100, 100), (100, 0, 200, 100),
                                                   (0, 100, 100, 200), (100, 100, 200, 200)]


@pytest.mark.parametrize("image_size, size, overlap", [
    ((480, 640), 128, 0.2), ((1000, 333), (200, 100), 0.5), ((257, 256), 256, 0.25),
    ((64, 700), 100, 0.0), ((301, 301), 37, 0.9)])
def test_windows_cover_the_image_overlap_and_stay_inside(image_size, size, overlap) -> None:
    windows = slice_windows(image_size, size, overlap)
    tile_h, tile_w = (size, size) if isinstance(size, int) else size
    height, width = image_size
    assert _coverage(windows, image_size).min() >= 1  # every pixel is in a tile
    assert len(set(windows)) == len(windows)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height  # not past the border, no padding
        assert x2 - x1 == min(tile_w, width) and y2 - y1 == min(tile_h, height)
    xs = sorted({x1 for x1, _, _, _ in windows})
    ys = sorted({y1 for _, y1, _, _ in windows})
    for starts, tile, length in ((xs, tile_w, width), (ys, tile_h, height)):
        if length > tile:
            assert starts[-1] + tile == length  # the last tile ends at the border
            gaps = [b - a for a, b in zip(starts, starts[1:])]
            assert max(gaps) <= tile - int(tile * overlap)  # neighbours share >= floor(size*overlap)


def test_image_smaller_than_a_tile_is_one_tile_of_the_image() -> None:
    assert slice_windows((50, 60), 100, 0.2) == [(0, 0, 60, 50)]
    # one side shorter: one row of tiles as tall as the image
    assert slice_windows((40, 180), 100, 0.2) == [(0, 0, 100, 40), (80, 0, 180, 40)]


@pytest.mark.parametrize("kwargs, option", [
    ({"size": 0}, "slice_size"), ({"size": -8}, "slice_size"), ({"size": (64, 0)}, "slice_size"),
    ({"size": 2.5}, "slice_size"), ({"size": 64, "overlap": 1.0}, "slice_overlap"),
    ({"size": 64, "overlap": -0.1}, "slice_overlap"), ({"size": 64, "overlap": float("nan")}, "slice_overlap"),
    ({"size": 64, "merge": "average"}, "slice_merge"), ({"size": 64, "match_metric": "giou"}, "match_metric"),
    ({"size": 64, "match_thresh": 1.5}, "match_thresh")])
def test_bad_settings_are_one_line_errors_naming_the_option(kwargs, option) -> None:
    with pytest.raises(ValueError, match=option) as error:
        SliceSettings(**kwargs)
    assert "\n" not in str(error.value)


# --- merging hand-made boxes -------------------------------------------------------------------

def test_box_overlap_iou_and_ios() -> None:
    big, small = torch.tensor([[0.0, 0, 20, 20]]), torch.tensor([[5.0, 5, 10, 10], [30, 30, 30, 40]])
    torch.testing.assert_close(box_overlap(big, small, "iou"), torch.tensor([[25 / 400, 0.0]]))
    torch.testing.assert_close(box_overlap(big, small, "ios"), torch.tensor([[1.0, 0.0]]))  # empty box: 0


def _tiles_cutting_one_object(left_score: float, right_score: float):
    """An object at x in [0, 20) seen cut by two tiles: (0..15) sees x 0-15, (5..20) sees x 5-20."""
    windows = [(0, 0, 15, 10), (5, 0, 20, 10)]
    predictions = [{"boxes": torch.tensor([[0.0, 0, 15, 10]]), "scores": torch.tensor([left_score]),
                    "labels": torch.tensor([1])},
                   {"boxes": torch.tensor([[0.0, 0, 15, 10]]), "scores": torch.tensor([right_score]),  # tile px
                    "labels": torch.tensor([1])}]
    return predictions, windows


def test_a_box_cut_by_a_tile_border_comes_back_whole_when_merged() -> None:
    predictions, windows = _tiles_cutting_one_object(0.9, 0.8)
    merged = merge_tile_predictions(predictions, windows, (10, 20), method="merge")
    torch.testing.assert_close(merged["boxes"], torch.tensor([[0.0, 0, 20, 10]]))  # the union
    torch.testing.assert_close(merged["scores"], torch.tensor([0.9]))  # the highest score
    assert merged["labels"].tolist() == [1]
    # NMS keeps one of the two cut boxes: the higher-scored one, shifted to image pixels
    kept = merge_tile_predictions(predictions, windows, (10, 20), method="nms")
    torch.testing.assert_close(kept["boxes"], torch.tensor([[0.0, 0, 15, 10]]))
    predictions, windows = _tiles_cutting_one_object(0.5, 0.8)
    kept = merge_tile_predictions(predictions, windows, (10, 20), method="nms")
    torch.testing.assert_close(kept["boxes"], torch.tensor([[5.0, 0, 20, 10]]))


def test_nms_keeps_the_whole_box_another_tile_saw_when_it_scores_higher() -> None:
    boxes = torch.tensor([[40.0, 40, 56, 60], [40, 40, 64, 60]])  # cut at x=56, and whole
    keep, group, merged = merge_boxes(boxes, torch.tensor([0.6, 0.9]), torch.tensor([0, 0]), "nms")
    assert keep.tolist() == [1] and group.tolist() == [-1, 0]
    torch.testing.assert_close(merged, boxes[1:])


def test_merge_matches_against_the_kept_box_as_given_within_a_class() -> None:
    # A-B overlap (IoU 0.43), B-C overlap (0.43), A-C barely (0.11); D is A's twin of another class
    boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 0, 2])
    keep, group, merged = merge_boxes(boxes, scores, labels, "merge", "iou", 0.3)
    assert keep.tolist() == [0, 2, 3]  # C is not taken by A's growing union, D is another class
    assert group.tolist() == [0, 0, 1, 2]
    torch.testing.assert_close(merged, torch.tensor([[0.0, 0, 14, 10], [8, 0, 18, 10], [0, 0, 10, 10]]))
    keep, group, merged = merge_boxes(boxes, scores, labels, "nms", "iou", 0.3)
    assert keep.tolist() == [0, 2, 3] and group.tolist() == [0, -1, 1, 2]
    torch.testing.assert_close(merged, boxes[[0, 2, 3]])


def test_ios_drops_a_part_inside_a_whole_box_that_iou_keeps() -> None:
    boxes = torch.tensor([[0.0, 0, 30, 30], [0, 0, 10, 30]])  # the left third, IoU 1/3, IoS 1
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([0, 0])
    assert merge_boxes(boxes, scores, labels, "nms", "ios", 0.5)[0].tolist() == [0]
    assert merge_boxes(boxes, scores, labels, "nms", "iou", 0.5)[0].tolist() == [0, 1]


def test_score_thresh_applies_before_the_merge_and_the_cap_after() -> None:
    predictions, windows = _tiles_cutting_one_object(0.9, 0.2)
    merged = merge_tile_predictions(predictions, windows, (10, 20), method="merge", score_thresh=0.3)
    torch.testing.assert_close(merged["boxes"], torch.tensor([[0.0, 0, 15, 10]]))  # 0.2 grew nothing
    separate = [{"boxes": torch.tensor([[0.0, 0, 4, 4], [8, 0, 12, 4]]), "scores": torch.tensor([0.5, 0.7]),
                 "labels": torch.tensor([0, 0])}]
    capped = merge_tile_predictions(separate, [(0, 0, 20, 10)], (10, 20), detections_per_img=1)
    torch.testing.assert_close(capped["boxes"], torch.tensor([[8.0, 0, 12, 4]]))


def test_empty_tiles_and_non_finite_outputs() -> None:
    empty = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    merged = merge_tile_predictions([empty, empty], [(0, 0, 8, 8), (4, 0, 12, 8)], (8, 12), method="merge")
    assert merged["boxes"].shape == (0, 4) and merged["scores"].shape == (0,)
    bad = {"boxes": torch.tensor([[0.0, 0, 4, 4]]), "scores": torch.tensor([float("nan")]),
           "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="non-finite score or box on tile 1"):
        merge_tile_predictions([empty, bad], [(0, 0, 8, 8), (4, 0, 12, 8)], (8, 12))


# --- masks and points ----------------------------------------------------------------------------

def test_masks_are_pasted_into_the_image_and_merged_by_union() -> None:
    predictions, windows = _tiles_cutting_one_object(0.9, 0.8)
    for prediction in predictions:  # each tile's mask: its whole tile (15 x 10), 0.8 inside
        prediction["masks"] = torch.full((1, 1, 10, 15), 0.8)
    predictions[0]["masks"][0, 0, :, :3] = 0.0  # tile A: nothing in its first 3 columns
    merged = merge_tile_predictions(predictions, windows, (10, 20), method="merge")
    assert merged["masks"].shape == (1, 10, 20) and merged["masks"].dtype == torch.float32
    expected = torch.full((10, 20), 0.8)
    expected[:, :3] = 0.0
    torch.testing.assert_close(merged["masks"][0], expected)  # A's mask, then B's beside it
    kept = merge_tile_predictions(predictions, windows, (10, 20), method="nms")
    expected[:, 15:] = 0.0  # only A's, at A's window
    torch.testing.assert_close(kept["masks"][0], expected)


def test_keypoints_landmarks_and_other_values_move_with_their_box() -> None:
    windows = [(0, 0, 10, 10), (30, 20, 40, 30)]
    predictions = [{"boxes": torch.tensor([[1.0, 1, 5, 5]]), "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([0]), "keypoints": torch.tensor([[[2.0, 3, 1], [4, 4, 0]]]),
                    "landmarks": torch.tensor([[2.0, 3, 4, 4]]), "keypoints_scores": torch.tensor([[0.5, 0.1]])},
                   {"boxes": torch.tensor([[1.0, 1, 5, 5]]), "scores": torch.tensor([0.8]),
                    "labels": torch.tensor([0]), "keypoints": torch.tensor([[[2.0, 3, 1], [4, 4, 0]]]),
                    "landmarks": torch.tensor([[2.0, 3, 4, 4]]), "keypoints_scores": torch.tensor([[0.7, 0.2]])}]
    merged = merge_tile_predictions(predictions, windows, (30, 40), method="merge")
    torch.testing.assert_close(merged["boxes"], torch.tensor([[1.0, 1, 5, 5], [31, 21, 35, 25]]))
    # x and y shift, the visibility stays; flat landmark pairs too; scores of points are carried
    torch.testing.assert_close(merged["keypoints"][1], torch.tensor([[32.0, 23, 1], [34, 24, 0]]))
    torch.testing.assert_close(merged["landmarks"][1], torch.tensor([32.0, 23, 34, 24]))
    torch.testing.assert_close(merged["keypoints_scores"], torch.tensor([[0.5, 0.1], [0.7, 0.2]]))


def test_masks_of_the_wrong_size_and_uneven_keys_are_errors() -> None:
    prediction = {"boxes": torch.tensor([[1.0, 1, 5, 5]]), "scores": torch.tensor([0.9]),
                  "labels": torch.tensor([0]), "masks": torch.zeros(1, 8, 8)}
    with pytest.raises(ValueError, match="masks of shape \\[1, 8, 8\\] for a tile of 10x10"):
        merge_tile_predictions([prediction], [(0, 0, 10, 10)], (10, 10))
    plain = {key: prediction[key] for key in ("boxes", "scores", "labels")}
    with pytest.raises(ValueError, match="every tile must give the same"):
        merge_tile_predictions([plain, {**plain, "landmarks": torch.zeros(1, 5, 2)}],
                               [(0, 0, 10, 10), (0, 0, 10, 10)], (10, 10))
