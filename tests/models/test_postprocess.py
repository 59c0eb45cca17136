"""select_detections and topk_per_level on hand-worked cases: threshold, top-k per image / class /
level, batched vs agnostic vs soft NMS, minimum size, cap, per-class boxes, empty inputs."""

from __future__ import annotations

import pytest
import torch

from detkit.models.postprocess import select_detections, topk_per_level


def _far_apart(n: int) -> torch.Tensor:
    """``n`` disjoint 10x10 boxes along x (no NMS interaction)."""
    x = torch.arange(n, dtype=torch.float32)[:, None] * 20
    return torch.cat([x, torch.zeros_like(x), x + 10, torch.full_like(x, 10.0)], dim=1)


def test_threshold_is_strict_unless_inclusive():
    boxes, scores = _far_apart(3), torch.tensor([0.5, 0.3, 0.2])
    strict = select_detections(boxes, scores, score_thresh=0.3)
    assert strict.indices.tolist() == [0]
    inclusive = select_detections(boxes, scores, score_thresh=0.3, thresh_inclusive=True)
    assert inclusive.indices.tolist() == [0, 1]
    torch.testing.assert_close(inclusive.scores, torch.tensor([0.5, 0.3]))
    assert inclusive.labels.tolist() == [0, 0] and inclusive.labels.dtype == torch.int64


def test_given_labels_are_the_nms_groups():
    # Two identical boxes: suppressed within one label, both kept under different labels.
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8])
    same = select_detections(boxes, scores, torch.tensor([3, 3]), nms_thresh=0.5)
    assert same.indices.tolist() == [0] and same.labels.tolist() == [3]
    different = select_detections(boxes, scores, torch.tensor([3, 4]), nms_thresh=0.5)
    assert different.indices.tolist() == [0, 1] and different.labels.tolist() == [3, 4]


def test_multi_label_versus_best_class():
    boxes = _far_apart(2)
    scores = torch.tensor([[0.6, 0.7], [0.1, 0.4]])  # [N=2, C=2]
    every = select_detections(boxes, scores, score_thresh=0.3)
    assert list(zip(every.indices.tolist(), every.labels.tolist())) == [(0, 1), (0, 0), (1, 1)]
    torch.testing.assert_close(every.scores, torch.tensor([0.7, 0.6, 0.4]))
    best = select_detections(boxes, scores, score_thresh=0.3, multi_label=False)
    assert list(zip(best.indices.tolist(), best.labels.tolist())) == [(0, 1), (1, 1)]


def test_pre_nms_topk_per_image():
    boxes, scores = _far_apart(5), torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2])
    kept = select_detections(boxes, scores, pre_nms_topk=2)
    assert kept.indices.tolist() == [3, 1]
    # As many candidates as k: nothing dropped.
    assert select_detections(boxes, scores, pre_nms_topk=5).indices.tolist() == [3, 1, 2, 4, 0]


def test_pre_nms_topk_per_level_and_per_class_on_given_labels():
    boxes, scores = _far_apart(5), torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2])
    levels = torch.tensor([0, 0, 0, 1, 1])
    per_level = select_detections(boxes, scores, pre_nms_topk=1, topk_per="level", levels=levels)
    assert per_level.indices.tolist() == [3, 1]  # the best of level 0 (0.5) and of level 1 (0.9)
    per_class = select_detections(boxes, scores, torch.tensor([1, 1, 0, 0, 0]), pre_nms_topk=1, topk_per="class")
    assert per_class.indices.tolist() == [3, 1]  # class 0: 0.9; class 1: 0.5
    # The threshold comes first: level 1 keeps its best candidate above 0.25 (none but 0.9).
    thresholded = select_detections(boxes, scores, score_thresh=0.25, pre_nms_topk=2, topk_per="level", levels=levels)
    assert sorted(thresholded.indices.tolist()) == [1, 2, 3]


@pytest.mark.parametrize("k", [1, 3])
def test_pre_nms_topk_per_class_on_class_scores(k):
    boxes = _far_apart(4)
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.6], [0.7, 0.05], [0.2, 0.5]])  # [N=4, C=2]
    kept = select_detections(boxes, scores, score_thresh=0.15, pre_nms_topk=k, topk_per="class")
    # Above 0.15: class 0 boxes 0, 1, 2, 3; class 1 boxes 1, 3. Then the k best of each class.
    expected = {1: {(0, 0), (1, 1)}, 3: {(0, 0), (1, 0), (2, 0), (1, 1), (3, 1)}}[k]
    assert set(zip(kept.indices.tolist(), kept.labels.tolist())) == expected
    assert bool((kept.scores[:-1] >= kept.scores[1:]).all())


def test_batched_versus_agnostic_nms():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 1, 0])
    batched = select_detections(boxes, scores, labels, nms_thresh=0.5)
    assert batched.indices.tolist() == [0, 1]  # box 2 is suppressed by box 0, box 1 has its own class
    agnostic = select_detections(boxes, scores, labels, nms_thresh=0.5, class_agnostic_nms=True)
    assert agnostic.indices.tolist() == [0]
    none = select_detections(boxes, scores, labels, nms_method="none")
    assert none.indices.tolist() == [0, 1, 2]


