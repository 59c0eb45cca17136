"""Predictor: inputs of every kind, coordinates, batching, filtering, checkpoints, COCO output."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from apis_toys import TOY_DETECTIONS, ToyDetector
from pycocotools import mask as mask_utils

import detkit.apis
from detkit.apis import (
    DISPLAY_SCORE_THRESH, CheckpointError, ImageReadError, Predictor, Result, UntrainedModelWarning,
)
from detkit.utils.checkpoint import load_weights

CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "configs" / "apis" / "toy_detector.py"


def expected_boxes(height: int, width: int) -> np.ndarray:
    """The toy's boxes on an image of this size, in its (score-sorted) order."""
    scale = np.array([width, height, width, height], np.float32)
    return np.array([box for box, _, _ in TOY_DETECTIONS], np.float32) * scale


def test_boxes_are_in_the_coordinates_of_each_image_of_a_mixed_size_batch(
        predictor: Predictor, toy: ToyDetector) -> None:
    sizes = [(40, 60), (100, 80), (30, 30)]
    images = [np.zeros((h, w, 3), np.uint8) for h, w in sizes]
    results = predictor(images, batch_size=2)
    assert toy.batch_sizes == [2, 1]
    assert toy.seen_sizes == sizes
    assert all(toy.calls_in_inference_mode)
    for (height, width), result, index in zip(sizes, results, range(3)):
        assert isinstance(result, Result)
        assert result.image_size == (height, width)
        assert result.source == f"array[{index}]"
        np.testing.assert_allclose(result.boxes, expected_boxes(height, width), rtol=1e-6)
        assert result.boxes.dtype == np.float32 and result.labels.dtype == np.int64
        assert result.class_names == ["cat", "dog", "person"]
        assert list(result.scores) == sorted(result.scores, reverse=True)


def test_numpy_arrays_are_bgr_unless_rgb_is_set(predictor: Predictor, toy: ToyDetector) -> None:
    blue_bgr = np.zeros((8, 8, 3), np.uint8)
    blue_bgr[..., 0] = 255  # OpenCV's blue
    predictor(blue_bgr)
    predictor(blue_bgr, rgb=True)  # the same array read as RGB is red
    np.testing.assert_allclose(toy.seen_mean_rgb, [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize("image, mean_rgb", [
    (torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1).expand(3, 5, 7), [0.2, 0.4, 0.6]),  # float RGB
    (torch.tensor([51, 102, 153], dtype=torch.uint8).view(3, 1, 1).expand(3, 5, 7),
     [0.2, 0.4, 0.6]),                                                               # uint8 RGB
    (np.full((5, 7), 51, np.uint8), [0.2, 0.2, 0.2]),                                # grayscale
    (np.full((5, 7, 1), 51, np.uint8), [0.2, 0.2, 0.2]),
    (np.full((5, 7, 4), (153, 102, 51, 7), np.uint8), [0.2, 0.4, 0.6]),              # BGRA
    (np.full((5, 7, 3), (0.6, 0.4, 0.2), np.float32), [0.2, 0.4, 0.6]),              # float BGR
    (torch.full((5, 7), 0.5), [0.5, 0.5, 0.5]),                                      # gray tensor
])
def test_tensors_grayscale_alpha_and_float_inputs(predictor: Predictor, toy: ToyDetector,
                                                  image: np.ndarray | torch.Tensor,
                                                  mean_rgb: list[float]) -> None:
    (result,) = predictor(image)
    assert result.image_size == (5, 7)
    np.testing.assert_allclose(toy.seen_mean_rgb[0], mean_rgb, atol=1e-6)


def test_files_and_mixed_lists(tmp_path: Path, predictor: Predictor, toy: ToyDetector) -> None:
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), np.full((20, 30, 3), (0, 0, 255), np.uint8))
    inputs = [str(path), path, np.zeros((10, 10, 3), np.uint8), torch.ones(3, 12, 14)]
    results = predictor(inputs, batch_size=3)
    assert [r.source for r in results] == [str(path), str(path), "array[2]", "tensor[3]"]
    assert [r.image_size for r in results] == [(20, 30), (20, 30), (10, 10), (12, 14)]
    np.testing.assert_allclose(toy.seen_mean_rgb[0], [1, 0, 0])
    assert toy.batch_sizes == [3, 1]


