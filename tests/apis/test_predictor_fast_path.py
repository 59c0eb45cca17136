"""The Predictor, ``detkit infer`` and the evaluation loop run the fast path by default.

The fast path (:func:`detkit.models.fuse.inference_copy`): batch norms folded into their convs,
channels-last weights on the CPU. A model handed to a Predictor (or to ``evaluate``) is left as a
trainer holds it; a model built by ``Predictor.from_config`` is folded in place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import pytest
import torch
from torch import nn

from detkit.apis import Predictor, UntrainedModelWarning
from detkit.config import instantiate, load_config
from detkit.evaluation import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_fuse import assert_same_detections, norms, perturb_norms

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "yolo" / "yolov3_tiny_320_shapes.py"
PHOTO = REPO / "detkit" / "model_data" / "samples" / "dog.jpg"
OVERRIDES = ["model.head.score_thresh=0.01"]


def yolo() -> nn.Module:
    torch.manual_seed(0)
    cfg = load_config(CONFIG, list(load_config(CONFIG).get("test_overrides", [])) + OVERRIDES)
    return perturb_norms(instantiate(cfg.model))


def as_prediction(result) -> dict[str, torch.Tensor]:
    return {"boxes": torch.as_tensor(result.boxes), "scores": torch.as_tensor(result.scores),
            "labels": torch.as_tensor(result.labels)}


def test_a_predictor_folds_a_copy_and_leaves_the_trainers_model_as_it_was():
    model = yolo().train()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    count = norms(model)
    fast = Predictor(model, device="cpu")
    assert model.training and norms(model) == count > 0
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert norms(fast.model) == 0 and not fast.model.training
    (quick,) = fast(str(PHOTO))
    assert model.training  # running it does not touch the model either
    (plain,) = Predictor(model, device="cpu", fuse=False)(str(PHOTO))
    assert len(plain) > 0
    assert_same_detections(as_prediction(quick), as_prediction(plain), 1e-4, 0.01)


def test_from_config_folds_its_own_model_in_place_and_fuse_false_opts_out():
    overrides = list(load_config(CONFIG).get("test_overrides", []))
    with pytest.warns(UntrainedModelWarning):
        fast = Predictor.from_config(CONFIG, device="cpu", overrides=overrides)
    with pytest.warns(UntrainedModelWarning):
        plain = Predictor.from_config(CONFIG, device="cpu", overrides=overrides, fuse=False)
    assert norms(fast.model) == 0 and norms(plain.model) > 0
    assert fast.fuse and not plain.fuse
    assert any(m.weight.is_contiguous(memory_format=torch.channels_last) and m.weight.shape[-1] == 3
               for m in fast.model.modules() if isinstance(m, nn.Conv2d))
    assert not any(m.weight.is_contiguous(memory_format=torch.channels_last) and m.weight.shape[-1] == 3
                   for m in plain.model.modules() if isinstance(m, nn.Conv2d))


def test_detkit_infer_has_the_no_fuse_opt_out():
    from detkit.cli.infer import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["cfg.py", "none", "x.jpg", "--out", "o"]
    assert parser.parse_args(base).fuse is True
    assert parser.parse_args([*base, "--no-fuse"]).fuse is False


class Recorder:
    """An evaluator that keeps the predictions it is given."""

    def __init__(self) -> None:
        self.predictions: list[dict[str, torch.Tensor]] = []

    def reset(self) -> None:
        self.predictions = []

    def process(self, targets, predictions) -> None:
        self.predictions += list(predictions)

    def evaluate(self) -> dict[str, float]:
        return {"count": float(sum(len(p["boxes"]) for p in self.predictions))}


def test_evaluate_runs_a_folded_copy_and_leaves_the_model_training():
    model = yolo().train()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    image = cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)
    images = [torch.from_numpy(image).permute(2, 0, 1).float().div(255)]
    loader = [(images, [{"image_id": 1}])]
    fast, plain = Recorder(), Recorder()
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(norms(module)))
    metrics = evaluate(model, loader, fast, progress=False)
    assert seen == [0], "the folded copy runs (with the model's hooks), not the model itself"
    handle.remove()
    assert model.training and norms(model) > 0
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    assert evaluate(model, loader, plain, progress=False, fuse=False) == metrics and metrics["count"] > 0
    assert_same_detections(fast.predictions[0], plain.predictions[0], 1e-4, 0.01)


def test_yolo_gets_the_uint8_photo_and_detects_as_from_the_float_photo():
    model = yolo().eval()
    predictor = Predictor(model, device="cpu")
    seen: list[torch.dtype] = []
    predictor.model.register_forward_pre_hook(lambda module, args: seen.append(args[0][0].dtype))
    bgr = cv2.imread(str(PHOTO))
    (from_uint8,) = predictor(bgr)
    rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255)
    (from_float,) = predictor(rgb)
    assert seen == [torch.uint8, torch.float32], "uint8 photos go to YOLOv3 as they are"
    assert len(from_uint8.labels) > 0
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(torch.as_tensor(getattr(from_uint8, key)), torch.as_tensor(getattr(from_float, key))), key
