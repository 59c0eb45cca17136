"""Convert another library's checkpoint into a detkit checkpoint ({"model": state_dict, "meta": {...}}).

    python tools/convert_weights.py --from torchvision --arch fasterrcnn_resnet50_fpn IN.pth OUT.pth
    python tools/convert_weights.py --from torchvision --arch maskrcnn_resnet50_fpn \\
        --coco-contiguous maskrcnn_resnet50_fpn_coco.pth mask_rcnn_r50_fpn_coco80.pth

IN.pth is a torchvision ``model.state_dict()`` (read with ``weights_only=True``). The printed
``num_classes`` is what the detkit config needs (``faster_rcnn(num_classes=...)``); with
``--coco-contiguous`` a 91-way COCO predictor becomes the 80 COCO classes of
configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detkit.engine.checkpoint import atomic_torch_save  # noqa: E402
from detkit.models.convert import (  # noqa: E402
    TORCHVISION_RCNN_ARCHS,
    TORCHVISION_SSD_ARCHS,
    convert_torchvision_rcnn,
    convert_torchvision_ssd,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", required=True, choices=["torchvision"], help="source library")
    parser.add_argument("--arch", required=True, choices=[*TORCHVISION_RCNN_ARCHS, *TORCHVISION_SSD_ARCHS], help="source architecture")
    parser.add_argument("--coco-contiguous", action="store_true",
                        help="cut a 91-way COCO predictor to the 80 COCO classes")
    parser.add_argument("input", help="source state dict (.pth)")
    parser.add_argument("output", help="detkit checkpoint to write")
    args = parser.parse_args(argv)

    state_dict = torch.load(args.input, map_location="cpu", weights_only=True)
    if isinstance(state_dict, dict) and "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    convert = convert_torchvision_ssd if args.arch in TORCHVISION_SSD_ARCHS else convert_torchvision_rcnn
    checkpoint = convert(state_dict, args.arch, coco_contiguous=args.coco_contiguous)
    atomic_torch_save(checkpoint, args.output)
    meta = checkpoint["meta"]
    print(f"wrote {args.output}: {len(checkpoint['model'])} tensors, {meta['arch']}, num_classes={meta['num_classes']}")


if __name__ == "__main__":
    main()
