"""MTCNN training: sample generation, the paper's losses with OHEM, each stage trained through the engine."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from configs.common.mtcnn import mtcnn_stage_training
from detkit.data.wider_face import wider_face_dataset
from detkit.config import InstantiationError, load_config
from detkit.engine.metrics_log import read_metrics
from detkit.engine.runner import build_trainer
from detkit.models.detectors.mtcnn import MTCNN, ONet, PNet, RNet
from detkit.models.detectors.mtcnn.training import (
    NEGATIVE, PART, POSITIVE, STAGE_LOSS_WEIGHTS, StageSamples, generate_samples, ohem_cross_entropy,
    stage_losses, stage_state_dict,
)
from detkit.ops import box_iou

from mtcnn_testing import reference_targets, write_wider_face


def test_samples_are_labelled_by_iou_and_encode_their_targets():
    images, targets = reference_targets()
    samples = generate_samples(images, targets, 24, 30, 10, 10, generator=torch.Generator().manual_seed(0))
    labels = samples.labels
    assert samples.crops.shape == (len(labels), 3, 24, 24)
    assert float(samples.crops.min()) >= 0 and float(samples.crops.max()) <= 1
    counts = {kind: int((labels == kind).sum()) for kind in (NEGATIVE, PART, POSITIVE)}
    assert counts[NEGATIVE] <= 3 * 30 and counts[NEGATIVE] >= 30  # every image gives negatives
    assert 0 < counts[POSITIVE] <= 2 * 10 and 0 < counts[PART] <= 2 * 10  # two images have a face
    assert torch.isfinite(samples.box_targets).all() and (samples.box_targets[labels == NEGATIVE] == 0).all()
    # Landmarks only for positives, five x then five y inside about the crop.
    assert samples.landmark_mask.sum() > 0 and not samples.landmark_mask[labels != POSITIVE].any()
    lm = samples.landmark_targets[samples.landmark_mask]
    assert float(lm.min()) > -0.5 and float(lm.max()) < 1.5


def test_sample_ious_respect_the_paper_thresholds():
    # One 40x40 face in a 100x100 image: decode each sample's crop from its box target.
    image = torch.rand(3, 100, 100, generator=torch.Generator().manual_seed(0))
    face = torch.tensor([[30.0, 20.0, 70.0, 60.0]])
    samples = generate_samples([image], [{"boxes": face}], 12, 50, 50, 50, generator=torch.Generator().manual_seed(1))
    faces = samples.labels != NEGATIVE
    t = samples.box_targets[faces]
    # t = (face - origin) / side  =>  side = (face_x2 - face_x1) / (t_x2 - t_x1), origin = face_x1 - t_x1 side
    side = (face[0, 2] - face[0, 0]) / (t[:, 2] - t[:, 0])
    origin = face[0, :2] - t[:, :2] * side[:, None]
    crops = torch.cat([origin, origin + side[:, None]], dim=1)
    iou = box_iou(crops, face)[:, 0]
    positive = samples.labels[faces] == POSITIVE
    assert (iou[positive] >= 0.65 - 1e-4).all() and (iou[~positive] >= 0.4 - 1e-4).all()
    assert (iou[~positive] < 0.65 + 1e-4).all()


def test_ohem_keeps_the_hardest_70_percent():
    logits = torch.tensor([[0.0, 5.0], [0.0, -5.0], [0.0, 0.0], [2.0, 0.0], [0.0, 1.0],
                           [0.0, 3.0], [0.0, 2.0], [1.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    labels = torch.ones(10, dtype=torch.int64)
    per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    expected = per_sample.sort(descending=True).values[:7].mean()
    torch.testing.assert_close(ohem_cross_entropy(logits, labels, 0.7), expected)
    empty = ohem_cross_entropy(torch.zeros(0, 2, requires_grad=True), torch.zeros(0, dtype=torch.int64))
    assert float(empty.detach()) == 0 and empty.requires_grad


def test_stage_losses_use_the_paper_weights():
    assert STAGE_LOSS_WEIGHTS == {"pnet": (1.0, 0.5, 0.5), "rnet": (1.0, 0.5, 0.5), "onet": (1.0, 0.5, 1.0)}
    samples = StageSamples(
        crops=torch.zeros(3, 3, 48, 48), labels=torch.tensor([POSITIVE, NEGATIVE, PART]),
        box_targets=torch.tensor([[0.1, 0.1, 0.9, 0.9], [0, 0, 0, 0], [0.2, 0.0, 1.0, 0.8]]),
        landmark_targets=torch.full((3, 10), 0.5), landmark_mask=torch.tensor([True, False, False]),
    )
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    deltas = torch.zeros(3, 4)
    points = torch.zeros(3, 10)
    losses = stage_losses("onet", (logits, deltas, points), samples)
    box = (samples.box_targets[[0, 2]] ** 2).mean()
    torch.testing.assert_close(losses["onet_box"], 0.5 * box)
    torch.testing.assert_close(losses["onet_landmark"], torch.tensor(0.25))
    ce = torch.nn.functional.cross_entropy(logits[:2], torch.tensor([1, 0]), reduction="none")
    torch.testing.assert_close(losses["onet_cls"], ce.sort(descending=True).values[:2].mean())
    assert set(stage_losses("pnet", (logits[:, :, None, None], deltas[:, :, None, None]), samples)) == {
        "pnet_cls", "pnet_box"}
    with pytest.raises(ValueError, match="unknown MTCNN stage"):
        stage_losses("qnet", (logits, deltas), samples)


STAGES = ("pnet", "rnet", "onet")
CONFIGS = Path(__file__).resolve().parents[3] / "configs"
# Steps and (negatives, parts, positives) per image of each stage's engine run: a few seconds each.
STAGE_RUNS = {"pnet": (40, (24, 8, 8)), "rnet": (30, (24, 8, 8)), "onet": (24, (12, 4, 4))}


@pytest.fixture(scope="module")
def wider_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wider_face(tmp_path_factory.mktemp("wider_face"), num_images=12)


def stage_config(stage: str, root: Path, output_dir: Path, *extra: str):
    """The stage's training config on the tiny dataset: a short CPU run, every step logged."""
    steps, samples = STAGE_RUNS[stage]
    return load_config(CONFIGS / "mtcnn" / f"mtcnn_{stage}_train_wider_face.py", [
        f"dataloader.train.dataset.root={str(root)!r}", "dataloader.train.batch_size=4",
        "dataloader.train.num_workers=0", f"model.train_samples={samples}", "optimizer.lr=0.02",
        "lr_schedule.warmup_iters=0", f"lr_schedule.milestones=[{steps}]", f"train.max_iter={steps}",
        "train.log_period=1", "train.checkpoint_period=0", "train.device='cpu'", "train.progress_bar=False",
        f"train.output_dir={str(output_dir)!r}", *extra,
    ])


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_trained_through_the_engine_lowers_its_loss(stage, wider_root, tmp_path):
    cfg = stage_config(stage, wider_root, tmp_path / "run")
    trainer = build_trainer(cfg)
    before = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    trainer.train()

    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "train"]
    assert [r["iter"] for r in records] == list(range(1, STAGE_RUNS[stage][0] + 1))
    losses = [r["total_loss"] for r in records]
    assert all(math.isfinite(x) for x in losses)
    assert {k for k in records[0] if k.startswith(stage)} == {f"{stage}_cls", f"{stage}_box"} | (
        {"onet_landmark"} if stage == "onet" else set())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, losses
    # Not the box term alone: the face classification (OHEM) loss falls too.
    cls = [r[f"{stage}_cls"] for r in records]
    assert sum(cls[-5:]) < sum(cls[:5]), cls

    # The checkpoint (weights only) holds a whole MTCNN: the trained stage changed, the frozen ones did not.
    checkpoint = torch.load(tmp_path / "run" / "model_final.pth", map_location="cpu", weights_only=True)
    detector = MTCNN()
    detector.load_state_dict(checkpoint["model"])
    for name in STAGES:
        weights = stage_state_dict(checkpoint["model"], name)
        fresh = {"pnet": PNet, "rnet": RNet, "onet": ONet}[name]()
        fresh.load_state_dict(weights)
        changed = any(not torch.equal(v, before[f"{name}.{k}"]) for k, v in weights.items())
        assert changed == (name == stage), name
        for key, value in getattr(detector, name).state_dict().items():
            torch.testing.assert_close(value, weights[key], rtol=0, atol=0)


