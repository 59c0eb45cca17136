"""Time detkit's R-CNN, RetinaNet and FCOS detectors against torchvision's on the same weights and inputs.

    python tools/benchmark_models.py                            # all archs, CPU, 2 threads
    python tools/benchmark_models.py --archs fasterrcnn_resnet50_fpn --repeats 5
    python tools/benchmark_models.py --archs retinanet_resnet50_fpn retinanet_resnet50_fpn_v2 fcos_resnet50_fpn
    python tools/benchmark_models.py --archs keypointrcnn_resnet50_fpn --modes train
    python tools/benchmark_models.py --device cuda               # on a GPU (peak memory from CUDA)

For each architecture, torchvision's model is built with random weights (seeded, its batch norms
frozen with random statistics, as detkit's ``frozen_bn``), and detkit's twin gets the converted
weights. Its score logits and box outputs are spread out (:func:`_spread_scores`), so that the
detection step works through distinct candidates, top-k and NMS as a trained model's does, rather
than returning nothing or tied scores. Keypoint R-CNN's targets get 17 keypoints per box (fixed
random points, most inside the box, some unlabelled).

Before timing an architecture, one subprocess checks that both models detect the same objects on
dog.jpg: the same number, labels equal, the order of exact score ties ignored; detkit's model as
built within the parity tests' tolerances (scores 1e-5, boxes and keypoints 1e-3 px), its default
inference path within :data:`TOLERANCES` (folded batch norms sum in another order); a mismatch
stops the run (``--no-check`` skips it). Measured, each in its own subprocess so that peak memory
is that model's alone:

* ``infer``: eval-mode latency of one call on dog.jpg (768x576) resized to ``--min-size`` (800);
  detkit's model runs its default inference path, what Predictor, ``detkit infer`` and evaluation
  run (:func:`detkit.models.fuse.inference_copy`: batch norms folded, channels-last on the CPU),
  or the model as built with ``--no-fuse``;
* ``train``: one training step (forward + backward) on dog.jpg and person.jpg with three boxes each;
* peak memory: the subprocess's max RSS (``resource.getrusage``) on CPU, its growth during the timed
  calls, or ``torch.cuda.max_memory_allocated`` on a GPU.

detkit and torchvision subprocesses run interleaved ``--repeats`` times and the medians are reported,
with the ratios detkit / torchvision (< 1: detkit is faster or smaller). Timings on a shared machine
are noisy: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

IMAGES_DIR = REPO_ROOT / "tests" / "fixtures" / "images"
RCNN_ARCHS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn",
              "fasterrcnn_mobilenet_v3_large_fpn")
NUM_KEYPOINTS = 17
# One-stage families: sigmoid classifiers, so torchvision's labels are detkit's (no background index).
DENSE_ARCHS = ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn")
ARCHS = RCNN_ARCHS + DENSE_ARCHS
TARGET_BOXES = {
    "dog.jpg": [[128.0, 222.0, 314.0, 542.0], [118.0, 122.0, 572.0, 424.0], [466.0, 74.0, 688.0, 172.0]],
    "person.jpg": [[188.0, 96.0, 276.0, 378.0], [402.0, 138.0, 598.0, 344.0], [60.0, 262.0, 202.0, 350.0]],
}


def _load_image(name: str) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(IMAGES_DIR / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def _freeze_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """BatchNorm2d -> torchvision FrozenBatchNorm2d with random statistics (in place)."""
    import torchvision

    generator = torch.Generator().manual_seed(seed)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                frozen = torchvision.ops.FrozenBatchNorm2d(child.num_features, eps=child.eps)
                size = (child.num_features,)
                frozen.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                frozen.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                frozen.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                frozen.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                setattr(parent, name, frozen)


def _spread_scores(model: torch.nn.Module, arch: str) -> None:
    """Spread a torchvision model's score logits and box outputs (measured on a 160 px dog.jpg).

    Random weights give tied scores (about the prior everywhere), whose order NMS implementations
    do not define, dense boxes equal to their anchors, and RPN proposals that collapse onto a few
    image-sized boxes. Rescaled (score logits: each channel centred, standard deviation 2, or 1 for the
    dense heads, whose top scores of 100k+ anchors would saturate at 1; RPN deltas: 0.5;
    dense box outputs: times 20), the detection step selects among distinct candidates as a trained
    model's does, and the two models' detections can be compared one by one.
    """
    if arch in DENSE_ARCHS:
        layers = [(model.head.classification_head.cls_logits, 1.0)]
        with torch.no_grad():
            model.head.regression_head.bbox_reg.weight.mul_(20.0)
    else:
        layers = [(model.rpn.head.bbox_pred, 0.5), (model.rpn.head.cls_logits, 2.0),
                  (model.roi_heads.box_predictor.cls_score, 2.0)]
    sizes = model.transform.min_size, model.transform.max_size
    model.transform.min_size, model.transform.max_size = (160,), 267
    model.eval()
    for layer, std in layers:  # one after the other: each changes what the next one sees
        captured: list[torch.Tensor] = []  # [N, channels] outputs of every call (levels, RoIs)
        handle = layer.register_forward_hook(
            lambda _m, _i, output, captured=captured: captured.append(output.movedim(1, -1).flatten(0, -2))
        )
        with torch.no_grad():
            layer.bias.zero_()
            model([_load_image("dog.jpg")])
            handle.remove()
            outputs = torch.cat(captured)
            scale = std / float((outputs - outputs.mean(dim=0)).std())
            layer.weight.mul_(scale)
            layer.bias.copy_(-outputs.mean(dim=0) * scale)  # each channel centred: no class favoured
    model.transform.min_size, model.transform.max_size = sizes


def build(arch: str, implementation: str, min_size: int, max_size: int) -> torch.nn.Module:
    """The torchvision model of ``arch`` or its detkit twin with the same (converted) weights."""
    import torchvision.models.detection as tv_detection

    from configs.common import fcos, rcnn, retinanet
    from detkit.config import instantiate
    from detkit.models.convert import convert_torchvision_dense, convert_torchvision_rcnn

    torch.manual_seed(0)
    reference = getattr(tv_detection, arch)(weights=None, weights_backbone=None, min_size=min_size, max_size=max_size)
    _freeze_norms(reference)
    factory, num_classes, convert = {
        "fasterrcnn_resnet50_fpn": (rcnn.faster_rcnn, 90, convert_torchvision_rcnn),
        "maskrcnn_resnet50_fpn": (rcnn.mask_rcnn, 90, convert_torchvision_rcnn),
        "keypointrcnn_resnet50_fpn": (rcnn.keypoint_rcnn, 1, convert_torchvision_rcnn),  # persons only
        "fasterrcnn_mobilenet_v3_large_fpn": (rcnn.faster_rcnn_mobilenet_v3_fpn, 90, convert_torchvision_rcnn),
        "retinanet_resnet50_fpn": (lambda n, **kw: retinanet.retinanet(n, version=1, **kw), 91,
                                   convert_torchvision_dense),
        "retinanet_resnet50_fpn_v2": (lambda n, **kw: retinanet.retinanet(n, version=2, **kw), 91,
                                      convert_torchvision_dense),
        "fcos_resnet50_fpn": (fcos.fcos, 91, convert_torchvision_dense),
    }[arch]
    _spread_scores(reference, arch)
    model = instantiate(factory(num_classes, min_size=min_size, max_size=max_size))
    model.load_state_dict(convert(reference.state_dict(), arch)["model"], strict=True)
    if implementation == "detkit":
        return model
    # Without pretrained weights torchvision trains every backbone stage; freeze the stages detkit's
    # config freezes (torchvision's pretrained default) so both train steps do the same work.
    body_prefix = "backbone.features." if "mobilenet" in arch else "backbone."
    frozen = {name[len(body_prefix):] for name, p in model.named_parameters()
              if not p.requires_grad and name.startswith(body_prefix)}
    for name, parameter in reference.named_parameters():
        if name.startswith("backbone.body.") and name[len("backbone.body."):] in frozen:
            parameter.requires_grad_(False)
    return reference


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _targets(arch: str, implementation: str, names: list[str], images: list[torch.Tensor],
             device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Training targets of the benchmark images in ``implementation``'s label convention."""
    generator = torch.Generator().manual_seed(0)
    targets = []
    for name, image in zip(names, images):
        boxes = torch.tensor(TARGET_BOXES[name])
        labels = torch.zeros(3, dtype=torch.int64) if arch.startswith("keypoint") else torch.tensor([17, 1, 7])
        target = {"boxes": boxes, "labels": labels}
        if arch.startswith("mask"):
            masks = torch.zeros((3, *image.shape[-2:]), dtype=torch.uint8)
            for k, (x1, y1, x2, y2) in enumerate(boxes.to(torch.int64).tolist()):
                masks[k, y1:y2, x1:x2] = 1
            target["masks"] = masks
        if arch.startswith("keypoint"):  # most points inside their box, some outside, some unlabelled
            low, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]
            points = low + size * (torch.rand((3, NUM_KEYPOINTS, 2), generator=generator) * 1.2 - 0.1)
            visibility = torch.randint(0, 3, (3, NUM_KEYPOINTS, 1), generator=generator).float()
            target["keypoints"] = torch.cat([points, visibility], dim=2)
        targets.append({key: value.to(device) for key, value in target.items()})
    if implementation == "torchvision" and arch not in DENSE_ARCHS:  # R-CNN: background at 0
        targets = [{**t, "labels": t["labels"] + 1} for t in targets]
    return targets


