"""load_weights (detkit.utils.checkpoint, also at detkit.models.weights): reports, prefix maps,
shape mismatches, strict mode, and safe loading."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from detkit.models.backbones import ResNet
from detkit.models import weights
from detkit.models.weights import LoadReport, apply_prefix_map, load_weights
from detkit.utils.checkpoint import CheckpointError


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def save(state_dict, tmp_path, name="weights.pth"):
    path = tmp_path / name
    torch.save(state_dict, path)
    return path


def test_exact_checkpoint_loads_with_a_clean_report(tmp_path, caplog):
    source = small_model()
    path = save(source.state_dict(), tmp_path)
    target = small_model()
    with caplog.at_level(logging.INFO, logger="detkit.utils.checkpoint"):
        report = load_weights(target, path)
    assert isinstance(report, LoadReport) and report.ok
    assert set(report.loaded_keys) == set(target.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
    assert "loaded 9 tensors" in caplog.text  # 2 conv weights, 2 conv biases, 5 norm tensors


def test_wrong_key_names_are_listed(tmp_path, caplog):
    state = small_model().state_dict()
    state["2.kernel"] = state.pop("2.weight")
    state["head.fc.weight"] = torch.zeros(3)
    path = save(state, tmp_path)
    with caplog.at_level(logging.WARNING, logger="detkit.utils.checkpoint"):
        report = load_weights(small_model(), path)
    assert not report.ok
    assert report.missing_keys == ["2.weight"]
    assert sorted(report.unexpected_keys) == ["2.kernel", "head.fc.weight"]
    text = str(report)
    assert "missing in checkpoint (1): 2.weight" in text and "2.kernel" in text and "head.fc.weight" in text
    assert "2.kernel" in caplog.text  # logged as a warning


def test_shape_mismatch_is_skipped_and_reported(tmp_path):
    state = small_model().state_dict()
    state["2.weight"] = torch.ones(5, 4, 1, 1)
    path = save(state, tmp_path)
    target = small_model()
    before = target.state_dict()["2.weight"].clone()
    report = load_weights(target, path)
    assert report.shape_mismatches == [("2.weight", (5, 4, 1, 1), (2, 4, 1, 1))]
    assert report.missing_keys == [] and "2.weight" not in report.loaded_keys
    assert torch.equal(target.state_dict()["2.weight"], before)
    assert torch.equal(target.state_dict()["0.weight"], state["0.weight"])
    assert "shape mismatch, skipped: 2.weight: checkpoint [5, 4, 1, 1] vs module [2, 4, 1, 1]" in str(report)


def test_strict_raises_and_leaves_the_module_unchanged(tmp_path):
    state = small_model().state_dict()
    state["extra.weight"] = torch.zeros(1)
    path = save(state, tmp_path)
    target = small_model()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"weights\.pth does not fit .*1 unexpected key: extra\.weight"):
        load_weights(target, path, strict=True)
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_prefix_map_and_nested_state_dict(tmp_path):
    source = small_model()
    nested = {"model": {"backbone.body." + k: v for k, v in source.state_dict().items()}, "epoch": 3}
    path = save(nested, tmp_path)
    report = load_weights(small_model(), path, prefix_map={"backbone.body.": ""})
    assert report.ok


def test_apply_prefix_map_longest_prefix_wins():
    state = {"a.b.w": torch.zeros(1), "a.x": torch.zeros(1), "c": torch.zeros(1)}
    assert set(apply_prefix_map(state, {"a.": "A.", "a.b.": "B."})) == {"B.w", "A.x", "c"}


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist.pth"):
        load_weights(small_model(), tmp_path / "does_not_exist.pth")


class NotATensor:
    """A pickled object that weights_only loading must refuse."""


def test_files_with_code_are_refused(tmp_path):
    path = save({"0.weight": NotATensor()}, tmp_path, "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: .*NotATensor.*weights_only=True"):
        load_weights(small_model(), path)


def test_frozen_bn_backbone_reports_torchvision_fc_only(tmp_path):
    import torchvision

    path = save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path)
    report = load_weights(ResNet(18), path)  # num_batches_tracked is not "unexpected"
    assert report.missing_keys == [] and report.unexpected_keys == ["fc.weight", "fc.bias"]


def test_the_old_names_at_models_weights_still_work():
    from detkit.utils import checkpoint

    assert weights.load_weights is checkpoint.load_weights and weights.LoadReport is checkpoint.LoadReport
    with pytest.warns(DeprecationWarning, match="CheckpointError"):
        assert weights.WeightsMismatchError is CheckpointError
