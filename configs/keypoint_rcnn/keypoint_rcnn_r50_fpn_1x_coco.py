"""Keypoint R-CNN, ResNet-50-FPN, COCO persons (one class, 17 keypoints), torchvision's
keypointrcnn_resnet50_fpn settings (eight 512-channel 3x3 convs on 14x14 RoIs, 56x56 heat maps;
multi-scale short side 640..800 in training, 800 in evaluation).

Recipe: the model is torchvision's; the schedule is detectron2's 1x (``rcnn_1x_training``: SGD lr
0.02 at batch 16, 90k iterations, steps at 60k and 80k, 1000 warm-up iterations; detectron2's
keypoint_rcnn_R_50_FPN_1x.yaml). torchvision's own reference trained this model 46 epochs at lr
0.02 (steps at 36 and 43, references/detection/README.md), with images without persons dropped.
Data: datasets/coco/annotations/person_keypoints_{train,val}2017.json with the images of
train2017 / val2017 (``dataloader.root``); evaluation: bbox and keypoint AP (OKS with pycocotools'
person sigmas).

    python tools/train.py configs/keypoint_rcnn/keypoint_rcnn_r50_fpn_1x_coco.py

torchvision's weights: ``detkit convert --from torchvision --arch keypointrcnn_resnet50_fpn IN.pth OUT.pth``.
"""

from configs.common.rcnn import (
    COCO_PERSON_FLIP_PAIRS,
    COCO_TRAIN_MIN_SIZES,
    TEST_OVERRIDES,
    keypoint_rcnn,
    rcnn_1x_training,
)
from detkit.config import L
from detkit.data.transforms import rcnn_train_transforms

model = keypoint_rcnn(num_classes=1, depth=50, min_size=COCO_TRAIN_MIN_SIZES, class_names=["person"])

_training = rcnn_1x_training("keypoint_rcnn_r50_fpn_1x_coco", "coco")
dataloader = _training["dataloader"]
for _split in (dataloader.train, dataloader.test):  # person_keypoints_*.json
    _split.dataset.with_keypoints = True
dataloader.train.dataset.transforms = L(rcnn_train_transforms)(
    keypoint_flip_pairs=[list(p) for p in COCO_PERSON_FLIP_PAIRS]
)
# The engine's evaluator reads person_keypoints_val2017.json (sigmas: pycocotools' person ones)
# and adds keypoint AP because the model predicts keypoints.
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]
train.best_metric = "keypoints/AP"

test_overrides = list(TEST_OVERRIDES)