def _default_inference_path(model: torch.nn.Module, fuse: bool) -> torch.nn.Module:
    """detkit's model as Predictor / ``detkit infer`` / evaluation run it (or as built without ``fuse``)."""
    if not fuse:
        return model
    from detkit.models.fuse import inference_copy

    return inference_copy(model.eval(), inplace=True)


def _canonical_order(detections: dict[str, torch.Tensor]) -> torch.Tensor:
    """Indices sorting detections by decreasing score, ties by label then box (NMS orders ties freely)."""
    import numpy as np

    boxes = detections["boxes"].cpu().numpy()
    keys = (boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], detections["labels"].cpu().numpy(),
            -detections["scores"].cpu().numpy())
    return torch.from_numpy(np.lexsort(keys))


def _compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, object]:
    """Counts, whether the labels are equal and the largest differences of two images' detections."""
    result: dict[str, object] = {"count": int(ours["boxes"].shape[0]), "reference_count": int(theirs["boxes"].shape[0])}
    if result["count"] == result["reference_count"]:
        our_order, their_order = _canonical_order(ours), _canonical_order(theirs)
        result["labels_equal"] = bool(torch.equal(ours["labels"][our_order], theirs["labels"][their_order]))
        for key in ("scores", "boxes", "keypoints", "keypoint_scores"):
            if key in ours and result["count"] > 0:
                result[key] = float((ours[key][our_order] - theirs[key][their_order]).abs().max())
    return result


