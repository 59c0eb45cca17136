"""Helpers of the MTCNN tests: test data paths, images, facenet-pytorch's reference faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import torch

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
IMAGES_DIR = DATA_DIR / "images"
REFERENCE_JSON = DATA_DIR / "mtcnn" / "facenet_pytorch_reference.json"
FACE_IMAGES = ("astronaut.png", "ivan.jpg", "no-faces.jpg")


def read_rgb(name: str) -> torch.Tensor:
    """``[3, H, W]`` float RGB in [0, 1] of a test image (as PIL's RGB uint8, divided by 255)."""
    image = cv2.imread(str(IMAGES_DIR / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(IMAGES_DIR / name)
    return torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255


def reference() -> dict:
    return json.loads(REFERENCE_JSON.read_text())


def reference_targets(names=FACE_IMAGES) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The test images with facenet-pytorch's faces as annotations (boxes and landmarks)."""
    ref = reference()
    images, targets = [], []
    for name in names:
        faces = ref[name]["faces"]
        images.append(read_rgb(name))
        targets.append({
            "boxes": torch.tensor([f["box_xyxy"] for f in faces], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.zeros(len(faces), dtype=torch.int64),
            "landmarks": torch.tensor([f["landmarks"] for f in faces], dtype=torch.float32).reshape(-1, 5, 2),
        })
    return images, targets
