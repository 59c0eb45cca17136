"""SSD300, VGG16, COCO (80 classes): torchvision's ssd300_vgg16, trained with its 120-epoch recipe
(``ssd_120e_training``: batch 32, lr 0.002, steps at epochs 80/110, SSD augmentation). COCO is read
from datasets/coco (``dataloader.root``, configs/common/datasets.py):

    python tools/train.py configs/ssd/ssd300_vgg16_120e_coco.py
"""

from configs.common.ssd import SSD300_SCALES_COCO, ssd_vgg16, ssd_120e_training

model = ssd_vgg16(num_classes=80, input_size=300, scales=SSD300_SCALES_COCO)

_training = ssd_120e_training("ssd300_vgg16_120e_coco", "coco", input_size=300)
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py: SSD300's unpadded conv10_2/conv11_2 need the
# 300x300 input, so only the detection budget shrinks.
test_overrides = ["model.head.pre_nms_topk=50", "model.head.detections_per_img=20"]
