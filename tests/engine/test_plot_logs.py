"""tools/plot_logs.py: PNG plots of the loss, lr and metric curves from metrics.jsonl."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine_helpers import REPO_ROOT


def _plot_logs_module():
    spec = importlib.util.spec_from_file_location("plot_logs", REPO_ROOT / "tools" / "plot_logs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_log(path: Path) -> None:
    records = []
    for it in range(10, 110, 10):
        records.append({"type": "train", "iter": it, "epoch": 0, "lr": 0.01,
                        "loss_cls": 1.0 / it ** 0.5, "loss_box": 0.5 / it ** 0.3,
                        "total_loss": 1.0 / it ** 0.5 + 0.5 / it ** 0.3, "time": 0.1,
                        "data_time": 0.01})
        if it % 50 == 0:
            records.append({"type": "eval", "iter": it, "epoch": 0, "bbox/AP": it / 400,
                            "bbox/AP50": it / 200})
    records.append({"type": "train", "iter": 50, "loss_cls": 9.0})  # a resumed run's rewrite
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"type": "train", "it'  # torn line
    path.write_text(text)


def test_plots_are_written_and_not_blank(tmp_path: Path):
    log = tmp_path / "run" / "metrics.jsonl"
    log.parent.mkdir()
    _write_log(log)
    plot_logs = _plot_logs_module()
    written = plot_logs.plot_logs([str(log.parent)])
    assert sorted(p.name for p in written) == ["losses.png", "lr.png", "metrics.png"]
    for path in written:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] >= 300 and image.shape[1] >= 400
        coloured = (image.max(axis=2).astype(int) - image.min(axis=2)) > 60
        assert coloured.sum() > 500, f"{path.name} has almost no curve pixels"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10
    curves = plot_logs.load_curves(log, "train")
    assert curves["loss_cls"][1][curves["loss_cls"][0].index(50)] == 9.0  # last record wins
    assert set(plot_logs.load_curves(log, "eval")) == {"bbox/AP", "bbox/AP50"}


def test_command_line_and_missing_log(tmp_path: Path, capsys):
    log = tmp_path / "metrics.jsonl"
    _write_log(log)
    plot_logs = _plot_logs_module()
    plot_logs.main([str(log), "--out", str(tmp_path / "plots"), "--keys", "loss_cls"])
    assert capsys.readouterr().out.strip().endswith("losses.png")
    assert (tmp_path / "plots" / "losses.png").stat().st_size > 5000
    with pytest.raises(FileNotFoundError, match="no metrics log"):
        plot_logs.plot_logs([str(tmp_path / "nowhere")])
