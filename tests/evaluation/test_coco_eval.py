"""COCO evaluation: the published cocoapi table, the results json writer, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detkit.evaluation.coco_eval import (
    COCO_STAT_NAMES,
    coco_from_targets,
    coco_pr_curves,
    encode_masks,
    evaluate_coco,
    format_per_class_table,
    load_coco,
    load_results,
    predictions_to_coco_results,
    write_results_json,
)

# pycocotools' decode under numpy 2 warns about the __array__ copy keyword; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "coco_eval"
ANNOTATIONS = DATA / "instances_val2014_100.json"

# cocoapi's published table (pycocoEvalDemo, val2014_fake_eval_res.txt), all 100 images evaluated.
PUBLISHED = {
    "bbox": [0.5045806987249628, 0.6969727247299577, 0.5729816669904824, 0.5856257209410443,
             0.5193996948036719, 0.5013978986347466, 0.38681277964578054, 0.5936795762842003,
             0.595352982877607, 0.6398109626113442, 0.5664205978994309, 0.5642905982905982],
    "segm": [0.3195452758576433, 0.5622883972521636, 0.29892653412086784, 0.3873740315997838,
             0.31018272403369485, 0.3269339071005138, 0.2682297225711534, 0.41544868114906375,
             0.4168394992198818, 0.4694498622754236, 0.37675922666197265, 0.3814715099715099],
}


@pytest.fixture(scope="module")
def coco_gt():
    return load_coco(ANNOTATIONS)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_published_table(coco_gt, iou_type: str) -> None:
    result = evaluate_coco(coco_gt, DATA / f"instances_val2014_fake{iou_type}100_results.json", iou_type)
    assert len(result.coco_eval.params.imgIds) == 100
    assert list(result.stats) == list(COCO_STAT_NAMES)
    np.testing.assert_allclose(list(result.stats.values()), PUBLISHED[iou_type], rtol=0, atol=1e-12)
    # The standard 12-line table, as pycocotools prints it.
    lines = result.table.splitlines()
    assert len(lines) == 12 and lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95")
    metrics = result.metrics()
    assert metrics[f"{iou_type}/AP"] == result.stats["AP"]
    assert metrics[f"{iou_type}/AP50"] == result.stats["AP50"]
    # Per class: 80 names; categories without gt in these 100 images are NaN, the rest in [0, 1].
    assert len(result.per_class) == 80 and "person" in result.per_class
    values = np.array(list(result.per_class.values()))
    assert np.isnan(values).any() and ((values[~np.isnan(values)] >= 0) & (values[~np.isnan(values)] <= 1)).all()
    # AP@[.5:.95] is the mean over categories with gt of the per-class AP.
    assert np.nanmean(values) == pytest.approx(result.stats["AP"], abs=1e-12)
    table = format_per_class_table(result.per_class)
    assert "person" in table and "n/a" in table and "AP [0-1]" in table
    assert f"{result.per_class['person']:.3f}" in table and "%" not in table


def test_subset_of_images_and_pr_curves(coco_gt) -> None:
    ids = sorted(coco_gt.getImgIds())[:10]
    result = evaluate_coco(coco_gt, DATA / "instances_val2014_fakebbox100_results.json", "bbox", image_ids=ids)
    assert result.coco_eval.params.imgIds == ids
    assert result.stats["AP"] != pytest.approx(PUBLISHED["bbox"][0])
    curves = coco_pr_curves(result.coco_eval, 0.5, result.names)
    assert curves and all(len(r) == 101 and len(p) == 101 for r, p in curves.values())


def test_missing_files_are_named(tmp_path: Path, coco_gt) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_coco(tmp_path / "nowhere.json")
    with pytest.raises(FileNotFoundError, match="no_results.json"):
        evaluate_coco(coco_gt, tmp_path / "no_results.json")


def test_unknown_ids_are_named(coco_gt) -> None:
    image_id = coco_gt.getImgIds()[0]
    good = {"image_id": image_id, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}
    with pytest.raises(ValueError, match=r"unknown image ids \[123456789\]"):
        load_results(coco_gt, [good, dict(good, image_id=123456789)])
    with pytest.raises(ValueError, match=r"unknown category ids \[12, 999\]"):
        load_results(coco_gt, [good, dict(good, category_id=999), dict(good, category_id=12)])


def test_annotation_file_with_duplicate_or_missing_image_ids_is_refused(tmp_path: Path) -> None:
    # pycocotools merges duplicate image records and keeps annotations of absent images out of
    # every image: `detkit eval` and CocoEvaluator(file) would score a different ground truth.
    data = json.loads(ANNOTATIONS.read_text())
    duplicated = dict(data, images=data["images"] + [dict(data["images"][3], file_name="copy.jpg")])
    (tmp_path / "dup.json").write_text(json.dumps(duplicated))
    with pytest.raises(ValueError, match=rf"dup\.json: duplicate image ids \[{data['images'][3]['id']}\]"):
        load_coco(tmp_path / "dup.json")
    missing_id = data["images"][0]["id"]
    subset = dict(data, images=data["images"][1:])
    count = sum(a["image_id"] == missing_id for a in data["annotations"])
    (tmp_path / "subset.json").write_text(json.dumps(subset))
    with pytest.raises(ValueError, match=rf"subset\.json: {count} annotations name image ids not in 'images'"):
        load_coco(tmp_path / "subset.json")


def test_empty_results_score_zero(coco_gt) -> None:
    result = evaluate_coco(coco_gt, [], "bbox")
    assert result.stats["AP"] == 0.0 and result.stats["AR100"] == 0.0


def test_encode_masks_round_trip() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) > 0.5
    rles = encode_masks(masks)
    assert all(isinstance(r["counts"], str) for r in rles)
    json.dumps(rles)
    decoded = mask_util.decode([dict(r, counts=r["counts"].encode()) for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), masks)
    assert encode_masks(np.zeros((0, 5, 5))) == []


def _synthetic_coco(path: Path) -> dict:
    """Two images, three categories with non-contiguous ids, polygon masks, one crowd region."""
    images = [{"id": 11, "height": 40, "width": 50, "file_name": "a.jpg"},
              {"id": 12, "height": 30, "width": 60, "file_name": "b.jpg"}]
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 20, "name": "bird"}]
    polygons = [
        (11, 3, [[2, 3, 20, 3, 20, 18, 2, 18]]),            # rectangle
        (11, 7, [[25, 5, 45, 5, 35, 35]]),                   # triangle
        (12, 3, [[5, 5, 30, 5, 30, 25, 15, 28, 5, 25]]),     # pentagon
        (12, 20, [[40, 2, 58, 2, 58, 12, 40, 12]]),
    ]
    annotations = []
    for i, (image_id, cat, poly) in enumerate(polygons, 1):
        xs, ys = poly[0][0::2], poly[0][1::2]
        h, w = (40, 50) if image_id == 11 else (30, 60)
        rle = mask_util.merge(mask_util.frPyObjects(poly, h, w))
        annotations.append({"id": i, "image_id": image_id, "category_id": cat, "segmentation": poly,
                            "area": float(mask_util.area(rle)), "iscrowd": 0,
                            "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
    data = {"images": images, "categories": categories, "annotations": annotations}
    path.write_text(json.dumps(data))
    return data


def test_results_json_round_trip_is_perfect(tmp_path: Path) -> None:
    ann_file = tmp_path / "instances.json"
    _synthetic_coco(ann_file)
    gt = load_coco(ann_file)
    label_to_category_id = {0: 3, 1: 7, 2: 20}
    category_to_label = {v: k for k, v in label_to_category_id.items()}
    image_ids, predictions = [], []
    for image_id in gt.getImgIds():
        anns = gt.loadAnns(gt.getAnnIds(imgIds=image_id))
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in anns], dtype=torch.float32)  # xyxy, as a detkit model outputs
        masks = torch.from_numpy(np.stack([gt.annToMask(a) for a in anns])).float()  # probabilities
        predictions.append({"boxes": boxes, "scores": torch.linspace(0.9, 0.5, len(anns)),
                            "labels": torch.tensor([category_to_label[a["category_id"]] for a in anns]),
                            "masks": masks})
        image_ids.append(image_id)
    results = predictions_to_coco_results(predictions, image_ids, label_to_category_id, ("bbox", "segm"))
    assert len(results) == 4
    first = results[0]
    assert first["category_id"] in (3, 7, 20)
    assert first["bbox"] == gt.loadAnns(gt.getAnnIds(imgIds=first["image_id"]))[0]["bbox"]  # xywh again
    assert isinstance(first["segmentation"]["counts"], str)
    path = write_results_json(results, tmp_path / "out" / "results.json")
    for iou_type in ("bbox", "segm"):
        result = evaluate_coco(gt, path, iou_type)  # json -> loadRes -> COCOeval
        assert result.stats["AP"] == pytest.approx(1.0) and result.stats["AP50"] == pytest.approx(1.0)
        assert result.per_class == pytest.approx({"cat": 1.0, "dog": 1.0, "bird": 1.0})
    # A shifted box no longer matches at high IoU: AP drops below 1.
    results[0]["bbox"][0] += 6
    assert evaluate_coco(gt, results, "bbox").stats["AP"] < 1.0


def test_prediction_conversion_errors() -> None:
    pred = {"boxes": torch.tensor([[0.0, 0, 4, 4]]), "labels": torch.tensor([5]), "scores": torch.tensor([0.3])}
    with pytest.raises(KeyError, match="label 5"):
        predictions_to_coco_results([pred], [1], {0: 1})
    with pytest.raises(ValueError, match="masks"):
        predictions_to_coco_results([pred], [1], None, ("bbox", "segm"))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
             "masks": torch.zeros(0, 8, 8)}
    assert predictions_to_coco_results([empty], [1], {0: 1}, ("bbox", "segm")) == []


def test_ground_truth_from_targets_with_crowd() -> None:
    masks = torch.zeros(3, 20, 30, dtype=torch.uint8)
    masks[0, 2:10, 3:12] = 1
    masks[1, 12:18, 20:28] = 1
    masks[2, 0:20, 0:30] = 1
    target = {"boxes": torch.tensor([[3.0, 2, 12, 10], [20, 12, 28, 18], [0, 0, 30, 20]]),
              "labels": torch.tensor([0, 1, 0]), "iscrowd": torch.tensor([0, 0, 1]), "masks": masks}
    gt = coco_from_targets([target], [5], [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], {0: 1, 1: 2})
    anns = gt.loadAnns(gt.getAnnIds())
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert anns[0]["area"] == 72.0 and anns[0]["bbox"] == [3.0, 2.0, 9.0, 8.0]
    # Perfect non-crowd predictions plus one detection inside the crowd region: the latter is
    # ignored (neither TP nor FP), so AP stays 1.
    pred = {"boxes": torch.tensor([[3.0, 2, 12, 10], [20, 12, 28, 18], [1, 1, 6, 6]]),
            "labels": torch.tensor([0, 1, 0]), "scores": torch.tensor([0.9, 0.8, 0.95]),
            "masks": torch.stack([masks[0], masks[1], torch.zeros(20, 30, dtype=torch.uint8)]).float()}
    pred["masks"][2, 1:6, 1:6] = 1
    results = predictions_to_coco_results([pred], [5], {0: 1, 1: 2}, ("bbox", "segm"))
    for iou_type in ("bbox", "segm"):
        assert evaluate_coco(gt, results, iou_type).stats["AP"] == pytest.approx(1.0)
    assert not math.isnan(evaluate_coco(gt, results, "bbox").per_class["a"])
