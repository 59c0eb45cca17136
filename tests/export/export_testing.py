"""Helpers of the export tests: the sample photos, an image with no objects, the checks of a file
and the comparison of eager and exported detections (a unique basename: importable anywhere)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "detkit" / "model_data" / "samples"
SAMPLE_PHOTOS = sorted(SAMPLES_DIR.glob("*.jpg"))

BOX_ATOL = 0.01  # pixels
SCORE_ATOL = 1e-4


def load_rgb(path: Path) -> Tensor:
    """A photo as ``[3, H, W]`` float RGB in [0, 1]."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def blank_image(height: int = 360, width: int = 480) -> Tensor:
    """A mid-grey image with faint seeded noise: nothing to detect. (A perfectly flat image gives
    a random-weight model many exactly tied scores, whose order no exporter can promise.)"""
    noise = torch.randn((3, height, width), generator=torch.Generator().manual_seed(0)) * 0.03
    return (0.5 + noise).clamp(0, 1)


def photos() -> list[Tensor]:
    """The sample photos (detkit/model_data/samples/*.jpg) and the blank image."""
    return [load_rgb(path) for path in SAMPLE_PHOTOS] + [blank_image()]


def assert_standard_onnx(path: Path) -> None:
    """``onnx.checker`` passes and every node (functions too) is in the default ONNX domain."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    assert {n.domain for n in nodes} <= {"", "ai.onnx"}, sorted({f"{n.domain}::{n.op_type}" for n in nodes})
    assert not any(n.op_type.startswith("detkit") for n in nodes)


def assert_same_detections(expected: Sequence[dict[str, Tensor]], actual: Sequence[dict[str, Tensor]]) -> None:
    """Same labels in the same order, scores within 1e-4, boxes within 0.01 px, per image."""
    assert len(expected) == len(actual)
    for index, (reference, detection) in enumerate(zip(expected, actual)):
        labels = torch.as_tensor(detection["labels"]).to(torch.int64)
        assert labels.tolist() == reference["labels"].tolist(), f"image {index}"
        torch.testing.assert_close(torch.as_tensor(detection["scores"]).float(), reference["scores"].float(),
                                   rtol=0, atol=SCORE_ATOL)
        torch.testing.assert_close(torch.as_tensor(detection["boxes"]).float(), reference["boxes"].float(),
                                   rtol=0, atol=BOX_ATOL)


def unpad(outputs: Sequence[Tensor | np.ndarray]) -> list[dict[str, Tensor]]:
    """Padded graph outputs ``(boxes, scores, labels, num_detections)`` -> per image dicts."""
    boxes, scores, labels, counts = (torch.as_tensor(np.asarray(o)) for o in outputs)
    return [{"boxes": boxes[i, :n], "scores": scores[i, :n], "labels": labels[i, :n]}
            for i, n in enumerate(counts.tolist())]
