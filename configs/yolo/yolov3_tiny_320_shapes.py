"""YOLOv3-tiny, 320x320 letterboxed input, the synthetic shapes data (3 classes): trains on a CPU.

Multi-scale training over 256..384. The 256x256 shapes images hold objects 30..128 px across
(160 px at 320), inside the range of YOLOv3-tiny's COCO anchors (10x14 .. 344x319), kept as they are.
"""

from configs.common.yolo import TEST_OVERRIDES, yolov3_tiny

model = yolov3_tiny(num_classes=3, input_size=320, class_names=("circle", "square", "triangle"))
model.train_sizes = (256, 288, 320, 352, 384)

test_overrides = list(TEST_OVERRIDES)
