"""Dataset descriptions: the same shapes images read from COCO, VOC and YOLO folders, described by a
file or by the folder alone, give the same targets; the carved validation split; one-line errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from detkit.data import (
    CocoDetection, DatasetError, VOCDetection, VOCFolderDetection, YOLODetection, build_datasets, class_names_of,
    describe_folder, read_description,
)
from detkit.data.description import carve_validation
from own_data_layouts import OwnDataFolders, write_own_data


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> OwnDataFolders:
    return write_own_data(tmp_path_factory.mktemp("own"), num_train=6, num_val=3, image_size=64)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _flat_voc(folders: OwnDataFolders, target: Path) -> Path:
    """The VOC train split as one folder of xml files with their images beside them."""
    target.mkdir(exist_ok=True)
    for xml in sorted((folders.voc / "Annotations").glob("train_*.xml")):
        shutil.copyfile(xml, target / xml.name)
        shutil.copyfile(folders.voc / "JPEGImages" / f"{xml.stem}.png", target / f"{xml.stem}.png")
    return target


def _forms(folders: OwnDataFolders, tmp: Path) -> dict[str, object]:
    """Every way of describing the data: folders alone, detkit description files, ultralytics'."""
    names = dict(enumerate(folders.class_names))
    return {
        "coco folder": folders.coco,
        "voc folder": folders.voc,
        "yolo folder": folders.yolo,
        "coco yaml": _write(tmp / "coco.yaml", f"format: coco\nroot: {folders.coco}\n"
                            "train: {images: train, annotations: annotations/instances_train.json}\n"
                            "val: {images: val, annotations: annotations/instances_val.json}\n"),
        "voc json": _write(tmp / "voc.json", json.dumps({
            "format": "voc", "root": str(folders.voc),
            "train": {"image_set": "ImageSets/Main/train.txt"}, "val": {"image_set": "ImageSets/Main/val.txt"}})),
        "yolo yaml": _write(tmp / "yolo.yaml", f"format: yolo\nroot: {folders.yolo}\ntrain: images/train\n"
                            "val: {images: images/val, annotations: labels/val}\nclass_names: classes.txt\n"),
        "ultralytics data.yaml": _write(tmp / "data.yaml", f"path: {folders.yolo}\ntrain: images/train\n"
                                        f"val: images/val\nnames: {json.dumps({str(k): v for k, v in names.items()})}\n"),
    }


