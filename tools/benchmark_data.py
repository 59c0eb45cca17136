"""Data at scale: annotation loading, DataLoader workers' memory, training-pipeline throughput.

    python tools/benchmark_data.py                      # COCO-train size: 118,000 images, 883,000 polygons
    python tools/benchmark_data.py --images 5000 --workers 2 --pipeline-images 200   # a quick check

Synthetic data is generated once into ``--cache`` (default ``~/.cache/detkit/benchmark_data``, never
the repository): a COCO instances json of ``--images`` images with 7.48 polygon annotations each on
average (about 300 MB at full size), a VOC-sized folder of xml files (16,551 images), and
``--pipeline-images`` real JPEG files
(640x480) with their own json for the throughput part. Each measurement runs in its own
subprocess, so that one library's heap does not pollute the next one's numbers:

1. **load**: ``detkit.data.CocoDetection(with_masks=True, check_files=False)`` against pycocotools'
   ``COCO()``: seconds, the resident memory the load adds (VmRSS after - before) and the peak
   (VmHWM - the RSS before); CPU seconds too (wall time on a shared machine is noisy); and
   ``detkit.data.VOCDetection`` on a VOC-sized folder of xml files (``--voc-images``);
2. **workers**: an epoch over every record (boxes, labels, crowd flags, areas, polygons) with
   ``--workers`` DataLoader workers; each worker reads its own unique memory (USS: Private_Clean +
   Private_Dirty of ``/proc/self/smaps_rollup``) at its first and its last batch. ``--list-records``
   also runs it with the records turned back into one Python object per image (the old layout),
   to show the copy-on-read growth the flat buffers avoid;
3. **pipeline**: images/s of an epoch of real JPEG decoding and augmentation with ``--workers``
   workers: detkit's R-CNN (``rcnn_train_transforms``) and YOLO (``yolo_train_transforms(416)``)
   pipelines against torchvision's reference-style pipeline (``torchvision.datasets.CocoDetection``
   wrapped for ``transforms.v2``: the detection references' ``hflip`` policy for R-CNN; for YOLO
   the same operations in ``transforms.v2`` (resize the longer side to 416 and pad to 416 x 416,
   colour jitter, flip), and also the references' heavier ``ssd`` policy resized to 416) on the
   same files.

Run it on a quiet machine (``nice -n 10 OMP_WAIT_POLICY=PASSIVE`` when sharing one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ANNOTATIONS_PER_IMAGE = 883_000 / 118_000
CATEGORIES = 80


# ------------------------------------------------------------------------------------------------
# synthetic data


def _dumps(value: Any) -> bytes:
    try:
        import orjson

        return orjson.dumps(value)
    except ImportError:
        return json.dumps(value, separators=(",", ":")).encode()


def _annotations(rng: np.random.Generator, image_id: int, first_id: int, count: int, height: int, width: int,
                 category_ids: list[int], crowd_fraction: float = 0.01) -> list[dict]:
    """``count`` polygon annotations (11-16 vertices, 2 decimals, like COCO's) inside the image."""
    out = []
    for k in range(count):
        w = float(rng.uniform(8, width / 2))
        h = float(rng.uniform(8, height / 2))
        x = float(rng.uniform(0, width - w))
        y = float(rng.uniform(0, height - h))
        vertices = int(rng.integers(11, 17))
        angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
        radius = rng.uniform(0.6, 1.0, vertices)
        xs = np.round(x + w / 2 + np.cos(angles) * radius * w / 2, 2)
        ys = np.round(y + h / 2 + np.sin(angles) * radius * h / 2, 2)
        crowd = bool(rng.random() < crowd_fraction)
        if crowd:  # an uncompressed RLE, as COCO stores crowd regions
            runs = rng.integers(1, 40, 24)
            runs = np.append(runs, max(height * width - int(runs.sum()), 0))
            segmentation: Any = {"size": [height, width], "counts": runs.tolist()}
        else:
            segmentation = [np.stack([xs, ys], axis=1).reshape(-1).tolist()]
        bx, by = float(xs.min()), float(ys.min())
        out.append({"segmentation": segmentation, "area": round(float(w * h * 0.6), 4), "iscrowd": int(crowd),
                    "image_id": image_id, "bbox": [round(bx, 2), round(by, 2), round(float(xs.max()) - bx, 2),
                                                   round(float(ys.max()) - by, 2)],
                    "category_id": category_ids[int(rng.integers(len(category_ids)))], "id": first_id + k})
    return out


def generate_coco_json(path: Path, images: int, seed: int = 0, sizes: tuple[int, int] | None = None) -> Path:
    """Write a synthetic COCO instances json of ``images`` images (``sizes``: all ``(H, W)``;
    default COCO-like random sizes), streamed in chunks so that generating does not need the
    whole document in memory."""
    rng = np.random.default_rng(seed)
    category_ids = [i + 1 + i // 8 for i in range(CATEGORIES)]  # sparse ids, like COCO's 1..90
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    dims = []
    with tmp.open("wb") as file:
        file.write(b'{"info":{"description":"detkit synthetic COCO"},"licenses":[],"images":[')
        for i in range(images):
            height, width = sizes or (int(rng.choice([480, 427, 640, 375, 500])), int(rng.choice([640, 500, 480])))
            dims.append((height, width))
            record = {"license": 1, "file_name": f"{i + 1:012d}.jpg", "height": height, "width": width, "id": i + 1}
            file.write((b"," if i else b"") + _dumps(record))
        file.write(b'],"annotations":[')
        next_id, first = 1, True
        for i, (height, width) in enumerate(dims):
            count = int(rng.poisson(ANNOTATIONS_PER_IMAGE))
            chunk = _annotations(rng, i + 1, next_id, count, height, width, category_ids)
            next_id += count
            if chunk:
                file.write((b"" if first else b",") + _dumps(chunk)[1:-1])
                first = False
        categories = [{"supercategory": "thing", "id": c, "name": f"class_{c}"} for c in category_ids]
        file.write(b'],"categories":' + _dumps(categories) + b"}")
    tmp.replace(path)
    return path


_VOC_OBJECT = ("<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
               "<difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
               "<ymax>{y2}</ymax></bndbox></object>")


def generate_voc_folder(root: Path, images: int, seed: int = 2) -> Path:
    """A VOC-sized devkit folder (VOC07+12 trainval: 16,551 images, 2.4 objects each): xml files
    and ``ImageSets/Main/trainval.txt`` (no pixels: the load is measured with ``check_files=False``)."""
    from detkit.data.voc import VOC_CLASSES

    set_file = root / "ImageSets" / "Main" / "trainval.txt"
    if set_file.is_file():
        return root
    rng = np.random.default_rng(seed)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    set_file.parent.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(images):
        image_id = f"{i:06d}"
        objects = []
        for _ in range(max(1, int(rng.poisson(2.4)))):
            x1, y1 = int(rng.integers(1, 400)), int(rng.integers(1, 300))
            objects.append(_VOC_OBJECT.format(name=VOC_CLASSES[int(rng.integers(20))], difficult=int(rng.random() < 0.1),
                                              x1=x1, y1=y1, x2=x1 + int(rng.integers(8, 100)), y2=y1 + int(rng.integers(8, 75))))
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><folder>VOC</folder><filename>{image_id}.jpg</filename><size><width>500</width>"
            f"<height>375</height><depth>3</depth></size><segmented>0</segmented>{''.join(objects)}</annotation>")
        ids.append(image_id)
    set_file.write_text("\n".join(ids) + "\n")
    return root


def generate_jpeg_folder(folder: Path, images: int, seed: int = 1) -> tuple[Path, Path]:
    """``images`` 640x480 JPEGs (smooth noise and shapes) and a COCO json for them."""
    import cv2

    json_path = folder / "annotations.json"
    image_dir = folder / "images"
    if json_path.is_file() and len(list(image_dir.glob("*.jpg"))) == images:
        return image_dir, json_path
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(images):
        small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        image = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)
        for _ in range(6):
            centre = (int(rng.integers(0, 640)), int(rng.integers(0, 480)))
            cv2.circle(image, centre, int(rng.integers(10, 120)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.imwrite(str(image_dir / f"{i + 1:012d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    generate_coco_json(json_path, images, seed=seed, sizes=(480, 640))
    return image_dir, json_path


# ------------------------------------------------------------------------------------------------
# measurements, each in its own process


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def unique_memory_kib(pid: int | str = "self") -> int:
    """USS of a process: Private_Clean + Private_Dirty from ``/proc/<pid>/smaps_rollup`` (KiB)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def measure_load(library: str, json_path: Path) -> dict[str, Any]:
    import torch  # noqa: F401  (imported before the baseline in both cases: detkit needs it)

    if library == "detkit":
        from detkit.data import CocoDetection
    elif library == "detkit-voc":
        from detkit.data import VOCDetection
    else:
        from pycocotools.coco import COCO
    before = _status_kib("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    if library == "detkit":
        dataset = CocoDetection("", json_path, with_masks=True, check_files=False)
        count = len(dataset)
    elif library == "detkit-voc":
        dataset = VOCDetection(json_path, "trainval", check_files=False)
        count = len(dataset)
    else:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(json_path))
        count = len(coco.imgs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = {"library": library, "images": count, "seconds": seconds, "cpu_seconds": cpu,
           "children_cpu_seconds": children.ru_utime + children.ru_stime,
           "child_peak_mib": children.ru_maxrss / 1024,  # the largest child's peak RSS (detkit's parse children)
           "rss_added_mib": (_status_kib("VmRSS") - before) / 1024, "peak_added_mib": (_status_kib("VmHWM") - before) / 1024}
    if library.startswith("detkit"):
        # Buffers mapped from the parse children become resident as they are read: read every
        # byte once, so that the resident figure holds the whole store, not only what was touched.
        store = dataset.records
        row["store_mib"] = store.nbytes / 2**20
        _touch(store)
        row["rss_touched_mib"] = (_status_kib("VmRSS") - before) / 1024
        row["peak_added_mib"] = (_status_kib("VmHWM") - before) / 1024
    return row


def _touch(store: Any) -> int:
    """Read one byte of every page of every buffer of a RecordStore."""
    arrays = [store.sizes, store.box_offsets, store.boxes, store.labels, *store.box_fields.values(),
              store.paths._buffer, store.paths._offsets, store.wheres._buffer, store.wheres._offsets]
    if isinstance(store.image_id_column, np.ndarray):
        arrays.append(store.image_id_column)
    if store.segmentations is not None:
        segmentations = store.segmentations
        arrays += [segmentations.kinds, segmentations.starts, segmentations.stops, *segmentations.buffers]
    total = 0
    for array in arrays:
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        total += int(flat[::4096].sum())
    return total


class _RecordPass:
    """Every record's target (boxes, labels, crowd flags, areas) and its polygons: an epoch over
    the annotations, as a training pipeline reads them, without decoding pixels."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.records)

    def __getitem__(self, index: int) -> int:
        record = self.dataset.records[index]
        target = self.dataset._make_target(record, record.size)
        coordinates = sum(len(p) for s in record.segmentations or () if isinstance(s, list) for p in s)
        return int(target["boxes"].shape[0]) + coordinates


def _uss_collate(batch: list[int]) -> tuple[int, int, int]:
    return os.getpid(), unique_memory_kib(), sum(batch)


def measure_workers(json_path: Path, workers: int, list_records: bool, voc: bool = False) -> dict[str, Any]:
    import torch

    from detkit.data import CocoDetection, VOCDetection

    if voc:
        dataset: Any = VOCDetection(json_path, "trainval", check_files=False)
    else:
        dataset = CocoDetection("", json_path, with_masks=True, check_files=False)
        dataset.with_masks = False  # the pass reads the polygons itself; no rasterising
    if list_records:
        dataset.records = [dataset.records[i] for i in range(len(dataset.records))]  # one object per image (old)
    loader = torch.utils.data.DataLoader(_RecordPass(dataset), batch_size=64, num_workers=workers,
                                         collate_fn=_uss_collate, multiprocessing_context="fork")
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    start = time.perf_counter()
    for pid, uss, _ in loader:
        first.setdefault(pid, uss)
        last[pid] = uss
    seconds = time.perf_counter() - start
    growth = {pid: (last[pid] - first[pid]) / 1024 for pid in first}
    return {"records": "list" if list_records else "RecordStore", "workers": workers, "seconds": seconds,
            "uss_start_mib": [first[p] / 1024 for p in first], "uss_end_mib": [last[p] / 1024 for p in first],
            "growth_mib": list(growth.values())}


def _torchvision_pipeline(image_dir: Path, json_path: Path, policy: str) -> Any:
    import torch
    import torchvision
    from torchvision.transforms import v2 as T

    if policy == "rcnn":  # the detection references' "hflip" policy
        transforms = T.Compose([T.RandomHorizontalFlip(0.5), T.ToImage(), T.ToDtype(torch.float, scale=True),
                                T.SanitizeBoundingBoxes()])
    elif policy == "yolo":  # detkit's YOLO operations in transforms.v2: letterbox to 416, colour jitter, flip
        transforms = T.Compose([T.Resize(size=None, max_size=416, antialias=True), T.CenterCrop(416),
                                T.ColorJitter(brightness=0.4, saturation=0.7, hue=0.015), T.RandomHorizontalFlip(0.5),
                                T.ToImage(), T.ToDtype(torch.float, scale=True), T.SanitizeBoundingBoxes()])
    else:  # "ssd": their ssd policy, resized to 416 (a heavier reference for the YOLO pipeline)
        transforms = T.Compose([T.RandomPhotometricDistort(), T.RandomZoomOut(fill=[123, 117, 104]),
                                T.RandomIoUCrop(), T.RandomHorizontalFlip(0.5), T.Resize((416, 416), antialias=True),
                                T.ToImage(), T.ToDtype(torch.float, scale=True), T.SanitizeBoundingBoxes()])
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        dataset = torchvision.datasets.CocoDetection(str(image_dir), str(json_path), transforms=transforms)
    return torchvision.datasets.wrap_dataset_for_transforms_v2(dataset, target_keys=("boxes", "labels", "image_id"))


def _collate(batch: list) -> list:
    return batch


def measure_pipeline(image_dir: Path, json_path: Path, library: str, policy: str, workers: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    if library == "detkit":
        from detkit.data import CocoDetection
        from detkit.data.transforms import rcnn_train_transforms, yolo_train_transforms

        transforms = rcnn_train_transforms() if policy == "rcnn" else yolo_train_transforms(416)  # yolo, ssd
        dataset: Any = CocoDetection(image_dir, json_path, transforms=transforms)
    else:
        dataset = _torchvision_pipeline(image_dir, json_path, policy)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers,
                                         collate_fn=_collate, persistent_workers=False,
                                         generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    count = sum(len(batch) for batch in loader)
    seconds = time.perf_counter() - start
    return {"library": library, "policy": policy, "workers": workers, "images": count, "seconds": seconds,
            "images_per_s": count / seconds}


def _in_subprocess(*args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                    os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _child(args: list[str]) -> None:
    kind, rest = args[0], args[1:]
    if kind == "load":
        result = measure_load(rest[0], Path(rest[1]))
    elif kind == "workers":
        result = measure_workers(Path(rest[0]), int(rest[1]), rest[2] == "list", voc=rest[2] == "store-voc")
    else:
        result = measure_pipeline(Path(rest[0]), Path(rest[1]), rest[2], rest[3], int(rest[4]))
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=118_000, help="images of the annotation json (default 118000)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--pipeline-images", type=int, default=500, help="JPEG files of the throughput part")
    parser.add_argument("--voc-images", type=int, default=16_551, help="xml files of the VOC-sized folder")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "detkit" / "benchmark_data")
    parser.add_argument("--skip", nargs="*", default=[], choices=["load", "voc", "workers", "pipeline"])
    parser.add_argument("--list-records", action="store_true", help="also run the workers part on Python records")
    args = parser.parse_args(argv)

    json_path = args.cache / f"coco_synthetic_{args.images}.json"
    if not json_path.is_file():
        start = time.perf_counter()
        generate_coco_json(json_path, args.images)
        print(f"generated {json_path} in {time.perf_counter() - start:.0f} s")
    print(f"{json_path}: {json_path.stat().st_size / 2**20:.0f} MB")
    if "load" not in args.skip:
        ours, theirs = _in_subprocess("load", "detkit", str(json_path)), _in_subprocess("load", "pycocotools", str(json_path))
        for row in (ours, theirs):
            print(f"load {row['library']:12s} {row['images']} images: {row['seconds']:6.1f} s "
                  f"({row['cpu_seconds']:.1f} s CPU, children {row['children_cpu_seconds']:.1f} s), "
                  f"+{row['rss_added_mib']:7.0f} MiB resident (peak +{row['peak_added_mib']:.0f} MiB)"
                  + (f", store {row['store_mib']:.0f} MiB, +{row['rss_touched_mib']:.0f} MiB resident once read, "
                     f"parse child peak {row['child_peak_mib']:.0f} MiB" if "store_mib" in row else ""))
        resident = max(ours["rss_added_mib"], ours["rss_touched_mib"])
        print(f"load ratios detkit / pycocotools: time {ours['seconds'] / theirs['seconds']:.2f}x "
              f"(CPU of the process {ours['cpu_seconds'] / theirs['cpu_seconds']:.2f}x, with its children "
              f"{(ours['cpu_seconds'] + ours['children_cpu_seconds']) / theirs['cpu_seconds']:.2f}x), "
              f"parent resident memory (store read once) {resident / theirs['rss_added_mib']:.2f}x, "
              f"parent peak {ours['peak_added_mib'] / theirs['peak_added_mib']:.2f}x, "
              f"largest parse child's peak / pycocotools' peak {ours['child_peak_mib'] / theirs['peak_added_mib']:.2f}x")
    if "voc" not in args.skip:
        voc_root = generate_voc_folder(args.cache / f"voc_{args.voc_images}", args.voc_images)
        row = _in_subprocess("load", "detkit-voc", str(voc_root))
        print(f"load VOC folder {row['images']} images (xml): {row['seconds']:.1f} s ({row['cpu_seconds']:.1f} s CPU), "
              f"+{row['rss_added_mib']:.0f} MiB resident (peak +{row['peak_added_mib']:.0f} MiB)")
        row = _in_subprocess("workers", str(voc_root), str(args.workers), "store-voc")
        print(f"workers VOC ({row['workers']} workers): USS "
              + ", ".join(f"{a:.0f} -> {b:.0f} MiB" for a, b in zip(row["uss_start_mib"], row["uss_end_mib"]))
              + f"; growth per worker max {max(row['growth_mib']):.1f} MiB")
    if "workers" not in args.skip:
        for mode in ["store"] + (["list"] if args.list_records else []):
            row = _in_subprocess("workers", str(json_path), str(args.workers), mode)
            print(f"workers ({row['records']}, {row['workers']} workers, epoch {row['seconds']:.0f} s): USS "
                  + ", ".join(f"{a:.0f} -> {b:.0f} MiB" for a, b in zip(row["uss_start_mib"], row["uss_end_mib"]))
                  + f"; growth per worker max {max(row['growth_mib']):.1f} MiB")
    if "pipeline" not in args.skip:
        image_dir, pipeline_json = generate_jpeg_folder(args.cache / f"jpeg_{args.pipeline_images}", args.pipeline_images)
        for policy in ("rcnn", "yolo", "ssd"):
            rows = [_in_subprocess("pipeline", str(image_dir), str(pipeline_json), library, policy, str(args.workers))
                    for library in ("detkit", "torchvision")]
            name = {"rcnn": "rcnn", "yolo": "yolo (same operations)", "ssd": "yolo vs torchvision's ssd policy"}[policy]
            print(f"pipeline {name}: detkit {rows[0]['images_per_s']:.1f} images/s, torchvision reference-style "
                  f"{rows[1]['images_per_s']:.1f} images/s ({rows[0]['images_per_s'] / rows[1]['images_per_s']:.2f}x), "
                  f"{args.workers} workers, {rows[0]['images']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
