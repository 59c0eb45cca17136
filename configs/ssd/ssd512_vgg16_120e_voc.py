"""SSD512, VGG16, Pascal VOC (20 classes); default-box scales of the paper's VOC SSD512 model.
Trained on VOC07+12 trainval with torchvision's 120-epoch SSD300 recipe at 512
(``ssd_120e_training``), evaluated on VOC2007 test (11-point mAP). VOC is read from
datasets/VOCdevkit (configs/common/datasets.py):

    python tools/train.py configs/ssd/ssd512_vgg16_120e_voc.py
"""

from configs.common.ssd import SSD512_SCALES_VOC, ssd_vgg16, ssd_120e_training

model = ssd_vgg16(num_classes=20, input_size=512, scales=SSD512_SCALES_VOC)

_training = ssd_120e_training("ssd512_vgg16_120e_voc", "voc", input_size=512)
dataloader = _training["dataloader"]  # the engine builds the evaluator from dataloader.test
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

# Shrinks the config for tests/test_configs.py (the 4x4 conv12_2 needs a 2x2 conv11_2,
# which needs inputs of about 260 or more).
test_overrides = ["model.image_size=(320, 320)", "model.head.pre_nms_topk=50", "model.head.detections_per_img=20"]
