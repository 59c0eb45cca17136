"""tools/benchmark_export.py: every family the session-7 rows add (Mask R-CNN, RetinaNet and FCOS
R50-FPN, SSD512, Keypoint R-CNN) is exported, run in onnxruntime and checked equal to eager by the
script's own check (:func:`measure`, which stops on a mismatch or on a photo without detections) at
a short side of 320 (the script's default 800 is its benchmark run); one timed run, no timing checked."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("benchmark_export_tool", REPO_ROOT / "tools" / "benchmark_export.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.detkit, "batched_nms"), reason="needs detkit._C")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("family", ["mask_rcnn_r50_fpn", "retinanet", "fcos", "ssd512", "keypoint_rcnn"])
def test_family_detects_and_onnxruntime_equals_eager(family, tmp_path, capsys):
    args = argparse.Namespace(image=tool.SAMPLES / "dog.jpg", runs=1, warmup=0, threads=1, min_size=320)
    torch.set_num_threads(1)
    size, count, medians = tool.measure(family, args, tmp_path)  # SystemExit on a mismatch or no detection
    assert count > 0 and set(medians) == {"eager", "onnxruntime"}
    assert f"{family}: {count} detections on dog.jpg" in capsys.readouterr().out
    if family in tool.RESIZE_INSIDE:
        assert size == "576x768"  # exported at the photo's size, resized inside the graph


def test_retinanet_and_fcos_scores_are_distinct_and_unsaturated():
    """The seeded R50 heads (export_models.one_stage_fpn_model; RetinaNet's outputs spread on the
    photo): detections on dog.jpg with distinct scores below 1, none on the blank image."""
    from export_testing import blank_image, load_rgb

    photo = load_rgb(tool.SAMPLES / "dog.jpg")
    for family in ("retinanet", "fcos"):
        model = tool.build(family, 320, photo)
        with torch.no_grad():
            scores = model([photo])[0][0]["scores"]
            blank = model([blank_image(*photo.shape[1:])])[0][0]["scores"]
        assert len(scores) > 0 and len(blank) == 0, family
        assert float(scores.max()) < 0.999 and len(set(scores.tolist())) == len(scores), family

