"""tools/eval_results.py: offline COCO and VOC evaluation from files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "fixtures"
COCO = DATA / "coco_eval"
PADILLA = DATA / "voc_eval" / "padilla"

_spec = importlib.util.spec_from_file_location("eval_results_tool", ROOT / "tools" / "eval_results.py")
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)

PUBLISHED_AP = {"bbox": (0.5045806987249628, 0.6969727247299577), "segm": (0.3195452758576433, 0.5622883972521636)}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_coco_table(iou_type: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "metrics.json"
    rc = tool.main(["--coco", str(COCO / "instances_val2014_100.json"),
                    str(COCO / f"instances_val2014_fake{iou_type}100_results.json"),
                    "--iou-type", iou_type, "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "on 100 images" in printed
    assert printed.count("Average Precision") == 6 and printed.count("Average Recall") == 6
    assert f"= {PUBLISHED_AP[iou_type][0]:.3f}" in printed and "person" in printed
    metrics = json.loads(out.read_text())
    assert metrics[f"{iou_type}/AP"] == pytest.approx(PUBLISHED_AP[iou_type][0], abs=1e-12)
    assert metrics[f"{iou_type}/AP50"] == pytest.approx(PUBLISHED_AP[iou_type][1], abs=1e-12)
    assert metrics[f"{iou_type}/AP-fire hydrant"] is None  # no gt in these images: NaN -> null


@pytest.mark.parametrize(("extra", "expected"), [
    ([], {"voc12/mAP@0.3": 0.245687, "voc07/mAP@0.3": 0.268398}),
    (["--metric", "voc12", "--no-plus-one"], {"voc12/mAP@0.3": 0.225397}),
    (["--metric", "voc07"], {"voc07/mAP@0.3": 0.268398}),
])
def test_voc_padilla(extra: list[str], expected: dict[str, float], tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.json"
    rc = tool.main(["--voc", str(PADILLA / "groundtruths"), str(PADILLA / "detections"), "--iou", "0.3",
                    "--json", str(out), *extra])
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert {k for k in metrics if "mAP" in k} == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6)
    printed = capsys.readouterr().out
    assert ("no +1" in printed) == ("--no-plus-one" in extra)


def test_plots(tmp_path: Path) -> None:
    assert tool.main(["--voc", str(PADILLA / "groundtruths"), str(PADILLA / "detections"), "--iou", "0.3",
                      "--plot", str(tmp_path / "voc")]) == 0
    assert sorted(p.name for p in (tmp_path / "voc").iterdir()) == ["all_classes.png", "pr_person.png"]
    assert tool.main(["--coco", str(COCO / "instances_val2014_100.json"),
                      str(COCO / "instances_val2014_fakebbox100_results.json"), "--plot", str(tmp_path / "coco")]) == 0
    assert (tmp_path / "coco" / "pr_person.png").is_file()


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad files are one line on stderr and exit status 2 (like every detkit command)."""
    assert tool.main(["--coco", str(tmp_path / "absent.json"), str(tmp_path / "r.json")]) == 2
    assert "absent.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    assert tool.main(["--coco", str(COCO / "instances_val2014_100.json"), str(bad)]) == 2
    assert "unknown image ids [1]" in capsys.readouterr().err
    assert tool.main(["--voc", str(tmp_path), str(tmp_path)]) == 2
    assert "no ground-truth .txt files" in capsys.readouterr().err
    for argv in ([], ["--coco", "a", "b", "--voc", "c", "d"], ["--coco", "a", "b", "--iou", "0.3"],
                 ["--voc", "a", "b", "--iou-type", "segm"], ["--voc", "a", "b", "--iou", "1.5"]):
        with pytest.raises(SystemExit) as exc:
            tool.parse_args(argv)
        assert exc.value.code == 2


def test_runs_as_a_script_from_elsewhere(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "eval_results.py"), "--voc", str(PADILLA / "groundtruths"),
         str(PADILLA / "detections"), "--iou", "0.3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "0.2457" in proc.stdout and "0.2684" in proc.stdout


