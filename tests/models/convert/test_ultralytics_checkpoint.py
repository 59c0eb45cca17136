"""read_ultralytics_checkpoint: checkpoints written by ultralytics' own saving, read in a process
without ultralytics; malicious pickles refused without running anything."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from copy import deepcopy
from pathlib import Path

import pytest
import torch

from detkit.models.convert.ultralytics_checkpoint import UltralyticsCheckpointError, read_ultralytics_checkpoint
from detkit.utils.checkpoint import CheckpointError

REPO = Path(__file__).resolve().parents[3]

# Read in a fresh interpreter; the state dict goes back as plain tensors (read with weights_only=True).
READER = """
import sys, torch
from detkit.models.convert.ultralytics_checkpoint import read_ultralytics_checkpoint
for source, out in zip(sys.argv[1::2], sys.argv[2::2]):
    weights = read_ultralytics_checkpoint(source)
    assert "ultralytics" not in sys.modules, sorted(m for m in sys.modules if m.startswith("ultralytics"))
    torch.save(weights, out)
"""


def _ultralytics():
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_config_"))
    pytest.importorskip("ultralytics")
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import torch_utils

    return get_cfg, DetectionModel, torch_utils


def _read_elsewhere(paths: list[Path]) -> list[dict[str, torch.Tensor]]:
    """The checkpoints read by one fresh interpreter that never imports ultralytics."""
    outs = [path.with_name(f"{path.stem}_read.pt") for path in paths]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    arguments = [str(p) for pair in zip(paths, outs) for p in pair]
    done = subprocess.run([sys.executable, "-c", READER, *arguments], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return [torch.load(out, map_location="cpu", weights_only=True) for out in outs]


@pytest.mark.parametrize("yaml", ["yolov8n.yaml", "yolo11n.yaml"])
def test_checkpoints_saved_by_ultralytics_read_without_it(tmp_path, yaml):
    get_cfg, DetectionModel, torch_utils = _ultralytics()
    torch.manual_seed(0)
    model = DetectionModel(yaml, nc=3, verbose=False)
    model.args = get_cfg()  # the trainer's hyper-parameters, an IterableSimpleNamespace
    for module in model.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(7)
    expected = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # What ultralytics' trainer writes as last.pt (BaseTrainer.save_model), then its final form
    # (strip_optimizer: the EMA becomes "model", training state dropped), written by ultralytics.
    last = tmp_path / "last.pt"
    torch.save({
        "epoch": 3, "best_fitness": 0.5, "model": None, "ema": deepcopy(model).half(), "updates": 12,
        "optimizer": torch_utils.convert_optimizer_state_dict_to_fp16(deepcopy(optimizer.state_dict())),
        "train_args": vars(get_cfg()), "train_metrics": {"metrics/mAP50(B)": 0.25, "fitness": 0.1},
        "date": "2026-01-01T00:00:00", "version": "8.4.190",
    }, last)  # fmt: skip
    best = tmp_path / "best.pt"
    torch_utils.strip_optimizer(last, str(best))

    for weights in _read_elsewhere([last, best]):
        assert list(weights) == list(expected)  # names and state_dict order
        for name, value in expected.items():
            assert weights[name].dtype == value.dtype, name
            assert torch.equal(weights[name], value), name


def test_plain_state_dict_entry(tmp_path):
    weights = {"model.0.conv.weight": torch.randn(4, 3, 3, 3), "model.0.bn.running_mean": torch.randn(4)}
    torch.save({"model": weights, "train_args": {"imgsz": 640}}, tmp_path / "sd.pt")
    read = read_ultralytics_checkpoint(tmp_path / "sd.pt")
    assert list(read) == list(weights) and all(torch.equal(read[k], weights[k]) for k in weights)


def test_numpy_numbers_and_bytes_beside_the_model_are_read(tmp_path):
    np = pytest.importorskip("numpy")
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    torch.save({
        "model": module, "best_fitness": np.float64(0.25), "train_metrics": {"mAP": np.float32(0.5), "n": np.int64(3)},
        "blob": b"\x00\xffbytes",
    }, tmp_path / "metrics.pt")  # fmt: skip
    read = read_ultralytics_checkpoint(tmp_path / "metrics.pt")
    assert list(read) == list(module.state_dict())
    assert all(torch.equal(read[k], v) for k, v in module.state_dict().items())


def test_numpy_stand_ins_refuse_anything_but_plain_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    torch.save({"model": torch.nn.Conv2d(1, 1, 1), "record": np.zeros(1, dtype=[("a", "f4")])[0]}, tmp_path / "rec.pt")
    with pytest.raises(UltralyticsCheckpointError, match=r"rec\.pt: refused .*numpy"):
        read_ultralytics_checkpoint(tmp_path / "rec.pt")


class _Evil:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("how", ["os.system", "eval", "subprocess", "exec_in_module"])
def test_malicious_pickles_are_refused_and_run_nothing(tmp_path, how):
    marker = tmp_path / "marker"
    command = f"touch {marker}"
    payload = {
        "os.system": _Evil(os.system, command),
        "eval": _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess": _Evil(subprocess.call, ["touch", str(marker)]),
        "exec_in_module": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
    }[how]
    path = tmp_path / "evil.pt"
    torch.save({"model": payload, "ema": None, "train_args": {}}, path)
    with pytest.raises(UltralyticsCheckpointError, match=r"evil\.pt: refused .*calls .* with arguments"):
        read_ultralytics_checkpoint(path)
    assert not marker.exists()


def test_malicious_pickle_inside_a_module_tree_is_refused(tmp_path):
    marker = tmp_path / "marker"
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    module.extra = _Evil(os.system, f"touch {marker}")
    torch.save({"model": module}, tmp_path / "evil.pt")
    with pytest.raises(UltralyticsCheckpointError, match="posix.system|nt.system"):
        read_ultralytics_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def _zip_with_pickle(path: Path, pickler_class, obj) -> None:
    import io

    buffer = io.BytesIO()
    pickler_class(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")


def test_unknown_persistent_id_and_bad_files_are_refused(tmp_path):
    class OddIds(pickle.Pickler):
        def persistent_id(self, obj):
            return ("evil", "payload") if isinstance(obj, bytes) else None

    _zip_with_pickle(tmp_path / "odd.pt", OddIds, {"model": b"x"})
    with pytest.raises(UltralyticsCheckpointError, match=r"odd\.pt: .*unknown persistent id"):
        read_ultralytics_checkpoint(tmp_path / "odd.pt")

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UltralyticsCheckpointError, match=r"junk\.pt: .*not a torch zip archive"):
        read_ultralytics_checkpoint(tmp_path / "junk.pt")

    torch.save({"epoch": 1}, tmp_path / "nomodel.pt")
    with pytest.raises(UltralyticsCheckpointError, match=r"nomodel\.pt: .*no 'ema' or 'model' entry"):
        read_ultralytics_checkpoint(tmp_path / "nomodel.pt")

    with pytest.raises(CheckpointError, match=r"missing\.pt: no such"):
        read_ultralytics_checkpoint(tmp_path / "missing.pt")
