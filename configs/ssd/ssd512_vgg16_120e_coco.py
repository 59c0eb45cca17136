"""SSD512, VGG16, COCO (80 classes); default-box scales of the paper's COCO SSD512 model."""

from configs.common.ssd import SSD512_SCALES_COCO, ssd_vgg16

model = ssd_vgg16(num_classes=80, input_size=512, scales=SSD512_SCALES_COCO)

# Shrinks the config for tests/test_configs.py (the 4x4 conv12_2 needs a 2x2 conv11_2,
# which needs inputs of about 260 or more).
test_overrides = ["model.image_size=(320, 320)", "model.topk_candidates=50", "model.detections_per_img=20"]