# Largest differences allowed: the model as built (the parity tests' tolerances), and the default
# inference path (batch norms folded, channels-last: float sums in another order, through R50).
TOLERANCES = {
    "as_built": {"scores": 1e-5, "boxes": 1e-3, "keypoints": 1e-3, "keypoint_scores": 1e-4},
    "default_path": {"scores": 1e-4, "boxes": 0.1, "keypoints": 0.1, "keypoint_scores": 0.1},
}


def check(args: argparse.Namespace) -> None:
    """Both models' detections on dog.jpg (detkit as built and on its default inference path); print
    a JSON line of :func:`_compare`'s results."""
    from detkit.models.fuse import inference_copy

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours = build(args.arch, "detkit", args.min_size, args.max_size).to(device).eval()
    theirs = build(args.arch, "torchvision", args.min_size, args.max_size).to(device).eval()
    images = [_load_image("dog.jpg").to(device)]
    with torch.no_grad():
        their = theirs(images)[0]
        results = {"as_built": ours(images)[0][0], "default_path": inference_copy(ours)(images)[0][0]}
    if args.arch not in DENSE_ARCHS:  # R-CNN: background at 0
        their = {**their, "labels": their["labels"] - 1}
    if "keypoints_scores" in their:
        their["keypoint_scores"] = their["keypoints_scores"]
    print(json.dumps({name: _compare(our, their) for name, our in results.items()}))


