"""Weight converters from other libraries' formats into detkit checkpoints."""

from detkit.models.convert.darknet import (
    DarknetCfgError,
    DarknetHeader,
    DarknetWeightsError,
    build_yolov3_from_cfg,
    load_darknet_weights,
    save_darknet_weights,
)
from detkit.models.convert.mtcnn_facenet import convert_mtcnn_facenet, mtcnn_facenet, mtcnn_facenet_weights
from detkit.models.convert.torchvision_dense import ARCHS as TORCHVISION_DENSE_ARCHS
from detkit.models.convert.torchvision_dense import convert_torchvision_dense
from detkit.models.convert.torchvision_rcnn import ARCHS as TORCHVISION_RCNN_ARCHS
from detkit.models.convert.torchvision_rcnn import convert_torchvision_rcnn
from detkit.models.convert.torchvision_ssd import ARCHS as TORCHVISION_SSD_ARCHS
from detkit.models.convert.torchvision_ssd import convert_torchvision_ssd
from detkit.models.convert.ultralytics import ARCHS as ULTRALYTICS_ARCHS
from detkit.models.convert.ultralytics import convert_ultralytics

__all__ = [
    "DarknetCfgError",
    "DarknetHeader",
    "DarknetWeightsError",
    "TORCHVISION_DENSE_ARCHS",
    "TORCHVISION_RCNN_ARCHS",
    "TORCHVISION_SSD_ARCHS",
    "ULTRALYTICS_ARCHS",
    "build_yolov3_from_cfg",
    "convert_mtcnn_facenet",
    "convert_torchvision_dense",
    "convert_torchvision_rcnn",
    "convert_torchvision_ssd",
    "convert_ultralytics",
    "load_darknet_weights",
    "mtcnn_facenet",
    "mtcnn_facenet_weights",
    "save_darknet_weights",
]
