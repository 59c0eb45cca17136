"""Evaluators and the evaluate() loop, on toy data with an oracle detector."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_toys import OracleDetector, ToyShapes, toy_loader

from detkit.data import CocoDetection, generate_shapes_dataset
from detkit.evaluation import CocoEvaluator, Evaluator, VOCEvaluator, build_evaluator, evaluate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_evaluators_follow_the_protocol() -> None:
    assert isinstance(CocoEvaluator(), Evaluator)
    assert isinstance(VOCEvaluator(["a"]), Evaluator)


def test_coco_from_targets_oracle_is_perfect(tmp_path: Path) -> None:
    dataset = ToyShapes(n=5)
    model = OracleDetector()
    model.train()
    evaluator = CocoEvaluator.from_dataset(dataset, plot_dir=tmp_path / "plots")
    metrics = evaluate(model, toy_loader(dataset), evaluator, progress=False)
    # Model ran in eval mode under no_grad, and its mode was restored.
    assert model.calls_in_train_mode == 0 and model.calls_with_grad == 0 and model.training
    # Masks in the predictions -> bbox and segm both evaluated.
    for iou_type in ("bbox", "segm"):
        assert metrics[f"{iou_type}/AP"] == pytest.approx(1.0)
        assert metrics[f"{iou_type}/AP50"] == pytest.approx(1.0)
        assert metrics[f"{iou_type}/AP-red"] == pytest.approx(1.0)
    assert set(evaluator.last_results) == {"bbox", "segm"}
    assert "Average Precision" in evaluator.summary() and "green" in evaluator.summary()
    # Results use the dataset's category ids.
    assert {r["category_id"] for r in evaluator.results} <= {2, 5, 9}
    assert (tmp_path / "plots" / "bbox" / "all_classes.png").is_file()
    path = evaluator.write_results(tmp_path / "out")[0]
    assert len(json.loads(path.read_text())) == len(evaluator.results)


def test_coco_imperfect_model_and_reset() -> None:
    dataset = ToyShapes(n=4, seed=1)
    evaluator = CocoEvaluator(class_names=dataset.class_names, iou_types=["bbox"])
    metrics = evaluate(OracleDetector(shift=3.0), toy_loader(dataset), evaluator, progress=False)
    assert 0.0 < metrics["bbox/AP"] < 1.0 and "segm/AP" not in metrics
    # evaluate() resets: a second pass with the oracle is perfect, not a mix of both.
    metrics = evaluate(OracleDetector(), toy_loader(dataset), evaluator, progress=False)
    assert metrics["bbox/AP"] == pytest.approx(1.0)
    assert len(evaluator.image_ids) == 4
    # iou_types=None is decided per pass from the predictions: masks -> segm too, else bbox only.
    auto = CocoEvaluator()
    assert "segm/AP" in evaluate(OracleDetector(), toy_loader(dataset), auto, progress=False)
    assert "segm/AP" not in evaluate(OracleDetector(masks=False), toy_loader(dataset), auto, progress=False)


def test_coco_with_annotation_file(tmp_path: Path) -> None:
    dataset = ToyShapes(n=4, seed=2)
    dataset.write_coco(tmp_path / "toy.json")
    evaluator = build_evaluator(dataset)
    assert isinstance(evaluator, CocoEvaluator) and evaluator.coco_gt is not None
    metrics = evaluate(OracleDetector(masks=False), toy_loader(dataset), evaluator, progress=False)
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["bbox/AP-blue"] == pytest.approx(1.0)
    assert "segm/AP" not in metrics
    # Only the processed images are evaluated: half the dataset, still perfect.
    half = torch.utils.data.Subset(dataset, [0, 1])
    metrics = evaluate(OracleDetector(masks=False), toy_loader(half), evaluator, progress=False)
    assert metrics["bbox/AP"] == pytest.approx(1.0) and evaluator.image_ids == [100, 101]


def test_coco_file_with_a_subset_of_classes(tmp_path: Path) -> None:
    """A dataset using two of the file's three categories is scored on those two only."""
    dataset = ToyShapes(n=4, seed=4)
    dataset.write_coco(tmp_path / "toy.json")

    class TwoClasses(OracleDetector):
        def forward(self, images, targets=None):
            predictions, losses = super().forward(images)
            return [{k: v[p["labels"] < 2] for k, v in p.items()} for p in predictions], losses

    evaluator = CocoEvaluator(tmp_path / "toy.json", class_names=["red", "green"],
                              label_to_category_id={0: 2, 1: 5})
    metrics = evaluate(TwoClasses(), toy_loader(dataset), evaluator, progress=False)
    assert metrics["bbox/AP"] == pytest.approx(1.0) and "bbox/AP-blue" not in metrics


