"""Sliced inference end to end: sliced_predict, Predictor(slice_size=...), detkit infer --slice."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from apis_toys import TOY_DETECTIONS, ToyDetector
from torch import Tensor, nn

from detkit.apis import Predictor, SliceSettings, sliced_predict
from detkit.cli.infer import main as infer_main

CONFIG = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "configs" / "apis" / "toy_detector.py"


class BlobDetector(nn.Module):
    """Finds bright blobs (red channel > 0.5), one detection each, as a resizing detector would:
    a blob smaller than ``min_fraction`` of the image it is given is missed (it is a few pixels
    at the model's resolution). Gives ``masks`` (the blob's pixels, 0.9) and ``keypoints`` (its
    box centre, visible)."""

    def __init__(self, min_fraction: float = 0.003) -> None:
        super().__init__()
        self.min_fraction = min_fraction
        self.num_classes, self.class_names = 1, ["blob"]
        self.sizes: list[list[tuple[int, int]]] = []  # per call, the image sizes

    def forward(self, images: list[Tensor], targets=None) -> tuple[list[dict[str, Tensor]], dict]:
        self.sizes.append([(int(image.shape[1]), int(image.shape[2])) for image in images])
        return [self._detect(image) for image in images], {}

    def _detect(self, image: Tensor) -> dict[str, Tensor]:
        bright = (image[0] > 0.5).to(torch.uint8).cpu().numpy()
        count, components, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
        keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= self.min_fraction * bright.size]
        boxes = torch.tensor([[stats[i, 0], stats[i, 1], stats[i, 0] + stats[i, 2], stats[i, 1] + stats[i, 3]]
                              for i in keep], dtype=torch.float32).reshape(-1, 4)
        masks = torch.stack([torch.from_numpy(components == i).float() * 0.9 for i in keep]) if keep else \
            torch.zeros((0, *bright.shape))
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return {"boxes": boxes, "scores": torch.full((len(keep),), 0.9), "labels": torch.zeros(len(keep), dtype=torch.int64),
                "masks": masks, "keypoints": torch.cat([centres, torch.ones(len(keep), 1)], dim=1)[:, None]}


# 10x10 blobs in a 400x400 image: 100 px < 0.003 * 160000 (missed whole), >= 0.003 * 100^2 in a tile
BLOBS = [(20, 30), (200, 200), (75, 150), (330, 370)]  # (x, y) of top-left corners; x=75 straddles 80


def _blob_image() -> Tensor:
    image = torch.zeros(3, 400, 400)
    for x, y in BLOBS:
        image[0, y:y + 10, x:x + 10] = 1.0
    return image


def _sorted_boxes(boxes: Tensor) -> list[list[float]]:
    return sorted(boxes.tolist())


def test_small_objects_missed_whole_are_found_in_tiles_and_come_back_whole() -> None:
    detector, image = BlobDetector(), _blob_image()
    assert len(Predictor(detector, device="cpu")([image])[0]) == 0  # too small in the whole image
    expected = sorted([float(x), float(y), float(x + 10), float(y + 10)] for x, y in BLOBS)
    for merge in ("nms", "merge"):
        prediction = sliced_predict(detector, image, SliceSettings(100, 0.2, merge=merge), batch_size=8)
        # the blob across the border at x=80 is whole in the tile starting at 80 (merge: the union)
        assert _sorted_boxes(prediction["boxes"]) == expected
        assert prediction["masks"].shape == (4, 400, 400)
        for box, mask, points in zip(prediction["boxes"].int().tolist(), prediction["masks"], prediction["keypoints"]):
            x1, y1, x2, y2 = box
            assert mask[y1:y2, x1:x2].min() == pytest.approx(0.9) and mask.sum() == pytest.approx(0.9 * 100)
            torch.testing.assert_close(points[0], torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, 1.0]))


def test_tiles_are_batched_and_the_full_image_comes_last() -> None:
    detector = BlobDetector()
    sliced_predict(detector, _blob_image(), SliceSettings(100, 0.2), batch_size=8)
    # 400 px, tiles of 100 every 80 px: starts 0 80 160 240 300 -> 25 tiles, then the image
    assert [len(sizes) for sizes in detector.sizes] == [8, 8, 8, 2]
    assert detector.sizes[-1][-1] == (400, 400) and {s for c in detector.sizes for s in c[:-1]} == {(100, 100)}
    detector.sizes.clear()
    sliced_predict(detector, _blob_image(), SliceSettings(100, 0.2, full_image=False), batch_size=25)
    assert [len(sizes) for sizes in detector.sizes] == [25]


def test_predictor_slice_options_give_results_in_image_pixels() -> None:
    detector = BlobDetector()
    predictor = Predictor(detector, device="cpu", slice_size=100, slice_overlap=0.2, slice_full_image=False,
                          slice_merge="merge")
    assert predictor.slicing == SliceSettings(100, 0.2, full_image=False, merge="merge")
    bgr = (_blob_image().permute(1, 2, 0).numpy()[..., ::-1] * 255).astype(np.uint8)  # as OpenCV reads
    result, outcome = predictor([bgr])[0], predictor.predict_each([bgr, "missing.png"])
    assert len(result) == 4 and result.image_size == (400, 400) and result.masks.shape == (4, 400, 400)
    assert result.masks.dtype == bool and int(result.masks.sum()) == 400
    assert isinstance(outcome[1], Exception) and len(outcome[0]) == 4
    # the options are keyword-only and default to no slicing: the old call works as before
    assert Predictor(detector, device="cpu").slicing is None
    capped = Predictor(detector, device="cpu", slice_size=100, detections_per_img=2, score_thresh=0.5)
    assert len(capped([bgr])[0]) == 2


def test_predictor_bad_slice_options_are_one_line_errors_naming_them() -> None:
    for kwargs, option in (({"slice_size": 0}, "slice_size"), ({"slice_size": 64, "slice_overlap": 1.0}, "slice_overlap"),
                           ({"slice_size": 64, "slice_merge": "wbf"}, "slice_merge")):
        with pytest.raises(ValueError, match=option) as error:
            Predictor(BlobDetector(), device="cpu", **kwargs)
        assert "\n" not in str(error.value)


def test_infer_slice_options_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cv2.imwrite(str(tmp_path / "wide.png"), np.full((40, 100, 3), 90, np.uint8))
    args = [str(CONFIG), "none", str(tmp_path / "wide.png"), "--no-progress", "--score-thresh", "0"]
    assert infer_main([*args, "--out", str(tmp_path / "whole")]) == 0
    assert infer_main([*args, "--out", str(tmp_path / "tiles"), "--slice", "40", "--overlap", "0.25",
                       "--no-slice-full", "--slice-merge", "merge"]) == 0
    assert "sliced: tiles of 40 px, overlap 0.25, without the full image, merged by merge" in capsys.readouterr().out
    whole = json.loads((tmp_path / "whole" / "predictions.json").read_text())
    tiles = json.loads((tmp_path / "tiles" / "predictions.json").read_text())
    assert len(whole) == len(TOY_DETECTIONS)
    # the toy answers relative to the image it gets: its tiles' boxes are 40x40-tile boxes, shifted
    (x1, y1, x2, y2), label, score = TOY_DETECTIONS[0]
    first = [r for r in tiles if r["category_id"] == label]
    assert pytest.approx([x1 * 40, y1 * 40, (x2 - x1) * 40, (y2 - y1) * 40]) in [r["bbox"] for r in first]
    assert all(r["bbox"][0] + r["bbox"][2] <= 100 + 1e-4 for r in tiles)
    assert len(tiles) > len(whole) and all("segmentation" in r for r in tiles)


@pytest.mark.parametrize("options, message", [
    (["--slice", "0"], "--slice must be a tile size in pixels > 0, got 0"),
    (["--slice", "64", "--overlap", "1"], "--overlap must be a fraction in [0, 1), got 1"),
    (["--slice", "64", "--overlap", "-0.5"], "--overlap must be a fraction in [0, 1), got -0.5"),
    (["--overlap", "0.3"], "--overlap needs --slice SIZE"),
    (["--slice-merge", "merge", "--no-slice-full"], "--no-slice-full, --slice-merge need --slice SIZE")])
def test_infer_bad_slice_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], options, message) -> None:
    with pytest.raises(SystemExit) as exit_info:
        infer_main([str(CONFIG), "none", "x.png", "--out", str(tmp_path / "out"), *options])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"detkit infer: error: {message}"
    assert not (tmp_path / "out").exists()


def test_toy_detector_untouched_by_slicing_when_the_image_is_one_tile() -> None:
    toy = ToyDetector()
    image = torch.rand(3, 30, 50)
    sliced = Predictor(toy, device="cpu", slice_size=64)([image])[0]
    plain = Predictor(toy, device="cpu")([image])[0]
    np.testing.assert_allclose(sliced.boxes, plain.boxes)
    assert toy.seen_sizes == [(30, 50), (30, 50)]  # one tile, the image, and no second full pass
