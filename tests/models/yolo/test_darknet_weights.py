"""darknet .weights into detkit and back: byte-identical round trip, clear size errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from yolo_testing import perturb_batchnorms
from detkit.models.convert.darknet import (
    DarknetHeader,
    DarknetWeightsError,
    build_yolov3_from_cfg,
    darknet_weights_bytes,
    load_darknet_weights,
    read_darknet_header,
    save_darknet_weights,
)
from detkit.models.zoo import YOLO_DATA_DIR

TINY_CFG = YOLO_DATA_DIR / "yolov3-tiny.cfg"


@pytest.mark.network
def test_real_tiny_weights_round_trip_byte_identical(tiny_weights_path: Path, tmp_path: Path):
    model = build_yolov3_from_cfg(TINY_CFG)
    header = load_darknet_weights(model, tiny_weights_path)
    assert (header.major, header.minor, header.revision) == (0, 2, 0) and header.seen_is_int64
    # The layout: the first conv (16 filters, batch norm) starts with its 16 bn betas.
    first = np.frombuffer(tiny_weights_path.read_bytes(), "<f4", count=16, offset=header.nbytes)
    torch.testing.assert_close(model.backbone.convs[0][1].bias, torch.from_numpy(first.copy()))
    out = save_darknet_weights(model, tmp_path / "copy.weights", header)
    assert out.read_bytes() == tiny_weights_path.read_bytes()


def test_round_trip_of_random_model_and_old_header(tmp_path: Path):
    source = perturb_batchnorms(build_yolov3_from_cfg(TINY_CFG))
    for header in (DarknetHeader(0, 2, 0, 123456789012), DarknetHeader(0, 1, 0, 7)):  # int64 / int32 seen
        path = save_darknet_weights(source, tmp_path / "w.weights", header)
        assert path.stat().st_size == header.nbytes + 4 * 8_858_734
        target = build_yolov3_from_cfg(TINY_CFG)
        assert load_darknet_weights(target, path) == header
        for (key, a), b in zip(source.state_dict().items(), target.state_dict().values()):
            if a.is_floating_point():
                torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
        assert darknet_weights_bytes(target, header) == path.read_bytes()
    assert read_darknet_header(path.read_bytes()).seen == 7


def test_wrong_size_is_a_clear_error(tmp_path: Path):
    model = build_yolov3_from_cfg(TINY_CFG)
    data = darknet_weights_bytes(model)
    short, long = tmp_path / "short.weights", tmp_path / "long.weights"
    short.write_bytes(data[:-8])
    long.write_bytes(data + b"\0" * 4)
    with pytest.raises(DarknetWeightsError, match=r"short.weights: holds 8858732 .* needs 8858734 \(too short\)"):
        load_darknet_weights(model, short)
    with pytest.raises(DarknetWeightsError, match=r"holds 8858735 .* needs 8858734 \(too long\)"):
        load_darknet_weights(model, long)


def test_fused_model_cannot_be_exported(tmp_path: Path):
    model = build_yolov3_from_cfg(TINY_CFG).fuse()
    with pytest.raises(ValueError, match="fused"):
        save_darknet_weights(model, tmp_path / "x.weights")


@pytest.mark.network
def test_fetch_weights_command_prints_the_cached_path(tiny_weights_path: Path, capsys: pytest.CaptureFixture[str]):
    import importlib.util

    tool = Path(__file__).resolve().parents[3] / "tools" / "fetch_weights.py"
    spec = importlib.util.spec_from_file_location("detkit_tool_fetch_weights", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "yolov3-tiny" in module.FETCHERS
    assert module.main(["yolov3-tiny"]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_weights_path)
