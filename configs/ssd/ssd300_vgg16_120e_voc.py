"""SSD300, VGG16, Pascal VOC (20 classes); default-box scales of the paper's VOC model."""

from configs.common.ssd import SSD300_SCALES_VOC, ssd_vgg16

model = ssd_vgg16(num_classes=20, input_size=300, scales=SSD300_SCALES_VOC)

# Shrinks the config for tests/test_configs.py: SSD300's unpadded conv10_2/conv11_2 need the
# 300x300 input, so only the detection budget shrinks.
test_overrides = ["model.topk_candidates=50", "model.detections_per_img=20"]