def _by_stem(dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for index in range(len(dataset)):
        target = dataset.get_target(index)
        out[Path(target["file_name"]).stem] = (target["boxes"].numpy(), target["labels"].numpy())
    return out


def test_every_format_and_form_gives_the_same_targets(folders: OwnDataFolders, tmp_path: Path) -> None:
    reference = {split: _by_stem(dataset) for split, dataset in build_datasets(folders.coco).items()}
    assert len(reference["train"]) == 6 and len(reference["val"]) == 3
    assert sum(len(labels) for _, labels in reference["train"].values()) > 6  # real boxes to compare
    kinds = {"coco": CocoDetection, "voc": VOCDetection, "yolo": YOLODetection}
    for form, data in _forms(folders, tmp_path).items():
        description = read_description(data)
        assert class_names_of(description) == list(folders.class_names), form
        built = build_datasets(description, ("train", "val"))
        for split, dataset in built.items():
            assert isinstance(dataset, kinds[description.format]), form
            assert dataset.class_names == list(folders.class_names), (form, split)
            got = _by_stem(dataset)
            assert got.keys() == reference[split].keys(), (form, split)
            for stem, (boxes, labels) in reference[split].items():
                np.testing.assert_allclose(got[stem][0], boxes, atol=1e-4, rtol=0, err_msg=f"{form} {stem}")
                np.testing.assert_array_equal(got[stem][1], labels, err_msg=f"{form} {stem}")


def test_a_folder_of_xml_and_images_is_read_as_voc(folders: OwnDataFolders, tmp_path: Path) -> None:
    flat = _flat_voc(folders, tmp_path / "flat")
    description = describe_folder(flat)
    assert description.format == "voc" and list(description.splits) == ["train"]
    train = build_datasets(description, "train", )["train"]
    reference = build_datasets(folders.voc, "train")["train"]
    assert isinstance(train, VOCFolderDetection) and isinstance(train, VOCDetection)  # VOC mAP follows it
    carved = build_datasets(description, ("train", "val"))  # no val split: carved from the 6
    assert len(carved["train"]) + len(carved["val"]) == len(reference)
    whole = _by_stem(VOCFolderDetection(flat, flat, folders.class_names))
    for stem, (boxes, labels) in _by_stem(reference).items():
        np.testing.assert_array_equal(whole[stem][0], boxes)
        np.testing.assert_array_equal(whole[stem][1], labels)


def test_val_carving_is_seeded_disjoint_and_covers_train(folders: OwnDataFolders, tmp_path: Path) -> None:
    def carve(fraction: float, seed: int) -> tuple[list, list]:
        path = _write(tmp_path / f"d{seed}.yaml", f"format: coco\nroot: {folders.coco}\nval_fraction: {fraction}\n"
                      f"seed: {seed}\ntrain: {{images: train, annotations: annotations/instances_train.json}}\n")
        built = build_datasets(path)
        return built["train"].image_ids, built["val"].image_ids

    everything = build_datasets(folders.coco, "train")["train"].image_ids
    train, val = carve(0.34, 0)
    assert len(val) == 2 and len(train) == 4  # round(0.34 * 6)
    assert not set(train) & set(val) and sorted(train + val) == sorted(everything)
    assert train == sorted(train, key=everything.index) and val == sorted(val, key=everything.index)
    assert carve(0.34, 0) == (train, val)  # deterministic
    assert len({tuple(carve(0.34, seed)[1]) for seed in range(6)}) > 1  # the seed chooses
    assert len(carve(0.01, 0)[1]) == 1 and len(carve(0.99, 0)[0]) == 1  # at least one image each side


def test_carving_needs_two_images(folders: OwnDataFolders) -> None:
    one = build_datasets(folders.coco, "val")["val"]
    one.records = one.records[:1]
    with pytest.raises(DatasetError, match="too few to carve"):
        carve_validation(one, 0.2, 0, "data.yaml")


def test_no_val_without_a_fraction(folders: OwnDataFolders, tmp_path: Path) -> None:
    path = _write(tmp_path / "noval.yaml", f"format: coco\nroot: {folders.coco}\nval_fraction: 0\n"
                  "train: {images: train, annotations: annotations/instances_train.json}\n")
    description = read_description(path)
    assert not description.has_validation
    assert len(build_datasets(description, "train")["train"]) == 6  # all of train
    with pytest.raises(DatasetError, match=r"noval\.yaml: no val split .*val_fraction is 0"):
        build_datasets(description, "val")


ERRORS = {
    "missing folder": ("format: yolo\ntrain: images/nope\nnames: [a]\n", r"data\.yaml: train: no such folder images/nope"),
    "unknown format": ("format: tfrecord\ntrain: x\n", r"data\.yaml: format: 'tfrecord' is not one of coco, voc, yolo"),
    "unknown key": ("format: coco\ntrian: x\ntrain: x\n", r"data\.yaml: unknown key\(s\) \['trian'\]"),
    "no train": ("format: coco\nval: {images: ., annotations: a.json}\n", r"data\.yaml: .*a\.json|train: missing"),
    "coco without json": ("format: coco\ntrain: {images: .}\n", r"data\.yaml: train: missing 'annotations'"),
    "bad names ids": ("train: images\nnames: {0: a, 2: b}\n", r"data\.yaml: names: the ids must be 0\.\.1"),
    "duplicate names": ("train: images\nnames: [a, a]\n", r"data\.yaml: names: duplicate class names \['a'\]"),
    "yolo without names": ("format: yolo\ntrain: images\n", r"data\.yaml: YOLO labels are class indices"),
    "bad fraction": ("format: yolo\ntrain: images\nnames: [a]\nval_fraction: 1.5\n", r"data\.yaml: val_fraction"),
    "bad yaml": ("format: coco\ntrain: [unclosed\n", r"data\.yaml: not valid yaml at line \d+"),
    "not a mapping": ("- a\n- b\n", r"data\.yaml: a dataset description is a mapping"),
    "no labels": ("format: yolo\ntrain: images\nnames: [a]\n", r"data\.yaml: train: no label folder .*labels for the"),
    "nc disagrees": ("train: images\nnames: [a, b]\nnc: 3\n", r"data\.yaml: nc: 3 but names has 2 names"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    (tmp_path / "images").mkdir()
    text, pattern = ERRORS[case]
    path = _write(tmp_path / "data.yaml", text)
    with pytest.raises(DatasetError, match=pattern) as info:
        build_datasets(path)
    assert "\n" not in str(info.value)


def test_folder_and_path_errors(tmp_path: Path, folders: OwnDataFolders) -> None:
    with pytest.raises(DatasetError, match="no such file or folder") as info:
        read_description(tmp_path / "missing")
    assert "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no known dataset layout \(COCO: .*; VOC: .*; YOLO: .*\)"):
        read_description(tmp_path / "empty")
    yolo = tmp_path / "yolo_no_names"
    shutil.copytree(folders.yolo, yolo)
    (yolo / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="without class names: add a classes.txt"):
        read_description(yolo)
    with pytest.raises(DatasetError, match=r"a \.yaml, \.yml or \.json file"):
        read_description(_write(tmp_path / "data.txt", "x"))


def test_coco_splits_with_other_categories_are_refused(folders: OwnDataFolders, tmp_path: Path) -> None:
    document = json.loads((folders.coco / "annotations" / "instances_val.json").read_text())
    document["categories"][0]["name"] = "disc"
    _write(tmp_path / "val.json", json.dumps(document))
    path = _write(tmp_path / "d.yaml", f"format: coco\ntrain: {{images: {folders.coco}/train, annotations: "
                  f"{folders.coco}/annotations/instances_train.json}}\nval: {{images: {folders.coco}/val, "
                  "annotations: val.json}\n")
    with pytest.raises(DatasetError, match=r"d\.yaml: the val split's categories differ from train's") as info:
        build_datasets(path)
    assert "\n" not in str(info.value)


def test_yaml_without_pyyaml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    path = _write(tmp_path / "mine.yaml", "format: coco\n")
    with pytest.raises(DatasetError, match=r"mine\.yaml: reading a \.yaml description needs PyYAML"):
        read_description(path)
