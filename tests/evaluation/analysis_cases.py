"""A hand-made detection case shared by the analysis tests (its answers are worked out in the
docstring and checked in test_confusion.py, test_score_curves.py and test_analysis_report.py)."""

from __future__ import annotations

CAT, DOG = 1, 2


def hand_case() -> tuple[dict, list[dict]]:
    """Three images, classes cat (id 1) and dog (id 2).

    Image 10: gt cat A [0,0,10,10], dog B [20,0,10,10], a crowd of cats C [40,0,20,20].
      d1 cat 0.9 on A (IoU 1): true positive.
      d2 cat 0.8 shifted 1 px from A (IoU 0.82, A already taken): a duplicate, false positive.
      d3 cat 0.7 exactly on the dog B: a cat predicted where a dog is (a confusion) unless a dog
         detection kept at the threshold took B first.
      d4 cat 0.6 inside the crowd C (intersection over its own area 1): ignored, counted nowhere.
      d5 dog 0.3 on B: true positive when kept.
    Image 11: gt dog D, no detection: missed.
    Image 12: no gt, dog 0.95: false positive on background.
    """
    gt = {
        "images": [{"id": 10}, {"id": 11}, {"id": 12}],
        "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": CAT, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": DOG, "bbox": [20, 0, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": CAT, "bbox": [40, 0, 20, 20], "iscrowd": 1},
            {"id": 4, "image_id": 11, "category_id": DOG, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        ],
    }
    results = [
        {"image_id": 10, "category_id": CAT, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 10, "category_id": CAT, "bbox": [1, 0, 10, 10], "score": 0.8},
        {"image_id": 10, "category_id": CAT, "bbox": [20, 0, 10, 10], "score": 0.7},
        {"image_id": 10, "category_id": CAT, "bbox": [42, 2, 5, 5], "score": 0.6},
        {"image_id": 10, "category_id": DOG, "bbox": [20, 0, 10, 10], "score": 0.3},
        {"image_id": 12, "category_id": DOG, "bbox": [0, 0, 5, 5], "score": 0.95},
    ]
    return gt, results
