"""The keypoint branch's head, targets, loss and decoding against torchvision's, in the same run."""

from __future__ import annotations

import torch
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor

from detkit.models.roi_heads import KeypointHead, heatmaps_to_keypoints, keypoint_rcnn_loss, keypoints_to_heatmap

K, M = 5, 56


def _rois_and_keypoints(count: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand((count, 2), generator=generator) * 200
    rois = torch.cat([low, low + 0.5 + torch.rand((count, 2), generator=generator) * 150], dim=1)
    span = rois[:, None, 2:] - rois[:, None, :2]
    points = rois[:, None, :2] + span * (torch.rand((count, K, 2), generator=generator) * 1.4 - 0.2)
    visibility = torch.randint(0, 3, (count, K, 1), generator=generator).float()
    keypoints = torch.cat([points, visibility], dim=2)
    keypoints[0, 0, :2] = rois[0, 2:]  # on the right / bottom edge
    keypoints[0, 0, 2] = 2
    keypoints[1, 1, :2] = rois[1, :2]  # on the top-left corner
    keypoints[1, 1, 2] = 1
    return rois, keypoints


def test_targets_equal_torchvision():
    rois, keypoints = _rois_and_keypoints()
    cells, trained = keypoints_to_heatmap(keypoints, rois, M)
    their_cells, their_valid = tv_roi_heads.keypoints_to_heatmap(keypoints, rois, M)
    assert torch.equal(trained, their_valid.bool())
    assert torch.equal(cells, their_cells)
    assert trained[0, 0] and cells[0, 0] == M * M - 1
    assert trained.any() and not trained.all()  # points outside their RoI and unlabelled points


def test_loss_equals_torchvision():
    rois, keypoints = _rois_and_keypoints()
    logits = torch.randn((len(rois), K, M, M), generator=torch.Generator().manual_seed(1))
    matched = torch.arange(len(rois)).flip(0)  # RoI i trains on gt len - 1 - i
    ours = keypoint_rcnn_loss(logits, *keypoints_to_heatmap(keypoints[matched], rois, M))
    theirs = tv_roi_heads.keypointrcnn_loss(logits, [rois], [keypoints], [matched])
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
    # nothing labelled: 0, still connected to the graph
    logits.requires_grad_(True)
    empty = keypoint_rcnn_loss(logits, *keypoints_to_heatmap(keypoints * torch.tensor([1.0, 1.0, 0.0]), rois, M))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_decoding_equals_torchvision():
    rois, _ = _rois_and_keypoints()
    rois[2, 2:] = rois[2, :2] + 0.3  # a box under 1 px (clamped to 1)
    maps = torch.randn((len(rois), K, M, M), generator=torch.Generator().manual_seed(2))
    keypoints, scores = heatmaps_to_keypoints(maps, rois)
    their_keypoints, their_scores = tv_roi_heads.heatmaps_to_keypoints(maps, rois)
    assert keypoints.shape == (len(rois), K, 3) and scores.shape == (len(rois), K)
    torch.testing.assert_close(keypoints, their_keypoints, rtol=0, atol=0)
    torch.testing.assert_close(scores, their_scores, rtol=0, atol=0)
    empty_keypoints, empty_scores = heatmaps_to_keypoints(maps[:0], rois[:0])
    assert empty_keypoints.shape == (0, K, 3) and empty_scores.shape == (0, K)


def test_head_equals_torchvision_heads_and_predictor():
    torch.manual_seed(0)
    convs, predictor = KeypointRCNNHeads(16, (8, 8, 8)), KeypointRCNNPredictor(8, K)
    head = KeypointHead(16, K, conv_channels=(8, 8, 8))
    state = {}
    for key, value in convs.state_dict().items():
        index, suffix = key.split(".")
        state[f"convs.{int(index) // 2}.0.{suffix}"] = value
    for key, value in predictor.state_dict().items():
        state["keypoint_logits." + key.split(".")[-1]] = value
    head.load_state_dict(state, strict=True)
    features = torch.randn(3, 16, 14, 14)
    output = head(features)
    assert output.shape == (3, K, M, M)
    torch.testing.assert_close(output, predictor(convs(features)), rtol=0, atol=0)
