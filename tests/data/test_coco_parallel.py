"""detkit.data.coco_parallel: a large COCO json parsed in two forked children, the cut between two
annotation records proven by the parses; the records equal those of the one-piece reader, and every
text the cut cannot take (no boundary, pretty-printed, an empty key, a second annotations list,
records the columns refuse) is read in one piece with the same result or the same error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_records import FIXTURE, _assert_same_records, _many_polygons_json, _odd_json

import detkit.data.coco as coco_module
import detkit.data.coco_parallel as parallel_module
from detkit.data import CocoDetection
from detkit.data.coco_columns import annotation_columns, image_columns, read_coco_json
from detkit.data.forked import fork_available
from detkit.data.records import RecordStore

pytestmark = pytest.mark.skipif(not fork_available(), reason="needs fork and memfd_create, and no other thread")


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every answer of parse_coco_in_parts during the test; files of any size go to the children."""
    answers: list[Any] = []
    original = parallel_module.parse_coco_in_parts
    monkeypatch.setattr(coco_module, "PARSE_IN_CHILD_MIN_BYTES", 0)
    monkeypatch.setattr(coco_module, "parse_coco_in_parts", lambda *a: answers.append(original(*a)) or answers[-1])
    return answers


def _in_process(monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> CocoDetection:
    with monkeypatch.context() as patch:
        patch.setattr(coco_module, "PARSE_IN_CHILD_MIN_BYTES", 1 << 62)
        return CocoDetection(*args, **kwargs)


@pytest.mark.parametrize("with_masks", [False, True])
@pytest.mark.parametrize("class_names", [None, ["person", "dog", "car"]])
def test_two_halves_give_the_records_of_one_parse(monkeypatch: pytest.MonkeyPatch, with_masks: bool,
                                                  class_names: list[str] | None) -> None:
    answers = _spy(monkeypatch)
    fast = CocoDetection("images", FIXTURE, with_masks=with_masks, class_names=class_names, check_files=False)
    assert len(answers) == 1 and isinstance(answers[0], dict)  # split and parsed in two children
    assert isinstance(fast.records, RecordStore)
    if with_masks:  # the halves' polygon buffers are joined without a copy
        assert len(fast.records.segmentations.buffers) == 2 and fast.records.segmentations.chunks is not None
    slow = _in_process(monkeypatch, "images", FIXTURE, with_masks=with_masks, class_names=class_names,
                       check_files=False)
    _assert_same_records(fast, slow)
    assert fast.category_id_to_label == slow.category_id_to_label and fast.class_names == slow.class_names
    for index in (0, 7, len(fast) - 1):
        a, b = fast.get_target(index), slow.get_target(index)
        assert all(np.array_equal(a[k], v) if hasattr(v, "shape") else a[k] == v for k, v in b.items())


def test_the_joined_columns_equal_the_whole_lists_columns(tmp_path: Path) -> None:
    path = _many_polygons_json(tmp_path / "many.json", 300)
    document = parallel_module.parse_coco_in_parts(path, True, tmp_path, "many.json")
    assert isinstance(document, dict)
    whole = read_coco_json(path)
    expected = annotation_columns(whole["annotations"], True)
    joined = document["annotations"]
    assert len(joined) == len(expected) == 2400
    for name in ("image_ids", "category_ids", "xywh", "iscrowd", "area"):
        assert np.array_equal(getattr(joined, name), getattr(expected, name))
    assert [joined.segmentations.get(i) for i in range(2400)] == [expected.segmentations.get(i) for i in range(2400)]
    images, expected_images = document["images"], image_columns(whole["images"], tmp_path, "many.json")
    assert np.array_equal(images.image_ids, expected_images.image_ids)
    assert np.array_equal(images.sizes, expected_images.sizes)
    assert images.paths.tolist() == expected_images.paths.tolist() == [str(tmp_path / i["file_name"])
                                                                        for i in whole["images"]]
    assert images.wheres.tolist() == expected_images.wheres.tolist()
    assert document["categories"] == whole["categories"]


def _write(path: Path, document: dict, **dump: Any) -> Path:
    path.write_text(json.dumps(document, **dump))
    return path


@pytest.mark.parametrize("case", ["pretty", "empty_key", "second_annotations", "annotations_first", "refused",
                                  "images_refused", "images_last"])
def test_texts_the_cut_cannot_take_are_read_in_one_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         case: str) -> None:
    document = json.loads(_many_polygons_json(tmp_path / "many.json", 60).read_text())
    dump: dict[str, Any] = {}
    expected_answer: Any = None
    if case == "pretty":
        dump = {"indent": 1}  # "}, {" is split by a newline: the cut still finds it (whitespace allowed)
        expected_answer = dict
    elif case == "empty_key":
        document[""] = 1  # "" is the second half's own key: a real one refuses the cut
    elif case == "second_annotations":  # a later "annotations" key: its list is the one a parser keeps
        text = json.dumps(document)[:-1] + ', "annotations": ' + json.dumps(document["annotations"][:5]) + "}"
        (tmp_path / "odd.json").write_text(text)
        document = None
    elif case == "annotations_first":  # the middle of the file is in a list the cut does not split
        images = [dict(document["images"][0], id=i, file_name=f"{i}.jpg") for i in range(1, 3001)]
        document = {"annotations": document["annotations"][:3], "images": images,
                    "categories": document["categories"]}
    elif case == "refused":
        document["annotations"][-1]["ignore"] = 1  # only the record loop knows 'ignore'
        expected_answer = parallel_module.REFUSED
    elif case == "images_refused":  # a str image id: only the record loop takes it
        document["images"][0]["id"] = "1"
        for annotation in document["annotations"][:8]:
            annotation["image_id"] = "1"
        expected_answer = parallel_module.REFUSED
    elif case == "images_last":  # the images after the annotations: the second half's
        document = {"annotations": document["annotations"], "categories": document["categories"],
                    "images": document["images"]}
        expected_answer = dict
    path = tmp_path / "odd.json"
    if document is not None:
        _write(path, document, **dump)
    answers = _spy(monkeypatch)
    fast = CocoDetection("", path, with_masks=True, check_files=False)
    if expected_answer is dict:
        assert isinstance(answers[0], dict)
    else:
        assert answers == [expected_answer]
    slow = _in_process(monkeypatch, "", path, with_masks=True, check_files=False)
    _assert_same_records(fast, slow)