def test_a_4d_array_is_a_batch(predictor: Predictor) -> None:
    assert len(predictor(np.zeros((3, 8, 9, 3), np.uint8))) == 3
    assert len(predictor(torch.zeros(2, 3, 8, 9))) == 2


def test_missing_and_undecodable_files_raise_with_the_path(tmp_path: Path,
                                                           predictor: Predictor) -> None:
    with pytest.raises(ImageReadError, match="not found.*nope.jpg"):
        predictor(tmp_path / "nope.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="cannot decode.*broken.jpg"):
        predictor(str(broken))
    with pytest.raises(ValueError, match="shape"):
        predictor(np.zeros((4, 4, 2), np.uint8))


def test_score_thresh_classes_and_detections_per_img(toy: ToyDetector) -> None:
    image = np.zeros((10, 10, 3), np.uint8)

    def labels(**options: object) -> list[int]:
        return Predictor(toy, device="cpu", **options)(image)[0].labels.tolist()

    assert labels() == [0, 1, 2]
    assert labels(score_thresh=0.5) == [0, 1]
    assert labels(classes=["person", "dog"]) == [1, 2]
    assert labels(classes="cat,person") == [0, 2]
    assert labels(classes=[2]) == [2]
    assert labels(classes="1") == [1]
    assert labels(detections_per_img=2) == [0, 1]
    assert labels(classes=["dog", "person"], detections_per_img=1) == [1]
    assert labels(score_thresh=0.95) == []
    with pytest.raises(ValueError, match="unknown class 'horse'.*cat, dog, person"):
        Predictor(toy, classes=["horse"])
    with pytest.raises(ValueError, match="out of range"):
        Predictor(toy, classes=[7])


def test_masks_are_bool_and_landmarks_follow_the_boxes(predictor: Predictor) -> None:
    (result,) = predictor(np.zeros((50, 40, 3), np.uint8), batch_size=1)
    assert result.masks.dtype == bool and result.masks.shape == (3, 50, 40)
    x1, y1, x2, y2 = result.boxes[0].round().astype(int)
    assert result.masks[0, y1:y2, x1:x2].all() and result.masks[0].sum() == (x2 - x1) * (y2 - y1)
    assert result.landmarks.shape == (3, 5, 2)
    inside = ((result.landmarks >= result.boxes[:, None, :2])
              & (result.landmarks <= result.boxes[:, None, 2:]))
    assert inside.all()
    plain = Predictor(ToyDetector(), device="cpu")(np.zeros((5, 5, 3), np.uint8))[0]
    assert plain.masks is None and plain.landmarks is None


def test_filtering_keeps_masks_landmarks_and_names_aligned(toy: ToyDetector) -> None:
    (result,) = Predictor(toy, device="cpu", classes=["person"])(np.zeros((50, 40, 3), np.uint8))
    assert result.class_names == ["person"] and len(result.masks) == len(result.landmarks) == 1
    np.testing.assert_allclose(result.boxes, expected_boxes(50, 40)[2:])


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.*")
def test_to_coco_gives_xywh_boxes_mapped_ids_and_rle_masks(predictor: Predictor) -> None:
    (result,) = predictor(np.zeros((50, 40, 3), np.uint8))
    entries = result.to_coco(image_id=7, label_to_category_id={0: 1, 1: 3, 2: 18})
    assert [e["category_id"] for e in entries] == [1, 3, 18]
    first = entries[0]
    assert first["image_id"] == 7 and first["score"] == pytest.approx(0.9)
    x1, y1, x2, y2 = result.boxes[0]
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
    decoded = mask_utils.decode({**first["segmentation"],
                                 "counts": first["segmentation"]["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), result.masks[0])
    assert len(first["landmarks"]) == 5
    assert [e["category_id"] for e in result.to_coco(1)] == [0, 1, 2]
    with pytest.raises(KeyError, match="label 2 \\(person\\)"):
        result.to_coco(1, label_to_category_id={0: 1, 1: 2})


def test_from_config_with_overrides_and_a_checkpoint(tmp_path: Path) -> None:
    source = ToyDetector(with_masks=True, with_landmarks=True)
    with torch.no_grad():
        source.stem.weight.fill_(0.25)
    checkpoint = tmp_path / "toy.pth"
    torch.save({"model": source.state_dict(), "iteration": 3}, checkpoint)
    predictor = Predictor.from_config(CONFIG, checkpoint, device="cpu", score_thresh=0.5,
                                      overrides=["model.with_masks=False"])
    assert torch.all(predictor.model.stem.weight == 0.25)
    assert not predictor.model.training
    (result,) = predictor(np.zeros((10, 10, 3), np.uint8))
    assert result.masks is None and result.landmarks is not None and len(result) == 2


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path: Path) -> None:
    state = ToyDetector(width=8, depth=1).state_dict()  # stem 8 channels; one extra conv
    state.update({f"extra.layer{i}.weight": torch.zeros(1) for i in range(12)})
    del state["stem.bias"]
    checkpoint = tmp_path / "other.pth"
    torch.save({"model": state}, checkpoint)
    with pytest.raises(CheckpointError) as caught:
        Predictor.from_config(CONFIG, checkpoint, device="cpu")
    message = str(caught.value)
    assert "1 missing key: stem.bias" in message
    assert "14 unexpected keys: body.0.weight, body.0.bias, extra.layer0.weight" in message
    assert "... and 6 more" in message
    assert "1 shape-mismatched key: stem.weight (checkpoint [8, 3, 3, 3], model [4, 3, 3, 3])" \
        in message


def test_checkpoint_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    model = ToyDetector()
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_weights(model, tmp_path / "missing.pth", strict=True)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_weights(model, tmp_path / "junk.pth", strict=True)
    torch.save({"optimizer": {}, "iteration": 1}, tmp_path / "no_model.pth")
    with pytest.raises(CheckpointError, match="no 'model' state dict.*optimizer, iteration"):
        load_weights(model, tmp_path / "no_model.pth", strict=True)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pth")
    load_weights(model, tmp_path / "ddp.pth", strict=True, drop_ddp_prefix=True)  # a bare DDP state dict


def test_load_model_weights_is_a_deprecated_strict_load(tmp_path: Path) -> None:
    model = ToyDetector()
    torch.save({"model": ToyDetector(width=8).state_dict()}, tmp_path / "other.pth")
    with pytest.warns(DeprecationWarning, match="load_weights"):
        load_model_weights = detkit.apis.load_model_weights
    with pytest.raises(CheckpointError, match="shape-mismatched"):
        load_model_weights(model, tmp_path / "other.pth")


def test_old_threshold_names_still_work_with_a_warning(toy: ToyDetector) -> None:
    with pytest.warns(DeprecationWarning, match="score_threshold= is deprecated, use score_thresh="):
        predictor = Predictor(toy, device="cpu", score_threshold=0.5)
    with pytest.warns(DeprecationWarning, match="max_detections= is deprecated, use detections_per_img="):
        capped = Predictor(toy, device="cpu", max_detections=1)
    assert predictor.score_thresh == 0.5 and capped.detections_per_img == 1


class _NaNOnBrightImages(torch.nn.Module):
    """The toy detector, except that its ``key`` is NaN (or inf) on images brighter than 0.5."""

    def __init__(self, key: str, value: float) -> None:
        super().__init__()
        self.toy, self.key, self.value = ToyDetector(), key, value
        self.class_names = self.toy.class_names

    def forward(self, images: list[torch.Tensor]) -> tuple[list[dict[str, torch.Tensor]], dict]:
        predictions, losses = self.toy(images)
        for image, prediction in zip(images, predictions):
            if image.mean() > 0.5:
                prediction[self.key] = prediction[self.key].clone()
                prediction[self.key].view(-1)[-1] = self.value
        return predictions, losses


@pytest.mark.parametrize(("key", "value"), [("scores", float("nan")), ("boxes", float("inf"))])
def test_non_finite_model_output_is_an_error_naming_the_input(tmp_path: Path, key: str, value: float) -> None:
    # Used to come back silently (a NaN score even passes no threshold, so it just vanished).
    bright = tmp_path / "bright.png"
    cv2.imwrite(str(bright), np.full((20, 30, 3), 250, np.uint8))
    predictor = Predictor(_NaNOnBrightImages(key, value), device="cpu", score_thresh=0.1)
    assert len(predictor([np.zeros((10, 10, 3), np.uint8)])[0].boxes) == 3  # finite: fine
    what = "score" if key == "scores" else "box"
    with pytest.raises(ValueError, match=rf"^{bright}: the model returned a non-finite {what}") as raised:
        predictor([np.zeros((10, 10, 3), np.uint8), bright])
    assert "\n" not in str(raised.value)


def test_predict_each_gives_each_input_its_own_outcome(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # One bad input used to raise for the whole call (and `detkit infer` failed the whole batch).
    bright = tmp_path / "bright.png"
    cv2.imwrite(str(bright), np.full((20, 30, 3), 250, np.uint8))
    predictor = Predictor(_NaNOnBrightImages("scores", float("nan")), device="cpu")
    dark = np.zeros((10, 10, 3), np.uint8)
    outcomes = predictor.predict_each([dark, bright, tmp_path / "missing.jpg", np.zeros((4, 4, 2), np.uint8),
                                       dark], batch_size=4)
    assert [type(o).__name__ for o in outcomes] == ["Result", "ValueError", "ImageReadError", "ValueError",
                                                    "Result"]
    assert str(outcomes[1]).startswith(f"{bright}: the model returned a non-finite score")
    assert "missing.jpg" in str(outcomes[2]) and str(outcomes[3]).startswith("array[3]: ")
    assert [r.source for r in (outcomes[0], outcomes[4])] == ["array[0]", "array[4]"]
    assert len(outcomes[0]) == 3

    toy = ToyDetector(max_pixels=150)  # a model that runs out of memory on bigger images
    sources = ["small", "big", "small too"]
    images = [np.zeros((10, 10, 3), np.uint8), np.zeros((20, 20, 3), np.uint8), np.zeros((12, 12, 3), np.uint8)]
    with caplog.at_level("WARNING", logger="detkit.apis.predictor"):
        outcomes = Predictor(toy, device="cpu").predict_each(images, batch_size=3, sources=sources)
    assert toy.batch_sizes == [3, 1, 1, 1]  # the failed batch re-run one image at a time
    assert isinstance(outcomes[1], RuntimeError)
    assert str(outcomes[1]) == "big: the model failed on this image: toy out of memory on a (3, 20, 20) image"
    assert [o.source for o in (outcomes[0], outcomes[2])] == ["small", "small too"]
    assert "running them one at a time" in caplog.text


def test_from_config_warns_when_no_weights_are_loaded(tmp_path: Path) -> None:
    with pytest.warns(UntrainedModelWarning, match=r"no checkpoint given.*untrained weights") as caught:
        predictor = Predictor.from_config(CONFIG, None, device="cpu")
    assert str(CONFIG) in str(caught[0].message) and "\n" not in str(caught[0].message)
    assert predictor.weights is None
    assert predictor.score_thresh is None  # the library keeps all the model gives (evaluation)
    assert DISPLAY_SCORE_THRESH == 0.3

    checkpoint = tmp_path / "toy.pth"
    torch.save({"model": ToyDetector(with_masks=True, with_landmarks=True).state_dict()}, checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedModelWarning)
        trained = Predictor.from_config(CONFIG, checkpoint, device="cpu")
        pretrained_config = tmp_path / "pretrained.py"
        pretrained_config.write_text(f"{CONFIG.read_text()}\npretrained = True\n")
        pretrained = Predictor.from_config(pretrained_config, device="cpu")
    assert trained.weights == f"checkpoint {checkpoint}"
    assert pretrained.weights.startswith("pretrained")
    assert Predictor(ToyDetector(), device="cpu").weights is None  # a ready model: not known