def _check_passes(result: dict) -> bool:
    return all(
        outcome["count"] == outcome["reference_count"] and outcome.get("labels_equal", True)
        and all(outcome.get(key, 0.0) <= tolerance for key, tolerance in TOLERANCES[name].items())
        for name, outcome in result.items()
    )


def worker(args: argparse.Namespace) -> None:
    """Build one model, time ``args.iterations`` calls of one mode, print a JSON line."""
    if args.mode == "check":
        check(args)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build(args.arch, args.implementation, args.min_size, args.max_size).to(device)
    if args.implementation == "detkit" and args.mode == "infer":
        model = _default_inference_path(model, args.fuse)
    names = ["dog.jpg"] if args.mode == "infer" else ["dog.jpg", "person.jpg"]
    images = [_load_image(name).to(device) for name in names]
    targets = _targets(args.arch, args.implementation, names, images, device)

    def step() -> None:
        if args.mode == "infer":
            with torch.no_grad():
                model(images)
        else:
            torch.manual_seed(0)
            output = model(images, targets)
            losses = output if args.implementation == "torchvision" else output[1]
            sum(losses.values()).backward()
            model.zero_grad(set_to_none=True)

    model.train(args.mode == "train")
    step()  # warm-up (allocator, caches)
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step()
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    memory = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_after / 1024
    )
    print(json.dumps({"seconds": statistics.median(seconds), "peak_mib": memory,
                      "growth_mib": (rss_after - rss_before) / 1024}))


def _run_worker(args: argparse.Namespace, arch: str, implementation: str, mode: str) -> dict:
    command = [
        sys.executable, __file__, "--worker", "--arch", arch, "--implementation", implementation, "--mode", mode,
        "--threads", str(args.threads), "--device", args.device, "--iterations", str(args.iterations),
        "--min-size", str(args.min_size), "--max-size", str(args.max_size), *([] if args.fuse else ["--no-fuse"]),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--modes", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved subprocess pairs per case")
    parser.add_argument("--iterations", type=int, default=3, help="timed calls per subprocess (median)")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--no-fuse", dest="fuse", action="store_false",
                        help="infer with detkit's model as built (no folded batch norms, no channels-last)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the check that both models' detections are equal before timing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    memory_label = "peak CUDA MiB" if args.device.startswith("cuda") else "max RSS MiB"
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} threads, "
          f"{args.min_size}/{args.max_size} px, {args.repeats} interleaved repeats x {args.iterations} calls (medians)")
    header = f"{'arch':36s} {'mode':6s} {'detkit s':>9s} {'tv s':>9s} {'ratio':>6s}  " \
             f"{'detkit ' + memory_label:>20s} {'tv ' + memory_label:>17s} {'ratio':>6s}"
    print(header)
    for arch in args.archs:
        if args.check:
            result = _run_worker(args, arch, "detkit", "check")
            if not _check_passes(result):
                raise SystemExit(f"benchmark_models.py: {arch}: detkit's detections differ from torchvision's: {result}")
            print(f"{arch}: detections equal torchvision's: {result}", flush=True)
        for mode in args.modes:
            results: dict[str, list[dict]] = {"detkit": [], "torchvision": []}
            for _ in range(args.repeats):
                for implementation in ("detkit", "torchvision"):
                    results[implementation].append(_run_worker(args, arch, implementation, mode))
            ours = {k: statistics.median(r[k] for r in results["detkit"]) for k in ("seconds", "peak_mib")}
            theirs = {k: statistics.median(r[k] for r in results["torchvision"]) for k in ("seconds", "peak_mib")}
            print(f"{arch:36s} {mode:6s} {ours['seconds']:9.3f} {theirs['seconds']:9.3f} "
                  f"{ours['seconds'] / theirs['seconds']:6.2f}  {ours['peak_mib']:20.0f} {theirs['peak_mib']:17.0f} "
                  f"{ours['peak_mib'] / theirs['peak_mib']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
