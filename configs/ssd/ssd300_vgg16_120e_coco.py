"""SSD300, VGG16, COCO (80 classes): torchvision's ssd300_vgg16 (120 epochs in its recipe)."""

from configs.common.ssd import SSD300_SCALES_COCO, ssd_vgg16

model = ssd_vgg16(num_classes=80, input_size=300, scales=SSD300_SCALES_COCO)

# Shrinks the config for tests/test_configs.py: SSD300's unpadded conv10_2/conv11_2 need the
# 300x300 input, so only the detection budget shrinks.
test_overrides = ["model.topk_candidates=50", "model.detections_per_img=20"]
