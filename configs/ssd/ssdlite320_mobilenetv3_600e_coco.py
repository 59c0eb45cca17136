"""SSDLite320, MobileNetV3-Large (reduced tail), COCO (80 classes): torchvision's
ssdlite320_mobilenet_v3_large, trained with its recipe (``ssdlite_600e_training``: batch 192,
lr 0.15 cosine, weight decay 4e-5, crop + flip) over 600 epochs (torchvision's README command
says 660). COCO is read from datasets/coco (``dataloader.root``, configs/common/datasets.py):

    python tools/train.py configs/ssd/ssdlite320_mobilenetv3_600e_coco.py
"""

from configs.common.ssd import ssdlite320_mobilenet_v3, ssdlite_600e_training

model = ssdlite320_mobilenet_v3(num_classes=80)

_training = ssdlite_600e_training("ssdlite320_mobilenetv3_600e_coco")
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (the extras are all padded: any input works; 64
# still leaves the 1x1 last map a batch of 2 for BatchNorm).
test_overrides = ["model.image_size=(160, 160)", "model.head.pre_nms_topk=50", "model.head.detections_per_img=20"]
