"""detkit's compiled ops exported through their ONNX translations give the ops' results in
onnxruntime, in standard ONNX only; soft_nms and overlap='min' are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from export_testing import assert_standard_onnx
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnxruntime  # noqa: E402

from detkit.export.onnx_ops import UnsupportedExportError, translation_table  # noqa: E402
from detkit.ops import batched_nms, nms, roi_align  # noqa: E402
from detkit.ops._ext import ext_loaded  # noqa: E402

pytestmark = pytest.mark.skipif(not ext_loaded(), reason="detkit._C is not built: no torch.ops.detkit to translate")


def _export(module: nn.Module, args: tuple, path: Path, names: list[str], dynamic: dict | None = None) -> Path:
    torch.onnx.export(module.eval(), args, str(path), dynamo=True, custom_translation_table=translation_table(),
                      input_names=names, dynamic_shapes=dynamic, external_data=False, verbose=False)
    assert_standard_onnx(path)
    return path


def _run(path: Path, feeds: dict[str, torch.Tensor]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})


def _random_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 80 + 1], 1)
    scores = torch.rand(n, generator=g)
    scores[: n // 10] = scores[n // 10 : 2 * (n // 10)]  # exact ties: the order breaks them by index
    return boxes, scores, torch.randint(0, 6, (n,), generator=g)


class _NMS(nn.Module):
    def forward(self, boxes, scores, idxs):
        return (torch.ops.detkit.nms(boxes, scores, 0.45), torch.ops.detkit.batched_nms(boxes, scores, idxs, 0.5))


def test_nms_and_batched_nms_equal_the_kernels(tmp_path):
    boxes, scores, idxs = _random_boxes(300, 0)
    n = torch.export.Dim("n", min=0)
    path = _export(_NMS(), (boxes, scores, idxs), tmp_path / "nms.onnx", ["boxes", "scores", "idxs"],
                   ({0: n}, {0: n}, {0: n}))
    for count, seed in [(300, 0), (57, 1), (1, 2), (0, 3)]:
        b, s, i = _random_boxes(count, seed) if count else (boxes[:0], scores[:0], idxs[:0])
        kept_nms, kept_batched = _run(path, {"boxes": b, "scores": s, "idxs": i})
        assert kept_nms.tolist() == nms(b, s, 0.45).tolist()
        assert kept_batched.tolist() == batched_nms(b, s, i, 0.5).tolist()
        if count == 300:
            assert 0 < len(kept_batched) < count


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_roi_align_equals_the_kernel(tmp_path, aligned, sampling_ratio):
    class RoIAlign(nn.Module):
        def forward(self, features, rois):
            return torch.ops.detkit.roi_align(features, rois, 0.25, 7, 7, sampling_ratio, aligned)

    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 40, 48, generator=g)
    xy = torch.rand(20, 2, generator=g) * 150
    rois = torch.cat([torch.randint(0, 2, (20, 1), generator=g).float(), xy, xy + torch.rand(20, 2, generator=g) * 60], 1)
    rois[0, 1:] = torch.tensor([10.0, 10.0, 10.5, 10.2])  # smaller than a pixel
    rois[1, 1:] = torch.tensor([-20.0, -8.0, 30.0, 12.0])  # partly outside the map
    path = _export(RoIAlign(), (features, rois), tmp_path / "roi_align.onnx", ["features", "rois"])
    (out,) = _run(path, {"features": features, "rois": rois})
    expected = roi_align(features, rois, (7, 7), 0.25, sampling_ratio, aligned)
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=1e-5)


def test_soft_nms_and_min_overlap_are_refused_in_one_line(tmp_path):
    class Soft(nn.Module):
        def forward(self, boxes, scores):
            return torch.ops.detkit.soft_nms(boxes, scores, 0.3, 0.5, 0.001, 0)

    class MinOverlap(nn.Module):
        def forward(self, boxes, scores):
            return torch.ops.detkit.nms(boxes, scores, 0.7, "min")

    boxes, scores, _ = _random_boxes(20, 0)
    for module, match in [(Soft(), "soft_nms has no ONNX operator"), (MinOverlap(), "overlap='min'")]:
        with pytest.raises(Exception) as caught:
            _export(module, (boxes, scores), tmp_path / "refused.onnx", ["boxes", "scores"])
        chain = [caught.value]
        while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
            chain.append(chain[-1].__cause__ or chain[-1].__context__)
        refusal = [e for e in chain if isinstance(e, UnsupportedExportError)]
        assert refusal and match in str(refusal[0]) and "\n" not in str(refusal[0])
