"""The exportable keypoint decoding (detkit.export.keypoints): eager it is the model's
heatmaps_to_keypoints; its ONNX Loop in onnxruntime gives the same keypoints and scores for boxes
of every shape (sub-pixel, thin, larger than the heat map) and for no boxes at all."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from export_testing import BOX_ATOL, SCORE_ATOL

from detkit.export.keypoints import decode_keypoints
from detkit.export.onnx_ops import translation_table
from detkit.models.roi_heads.keypoint_head import heatmaps_to_keypoints


class _Decode(nn.Module):
    """Decodes the boxes whose ``keep`` is positive (a data-dependent count, as after NMS)."""

    def forward(self, maps: Tensor, rois: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        kept = torch.nonzero(keep > 0)[:, 0]
        return decode_keypoints(maps[kept], rois[kept])


def _inputs(count: int = 9) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randn((count, 5, 28, 28), generator=generator) * 3
    maps = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)  # smooth, as the head's
    corners = torch.rand((count, 2), generator=generator) * 200
    sizes = torch.tensor([[0.3, 0.4], [1.0, 1.0], [2.5, 140.0], [90.0, 3.2], [55.5, 56.0], [56.0, 56.0],
                          [113.7, 61.2], [300.9, 250.1], [17.0, 430.5]])[:count]  # fmt: skip
    return maps, torch.cat([corners, corners + sizes], dim=1)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    maps, rois = _inputs()
    count = torch.export.Dim("count")
    path = tmp_path_factory.mktemp("keypoints") / "decode.onnx"
    torch.onnx.export(
        _Decode().eval(), (maps, rois, torch.ones(len(rois))), str(path), dynamo=True, opset_version=18,
        dynamic_shapes=({0: count}, {0: count}, {0: count}), custom_translation_table=translation_table(),
    )  # fmt: skip
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), path


def test_eager_op_is_the_models_decoding():
    maps, rois = _inputs()
    keypoints, scores = decode_keypoints(maps, rois)
    expected_keypoints, expected_scores = heatmaps_to_keypoints(maps, rois)
    assert torch.equal(keypoints, expected_keypoints) and torch.equal(scores, expected_scores)


@pytest.mark.parametrize("kept", [list(range(9)), [2, 7], []], ids=["all", "two", "none"])
def test_onnx_loop_equals_eager(session, kept):
    session, _ = session
    maps, rois = _inputs()
    keep = torch.zeros(len(rois))
    keep[kept] = 1
    names = [i.name for i in session.get_inputs()]
    keypoints, scores = session.run(None, dict(zip(names, (maps.numpy(), rois.numpy(), keep.numpy()))))
    expected_keypoints, expected_scores = heatmaps_to_keypoints(maps[kept], rois[kept])
    assert keypoints.shape == (len(kept), 5, 3) and scores.shape == (len(kept), 5)
    torch.testing.assert_close(torch.from_numpy(keypoints), expected_keypoints, rtol=0, atol=BOX_ATOL)
    torch.testing.assert_close(torch.from_numpy(scores), expected_scores, rtol=0, atol=SCORE_ATOL)


def test_graph_is_standard_onnx_with_a_loop(session):
    import onnx

    model = onnx.load(str(session[1]))
    onnx.checker.check_model(model)
    assert "Loop" in {node.op_type for node in model.graph.node}
    loops = [node for node in model.graph.node if node.op_type == "Loop"]
    body = [node for loop in loops for attribute in loop.attribute for node in attribute.g.node]
    assert body and {node.domain for node in list(model.graph.node) + body} <= {"", "ai.onnx"}
    assert "Resize" not in {node.op_type for node in body}  # PyTorch's bicubic formula, not ONNX Resize