def test_nms_class_offset_is_one_nms_of_class_shifted_boxes_as_ultralytics():
    # Class 50 shifted by 50 * 7680 px: float32 keeps 1/32 px there, box 1's 0.01 px offset is
    # lost, and the IoU (0.998 exactly) rounds to 1: ultralytics' NMS suppresses it, exact
    # per-class NMS at 0.999 keeps it.
    torchvision = pytest.importorskip("torchvision")
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.01, 0, 10.01, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([50, 50, 3])
    exact = select_detections(boxes, scores, labels, nms_thresh=0.999)
    assert exact.indices.tolist() == [0, 1, 2]
    shifted = select_detections(boxes, scores, labels, nms_thresh=0.999, nms_class_offset=7680.0)
    reference = torchvision.ops.nms(boxes + labels[:, None].float() * 7680.0, scores, 0.999)
    assert shifted.indices.tolist() == reference.tolist() == [0, 2]
    assert torch.equal(shifted.boxes, boxes[[0, 2]])  # the boxes come back unshifted


def test_soft_nms_decays_instead_of_dropping():
    # IoU([0,0,10,10], [0,0,10,5]) = 50 / 100 = 0.5 > 0.3: the linear decay multiplies by 1 - 0.5.
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 5]])
    scores = torch.tensor([0.9, 0.8])
    soft = select_detections(boxes, scores, nms_method="soft", nms_thresh=0.3, class_agnostic_nms=True)
    assert soft.indices.tolist() == [0, 1]
    torch.testing.assert_close(soft.scores, torch.tensor([0.9, 0.4]))
    # Per class: boxes of different classes do not decay each other.
    per_class = select_detections(boxes, scores, torch.tensor([0, 1]), nms_method="soft", nms_thresh=0.3)
    torch.testing.assert_close(per_class.scores, torch.tensor([0.9, 0.8]))
    # A decayed score below soft_nms_min_score is dropped.
    dropped = select_detections(
        boxes, scores, nms_method="soft", nms_thresh=0.3, class_agnostic_nms=True, soft_nms_min_score=0.5
    )
    assert dropped.indices.tolist() == [0]
    # Hard NMS at the same threshold drops the second box.
    assert select_detections(boxes, scores, nms_thresh=0.3).indices.tolist() == [0]


def test_min_size_and_cap():
    boxes = torch.cat([_far_apart(3), torch.tensor([[100.0, 0, 100.5, 10]])])
    scores = torch.tensor([0.4, 0.3, 0.2, 0.9])
    kept = select_detections(boxes, scores, min_size=1.0)
    assert kept.indices.tolist() == [0, 1, 2]  # the 0.5 px wide box is gone
    assert select_detections(boxes, scores, min_size=1.0, detections_per_img=2).indices.tolist() == [0, 1]
    assert select_detections(boxes, scores, detections_per_img=1).indices.tolist() == [3]


def test_per_class_boxes_pick_the_box_of_the_class():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [50.0, 50, 60, 60]]])  # [N=1, C=2, 4]
    scores = torch.tensor([[0.2, 0.9]])
    kept = select_detections(boxes, scores, score_thresh=0.5)
    assert kept.labels.tolist() == [1]
    torch.testing.assert_close(kept.boxes, torch.tensor([[50.0, 50, 60, 60]]))
    assert kept.as_dict().keys() == {"boxes", "scores", "labels"}


@pytest.mark.parametrize(
    ("boxes", "scores", "options"),
    [
        (torch.zeros(0, 4), torch.zeros(0), {}),
        (torch.zeros(0, 4), torch.zeros(0, 3), {"pre_nms_topk": 5, "topk_per": "class"}),
        (torch.zeros(0, 4), torch.zeros(0, 3), {"multi_label": False, "pre_nms_topk": 5}),
        (torch.zeros(0, 3, 4), torch.zeros(0, 3), {"min_size": 0.01}),
        (torch.zeros(0, 4), torch.zeros(0), {"nms_method": "soft", "levels": torch.zeros(0, dtype=torch.int64),
                                             "pre_nms_topk": 2, "topk_per": "level"}),
        (_far_apart(2), torch.tensor([0.1, 0.2]), {"score_thresh": 0.5}),  # nothing above the threshold
    ],
)
def test_no_boxes_give_empty_results(boxes, scores, options):
    kept = select_detections(boxes, scores, **options)
    assert kept.boxes.shape == (0, 4) and kept.scores.shape == (0,) and kept.labels.shape == (0,)
    assert kept.labels.dtype == torch.int64 and kept.indices.dtype == torch.int64


def test_bad_arguments_are_named():
    boxes, scores = _far_apart(2), torch.tensor([0.5, 0.4])
    with pytest.raises(ValueError, match="boxes must be"):
        select_detections(boxes[:1], scores)
    with pytest.raises(ValueError, match="topk_per"):
        select_detections(boxes, scores, topk_per="batch")
    with pytest.raises(ValueError, match="needs levels"):
        select_detections(boxes, scores, pre_nms_topk=1, topk_per="level")
    with pytest.raises(ValueError, match="nms_method"):
        select_detections(boxes, scores, nms_method="fast")
    with pytest.raises(ValueError, match="labels"):
        select_detections(boxes, torch.rand(2, 3), torch.tensor([0, 1]))


def test_topk_per_level_ranks_each_level_for_every_image():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.8], [0.7, 0.2, 0.6, 0.9, 0.1]])
    indices, levels = topk_per_level(scores, [3, 2], 2)
    assert indices.tolist() == [[1, 2, 4, 3], [0, 2, 3, 4]]
    assert levels.tolist() == [[0, 0, 1, 1]] * 2
    indices, levels = topk_per_level(scores, [3, 2], 5)  # fewer anchors than k on each level
    assert indices.shape == (2, 5) and levels.tolist()[0] == [0, 0, 0, 1, 1]
