"""Every family's eval forward is torch.export-clean: ``torch.export.export(model, (image,),
strict=False)`` succeeds (no data-dependent Python branch, no host loop over detections) and the
exported program gives the eager model's detections, bit for bit, on a sample photo.

Seeded random weights (variance-preserving convs, random batch-norm statistics) and lowered score
thresholds, so that every case has detections; small input sizes keep each case fast.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from detkit.config import instantiate, load_config

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "detkit" / "model_data" / "samples"


class _FirstImage(torch.nn.Module):
    """One ``[3, H, W]`` image in, the sorted prediction tensors of that image out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detections = self.model([image])[0][0]
        return tuple(detections[key] for key in sorted(detections))


def _photo(height: int, width: int, name: str = "dog.jpg") -> torch.Tensor:
    bgr = cv2.resize(cv2.imread(str(SAMPLES / name)), (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_in")
                if module.bias is not None:
                    torch.nn.init.normal_(module.bias, std=0.1)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(std=0.1)
                module.running_mean.normal_(std=0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


_RCNN_SIZE = ["model.preprocess.min_size=96", "model.preprocess.max_size=128"]

FAMILIES = {
    "ssd300": ("configs/ssd/ssd300_vgg16_120e_voc.py", ["model.head.score_thresh=0.0"]),
    "ssdlite": ("configs/ssd/ssdlite320_mobilenetv3_shapes.py", ["model.image_size=(160, 160)", "model.head.score_thresh=0.0"]),
    "yolov8n": ("configs/yolov8/yolov8n_320_shapes.py", ["model.input_size=(128, 128)", "model.head.score_thresh=0.0"]),
    "yolo11n": ("configs/yolov8/yolo11n_100e_voc.py", ["model.input_size=(128, 128)", "model.head.score_thresh=0.0"]),
    "retinanet": ("configs/retinanet/retinanet_r18_fpn_shapes.py", [*_RCNN_SIZE, "model.head.score_thresh=0.0"]),
    "fcos": ("configs/fcos/fcos_r18_fpn_shapes.py", [*_RCNN_SIZE, "model.head.score_thresh=0.0"]),
    # Fewer detections than detections_per_img: the keypoint decoding's unused slots are dropped.
    "keypoint_rcnn": ("configs/keypoint_rcnn/keypoint_rcnn_r18_fpn_1x_shapes.py", [*_RCNN_SIZE, "model.roi_heads.score_thresh=0.3"]),
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_program_gives_the_eager_detections(family):
    config, overrides = FAMILIES[family]
    torch.manual_seed(0)
    model = _FirstImage(_randomised(instantiate(load_config(ROOT / config, overrides).model)))
    image = _photo(96, 128)
    program = torch.export.export(model, (image,), strict=False)
    with torch.no_grad():
        # Another photo: other detection counts through the same program.
        for photo in (image, _photo(96, 128, "person.jpg")):
            expected = model(photo)
            actual = program.module()(photo)
            assert expected[0].shape[0] > 0
            assert len(actual) == len(expected)
            for reference, value in zip(expected, actual):
                torch.testing.assert_close(value, reference, rtol=0, atol=0)


@pytest.fixture(scope="module")
def mtcnn():
    from detkit.models.convert.mtcnn_facenet import mtcnn_facenet
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        return mtcnn_facenet()
    except PyPIDownloadError as error:
        pytest.skip(f"cannot fetch facenet-pytorch's MTCNN weights (no network?): {error}")


def test_mtcnn_cascade_exports_and_gives_the_eager_faces(mtcnn):
    """The whole cascade (pyramid, PNet, NMS, RNet and ONet crops, calibration): the window
    counts are unbacked sizes, the no-window shortcuts are guard_or_false / guard_or_true, and
    the exported integral image is float64 (eager: exact int32, the same sums)."""
    model = _FirstImage(mtcnn)
    face = _photo(120, 160, "ivan.jpg")
    program = torch.export.export(model, (face,), strict=False)
    blank = torch.full_like(face, 0.5)
    with torch.no_grad():
        for image, has_faces in ((face, True), (blank, False)):
            expected = model(image)
            actual = program.module()(image)
            assert (expected[0].shape[0] > 0) == has_faces
            for reference, value in zip(expected, actual):
                torch.testing.assert_close(value, reference, rtol=0, atol=0)


class _DecodeWithoutBound(torch.nn.Module):
    def forward(self, maps: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from detkit.models.roi_heads import heatmaps_to_keypoints

        kept = rois[:, 0] >= 0
        return heatmaps_to_keypoints(maps[kept], rois[kept])


def test_keypoint_decoding_of_a_data_dependent_number_of_detections_equals_torchvision():
    from torchvision.models.detection import roi_heads as tv_roi_heads

    from detkit.models.roi_heads import heatmaps_to_keypoints

    class Decode(torch.nn.Module):
        def forward(self, maps: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            kept = rois[:, 0] >= 0  # a data-dependent count, as after NMS
            return heatmaps_to_keypoints(maps[kept], rois[kept], max_rois=maps.shape[0])

    generator = torch.Generator().manual_seed(0)
    maps = torch.randn((6, 5, 56, 56), generator=generator)
    corners = torch.rand((6, 2), generator=generator) * 60
    rois = torch.cat([corners, corners + 0.5 + torch.rand((6, 2), generator=generator) * 40], dim=1)
    program = torch.export.export(Decode(), (maps, rois), strict=False)
    rois[[1, 4], 0] = -1.0  # two detections fewer than at export
    kept = rois[:, 0] >= 0
    keypoints, scores = program.module()(maps, rois)
    their_keypoints, their_scores = tv_roi_heads.heatmaps_to_keypoints(maps[kept], rois[kept])
    assert keypoints.shape == (4, 5, 3)
    torch.testing.assert_close(keypoints, their_keypoints, rtol=0, atol=0)
    torch.testing.assert_close(scores, their_scores, rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs max_rois"):
        torch.export.export(_DecodeWithoutBound(), (maps, rois), strict=False)
