"""The opt-in faster-coco-eval backend of detkit's COCO evaluation against pycocotools (the default
and the reference), in the same run: cocoapi's published table to 1e-12 for bbox and segm, the
per-class APs, the precision arrays and the printed table."""

from __future__ import annotations

import numpy as np
import pytest
from test_coco_eval import ANNOTATIONS, DATA, PUBLISHED

from detkit.evaluation.coco_eval import evaluate_coco, load_coco, per_class_ap

pytest.importorskip("faster_coco_eval")

RESULTS = {"bbox": DATA / "instances_val2014_fakebbox100_results.json",
           "segm": DATA / "instances_val2014_fakesegm100_results.json"}


@pytest.fixture(scope="module")
def coco_gt():
    return load_coco(ANNOTATIONS)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_equals_pycocotools_on_the_published_table(coco_gt, iou_type: str) -> None:
    reference = evaluate_coco(coco_gt, RESULTS[iou_type], iou_type)
    fast = evaluate_coco(coco_gt, RESULTS[iou_type], iou_type, backend="faster_coco_eval")
    assert type(fast.coco_eval).__module__.startswith("faster_coco_eval")
    np.testing.assert_allclose(list(fast.stats.values()), PUBLISHED[iou_type], rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(fast.stats.values()), list(reference.stats.values()), rtol=0, atol=1e-12)
    assert list(fast.per_class) == list(reference.per_class)
    np.testing.assert_allclose(list(fast.per_class.values()), list(reference.per_class.values()), rtol=0, atol=1e-12)
    for iou in (0.5, 0.75):
        a, b = per_class_ap(fast.coco_eval, iou), per_class_ap(reference.coco_eval, iou)
        np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.coco_eval.eval["precision"], reference.coco_eval.eval["precision"],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.coco_eval.eval["recall"], reference.coco_eval.eval["recall"], rtol=0, atol=1e-12)
    assert fast.table == reference.table


def test_subsets_of_images_and_categories_agree(coco_gt) -> None:
    images = sorted(coco_gt.getImgIds())[::3]
    categories = sorted(coco_gt.getCatIds())[:20]
    reference = evaluate_coco(coco_gt, RESULTS["bbox"], "bbox", image_ids=images, category_ids=categories)
    fast = evaluate_coco(coco_gt, RESULTS["bbox"], "bbox", image_ids=images, category_ids=categories,
                         backend="faster_coco_eval")
    assert reference.stats["AP"] != pytest.approx(PUBLISHED["bbox"][0])
    np.testing.assert_allclose(list(fast.stats.values()), list(reference.stats.values()), rtol=0, atol=1e-12)


def test_empty_results_and_unknown_backend(coco_gt) -> None:
    fast = evaluate_coco(coco_gt, [], "bbox", backend="faster_coco_eval")
    reference = evaluate_coco(coco_gt, [], "bbox")
    np.testing.assert_allclose(list(fast.stats.values()), list(reference.stats.values()), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="unknown COCO evaluation backend 'fast'.*pycocotools"):
        evaluate_coco(coco_gt, [], "bbox", backend="fast")


def test_evaluator_takes_the_backend() -> None:
    from detkit.evaluation import CocoEvaluator

    assert CocoEvaluator(ANNOTATIONS, backend="faster_coco_eval").backend == "faster_coco_eval"
    assert CocoEvaluator(ANNOTATIONS).backend == "pycocotools"
    with pytest.raises(ValueError, match="unknown COCO evaluation backend 'cocoapi'"):
        CocoEvaluator(ANNOTATIONS, backend="cocoapi")
