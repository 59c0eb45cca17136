"""Keypoint R-CNN, ResNet-18-FPN, trained on the keypoint variant of detkit's shapes data (the
corners of triangles and squares, 7 keypoints; circles have none): small enough for a CPU. The
data are generated under runs/data/shapes_keypoints on first use.

    python tools/train.py configs/keypoint_rcnn/keypoint_rcnn_r18_fpn_1x_shapes.py

Against torchvision's recipe (configs/keypoint_rcnn/keypoint_rcnn_r50_fpn_1x_coco.py): ResNet-18,
64-channel FPN, a 256-d box head, and a keypoint head of four 3x3 convs of 64 channels (eight of
512 in torchvision: on up to 128 foreground RoIs a batch, those 14x14 convs would dominate a CPU
step; the mask config's head has 64 too), trained from scratch with AdamW and a cosine decay
(configs/common/shapes.py) for 1500 iterations (the box recipe's 1200 plus a quarter, for the
heat maps; about 0.5 s an iteration on a quiet 2-core CPU, as Mask R-CNN R18-FPN); evaluation
adds COCO keypoint AP (OKS, sigma 0.067 for every corner), which picks the best checkpoint.
"""

from configs.common.rcnn import TEST_OVERRIDES, keypoint_rcnn
from configs.common import shapes

model = shapes.small_rcnn_for_shapes(
    keypoint_rcnn(
        num_classes=shapes.NUM_CLASSES,
        num_keypoints=len(shapes.KEYPOINT_NAMES),
        keypoint_channels=64,
        keypoint_convs=4,
        keypoint_names=shapes.KEYPOINT_NAMES,
        keypoint_flip_pairs=shapes.KEYPOINT_FLIP_PAIRS,
        skeleton=shapes.KEYPOINT_SKELETON,
        depth=18,
        min_size=256,
        max_size=320,
        fpn_channels=64,
        representation_size=256,
        frozen_stages=0,
        class_names=shapes.CLASS_NAMES,
    )
)
_training = shapes.keypoint_rcnn_shapes_training("keypoint_rcnn_r18_fpn_1x_shapes", max_iter=1500)
dataloader, evaluator = _training["dataloader"], _training["evaluator"]
optimizer, lr_schedule, train = _training["optimizer"], _training["lr_schedule"], _training["train"]

test_overrides = list(TEST_OVERRIDES)