def test_non_finite_scores_are_refused_naming_file_and_entry(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """NaN / inf scores used to be scored (all-NaN scores gave AP 1.000): now one line, status 2."""
    results = json.loads((COCO / "instances_val2014_fakebbox100_results.json").read_text())
    for bad_value in (float("nan"), float("inf")):
        bad = tmp_path / "nan_results.json"
        bad.write_text(json.dumps([dict(r) for r in results[:3]] + [dict(results[3], score=bad_value)]))
        assert tool.main(["--coco", str(COCO / "instances_val2014_100.json"), str(bad)]) == 2
        err = capsys.readouterr().err
        assert "nan_results.json: result 3 (image_id" in err and f"score {bad_value}" in err
    gt_dir, det_dir = tmp_path / "gt", tmp_path / "det"
    gt_dir.mkdir(), det_dir.mkdir()
    for path in (PADILLA / "groundtruths").iterdir():
        (gt_dir / path.name).write_text(path.read_text())
    for path in (PADILLA / "detections").iterdir():
        (det_dir / path.name).write_text(path.read_text())
    first = min(det_dir.iterdir())
    lines = first.read_text().splitlines()
    lines[1] = " ".join([lines[1].split()[0], "nan", *lines[1].split()[2:]])
    first.write_text("\n".join(lines) + "\n")
    assert tool.main(["--voc", str(gt_dir), str(det_dir)]) == 2
    assert f"{first.name}:2: non-finite confidence" in capsys.readouterr().err


def _padilla_as_xyxy(folder: Path, which: tuple[str, ...]) -> tuple[Path, Path]:
    """A copy of the Padilla files with the boxes of ``which`` ("gt", "det") as left top right bottom."""
    dirs = {"gt": (PADILLA / "groundtruths", folder / "gt", 1), "det": (PADILLA / "detections", folder / "det", 2)}
    for name, (source, target, first) in dirs.items():
        target.mkdir(parents=True)
        for path in source.glob("*.txt"):
            lines = []
            for line in path.read_text().splitlines():
                parts = line.split()
                if parts and name in which:
                    x, y, w, h = (float(v) for v in parts[first:first + 4])
                    parts[first:first + 4] = [f"{v:g}" for v in (x, y, x + w, y + h)]
                lines.append(" ".join(parts))
            (target / path.name).write_text("\n".join(lines) + "\n")
    return folder / "gt", folder / "det"


def test_voc_layout_is_named_never_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`class conf left top right bottom` files used to be read as xywh and give a wrong mAP."""
    expected = {"voc12/mAP@0.3": 0.245687, "voc07/mAP@0.3": 0.268398}
    gt, det = _padilla_as_xyxy(tmp_path / "det_xyxy", ("det",))
    assert tool.main(["--voc", str(gt), str(det), "--iou", "0.3"]) == 2
    err = capsys.readouterr().err
    assert f"{det}: all 24 detection boxes have width > left" in err and "--voc-det-layout" in err
    out = tmp_path / "m.json"
    for extra, folders in ((["--voc-det-layout", "xyxy"], (gt, det)),
                           (["--voc-layout", "xyxy"], _padilla_as_xyxy(tmp_path / "both_xyxy", ("gt", "det"))),
                           (["--voc-layout", "xywh"], (PADILLA / "groundtruths", PADILLA / "detections"))):
        assert tool.main(["--voc", *map(str, folders), "--iou", "0.3", "--json", str(out), *extra]) == 0
        metrics = json.loads(out.read_text())
        for key, value in expected.items():
            assert metrics[key] == pytest.approx(value, abs=1e-6), extra
    # xywh rows read as xyxy: right < left, named with file and line.
    assert tool.main(["--voc", str(PADILLA / "groundtruths"), str(PADILLA / "detections"), "--voc-layout", "xyxy"]) == 2
    assert "00001.txt:2: right < left or bottom < top in 'person 129 123 41 62'" in capsys.readouterr().err
    # Named explicitly, the evidence is a warning and the files are evaluated as named.
    with pytest.warns(UserWarning, match="is their layout xyxy"):
        assert tool.main(["--voc", str(gt), str(det), "--iou", "0.3", "--voc-layout", "xywh"]) == 0
    with pytest.raises(SystemExit):
        tool.parse_args(["--coco", "a", "b", "--voc-layout", "xyxy"])
