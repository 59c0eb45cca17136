"""tools/test.py: config + checkpoint -> evaluation, on a toy detector and dataset (eval_toys.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

_spec = importlib.util.spec_from_file_location("test_tool", ROOT / "tools" / "test.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CONFIG = f'''
import sys
sys.path.insert(0, {str(HERE)!r})

from eval_toys import OracleDetector, ToyShapes, collate
from torch.utils.data import DataLoader

from detkit.config import L
from detkit.evaluation import VOCEvaluator

model = L(OracleDetector)(score=0.5)
dataloader = dict(test=L(DataLoader)(dataset=L(ToyShapes)(n=4), batch_size=2, collate_fn=collate))
'''


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "toy_config.py"
    config.write_text(CONFIG)
    from eval_toys import OracleDetector

    checkpoint = tmp_path / "model_final.pth"
    torch.save({"model": OracleDetector(score=0.25).state_dict(), "iteration": 10}, checkpoint)
    return config, checkpoint


def test_runs_and_writes_outputs(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    out = tmp_path / "eval"
    rc = tool.main([str(config), str(checkpoint), "dataloader.test.batch_size=3", "--out", str(out),
                    "--device", "cpu", "--no-progress", "--plot"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Average Precision" in printed and "metrics.json" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["segm/AP"] == pytest.approx(1.0)
    results = json.loads((out / "coco_results.json").read_text())
    # The checkpoint's score (0.25), not the config's (0.5): the weights were loaded.
    assert results and {r["score"] for r in results} == {0.25}
    assert {r["category_id"] for r in results} <= {2, 5, 9}
    assert (out / "pr_curves" / "bbox" / "all_classes.png").is_file()


def test_evaluator_from_config_and_default_out(files: tuple[Path, Path]) -> None:
    config, checkpoint = files
    config.write_text(CONFIG + "dataloader['evaluator'] = L(VOCEvaluator)(class_names=['r', 'g', 'b'])\n")
    assert tool.main([str(config), str(checkpoint), "--device", "cpu", "--no-progress"]) == 0
    metrics = json.loads((checkpoint.parent / "eval" / "metrics.json").read_text())
    assert metrics["voc07/mAP@0.5"] == pytest.approx(1.0)
    assert (checkpoint.parent / "eval" / "voc_detections.json").is_file()


def test_clear_errors(files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = files
    assert tool.main([str(tmp_path / "none.py"), str(checkpoint)]) == 2
    assert "config not found" in capsys.readouterr().err

    assert tool.main([str(config), str(tmp_path / "none.pth"), "--device", "cpu"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err

    torch.save({"epoch": 3}, tmp_path / "other.pth")
    assert tool.main([str(config), str(tmp_path / "other.pth"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("detkit test: error: ") and err.count("\n") == 1  # one line, no traceback
    assert "no 'model' state dict" in err and "epoch" in err and "other.pth" in err

    torch.save({"model": {"weight": torch.zeros(1)}}, tmp_path / "wrong.pth")
    assert tool.main([str(config), str(tmp_path / "wrong.pth"), "--device", "cpu"]) == 2
    assert "does not fit" in capsys.readouterr().err

    no_loader = tmp_path / "no_loader.py"
    no_loader.write_text(CONFIG.replace("dataloader = dict(test=", "dataloader = dict(train="))
    assert tool.main([str(no_loader), str(checkpoint), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no dataloader.test" in err and "no_loader.py" in err

    assert tool.main([str(config), str(checkpoint), "modle.score=1"]) == 2
    assert "modle" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        tool.parse_args([str(config), str(checkpoint), "not-an-override"])


def test_runs_as_a_script(files: tuple[Path, Path], tmp_path: Path) -> None:
    config, checkpoint = files
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), str(config), str(checkpoint),
                           "--out", str(tmp_path / "o"), "--device", "cpu", "--no-progress"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "metrics.json").is_file()