def test_stages_trained_apart_make_one_detector(wider_root, tmp_path):
    # A short PNet run, then RNet started from its checkpoint: the RNet run's checkpoint carries both.
    build_trainer(stage_config("pnet", wider_root, tmp_path / "p", "train.max_iter=2")).train()
    pnet_final = tmp_path / "p" / "model_final.pth"
    build_trainer(stage_config("rnet", wider_root, tmp_path / "r", "train.max_iter=2",
                               f"train.init_checkpoint={str(pnet_final)!r}")).train()
    pnet_weights = torch.load(pnet_final, map_location="cpu", weights_only=True)["model"]
    both = torch.load(tmp_path / "r" / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    for key, value in stage_state_dict(pnet_weights, "pnet").items():
        assert torch.equal(both[f"pnet.{key}"], value)
    detector = MTCNN().eval()
    detector.pnet.load_state_dict(stage_state_dict(pnet_weights, "pnet"))
    detector.rnet.load_state_dict(stage_state_dict(both, "rnet"))
    images, _ = reference_targets(("ivan.jpg",))
    predictions, losses = detector(images)
    assert losses == {} and predictions[0]["boxes"].shape[1] == 4


def test_bad_stage_names_and_data_roots_are_reported(tmp_path):
    with pytest.raises(ValueError, match="stage must be one of .*'qnet'"):
        mtcnn_stage_training("qnet")
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_state_dict(MTCNN().state_dict(), "qnet")
    with pytest.raises(KeyError, match="no pnet"):
        stage_state_dict(PNet().state_dict(), "pnet")
    with pytest.raises(ValueError, match="split must be"):
        wider_face_dataset(tmp_path, split="test")
    cfg = stage_config("pnet", tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(InstantiationError, match="dataloader.train.dataset.*not a WIDER FACE folder"):
        build_trainer(cfg)


def test_the_stage_dataset_reads_the_wider_face_layout(wider_root):
    dataset = wider_face_dataset(wider_root)
    assert len(dataset) == 12 and dataset.class_names == ["face"]
    image, target = dataset[0]
    assert image.shape == (3, 96, 128) and target["boxes"].shape[0] >= 1
    assert dataset[11][1]["boxes"].shape == (0, 4)
    images, targets = zip(*(dataset[i] for i in range(len(dataset))))
    samples = generate_samples(images, targets, 12, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    assert samples.crops.shape[1:] == (3, 12, 12)
    assert all(int((samples.labels == kind).sum()) > 10 for kind in (NEGATIVE, PART, POSITIVE))


def test_train_mode_forward_gives_weighted_losses_of_every_stage():
    torch.manual_seed(0)
    images, targets = reference_targets()
    model = MTCNN(train_samples=(8, 4, 4)).train()
    predictions, losses = model(images, targets)
    assert predictions == []
    assert set(losses) == {"pnet_cls", "pnet_box", "rnet_cls", "rnet_box", "onet_cls", "onet_box", "onet_landmark"}
    total = sum(losses.values())
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    only_p = MTCNN(train_stages=("pnet",)).train()
    assert set(only_p(images, targets)[1]) == {"pnet_cls", "pnet_box"}


def test_the_old_module_path_still_exports_the_training_api():
    import detkit.models.detectors.mtcnn.training as training
    import detkit.models.mtcnn_training as moved

    assert moved.generate_samples is training.generate_samples
    assert moved.STAGE_INPUT_SIZES == {"pnet": 12, "rnet": 24, "onet": 48}
