from configs.common.toy_models import toy_detector

model = toy_detector()
model.backbone.widht = 16
