"""Records in flat shared buffers (detkit.data.records) and COCO's column reader (coco_columns).

The column reader must give exactly the records of the record-by-record loop (which stays the
reference and the fallback), and DataLoader workers must not grow while they read the records.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import detkit.data.coco as coco_module
import detkit.data.records as records_module
from detkit.data import CocoDetection, VOCDetection
from detkit.data.records import (
    ImageRecord,
    RecordStore,
    SegmentationColumn,
    StringColumn,
    ragged_take,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "coco_eval" / "instances_val2014_100.json"


def _record_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coco_module, "coco_record_store", lambda *args, **kwargs: None)


def _assert_same_records(fast: Any, slow: Any) -> None:
    assert len(fast.records) == len(slow.records)
    assert fast.image_ids == slow.image_ids and fast.image_sizes == slow.image_sizes
    for a, b in zip(fast.records, slow.records):
        assert type(a.image_id) is type(b.image_id) and a.image_id == b.image_id
        assert a.path == b.path and tuple(a.size) == tuple(b.size) and a.where == b.where
        for x, y in [(a.boxes, b.boxes), (a.labels, b.labels)] + [(a.box_fields[k], b.box_fields[k])
                                                                  for k in b.box_fields]:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        assert sorted(a.box_fields) == sorted(b.box_fields)
        # json text: ints stay ints and floats floats, every value exact
        assert json.dumps(a.segmentations) == json.dumps(b.segmentations)
    assert fast.load_report.counts == slow.load_report.counts
    assert fast.load_report.examples == slow.load_report.examples
    assert fast.load_report.num_boxes == slow.load_report.num_boxes


def _compressed_rle(height: int, width: int) -> dict:
    from pycocotools import mask as mask_utils

    mask = np.zeros((height, width), dtype=np.uint8)
    mask[2:7, 2:7] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _odd_json(path: Path) -> Path:
    """Annotations out of image order, boxes to clip and to drop, an image without annotations,
    polygons with int coordinates, compressed and uncompressed RLE, empty and absent segmentations."""
    images = [{"id": 7, "file_name": "a.jpg", "height": 40, "width": 60},
              {"id": 3, "file_name": "sub/b.jpg", "height": 50, "width": 50},
              {"id": 11, "file_name": "c.jpg", "height": 30, "width": 30}]
    polygon = [[1.5, 2.25, 20.0, 2.5, 20.75, 15.0, 3.0, 14.5]]
    annotations = [
        {"id": 1, "image_id": 3, "category_id": 5, "bbox": [1.5, 2.0, 30.25, 20.0], "area": 500.5,
         "iscrowd": 0, "segmentation": polygon},
        {"id": 2, "image_id": 7, "category_id": 2, "bbox": [50, 30, 20, 20], "area": 100, "iscrowd": 0,
         "segmentation": [[50, 30, 59, 30, 59, 39, 50, 39]]},  # int polygon; box clipped to 60x40
        {"id": 3, "image_id": 7, "category_id": 5, "bbox": [70.0, 10.0, 5.0, 5.0], "area": 25.0, "iscrowd": 0,
         "segmentation": polygon},  # outside the image: dropped
        {"id": 4, "image_id": 3, "category_id": 9, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 12.0, "iscrowd": 1,
         "segmentation": {"size": [50, 50], "counts": [0, 10, 40, 10, 2440]}},
        {"id": 5, "image_id": 7, "category_id": 9, "bbox": [2.0, 2.0, 5.0, 5.0], "area": 9.0, "iscrowd": 0,
         "segmentation": _compressed_rle(40, 60)},
        {"id": 6, "image_id": 3, "category_id": 2, "bbox": [4.0, 4.0, 8.0, 8.0], "area": 64.0, "iscrowd": 0,
         "segmentation": []},
        {"id": 7, "image_id": 7, "category_id": 2, "bbox": [5.0, 5.0, 8.0, 6.0], "area": 48.0},
        {"id": 8, "image_id": 3, "category_id": 5, "bbox": [4.0, 4.0, 0.0, 8.0], "area": 0.0, "iscrowd": 0,
         "segmentation": polygon},  # zero width: dropped
    ]
    categories = [{"id": 9, "name": "nine"}, {"id": 2, "name": "two"}, {"id": 5, "name": "five"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.mark.parametrize("with_masks", [False, True])
@pytest.mark.parametrize("class_names", [None, ["person", "dog", "car"]])
def test_columns_equal_the_record_loop_on_val2014(monkeypatch: pytest.MonkeyPatch, with_masks: bool,
                                                    class_names: list[str] | None) -> None:
    fast = CocoDetection("images", FIXTURE, with_masks=with_masks, class_names=class_names, check_files=False)
    assert isinstance(fast.records, RecordStore) and fast.records.segmentations is not None or not with_masks
    _record_loop(monkeypatch)
    slow = CocoDetection("images", FIXTURE, with_masks=with_masks, class_names=class_names, check_files=False)
    _assert_same_records(fast, slow)
    if with_masks:  # the targets too, masks decoded from the stored polygons and RLE
        for index in (0, 5, len(fast) - 1):
            a, b = fast.get_target(index), slow.get_target(index)
            assert sorted(a) == sorted(b)
            for key, value in b.items():
                assert torch.equal(a[key], value) if isinstance(value, torch.Tensor) else a[key] == value


@pytest.mark.parametrize("with_masks", [False, True])
@pytest.mark.parametrize("skip_empty", [False, True])
def test_columns_equal_the_record_loop_on_odd_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      with_masks: bool, skip_empty: bool) -> None:
    path = _odd_json(tmp_path / "odd.json")
    calls = []
    columns = coco_module.coco_record_store
    monkeypatch.setattr(coco_module, "coco_record_store", lambda *a, **k: calls.append(columns(*a, **k)) or calls[-1])
    fast = CocoDetection(tmp_path, path, with_masks=with_masks, check_files=False, skip_empty=skip_empty,
                         class_names=["two", "five", "nine"])
    assert calls and calls[0] is not None  # the columns took this file
    _record_loop(monkeypatch)
    slow = CocoDetection(tmp_path, path, with_masks=with_masks, check_files=False, skip_empty=skip_empty,
                         class_names=["two", "five", "nine"])
    _assert_same_records(fast, slow)
    assert fast.load_report.counts["boxes clipped to the image"] == 1
    assert fast.load_report.counts["degenerate boxes dropped"] == 2
    if with_masks:
        segmentations = fast.records[0].segmentations
        assert isinstance(segmentations[0][0][0], int)  # the int polygon comes back as ints
        for index in range(len(fast)):
            a, b = fast.get_target(index), slow.get_target(index)
            assert torch.equal(a["masks"], b["masks"]) and torch.equal(a["boxes"], b["boxes"])


def test_records_the_columns_refuse_take_the_loop_with_its_errors(tmp_path: Path) -> None:
    path = _odd_json(tmp_path / "odd.json")
    document = json.loads(path.read_text())
    document["annotations"][0]["ignore"] = 1  # only the loop knows 'ignore'
    path.write_text(json.dumps(document))
    dataset = CocoDetection(tmp_path, path, check_files=False)
    assert isinstance(dataset.records, RecordStore)  # packed from the loop's records
    assert dataset.load_report.counts["annotations marked 'ignore' skipped"] == 1
    document["annotations"][1]["bbox"] = [1, 2, "x", 4]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"odd.json: image 7 \(a.jpg\): annotation 2: 'bbox' must be 4 finite"):
        CocoDetection(tmp_path, path, check_files=False)


def test_stored_records_are_flat_buffers_and_writes_persist(tmp_path: Path) -> None:
    dataset = CocoDetection("images", FIXTURE, with_masks=True, check_files=False)
    store = dataset.records
    assert isinstance(store, RecordStore)
    for array in (store.sizes, store.box_offsets, store.boxes, store.labels, *store.box_fields.values(),
                  store.segmentations.buffer, store.segmentations.starts, store.image_id_column):
        assert isinstance(array, np.ndarray) and array.dtype != object
    assert isinstance(store.paths, StringColumn) and isinstance(store.paths._buffer, np.ndarray)
    # no Python object per record or per box lives in the store
    assert len(pickle.dumps(store)) < 2 * store.nbytes + 10_000
    # a record's attribute written keeps that record (as a list of records did)
    record = store[3]
    record.path = tmp_path / "moved.jpg"
    assert store[3].path == tmp_path / "moved.jpg" and dataset.get_target(3)["file_name"] == str(tmp_path / "moved.jpg")
    store[4].select(np.zeros(len(store[4].boxes), dtype=bool))
    assert len(dataset.get_target(4)["boxes"]) == 0 and store.box_counts()[4] == 0
    # targets are copies: editing one leaves the store as it was
    target = dataset.get_target(0)
    target["iscrowd"][:] = 7
    target["area"][:] = -1
    assert (dataset.get_target(0)["iscrowd"] != 7).all() and (dataset.get_target(0)["area"] >= 0).all()
    # slices and pickles (spawned workers) keep the modified records
    part = store[2:5]
    assert isinstance(part, RecordStore) and part[1].path == tmp_path / "moved.jpg"
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.get_target(3)["file_name"] == str(tmp_path / "moved.jpg")
    assert torch.equal(copy.get_target(10)["boxes"], dataset.get_target(10)["boxes"])
    assert type(pickle.loads(pickle.dumps(store[0]))) is ImageRecord


def test_ragged_take_and_segmentation_column() -> None:
    offsets, values = np.array([0, 2, 2, 5]), np.array([10, 11, 20, 21, 22])
    new_offsets, new_values = ragged_take(offsets, values, np.array([2, 0, 1, 2]))
    assert new_offsets.tolist() == [0, 3, 5, 5, 8] and new_values.tolist() == [20, 21, 22, 10, 11, 20, 21, 22]
    segmentations = [[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], None, {"size": [2, 2], "counts": "02"}, [[1, 2, 3, 4, 5, 6]],
                     [], [[0.5] * 6, [1.5] * 8]]
    column = SegmentationColumn.from_list(segmentations)
    assert [column.get(i) for i in range(len(column))] == segmentations
    taken = column.take(np.array([5, 3, 0]))
    assert json.dumps([taken.get(i) for i in range(3)]) == json.dumps([segmentations[i] for i in (5, 3, 0)])


def test_voc_records_are_a_store_equal_to_the_list(shapes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = VOCDetection(shapes.root, "train", class_names=shapes.class_names, image_suffix=".png")
    assert isinstance(stored.records, RecordStore)
    monkeypatch.setattr(records_module.RecordStore, "from_records", classmethod(lambda cls, records: None))
    listed = VOCDetection(shapes.root, "train", class_names=shapes.class_names, image_suffix=".png")
    assert isinstance(listed.records, list)
    _assert_same_records(stored, listed)
    for index in range(len(stored)):
        a, b = stored.get_target(index), listed.get_target(index)
        assert all(torch.equal(a[k], v) if isinstance(v, torch.Tensor) else a[k] == v for k, v in b.items())


# ------------------------------------------------------------------------------------------------
# DataLoader workers' memory


def _unique_memory_kib() -> int:
    total = 0
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


class _RecordPass(torch.utils.data.Dataset):
    def __init__(self, dataset: CocoDetection) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> int:
        record = self.dataset.records[index]
        target = self.dataset._make_target(record, record.size)
        return len(target["boxes"]) + sum(len(p) for s in record.segmentations for p in s)


def _uss_collate(batch: list[int]) -> tuple[int, int]:
    return os.getpid(), _unique_memory_kib()


def _many_polygons_json(path: Path, images: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    records, annotations = [], []
    for image_id in range(1, images + 1):
        records.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": 480, "width": 640})
        for _ in range(8):
            x, y = rng.uniform(0, 400, 2).round(2).tolist()
            polygon = (np.array([x, y] * 10) + rng.uniform(0, 200, 20)).round(2).tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1 + len(annotations) % 3,
                                "bbox": [x, y, 200.0, 200.0], "area": 100.0, "iscrowd": 0, "segmentation": [polygon]})
    categories = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]
    path.write_text(json.dumps({"images": records, "annotations": annotations, "categories": categories}))
    return path


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").is_file(), reason="needs Linux /proc/<pid>/smaps_rollup")
def _worker_growth_mib(folder: Path, images: int = 6000) -> dict[int, float]:
    """Each of 2 forked workers' USS growth (MiB) over an epoch reading every record's target and
    polygons of an ``images``-image json (masks not rasterised)."""
    dataset = CocoDetection("", _many_polygons_json(folder / "many.json", images), with_masks=True, check_files=False)
    dataset.with_masks = False  # read the polygons, do not rasterise them
    loader = torch.utils.data.DataLoader(_RecordPass(dataset), batch_size=100, num_workers=2,
                                         collate_fn=_uss_collate, multiprocessing_context="fork")
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for pid, uss in loader:
        first.setdefault(pid, uss)
        last[pid] = uss
    assert len(first) == 2
    return {pid: (last[pid] - first[pid]) / 1024 for pid in first}


def test_workers_unique_memory_does_not_grow_over_an_epoch(tmp_path: Path) -> None:
    """Reading every record (targets and polygons) in 2 forked workers: each worker's unique memory
    grows by well under the 5 MiB of the issue (a list of Python records grows by ~15 MiB here).

    Measured in a fresh interpreter: forked from the test session's process, a worker's garbage
    collector would touch (and so copy) every page of the objects earlier tests left behind, which
    says nothing about the records."""
    import subprocess
    import sys

    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from test_records import _worker_growth_mib; print(json.dumps(_worker_growth_mib(Path(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mib = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(growth_mib) == 2 and max(growth_mib.values()) < 5.0, growth_mib


def test_carved_validation_parts_stay_stores() -> None:
    from detkit.data.description import carve_validation

    dataset = CocoDetection("images", FIXTURE, with_masks=True, check_files=False)
    train, val = carve_validation(dataset, 0.25, 0, "fixture")
    assert isinstance(train.records, RecordStore) and isinstance(val.records, RecordStore)
    assert len(train) + len(val) == len(dataset) and len(val) == 25
    assert sorted(train.image_ids + val.image_ids) == sorted(dataset.image_ids)
    index = dataset.image_ids.index(val.image_ids[3])
    assert torch.equal(val.get_target(3)["boxes"], dataset.get_target(index)["boxes"])
    assert json.dumps(val.records[3].segmentations) == json.dumps(dataset.records[index].segmentations)


def test_segmentation_columns_join_on_their_buffers() -> None:
    first = SegmentationColumn.from_list([[[1, 2, 3.5, 4, 5, 6]], None])
    second = SegmentationColumn.from_list([{"size": [2, 2], "counts": [4]}, [[0.25, 1, 2, 3, 4, 5]]])
    joined = SegmentationColumn.concatenate([first, second])
    expected = [[[1, 2, 3.5, 4, 5, 6]], None, {"size": [2, 2], "counts": [4]}, [[0.25, 1, 2, 3, 4, 5]]]
    assert [joined.get(i) for i in range(4)] == expected
    assert joined.buffers[0] is first.buffer and joined.buffers[1] is second.buffer  # not copied
    part = joined.take(np.array([3, 0, 2]))
    assert [part.get(i) for i in range(3)] == [expected[3], expected[0], expected[2]]
    assert part.buffers == joined.buffers and part.nbytes > first.buffer.nbytes + second.buffer.nbytes
    assert np.array_equal(joined.buffer, np.concatenate([first.buffer, second.buffer]))
    copy = pickle.loads(pickle.dumps(SegmentationColumn.concatenate([part, first])))
    assert [copy.get(i) for i in range(5)] == [expected[3], expected[0], expected[2], expected[0], None]
