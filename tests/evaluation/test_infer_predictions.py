"""``detkit infer``'s predictions.json mapped onto a COCO ground truth (file names, categories)."""

from __future__ import annotations

import pytest

from detkit.evaluation.infer_predictions import infer_records_to_results, is_infer_predictions

GT = {
    "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "val/b.jpg"},
               {"id": 9, "file_name": "x/c.jpg"}, {"id": 10, "file_name": "y/c.jpg"}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
    "annotations": [],
}


def record(file_name: str, category_id: int, category_name: str | None = "cat", **extra: object) -> dict:
    r = {"file_name": file_name, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "category_id": category_id, **extra}
    if category_name is not None:
        r["category_name"] = category_name
    return r


def test_exact_then_base_name_and_ids_kept() -> None:
    records = [record("a.jpg", 1), record("/data/val/b.jpg", 3, "dog", landmarks=[[0, 0]]), record("val/b.jpg", 1)]
    results, notes = infer_records_to_results(records, GT, "p.json", "gt.json")
    assert [(r["image_id"], r["category_id"]) for r in results] == [(7, 1), (8, 3), (8, 1)]
    assert set(results[1]) == {"image_id", "category_id", "bbox", "score"}  # landmarks, names dropped
    assert notes == ["p.json: 3 detkit infer records of 3 images, matched to gt.json 2 by file_name, 1 by base name"]


def test_categories_mapped_by_name_when_ids_differ() -> None:
    # Model labels 0 (cat) and 1 (dog): id 1 exists in the file but is named cat, not dog.
    records = [record("a.jpg", 0, "cat"), record("a.jpg", 1, "dog")]
    results, notes = infer_records_to_results(records, GT, "p.json", "gt.json")
    assert [r["category_id"] for r in results] == [1, 3]
    assert len(notes) == 2 and "mapped by category_name" in notes[1] and "'cat' 0 -> 1" in notes[1]


@pytest.mark.parametrize(("records", "message"), [
    ([record("nope.jpg", 1), record("gone/z.jpg", 1)],
     "p.json: 2 file name\\(s\\) match no image of gt.json by file_name or base name: 'nope.jpg', 'gone/z.jpg'"),
    ([record("c.jpg", 1)], "1 file name\\(s\\) match several images of gt.json: 'c.jpg' \\(image ids \\[9, 10\\]\\)"),
    ([record("a.jpg", 1), record("a.jpg", 1, frame_index=3)],
     "p.json: 1 of 2 records come from video frames \\(frame_index, first: record 1\\)"),
    ([record("a.jpg", 5, "horse")], "1 category name\\(s\\) are not among its categories: 'horse'"),
    ([record("a.jpg", 5, None)], "category ids \\['5'\\] are not gt.json's and the records give no category_name"),
    ([{"file_name": "a.jpg", "bbox": [0, 0, 1, 1], "score": 1.0}], "record 0 has no category_id"),
])
def test_one_line_errors(records: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        infer_records_to_results(records, GT, "p.json", "gt.json")
    assert "\n" not in str(info.value)


def test_format_detection() -> None:
    assert is_infer_predictions([record("a.jpg", 1)])
    assert not is_infer_predictions([{"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    assert not is_infer_predictions([])
    with pytest.raises(ValueError, match="x.json: record 0 names a file_name .* but record 1 does not"):
        is_infer_predictions([record("a.jpg", 1), {"image_id": 7}], "x.json")