def test_errors_are_the_one_piece_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _odd_json(tmp_path / "odd.json")
    document = json.loads(path.read_text())
    document["annotations"] = document["annotations"] * 30
    document["annotations"][-2]["bbox"] = [1, 2, "x", 4]
    truncated = tmp_path / "truncated.json"
    path.write_text(json.dumps(document))
    truncated.write_bytes(path.read_bytes()[:-40])
    for bad, words in ((path, r"odd.json: image 7 \(a.jpg\): annotation 7: 'bbox' must be 4 finite"),
                       (truncated, r"truncated.json: not valid json: .* line 1, column")):
        with pytest.raises(ValueError, match=words) as one_piece:
            _in_process(monkeypatch, tmp_path, bad, check_files=False)
        answers = _spy(monkeypatch)
        with pytest.raises(ValueError) as in_parts:
            CocoDetection(tmp_path, bad, check_files=False)
        assert answers and str(in_parts.value) == str(one_piece.value)


_PEAK = """
import json, sys
from pathlib import Path
import detkit.data.coco as coco_module
from detkit.data import CocoDetection
if sys.argv[2] == "in-process":
    coco_module.PARSE_IN_CHILD_MIN_BYTES = 1 << 62
else:
    coco_module.PARSE_IN_CHILD_MIN_BYTES = 0
def kib(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))
before = kib("VmRSS")
dataset = CocoDetection("", Path(sys.argv[1]), with_masks=True, check_files=False)
print(json.dumps({"peak_mib": (kib("VmHWM") - before) / 1024, "images": len(dataset)}))
"""


def test_the_parsed_json_never_enters_the_loading_process(tmp_path: Path) -> None:
    """The loading process's peak memory: well under half of what parsing in it takes (each run in
    a fresh interpreter, so that the peak is this load's)."""
    path = _many_polygons_json(tmp_path / "many.json", 3000)  # ~12 MB of json
    peaks = {}
    for mode in ("in-process", "children"):
        done = subprocess.run([sys.executable, "-c", _PEAK, str(path), mode], capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert peaks["children"]["images"] == peaks["in-process"]["images"] == 3000
    assert peaks["children"]["peak_mib"] < 0.5 * peaks["in-process"]["peak_mib"], peaks


def test_workers_share_the_columns_the_children_made(tmp_path: Path) -> None:
    """Records loaded through the parse children (a shared mapping): 2 forked DataLoader workers
    reading every record's target and polygons each grow by under the issue's 5 MiB (pages only
    a worker had mapped would count as its own: ~10 MiB each here). In a fresh interpreter, as
    tests/data/test_records.py's worker test says why."""
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import detkit.data.coco as coco_module; coco_module.PARSE_IN_CHILD_MIN_BYTES = 0; "
            "from test_records import _worker_growth_mib; "
            "print(json.dumps(_worker_growth_mib(Path(sys.argv[2]), images=20000)))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), str(tmp_path)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mib = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(growth_mib) == 2 and max(growth_mib.values()) < 5.0, growth_mib
