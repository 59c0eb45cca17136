"""The model zoo: detkit's shipped configs by name, and models built or loaded without a config path.

::

    from detkit import model_zoo

    model_zoo.list_configs()                          # ["faster_rcnn_r18_fpn_1x_shapes", ...]
    cfg = model_zoo.get_config("yolov3_tiny_416_coco", ["model.num_classes=20"])
    model = model_zoo.build_model("faster_rcnn_r50_fpn_1x_coco")       # untrained
    model = model_zoo.load("runs/yolov3_tiny_320_shapes/model_final.pth")  # trained, eval mode
    model = model_zoo.load("yolov3_tiny_coco_pretrained")             # official weights

Configs ship inside the package (``detkit/model_zoo/configs``) or come from the checkout's
``configs/``; everything works from any working directory.
"""

from detkit.model_zoo.api import (
    CheckpointError, build_model, load, load_config_like, pretrained_weights_file, read_checkpoint,
)
from detkit.model_zoo.registry import (
    UnknownConfigError, config_module, configs_dir, get_config, get_config_file, list_configs,
    resolve_config_file,
)

__all__ = [
    "CheckpointError", "UnknownConfigError", "build_model", "config_module", "configs_dir", "get_config",
    "get_config_file", "list_configs", "load", "load_config_like", "pretrained_weights_file", "read_checkpoint",
    "resolve_config_file",
]
