"""Count what a dataset holds, plot it, and flag what looks wrong, before training on it.

    detkit data stats DATASET [--split NAME] --out DIR [--tiny-box 4] [--no-hash]
    detkit data stats --format coco|voc|yolo SRC [--split NAME] [--names classes.txt] --out DIR
                      [--tiny-box 4] [--no-hash]

Prints the class counts (objects and images per class), boxes per image, box sizes (sqrt of the
box area in pixels, and COCO's small / medium / large counts) and aspect ratios, then the likely
problems, each with its count, examples naming the files and one line of what to do: classes with
no objects, tiny boxes (``--tiny-box`` pixels on a side), boxes reaching outside the image
(clipped on load), degenerate boxes (dropped on load), duplicate images (the same bytes in two
files) and the same file listed twice; images with no objects and boxes touching the border are
counted as information. Writes into DIR ``stats.json`` (all of it) and the charts
``class_counts.png``, ``boxes_per_image.png``, ``box_sizes.png`` and ``aspect_ratios.png``.
SRC is given as for ``detkit data browse`` (see ``detkit data browse --help``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detkit.cli import parse_command_args, run_command
from detkit.cli.data_browse import add_source_arguments, open_dataset

HELP = "class counts, box sizes and likely problems of a dataset, printed and plotted"

STATS_JSON = "stats.json"
CHARTS = ("class_counts.png", "boxes_per_image.png", "box_sizes.png", "aspect_ratios.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``detkit data stats``."""
    add_source_arguments(parser)
    parser.add_argument("--tiny-box", type=float, default=4.0, metavar="PX",
                        help="a box narrower or lower than this many pixels is tiny (default 4)")
    parser.add_argument("--no-hash", action="store_true",
                        help="do not read the image files to find duplicates by content")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.tiny_box >= 0:
        parser.error(f"argument --tiny-box: must be a number of pixels >= 0, got {args.tiny_box}")


def format_report(stats: Any, source: str) -> str:
    """The text ``detkit data stats`` prints: the numbers, then the problems."""
    lines = [f"{source}: {stats.num_images} images, {stats.num_objects} objects, {len(stats.class_names)} classes"]
    width = max([len(name) for name in stats.class_names] + [5])
    lines.append(f"  {'label':>5}  {'class':<{width}}  {'objects':>8}  {'images':>7}")
    for label, name in enumerate(stats.class_names):
        lines.append(f"  {label:>5}  {name:<{width}}  {stats.objects_per_class[label]:>8}  "
                     f"{stats.images_per_class[label]:>7}")
    if stats.crowd_objects or stats.difficult_objects:
        lines.append(f"  crowd objects: {stats.crowd_objects}, difficult objects: {stats.difficult_objects}")
    data = stats.to_dict()
    per_image = data["boxes_per_image"]
    if stats.num_images:
        lines.append(f"boxes per image: mean {per_image['mean']:.2f}, max {per_image['max']}")
    for key, what in (("box_size_px", "box size (sqrt area, px)"), ("aspect_ratio", "aspect ratio (w/h)")):
        q = data[key]["quantiles"]
        if q:
            lines.append(f"{what}: min {q['min']:.3g}, median {q['median']:.3g}, max {q['max']:.3g}")
    sizes = stats.size_counts
    lines.append(f"COCO size classes (box area): small {sizes['small']}, medium {sizes['medium']}, "
                 f"large {sizes['large']}")
    warnings = stats.warnings()
    lines.append("problems: none found" if not warnings else f"problems: {len(warnings)} kinds")
    for problem in stats.problems:
        if not problem.count:
            continue
        tag = "WARNING" if problem.severity == "warning" else "info"
        lines.append(f"  {tag}: {problem.count} {problem.title}")
        for example in problem.examples:
            lines.append(f"      {example}")
        lines.append(f"    -> {problem.advice}")
    return "\n".join(lines)


def draw_charts(stats: Any) -> dict[str, Any]:
    """The four charts of ``stats`` as BGR images, by file name (:data:`CHARTS`)."""
    from detkit.evaluation.charts import PALETTE, draw_bar_chart

    sizes, ratios = stats.box_size_histogram(), stats.aspect_ratio_histogram()
    per_image = stats.boxes_per_image_histogram()
    small, medium, large = stats.size_counts.values()
    return {
        "class_counts.png": draw_bar_chart(
            [stats.objects_per_class, stats.images_per_class], stats.class_names,
            f"objects and images per class ({stats.num_objects} objects, {stats.num_images} images)",
            "class", "count", series_labels=["objects", "images holding one"]),
        "boxes_per_image.png": draw_bar_chart(
            per_image.counts, [str(int(k)) for k in per_image.edges[:-1]],
            f"boxes per image (mean {stats.to_dict()['boxes_per_image']['mean'] or 0:.2f})",
            "boxes on the image (count)", "images (count)", colors=[PALETTE[2]], label_zeros=False),
        "box_sizes.png": draw_bar_chart(
            sizes.counts, sizes.labels(), f"box sizes (COCO small {small}, medium {medium}, large {large})",
            "sqrt(box area), pixels", "boxes (count)", colors=[PALETTE[4]], label_zeros=False),
        "aspect_ratios.png": draw_bar_chart(
            ratios.counts, ratios.labels(), "box aspect ratios (0.8-1.25: about square)",
            "width / height (< 1 tall, > 1 wide)", "boxes (count)", colors=[PALETTE[1]],
            label_zeros=False),
    }


def run(args: argparse.Namespace) -> int:
    """Compute, print and write the statistics; the exit status 0."""
    from detkit.data.statistics import dataset_statistics
    from detkit.engine.run_folder import check_output_dir
    from detkit.evaluation.charts import write_png

    out = check_output_dir(args.out, "--out", create=False)  # checked now, made once the data has loaded
    dataset = open_dataset(args.format, args.source, args.split, args.names, args.images)
    stats = dataset_statistics(dataset, tiny_box_size=args.tiny_box, hash_images=not args.no_hash)
    print(format_report(stats, str(dataset.source)))
    out.mkdir(parents=True, exist_ok=True)
    record = {"source": str(dataset.source), "format": args.format, "split": args.split,
              "tiny_box_px": args.tiny_box, **stats.to_dict()}
    (out / STATS_JSON).write_text(json.dumps(record, indent=2) + "\n")
    for name, image in draw_charts(stats).items():
        write_png(Path(out) / name, image)
    print(f"wrote {out / STATS_JSON} and {', '.join(CHARTS)} into {out}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line of ``detkit data stats``."""
    return parse_command_args("data stats", argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``detkit data stats``; returns the exit status."""
    return run_command("data stats", argv)
