"""The default ONNX Runtime session of detkit's backend (detkit.apis.onnx_backend.session_options):
every graph optimisation, sequential execution on one inter-op thread, the intra-op threads asked
for, and workers that sleep instead of spinning (the onnxruntime twin of OMP_WAIT_POLICY=PASSIVE)."""

from __future__ import annotations

import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export_models import yolov3_model  # noqa: E402

from detkit.apis.onnx_backend import ONNXDetector, session_options  # noqa: E402
from detkit.export import export  # noqa: E402


def _assert_detkit_defaults(options, threads: int) -> None:
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.inter_op_num_threads == 1 and options.intra_op_num_threads == threads
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


@pytest.mark.parametrize("threads", [0, 2])
def test_session_options(threads):
    _assert_detkit_defaults(session_options(threads), threads)


def test_session_options_refuse_negative_threads():
    with pytest.raises(ValueError, match="threads must be >= 0"):
        session_options(-1)


def test_detector_session_uses_them(tmp_path):
    model = yolov3_model("tiny", 3, input_size=(64, 64))
    path = export(model, tmp_path / "tiny.onnx")
    detector = ONNXDetector(path, threads=2)
    _assert_detkit_defaults(detector.session.get_session_options(), 2)
    image = torch.rand((3, 64, 64), generator=torch.Generator().manual_seed(0))
    predictions, _ = detector([image])  # runs under them
    assert set(predictions[0]) >= {"boxes", "scores", "labels"}
