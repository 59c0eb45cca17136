"""Faster R-CNN and Mask R-CNN (detkit/models/detectors/two_stage.py) are torch.export-clean: the
eval forward exports with no data-dependent Python branch, and the exported program gives the
model's detections (an RoI level without RoIs, and no mask to paste, are no special cases)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detkit.config import instantiate, load_config

ROOT = Path(__file__).resolve().parents[3]


class _FirstImage(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detections = self.model([image])[0][0]
        return tuple(detections[key] for key in sorted(detections))


@pytest.mark.parametrize(
    "config", ["configs/faster_rcnn/faster_rcnn_r18_fpn_1x_shapes.py", "configs/mask_rcnn/mask_rcnn_r18_fpn_1x_shapes.py"]
)
def test_torch_export_of_the_eval_forward_gives_the_detections(config):
    torch.manual_seed(0)
    overrides = ["model.preprocess.min_size=96", "model.preprocess.max_size=128", "model.roi_heads.score_thresh=0.0"]
    model = _FirstImage(instantiate(load_config(ROOT / config, overrides).model).eval())
    image = torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(model, (image,))
    with torch.no_grad():
        expected = model(image)
        actual = program.module()(image)
    assert expected[0].shape[0] > 0
    for reference, value in zip(expected, actual):
        torch.testing.assert_close(value, reference, rtol=0, atol=0)