def test_dataset_source_json_is_used(tmp_path: Path) -> None:
    dataset = ToyShapes(n=2)
    dataset.source = str(dataset.write_coco(tmp_path / "toy.json"))
    dataset.ann_file = None
    evaluator = build_evaluator(dataset)
    assert evaluator.coco_gt is not None and evaluator.annotation_file == dataset.source


def test_coco_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoEvaluator(tmp_path / "missing.json")
    dataset = ToyShapes(n=2)
    dataset.write_coco(tmp_path / "toy.json")
    evaluator = CocoEvaluator(tmp_path / "toy.json")
    image, target = dataset[0]
    pred = OracleDetector()([image])[0][0]
    with pytest.raises(ValueError, match=r"image ids \[7\] are not in .*toy.json"):
        evaluator.process([dict(target, image_id=7)], [pred])
    with pytest.raises(KeyError, match="image_id"):
        evaluator.process([{k: v for k, v in target.items() if k != "image_id"}], [pred])
    with pytest.raises(RuntimeError, match="before any image"):
        CocoEvaluator().evaluate()
    with pytest.raises(ValueError, match="iou type"):
        CocoEvaluator(iou_types=["boundary"])  # "keypoints" is one (OKS)


def test_voc_evaluator_oracle_and_difficult(tmp_path: Path) -> None:
    dataset = ToyShapes(n=5, difficult=True)  # every "blue" object is difficult
    evaluator = VOCEvaluator.from_dataset(dataset, plot_dir=tmp_path / "voc")
    metrics = evaluate(OracleDetector(masks=False), toy_loader(dataset), evaluator, progress=False)
    assert metrics["voc07/mAP@0.5"] == pytest.approx(1.0) and metrics["voc12/mAP@0.5"] == pytest.approx(1.0)
    # Blue has only difficult gts: no positives, so NaN and out of the mean; its detections ignored.
    assert math.isnan(metrics["voc12/AP@0.5-blue"])
    assert evaluator.last_result.curves[2].num_ignored > 0
    assert "no +1" in evaluator.summary()  # detkit boxes are continuous: no +1 by default
    assert (tmp_path / "voc" / "pr_red.png").is_file()
    rows = json.loads(evaluator.write_results(tmp_path / "out")[0].read_text())
    assert rows and rows[0]["class"] in dataset.class_names
    # A shifted model is worse.
    metrics = evaluate(OracleDetector(shift=4.0, masks=False), toy_loader(dataset),
                       VOCEvaluator(dataset.class_names, iou_threshold=0.9, metrics=["voc12"]), progress=False)
    assert metrics["voc12/mAP@0.9"] < 1.0 and "voc07/mAP@0.9" not in metrics


def test_evaluate_restores_mode_on_error() -> None:
    class Broken(OracleDetector):
        def forward(self, images, targets=None):
            raise RuntimeError("boom")

    model = Broken()
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, toy_loader(ToyShapes(n=2)), CocoEvaluator(), progress=False)
    assert model.training


def test_engine_calling_convention() -> None:
    """The training engine calls ``evaluator.evaluate(model, loader)`` on a config's evaluator."""
    dataset = ToyShapes(n=3)
    for evaluator, key in ((CocoEvaluator.from_dataset(dataset), "bbox/AP"),
                           (VOCEvaluator.from_dataset(dataset), "voc07/mAP@0.5")):
        assert evaluator.evaluate(OracleDetector(), toy_loader(dataset))[key] == pytest.approx(1.0)
        with pytest.raises(TypeError, match="both model and data_loader"):
            evaluator.evaluate(OracleDetector())


def test_voc_string_image_ids() -> None:
    dataset = ToyShapes(n=2)
    image, target = dataset[0]
    pred = OracleDetector()([image])[0][0]
    voc = VOCEvaluator(dataset.class_names)
    voc.process([dict(target, image_id="2008_000123")], [pred])
    assert voc.image_ids == ["2008_000123"] and voc.evaluate()["voc12/mAP@0.5"] == pytest.approx(1.0)
    coco = CocoEvaluator(class_names=dataset.class_names)  # from targets: a str id gets an int one
    coco.process([dict(target, image_id="2008_000123")], [pred])
    assert coco.image_ids == [1] and coco.evaluate()["bbox/AP"] == pytest.approx(1.0)


