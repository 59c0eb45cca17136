"""Helpers of the MTCNN tests: test data paths, images, facenet-pytorch's reference faces."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import torch

DATA_DIR = Path(__file__).resolve().parents[2] / "fixtures"
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


def write_wider_face(root: Path, num_images: int = 12, image_size: tuple[int, int] = (96, 128), seed: int = 0) -> Path:
    """A tiny dataset in WIDER FACE's layout whose "faces" are the circles of detkit's shapes images.

    Writes ``root/WIDER_train/images/0--Shapes/*.png`` and
    ``root/wider_face_split/wider_face_train_bbx_gt.txt`` (``x y w h`` and ten zero flags per face);
    the last image has no faces (count 0 and the all-zero line, as WIDER writes it). Returns ``root``.
    """
    import numpy as np

    from detkit.data.image_io import write_image_rgb
    from detkit.data.shapes import render_shapes_image

    rng = np.random.default_rng(seed)
    event = root / "WIDER_train" / "images" / "0--Shapes"
    event.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(num_images):
        name = f"0--Shapes/shapes_{index:03d}.png"
        if index == num_images - 1:
            image = rng.integers(0, 256, size=(*image_size, 3), dtype=np.uint8)
            boxes = []
        else:
            image, instances = render_shapes_image(rng, image_size, max_objects=3, size_range=(0.12, 0.3),
                                                   class_names=("circle",))
            boxes = [instance.box for instance in instances]
        write_image_rgb(root / "WIDER_train" / "images" / name, image)
        lines += [name, str(len(boxes))]
        lines += [f"{x1} {y1} {x2 - x1} {y2 - y1} 0 0 0 0 0 0 " for x1, y1, x2, y2 in boxes] or ["0 0 0 0 0 0 0 0 0 0 "]
    split = root / "wider_face_split"
    split.mkdir(parents=True, exist_ok=True)
    (split / "wider_face_train_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root
