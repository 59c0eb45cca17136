"""A fresh run into a folder holding another run stops before any work; --overwrite starts over;
an unusable output folder fails before the model is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.cli import main
from detkit.engine import read_metrics, run_training
from detkit.engine.run_folder import OutputDirError
from engine_helpers import TOY_CONFIG

SHORT = ["train.max_iter=2", "train.eval_period=0", "train.checkpoint_period=0", "train.log_period=1", "evaluator=None",
         "train.best_metric=None", "model.width=4"]


@pytest.mark.parametrize("left_behind", ["model_final.pth", "model_0000005.pth", "metrics.jsonl",
                                         "last_checkpoint"])
def test_a_fresh_run_into_an_earlier_run_stops_before_any_work(tmp_path: Path, left_behind: str):
    (tmp_path / left_behind).write_bytes(b"earlier run")
    with pytest.raises(OutputDirError) as caught:
        run_training(TOY_CONFIG, output_dir=tmp_path, overrides=SHORT)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and left_behind in message
    assert "--resume auto" in message and "--overwrite" in message and "--output-dir" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [left_behind]  # no config.py, no log.txt
    assert (tmp_path / left_behind).read_bytes() == b"earlier run"


def test_config_and_log_alone_are_not_a_run(tmp_path: Path):
    (tmp_path / "config.py").write_text("# from a run that failed to start\n")
    (tmp_path / "log.txt").write_text("")
    run_training(TOY_CONFIG, output_dir=tmp_path, overrides=SHORT)
    assert (tmp_path / "model_final.pth").is_file()


def test_overwrite_deletes_the_earlier_run_and_starts_over(tmp_path: Path):
    (tmp_path / "model_0009999.pth").write_bytes(b"stale")
    (tmp_path / "metrics.jsonl").write_text('{"type": "train", "iter": 9999}\n')
    trainer = run_training(TOY_CONFIG, output_dir=tmp_path, overrides=[*SHORT, "train.overwrite=True"])
    assert trainer.iteration == 2
    assert not (tmp_path / "model_0009999.pth").exists()  # --resume auto cannot pick it up later
    assert [r["iter"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]  # the old record gone


def test_resume_auto_continues_where_a_fresh_run_stops(tmp_path: Path):
    run_training(TOY_CONFIG, output_dir=tmp_path, overrides=SHORT)
    trainer = run_training(TOY_CONFIG, output_dir=tmp_path, overrides=[*SHORT[1:], "train.max_iter=3"],
                           resume="auto")
    assert trainer.iteration == 3


def test_an_output_folder_that_is_a_file_fails_before_work(tmp_path: Path):
    target = tmp_path / "out"
    target.write_text("not a folder")
    with pytest.raises(OutputDirError, match="is a file"):
        run_training(TOY_CONFIG, output_dir=target, overrides=SHORT)
    with pytest.raises(OutputDirError, match="cannot be used"):
        run_training(TOY_CONFIG, output_dir=target / "below", overrides=SHORT)


def test_detkit_train_reports_the_earlier_run_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]):
    monkeypatch.syspath_prepend(str(TOY_CONFIG.parents[3] / "engine"))
    (tmp_path / "model_final.pth").write_bytes(b"earlier run")
    status = main(["train", str(TOY_CONFIG), *SHORT, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "--resume auto" in err, err
    assert main(["train", str(TOY_CONFIG), *SHORT, "--output-dir", str(tmp_path), "--overwrite"]) == 0
