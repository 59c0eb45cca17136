"""Time one training step of several configs' models on the same batches, in one run.

    python tools/benchmark_train_step.py configs/yolo/yolov3_tiny_320_shapes.py configs/yolov8/yolov8n_320_shapes.py
    python tools/benchmark_train_step.py CONFIG_A CONFIG_B --batches 4 --steps 20 --repeats 3 --threads 2

Each config's training dataloader draws ``--batches`` batches (its own augmentation, with the
seed 0) before any timing, so data loading is left out and both models see batches of the same
size; then forward, backward and the config's optimiser step run ``--steps`` times per repeat,
the configs taking turns (so a change in the machine's load falls on both). Reported per config:
the median wall and process CPU seconds per step, and the ratio to the first config. With the same
number of iterations and the same data pipeline (the shapes configs' schedules), the CPU-time ratio
of two trainings is this step ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.config import instantiate, load_config  # noqa: E402
from detkit.engine.runner import instantiate_with  # noqa: E402


def _setup(path: Path, overrides: list[str], batches: int):
    """``(model, optimizer, batches)`` of a config: the model in training mode, its batches in memory."""
    cfg = load_config(path, [*overrides, "dataloader.train.num_workers=0"])
    torch.manual_seed(0)
    model = instantiate(cfg.model, "model").train()
    optimizer = instantiate_with(cfg.optimizer, "optimizer", model=model)
    loader = instantiate_with(cfg.dataloader.train, "dataloader.train", seed=0)
    return model, optimizer, list(islice(iter(loader), batches))


def _time_steps(model, optimizer, batches, steps: int) -> tuple[float, float]:
    """Median ``(wall, cpu)`` seconds of one forward + backward + optimiser step."""
    walls, cpus = [], []
    for step in range(steps):
        images, targets = batches[step % len(batches)]
        wall, cpu = time.perf_counter(), time.process_time()
        _, losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--override", action="append", default=[], help="key=value for every config (repeatable)")
    parser.add_argument("--batches", type=int, default=4, help="batches drawn per config (default 4)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="turns of every config (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    runs = {path: _setup(path, args.override, args.batches) for path in args.configs}
    for model, optimizer, batches in runs.values():
        if args.warmup > 0:
            _time_steps(model, optimizer, batches, args.warmup)
    walls: dict[Path, list[float]] = {path: [] for path in runs}
    cpus: dict[Path, list[float]] = {path: [] for path in runs}
    for _ in range(args.repeats):
        for path, (model, optimizer, batches) in runs.items():
            wall, cpu = _time_steps(model, optimizer, batches, args.steps)
            walls[path].append(wall)
            cpus[path].append(cpu)

    first = args.configs[0]
    base_wall, base_cpu = statistics.median(walls[first]), statistics.median(cpus[first])
    print(f"\n{torch.get_num_threads()} threads, {args.steps} steps x {args.repeats} repeats, "
          f"batch of {len(runs[first][2][0][0])} images")
    print(f"| config | wall s/step | CPU s/step | CPU ratio to {first.stem} |")
    print("|---|---|---|---|")
    for path in runs:
        wall, cpu = statistics.median(walls[path]), statistics.median(cpus[path])
        print(f"| {path.stem} | {wall:.3f} | {cpu:.3f} | {cpu / base_cpu:.2f}x (wall {wall / base_wall:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
