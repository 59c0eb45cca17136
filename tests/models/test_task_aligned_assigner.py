"""TaskAlignedAssigner against ultralytics' (8.4) on the same predictions and targets."""

from __future__ import annotations

import pytest
import torch

from detkit.models.task_aligned_assigner import TaskAlignedAssigner

from tal_testing import STRIDES, grid_points, import_ultralytics_module, padded_targets, predicted_boxes_near, random_targets


def _reference(num_classes: int):
    tal = import_ultralytics_module("utils.tal")
    return tal.TaskAlignedAssigner(topk=10, num_classes=num_classes, alpha=0.5, beta=6.0, stride=list(STRIDES))


@pytest.mark.parametrize(
    ("image_size", "counts", "seed"),
    [((64, 96), (3, 0, 7), 0), ((128, 128), (12, 5), 1), ((96, 64), (1,), 2), ((160, 224), (20, 0, 2, 9), 3)],
)
def test_equals_ultralytics(image_size, counts, seed):
    num_classes = 5
    generator = torch.Generator().manual_seed(seed)
    points, _ = grid_points(image_size)
    targets = random_targets(counts, image_size, num_classes, generator)
    labels, boxes, mask = padded_targets(targets)
    batch = len(counts)
    scores = torch.rand(batch, len(points), num_classes, generator=generator)
    pred_boxes = predicted_boxes_near(points, batch, generator)

    ours = TaskAlignedAssigner(num_classes, topk=10, alpha=0.5, beta=6.0, min_side=STRIDES[1])(
        scores, pred_boxes, points, labels, boxes, mask
    )
    _, t_boxes, t_scores, t_fg, t_index = _reference(num_classes)(
        scores, pred_boxes, points, labels[..., None].float(), boxes, mask[..., None].float()
    )
    assert torch.equal(ours.fg_mask, t_fg)
    assert ours.fg_mask.any()
    assert torch.equal(ours.gt_index, t_index)
    torch.testing.assert_close(ours.boxes, t_boxes, rtol=0, atol=0)
    torch.testing.assert_close(ours.scores, t_scores.float(), rtol=1e-6, atol=1e-7)
    fg_labels = ours.labels[ours.fg_mask]
    assert torch.equal(fg_labels, labels.gather(1, t_index)[t_fg])
    # No positive in an image without boxes.
    for i, count in enumerate(counts):
        if count == 0:
            assert not ours.fg_mask[i].any() and not ours.scores[i].any()


def test_points_selected_by_several_boxes_go_to_the_best_ciou():
    # Two boxes that both contain every point; the predicted boxes match the first one exactly,
    # so every point chosen by both boxes goes to box 0 — and box 1 keeps only the points box 0
    # did not choose.
    points, _ = grid_points((64, 64))
    gt = torch.tensor([[[0.0, 0.0, 64.0, 64.0], [0.0, 0.0, 60.0, 64.0]]])
    pred_boxes = gt[:, :1].expand(1, len(points), 4).clone()
    scores = torch.full((1, len(points), 2), 0.5)
    scores[0, :, 1] = torch.linspace(0.1, 0.9, len(points))  # box 1's class ranks the points differently
    labels = torch.tensor([[0, 1]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    result = TaskAlignedAssigner(2, topk=10)(scores, pred_boxes, points, labels, gt, mask)
    assert result.fg_mask.sum() > 10  # the two top-10 sets differ
    # Box 0's CIoU with each prediction is 1, box 1's less: every shared point went to box 0.
    assert (result.gt_index[result.fg_mask] == 0).sum() == 10
    # And ultralytics agrees (skipped without it, after the checks above).
    _, _, t_scores, t_fg, t_index = _reference(2)(scores, pred_boxes, points, labels[..., None].float(), gt,
                                                  mask[..., None].float())
    assert torch.equal(result.fg_mask, t_fg) and torch.equal(result.gt_index, t_index)
    torch.testing.assert_close(result.scores, t_scores.float())


def test_no_boxes_at_all():
    points, _ = grid_points((64, 64))
    scores = torch.rand(2, len(points), 3)
    result = TaskAlignedAssigner(3)(
        scores, predicted_boxes_near(points, 2, torch.Generator().manual_seed(0)), points,
        torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool),
    )
    assert not result.fg_mask.any()
    assert result.scores.shape == scores.shape and not result.scores.any()
    assert (result.labels == 3).all()


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="num_classes"):
        TaskAlignedAssigner(0)
    with pytest.raises(ValueError, match="topk"):
        TaskAlignedAssigner(3, topk=0)