def _distributed_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world)
    try:
        dataset = ToyShapes(n=6, seed=3)
        # Contiguous shards (as detkit.engine's test loader makes them), the second padded with a
        # repeat of the first image. Ranks are merged in rank order, so with contiguous shards the
        # images keep the dataset order and VOC's tie-breaking (constant scores here) matches.
        shard = torch.utils.data.Subset(dataset, [[0, 1, 2], [3, 4, 5, 0]][rank])
        model = OracleDetector(shift=2.0)
        coco = evaluate(model, toy_loader(shard), CocoEvaluator.from_dataset(dataset), progress=False)
        voc = evaluate(model, toy_loader(shard), VOCEvaluator.from_dataset(dataset, iou_threshold=0.8),
                       progress=False)
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({**coco, **voc}))
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_ranks_gather_the_whole_set(tmp_path: Path) -> None:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_distributed_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    dataset = ToyShapes(n=6, seed=3)
    model = OracleDetector(shift=2.0)
    expected = evaluate(model, toy_loader(dataset), CocoEvaluator.from_dataset(dataset), progress=False)
    expected.update(evaluate(model, toy_loader(dataset), VOCEvaluator.from_dataset(dataset, iou_threshold=0.8),
                             progress=False))
    assert 0 < expected["bbox/AP"] < 1 and 0 < expected["voc12/mAP@0.8"] < 1
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


@pytest.mark.parametrize("bad", ["scores", "boxes"])
def test_evaluators_refuse_non_finite_predictions_naming_the_image(bad: str) -> None:
    """A model that outputs NaN must not be scored (NaN scores sorted anywhere gave AP 1.0)."""
    dataset = ToyShapes(n=2)
    image, target = dataset[1]
    pred = OracleDetector(masks=False)([image])[0][0]
    pred = dict(pred, **{bad: torch.full_like(pred[bad], float("nan"))})
    for evaluator in (CocoEvaluator(class_names=dataset.class_names), VOCEvaluator(dataset.class_names)):
        what = "box" if bad == "boxes" else "score"
        with pytest.raises(ValueError, match=rf"image {target['image_id']}: detection 0 has a non-finite {what}"):
            evaluator.process([target], [pred])


def test_ground_truth_from_targets_gives_the_json_stats_on_the_same_detections(tmp_path: Path) -> None:
    """`detkit test` (ground truth from targets) and `detkit eval` (the json) must agree, APs/m/l too.

    A COCO instance annotation's ``area`` is its segment area, which decides small / medium / large;
    the ground truth built from box-only targets used the box area, so circles and triangles whose
    box is larger than their mask moved to a larger range.
    """
    paths = generate_shapes_dataset(tmp_path / "shapes", 0, 12, (256, 320), seed=3, size_range=(0.08, 0.3))
    dataset = CocoDetection(paths.image_dir, paths.coco_json("val"), check_files=False)
    rng = np.random.default_rng(0)
    targets, predictions = [], []
    for index in range(len(dataset)):
        target = dataset.get_target(index)
        boxes = target["boxes"] + torch.from_numpy(rng.normal(0, 3, target["boxes"].shape)).float()
        keep = torch.from_numpy(rng.random(len(boxes)) < 0.85)  # some misses
        predictions.append({"boxes": boxes[keep], "labels": target["labels"][keep],
                            "scores": torch.from_numpy(rng.random(int(keep.sum()))).float()})
        targets.append(target)
    stats = []
    for annotation_file in (paths.coco_json("val"), None):
        evaluator = CocoEvaluator(annotation_file, class_names=dataset.class_names, iou_types=["bbox"],
                                  label_to_category_id=dataset.label_to_category_id)
        evaluator.process(targets, predictions)
        stats.append(evaluator.evaluate())
    from_json, from_targets = stats
    areas = [a["area"] for a in json.loads(paths.coco_json("val").read_text())["annotations"]]
    assert min(areas) < 32 ** 2 < max(areas)  # objects on both sides of the small / medium border
    assert from_json["bbox/APs"] >= 0 and from_json["bbox/APm"] >= 0
    assert from_targets == pytest.approx(from_json, abs=0, nan_ok=True)
