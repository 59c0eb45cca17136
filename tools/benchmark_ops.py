"""Time detkit's ops (compiled kernels and pure-PyTorch fallbacks) against torchvision.ops on the same
inputs in one run, and print the ratios (torchvision time / detkit time: > 1 means detkit is faster).

    python tools/benchmark_ops.py                 # CPU, 2 threads (this project's reference machine)
    python tools/benchmark_ops.py --device cuda   # on a GPU
    python tools/benchmark_ops.py --quick         # smaller repeat counts
    python tools/benchmark_ops.py --ops roi_align # only these ops (nms, batched_nms, roi_align)

Every timed result is also checked for equality against torchvision before it is reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.ops import _ext, batched_nms, nms, roi_align  # noqa: E402


@dataclass
class Row:
    case: str
    implementation: str
    seconds: float
    reference_seconds: float

    @property
    def ratio(self) -> float:
        return self.reference_seconds / self.seconds


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``function`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        function()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def nms_boxes(num: int, distribution: str, generator: torch.Generator) -> torch.Tensor:
    """Random xyxy boxes.

    ``detections``: an 800x1333 image, corners uniform, sides log-uniform in [16, 512] px (the sizes
    of FPN anchors), like RPN proposals before NMS. ``uniform-wide``: corners uniform on 1000x1000,
    sides uniform in [1, 201] px. ``torchvision-test``: ``rand(N, 4) * 1000`` as torchvision's own
    benchmarks draw them (half of the boxes inverted).
    """
    if distribution == "torchvision-test":
        return torch.rand(num, 4, generator=generator) * 1000
    if distribution == "uniform-wide":
        corner = torch.rand(num, 2, generator=generator) * 1000
        return torch.cat([corner, corner + torch.rand(num, 2, generator=generator) * 200 + 1], dim=1)
    corner = torch.rand(num, 2, generator=generator) * torch.tensor([1333.0, 800.0])
    sides = torch.exp(torch.empty(num, 2).uniform_(float(torch.log(torch.tensor(16.0))),
                                                   float(torch.log(torch.tensor(512.0))), generator=generator))
    return torch.cat([corner, corner + sides], dim=1)


def implementations(device: torch.device) -> list[tuple[str, str]]:
    """(label, DETKIT_DISABLE_EXT value) pairs available on ``device``."""
    available = []
    if _ext.ext_loaded() and (device.type == "cpu" or _ext.cuda_version() > 0):
        available.append(("compiled", "0"))
    available.append(("fallback", "1"))
    return available


def bench_nms(device: torch.device, repeats: int, rows: list[Row]) -> None:
    generator = torch.Generator().manual_seed(0)
    cases = [(20_000, "detections"), (20_000, "uniform-wide"), (20_000, "torchvision-test"), (1_000, "detections")]
    for num, distribution in cases:
        boxes = nms_boxes(num, distribution, generator).to(device)
        scores = torch.rand(num, generator=generator).to(device)
        reference = time_call(lambda: torchvision.ops.nms(boxes, scores, 0.5), device, repeats)
        expected = torchvision.ops.nms(boxes, scores, 0.5)
        for label, disable in implementations(device):
            os.environ["DETKIT_DISABLE_EXT"] = disable
            assert torch.equal(nms(boxes, scores, 0.5), expected), f"nms {label} differs from torchvision"
            seconds = time_call(lambda: nms(boxes, scores, 0.5), device, repeats)
            rows.append(Row(f"nms {num} boxes ({distribution})", label, seconds, reference))


def bench_batched_nms(device: torch.device, repeats: int, rows: list[Row]) -> None:
    generator = torch.Generator().manual_seed(1)
    boxes = nms_boxes(5_000, "detections", generator).to(device)
    scores = torch.rand(5_000, generator=generator).to(device)
    idxs = torch.randint(0, 80, (5_000,), generator=generator).to(device)
    reference = time_call(lambda: torchvision.ops.batched_nms(boxes, scores, idxs, 0.5), device, repeats)
    expected = set(torchvision.ops.batched_nms(boxes, scores, idxs, 0.5).tolist())
    for label, disable in implementations(device):
        os.environ["DETKIT_DISABLE_EXT"] = disable
        assert set(batched_nms(boxes, scores, idxs, 0.5).tolist()) == expected, f"batched_nms {label} differs"
        seconds = time_call(lambda: batched_nms(boxes, scores, idxs, 0.5), device, repeats)
        rows.append(Row("batched_nms 5000 boxes, 80 classes", label, seconds, reference))


def bench_roi_align(device: torch.device, repeats: int, rows: list[Row]) -> None:
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(2, 256, 200, 336, generator=generator).to(device)
    corner = torch.rand(1000, 2, generator=generator) * torch.tensor([1344.0, 800.0])
    sides = torch.rand(1000, 2, generator=generator) * 300 + 8
    batch_index = torch.randint(0, 2, (1000, 1), generator=generator).float()
    rois = torch.cat([batch_index, corner, corner + sides], dim=1).to(device)
    args = (7, 0.25, 2, True)
    reference_forward = time_call(lambda: torchvision.ops.roi_align(features, rois, *args), device, repeats)

    def torchvision_forward_backward() -> None:
        x = features.detach().requires_grad_()
        torchvision.ops.roi_align(x, rois, *args).sum().backward()

    reference_both = time_call(torchvision_forward_backward, device, repeats)
    expected = torchvision.ops.roi_align(features, rois, *args)
    for label, disable in implementations(device):
        os.environ["DETKIT_DISABLE_EXT"] = disable
        torch.testing.assert_close(roi_align(features, rois, *args), expected, rtol=1e-5, atol=1e-5)
        forward = time_call(lambda: roi_align(features, rois, *args), device, repeats)

        def forward_backward() -> None:
            x = features.detach().requires_grad_()
            roi_align(x, rois, *args).sum().backward()

        both = time_call(forward_backward, device, repeats)
        rows.append(Row("roi_align 2x256x200x336, 1000 RoIs, 7x7, sr 2, aligned: forward", label, forward,
                        reference_forward))
        rows.append(Row("roi_align (same): forward + backward", label, both, reference_both))

    # Few RoIs on a large map (a Mask R-CNN mask head at inference): the map is sampled at fewer
    # points than it has pixels, where the CPU kernel reads it in place instead of copying it.
    few = rois[:20]
    reference_few = time_call(lambda: torchvision.ops.roi_align(features, few, *args), device, repeats)
    expected_few = torchvision.ops.roi_align(features, few, *args)
    for label, disable in implementations(device):
        os.environ["DETKIT_DISABLE_EXT"] = disable
        torch.testing.assert_close(roi_align(features, few, *args), expected_few, rtol=1e-5, atol=1e-5)
        forward = time_call(lambda: roi_align(features, few, *args), device, repeats)
        rows.append(Row("roi_align (same map), 20 RoIs: forward", label, forward, reference_few))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--ops", nargs="+", choices=("nms", "batched_nms", "roi_align"),
                        default=["nms", "batched_nms", "roi_align"], help="the ops to time (default: all)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    if device.type == "cuda":
        repeats *= 5
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {args.threads} threads"))
    print(f"detkit._C loaded: {_ext.ext_loaded()}, CUDA kernels: {_ext.cuda_version() > 0}\n")
    rows: list[Row] = []
    benches = {"nms": bench_nms, "batched_nms": bench_batched_nms, "roi_align": bench_roi_align}
    for op in args.ops:
        benches[op](device, repeats, rows)
    os.environ.pop("DETKIT_DISABLE_EXT", None)
    width = max(len(r.case) for r in rows)
    print(f"{'case':{width}s}  {'detkit':>9s}  {'time':>9s}  {'torchvision':>11s}  {'ratio':>6s}")
    for r in rows:
        print(f"{r.case:{width}s}  {r.implementation:>9s}  {r.seconds * 1e3:7.2f}ms  {r.reference_seconds * 1e3:9.2f}ms"
              f"  {r.ratio:5.2f}x")


if __name__ == "__main__":
    main()
