"""detkit's SSD300-VGG16 and SSDLite320-MobileNetV3 against torchvision's, side by side, on CPU.

    python tools/benchmark_ssd.py [--rounds 7] [--threads 2] [--models ssd300 ssdlite320] \
        [--channels-last off train always]

Both libraries run the same weights: torchvision's ``ssd300_vgg16`` / ``ssdlite320_mobilenet_v3_large``
built with ``weights=None, weights_backbone=None`` (seeded, 91 classes; SSDLite's convs re-drawn
variance-preserving and its BatchNorm statistics perturbed, so the scores are not all alike),
converted into detkit with :func:`detkit.models.convert.torchvision_ssd.convert_torchvision_ssd`.
Each model keeps its own default thresholds (SSD300: score 0.01, 400 candidates per class, 200
detections; SSDLite: 0.001, 300, 300), identical in both libraries.

* inference: ``model.eval()``, ``torch.no_grad()``, one image per call (tests/fixtures/images, any size:
  both resize to the model's fixed size), boxes back on the image;
* training step: ``model.train()``, a batch of 2 images with 2 and 3 boxes, forward, loss sum,
  backward, SGD step.

detkit runs in its three ``channels_last`` modes: "off" (NCHW throughout, torchvision's numbers
bit for bit), "train" (the default: NHWC batch in training only, evaluation bit for bit) and
"always" (NHWC weights and batch; equal up to float rounding). Every round runs each of the
four once per task, rotating which goes first, after a warm-up; the table gives the median
seconds over rounds and the ratio detkit / torchvision (<= 1: detkit no slower). The load average
is printed before and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs.common.ssd import SSD300_SCALES_COCO, ssd_vgg16, ssdlite320_mobilenet_v3  # noqa: E402
from detkit.config import instantiate  # noqa: E402
from detkit.models.convert.torchvision_ssd import convert_torchvision_ssd  # noqa: E402

IMAGES = REPO / "tests" / "fixtures" / "images"
CHANNELS_LAST_MODES = ("off", "train", "always")


def _image(name: str) -> torch.Tensor:
    pixels = np.asarray(Image.open(IMAGES / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def _build(name: str, modes: list[str]) -> tuple[nn.Module, ...]:
    """torchvision's model and one detkit model per ``channels_last`` mode, all with the same weights."""
    from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

    torch.manual_seed(0)
    if name == "ssd300":
        reference = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
        config, arch = ssd_vgg16(90, input_size=300, scales=SSD300_SCALES_COCO), "ssd300_vgg16"
    else:
        reference = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for module in reference.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_in")
                elif isinstance(module, nn.BatchNorm2d):
                    size = (module.num_features,)
                    module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                    module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                    module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
        config, arch = ssdlite320_mobilenet_v3(90), "ssdlite320_mobilenet_v3_large"
    state_dict = convert_torchvision_ssd(reference.state_dict(), arch)["model"]
    models = []
    for channels_last in modes:
        config.channels_last = channels_last
        models.append(instantiate(config))
        models[-1].load_state_dict(state_dict, strict=True)
    return reference, *models


def _tasks(models: dict[str, nn.Module]) -> dict[str, dict[str, Callable[[], object]]]:
    """Per task, one callable per model (keys of ``models``; "torchvision" is the reference)."""
    image = _image("dog.jpg")
    batch = [_image("dog.jpg"), _image("person.jpg")]
    targets = [
        {"boxes": torch.tensor([[130.0, 220.0, 310.0, 540.0], [470.0, 70.0, 690.0, 170.0]]), "labels": torch.tensor([16, 2])},
        {"boxes": torch.tensor([[190.0, 95.0, 275.0, 380.0], [60.0, 260.0, 200.0, 350.0], [400.0, 110.0, 600.0, 350.0]]),
         "labels": torch.tensor([0, 17, 18])},
    ]  # fmt: skip
    reference_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]

    def infer(net: nn.Module) -> Callable[[], object]:
        def run() -> object:
            net.eval()
            with torch.no_grad():
                return net([image])

        return run

    def train_step(net: nn.Module, detkit: bool) -> Callable[[], object]:
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-5)

        def run() -> object:
            net.train()
            losses = net(batch, targets)[1] if detkit else net(batch, reference_targets)
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            return total

        return run

    return {
        "inference (1 image)": {label: infer(net) for label, net in models.items()},
        "train step (2 images)": {label: train_step(net, label != "torchvision") for label, net in models.items()},
    }


def _time(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per task (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--models", nargs="+", default=["ssd300", "ssdlite320"], choices=["ssd300", "ssdlite320"])
    parser.add_argument("--channels-last", nargs="+", default=list(CHANNELS_LAST_MODES), choices=CHANNELS_LAST_MODES,
                        help="detkit channels_last modes to time (default: all; 'train' is detkit's default)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    variants = [f"channels_last={mode!r}" + (" (default)" if mode == "train" else "") for mode in args.channels_last]
    print("| model | task | detkit variant | torchvision (s) | detkit (s) | ratio detkit/torchvision |")
    print("|---|---|---|---|---|---|", flush=True)
    for name in args.models:
        reference, *detkit_models = _build(name, args.channels_last)
        models = {"torchvision": reference}
        models.update(zip(variants, detkit_models))
        for task, runs in _tasks(models).items():
            for run in runs.values():  # warm-up (allocator, default-box cache, oneDNN kernels)
                run()
            times: dict[str, list[float]] = {label: [] for label in runs}
            order = list(runs.items())
            for round_index in range(args.rounds):
                shift = round_index % len(order)  # rotate who goes first
                for label, run in order[shift:] + order[:shift]:
                    times[label].append(_time(run))
            reference_time = statistics.median(times["torchvision"])
            for label in variants:
                detkit_time = statistics.median(times[label])
                print(f"| {name} | {task} | {label} | {reference_time:.4f} | {detkit_time:.4f} | "
                      f"{detkit_time / reference_time:.3f} |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

if __name__ == "__main__":
    main()
