"""SSDLite320, MobileNetV3-Large (reduced tail), COCO (80 classes): torchvision's
ssdlite320_mobilenet_v3_large (600 epochs in its recipe)."""

from configs.common.ssd import ssdlite320_mobilenet_v3

model = ssdlite320_mobilenet_v3(num_classes=80)

# Shrinks the config for tests/test_configs.py (the extras are all padded: any input works; 64
# still leaves the 1x1 last map a batch of 2 for BatchNorm).
test_overrides = ["model.image_size=(160, 160)", "model.topk_candidates=50", "model.detections_per_img=20"]
