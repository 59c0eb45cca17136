"""tools/benchmark_models.py's pieces that need no R50: Keypoint R-CNN's targets, the detection
comparison that runs before timing (tie order ignored, tolerances of the two inference paths)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("benchmark_models_tool", REPO_ROOT / "tools" / "benchmark_models.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def test_keypoint_rcnn_is_benchmarked_with_keypoint_targets():
    assert "keypointrcnn_resnet50_fpn" in tool.ARCHS
    images = [torch.zeros(3, 576, 768), torch.zeros(3, 424, 640)]
    names = ["dog.jpg", "person.jpg"]
    ours = tool._targets("keypointrcnn_resnet50_fpn", "detkit", names, images, torch.device("cpu"))
    theirs = tool._targets("keypointrcnn_resnet50_fpn", "torchvision", names, images, torch.device("cpu"))
    for our, their in zip(ours, theirs):
        assert our["keypoints"].shape == (3, tool.NUM_KEYPOINTS, 3)
        assert torch.equal(our["keypoints"], their["keypoints"])
        assert our["labels"].tolist() == [0, 0, 0] and their["labels"].tolist() == [1, 1, 1]  # person
        visibility = our["keypoints"][..., 2]
        assert bool((visibility == 0).any()) and bool((visibility > 0).any())
    dense = tool._targets("retinanet_resnet50_fpn", "torchvision", names, images, torch.device("cpu"))
    assert dense[0]["labels"].tolist() == [17, 1, 7] and "keypoints" not in dense[0]


def _detections(scores, labels, boxes):
    return {"scores": torch.tensor(scores), "labels": torch.tensor(labels), "boxes": torch.tensor(boxes)}


def test_comparison_ignores_the_order_of_ties_and_applies_each_paths_tolerances():
    ours = _detections([0.9, 0.5, 0.5], [1, 2, 3], [[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]])
    tied = _detections([0.9, 0.5, 0.5], [1, 3, 2], [[0.0, 0, 10, 10], [1, 1, 2, 2], [5, 5, 20, 20]])
    result = tool._compare(ours, tied)
    assert result["labels_equal"] and result["boxes"] == 0 and result["scores"] == 0
    assert tool._check_passes({"as_built": result, "default_path": result})

    shifted = _detections([0.9, 0.5, 0.5], [1, 2, 3], [[0.0, 0, 10, 10.01], [5, 5, 20, 20], [1, 1, 2, 2]])
    near = tool._compare(ours, shifted)
    assert not tool._check_passes({"as_built": near})  # 0.01 px: more than the parity tests allow
    assert tool._check_passes({"default_path": near})  # within the folded path's tolerance
    relabelled = _detections([0.9, 0.5, 0.5], [0, 2, 3], [[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]])
    assert not tool._check_passes({"default_path": tool._compare(ours, relabelled)})
    fewer = _detections([0.9], [1], [[0.0, 0, 10, 10]])
    assert not tool._check_passes({"default_path": tool._compare(ours, fewer)})
