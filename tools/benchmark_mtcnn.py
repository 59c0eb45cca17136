"""detkit's MTCNN against facenet-pytorch's on the same images, side by side, on CPU.

    pip install --no-deps --target /tmp/facenet_pkg facenet-pytorch==2.6.0   # never with deps
    python tools/benchmark_mtcnn.py --facenet-path /tmp/facenet_pkg [--rounds 5] [--threads 2]

Both run facenet-pytorch 2.6.0's weights (detkit's converted from the same wheel) with its default
settings on the test images (tests/fixtures/images) resized to 540p, 720p and 1080p (16:9; the
resize stretches them). Every round runs both libraries on every image, alternating which goes
first, and the table gives the median over rounds of images per second and their ratio, so load
from other processes hits both alike. Each call takes one image as an RGB uint8 array, as a user
would (facenet-pytorch: ``MTCNN.detect(array)``; detkit: tensor conversion + ``model([image])``).
The same run checks the outputs agree: equal face counts and boxes within ``--box-tol`` pixels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detkit.models.convert.mtcnn_facenet import mtcnn_facenet  # noqa: E402

RESOLUTIONS = {"540p": (960, 540), "720p": (1280, 720), "1080p": (1920, 1080)}
DEFAULT_IMAGES = ("astronaut.png", "ivan.jpg", "no-faces.jpg", "person.jpg", "dog.jpg")


def _load_facenet(path: str):
    sys.path.insert(0, path)
    try:
        from facenet_pytorch.models.mtcnn import MTCNN as FacenetMTCNN
    except ImportError as error:
        raise SystemExit(f"cannot import facenet_pytorch from {path} ({error}); install it with "
                         "pip install --no-deps --target DIR facenet-pytorch==2.6.0") from error
    return FacenetMTCNN(keep_all=True, device="cpu")


def _facenet_boxes(facenet, image: np.ndarray) -> np.ndarray:
    boxes, _ = facenet.detect(image)
    return np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def _detkit_boxes(model, image: np.ndarray) -> np.ndarray:
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
    return model([tensor])[0][0]["boxes"].numpy()


def _agree(a: np.ndarray, b: np.ndarray, tol: float) -> tuple[bool, float]:
    """Same count, and each box within ``tol`` px of its nearest counterpart."""
    if len(a) != len(b):
        return False, float("inf")
    if len(a) == 0:
        return True, 0.0
    diff = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2).min(axis=1).max()
    return bool(diff <= tol), float(diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facenet-path", default="/tmp/facenet_pkg", help="folder facenet_pytorch was installed into")
    parser.add_argument("--images", nargs="*", default=[str(REPO / "tests/fixtures/images" / n) for n in DEFAULT_IMAGES])
    parser.add_argument("--resolutions", nargs="*", default=list(RESOLUTIONS), choices=list(RESOLUTIONS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--box-tol", type=float, default=1.0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    facenet = _load_facenet(args.facenet_path)
    model = mtcnn_facenet()
    originals = [cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in args.images]
    print(f"torch {torch.__version__}, {args.threads} threads, {len(originals)} images, {args.rounds} rounds, "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = []
    for resolution in args.resolutions:
        width, height = RESOLUTIONS[resolution]
        images = [np.ascontiguousarray(cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA)) for im in originals]
        agree, worst, faces = True, 0.0, 0
        for image in images:  # warm-up and output check
            ok, diff = _agree(_facenet_boxes(facenet, image), _detkit_boxes(model, image), args.box_tol)
            agree, worst = agree and ok, max(worst, diff)
            faces += len(_detkit_boxes(model, image))
        times: dict[str, list[float]] = {"facenet": [], "detkit": []}
        runners = {"facenet": lambda im: _facenet_boxes(facenet, im), "detkit": lambda im: _detkit_boxes(model, im)}
        for round_index in range(args.rounds):
            order = ["facenet", "detkit"] if round_index % 2 == 0 else ["detkit", "facenet"]
            for name in order:
                start = time.perf_counter()
                for image in images:
                    runners[name](image)
                times[name].append(time.perf_counter() - start)
        fps = {name: len(images) / statistics.median(t) for name, t in times.items()}
        rows.append((resolution, fps["facenet"], fps["detkit"], fps["detkit"] / fps["facenet"], faces, agree, worst))
        print(f"  {resolution}: facenet rounds {[round(t, 2) for t in times['facenet']]} s, "
              f"detkit rounds {[round(t, 2) for t in times['detkit']]} s", flush=True)

    print(f"load average at end {os.getloadavg()[0]:.1f}\n")
    print("| resolution | facenet-pytorch img/s | detkit img/s | ratio | faces | same outputs (max box diff px) |")
    print("|---|---|---|---|---|---|")
    for resolution, f_fps, d_fps, ratio, faces, agree, worst in rows:
        print(f"| {resolution} | {f_fps:.2f} | {d_fps:.2f} | {ratio:.2f}x | {faces} | {'yes' if agree else 'NO'} ({worst:.3f}) |")
    return 0 if all(row[5] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
