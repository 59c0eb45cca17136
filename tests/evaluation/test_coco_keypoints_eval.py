"""COCO keypoint AP (OKS) through pycocotools, with the dataset's sigmas."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detkit.data import SHAPE_KEYPOINT_SIGMA, SHAPE_KEYPOINTS, generate_shapes_dataset
from detkit.data.coco import CocoDetection
from detkit.evaluation import CocoEvaluator
from detkit.evaluation.coco_eval import evaluate_coco, load_coco

K = len(SHAPE_KEYPOINTS)
SIGMAS = [SHAPE_KEYPOINT_SIGMA] * K


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    paths = generate_shapes_dataset(tmp_path_factory.mktemp("kp_eval"), 0, 10, 128, seed=5, with_keypoints=True)
    return paths, CocoDetection(paths.image_dir, paths.coco_json("val"), with_keypoints=True)


def _predictions(dataset, shift: float, seed: int = 0):
    """The ground truth as predictions: visibility 1 everywhere (as the model gives), points moved by
    ``shift`` px in a random direction, scores decreasing."""
    generator = torch.Generator().manual_seed(seed)
    targets, predictions = [], []
    for index in range(len(dataset)):
        target = dataset.get_target(index)
        count = len(target["boxes"])
        keypoints = target["keypoints"].clone()
        angle = torch.rand((count, K), generator=generator) * 2 * torch.pi
        keypoints[..., 0] += shift * torch.cos(angle)
        keypoints[..., 1] += shift * torch.sin(angle)
        keypoints[..., 2] = 1
        predictions.append({"boxes": target["boxes"], "labels": target["labels"],
                            "scores": torch.linspace(0.9, 0.5, count), "keypoints": keypoints})
        targets.append(target)
    return targets, predictions


def _pycocotools_stats(gt: COCO, results: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        detections = gt.loadRes(results)
        coco_eval = COCOeval(gt, detections, "keypoints")
        coco_eval.params.kpt_oks_sigmas = np.asarray(SIGMAS)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


def test_exact_keypoints_score_one_and_errors_lower_it(data):
    _, dataset = data
    for shift, expect_one in ((0.0, True), (1.5, False)):
        evaluator = CocoEvaluator.from_dataset(dataset, iou_types=["bbox", "keypoints"])
        assert evaluator.keypoint_sigmas == SIGMAS  # from the json's categories
        targets, predictions = _predictions(dataset, shift)
        evaluator.process(targets, predictions)
        metrics = evaluator.evaluate()
        assert metrics["bbox/AP"] == pytest.approx(1.0)
        if expect_one:
            assert metrics["keypoints/AP"] == pytest.approx(1.0)
        else:
            assert 0.2 < metrics["keypoints/AP"] < 0.99
        assert "keypoints/APs" not in metrics and "keypoints/APm" in metrics


def test_equals_pycocotools_on_the_same_results(data):
    paths, dataset = data
    targets, predictions = _predictions(dataset, 2.0, seed=1)
    evaluator = CocoEvaluator.from_dataset(dataset, iou_types=["keypoints"])
    evaluator.process(targets, predictions)
    metrics = evaluator.evaluate()
    gt = load_coco(paths.coco_json("val"))
    theirs = _pycocotools_stats(gt, evaluator.results)
    names = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
    for name, value in zip(names, theirs):
        assert metrics[f"keypoints/{name}"] == pytest.approx(float(value), abs=1e-12), name
    # from the targets (no file): the same numbers when told the sigmas
    from_targets = CocoEvaluator(class_names=dataset.class_names, iou_types=["keypoints"], keypoint_sigmas=SIGMAS)
    from_targets.process(targets, predictions)
    assert from_targets.evaluate()["keypoints/AP"] == pytest.approx(metrics["keypoints/AP"], abs=1e-12)


def test_circles_have_no_keypoints_and_are_not_scored(data):
    paths, _ = data
    document = json.loads(paths.coco_json("val").read_text())
    circle = next(c["id"] for c in document["categories"] if c["name"] == "circle")
    assert all(a["num_keypoints"] == 0 for a in document["annotations"] if a["category_id"] == circle)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
                "keypoints": a["keypoints"]} for a in document["annotations"]]
    result = evaluate_coco(load_coco(paths.coco_json("val")), results, "keypoints")
    assert result.stats["AP"] == pytest.approx(1.0)
    assert circle not in result.per_class or result.per_class[circle] < 0


def test_sigmas_must_fit_the_keypoints(data):
    paths, _ = data
    document = json.loads(paths.coco_json("val").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
                "keypoints": a["keypoints"]} for a in document["annotations"]]
    with pytest.raises(ValueError, match="with 17 keypoint sigmas: a ground truth has 7 keypoints"):
        evaluate_coco(load_coco(paths.coco_json("val")), results, "keypoints", keypoint_sigmas=[0.05] * 17)
