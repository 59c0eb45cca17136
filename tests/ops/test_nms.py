"""nms, batched_nms and soft_nms against torchvision.ops and hand-worked cases, for every implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from detkit.ops import batched_nms, nms, soft_nms
from detkit.ops import _ext

from ops_testing import random_boxes


@pytest.mark.parametrize("num_boxes", [0, 1, 10, 1000, 5000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_equals_torchvision_on_random_boxes(impl, num_boxes, dtype):
    generator = torch.Generator().manual_seed(num_boxes)
    boxes = random_boxes(num_boxes, dtype=dtype, generator=generator)
    scores = torch.rand(num_boxes, generator=generator, dtype=torch.float64).to(dtype)
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        expected = torchvision.ops.nms(boxes, scores, threshold)
        kept = nms(boxes.to(impl.device), scores.to(impl.device), threshold)
        assert kept.dtype == torch.int64 and kept.device.type == impl.device
        assert torch.equal(kept.cpu(), expected), f"threshold {threshold}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_boxes_are_compared_in_float32(impl, dtype):
    # AMP hands NMS bf16 / fp16 boxes: every such value is a float32 one, so the ops upcast exactly
    # and equal torchvision's NMS on those float32 values.
    generator = torch.Generator().manual_seed(5)
    boxes = random_boxes(500, dtype=dtype, canvas=300.0, max_size=80.0, generator=generator)
    scores = torch.rand(500, generator=generator).to(dtype)
    idxs = torch.randint(0, 4, (500,), generator=generator)
    wide = boxes.float(), scores.float()
    for threshold in (0.3, 0.5, 0.7):
        kept = nms(boxes.to(impl.device), scores.to(impl.device), threshold).cpu()
        assert torch.equal(kept, torchvision.ops.nms(*wide, threshold))
        per_class = batched_nms(boxes.to(impl.device), scores.to(impl.device), idxs.to(impl.device), threshold).cpu()
        expected = torch.cat([torch.nonzero(idxs == c)[:, 0][torchvision.ops.nms(wide[0][idxs == c],
                                                                                  wide[1][idxs == c], threshold)]
                              for c in range(4)])
        assert torch.equal(per_class.sort().values, expected.sort().values)
    keep, kept_scores = soft_nms(boxes.to(impl.device), scores.to(impl.device))
    reference_keep, reference_scores = soft_nms(*(t.to(impl.device) for t in wide))
    assert torch.equal(keep, reference_keep) and kept_scores.dtype == dtype
    torch.testing.assert_close(kept_scores, reference_scores.to(dtype), rtol=0, atol=0)


def test_nms_equals_torchvision_on_crowded_and_wide_boxes(impl):
    # Heavy overlap (long suppression chains) and boxes spanning the whole canvas.
    generator = torch.Generator().manual_seed(1)
    crowded = random_boxes(3000, canvas=100.0, max_size=60.0, generator=generator)
    wide = torch.rand(3000, 4, generator=generator) * 1000  # half of these are inverted (x2 < x1)
    for boxes in (crowded, wide):
        scores = torch.rand(boxes.shape[0], generator=generator)
        for threshold in (0.1, 0.5, 0.9):
            expected = torchvision.ops.nms(boxes, scores, threshold)
            assert torch.equal(nms(boxes.to(impl.device), scores.to(impl.device), threshold).cpu(), expected)


def test_nms_ties_keep_input_order(impl):
    # Identical boxes with equal scores: the first one in input order survives.
    boxes = torch.tensor([[0, 0, 10, 10]] * 4 + [[50, 50, 60, 60]] * 2, dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.9, 0.5, 0.7, 0.7])
    kept = nms(boxes.to(impl.device), scores.to(impl.device), 0.5).cpu()
    assert kept.tolist() == [1, 4]
    assert torch.equal(kept, torchvision.ops.nms(boxes, scores, 0.5))


def test_nms_threshold_is_strict(impl):
    # IoU of these two boxes is exactly 50 / 100 = 0.5: kept at threshold 0.5, suppressed below it.
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=torch.float32, device=impl.device)
    scores = torch.tensor([0.9, 0.8], device=impl.device)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.4999).tolist() == [0]


def test_nms_threshold_compares_in_double_precision(impl):
    # float32(0.3) > 0.3: an IoU equal to float32(0.3) must still count as above a threshold of 0.3,
    # as in torchvision, whose kernels compare against the double threshold.
    iou = torch.tensor(0.3, dtype=torch.float32)
    assert iou.item() > 0.3
    # Box b inside box a (area 100): IoU = area_b / 100 with area_b = 10 * h.
    height = float(iou) * 10.0
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, height]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8])
    computed = torchvision.ops.box_iou(boxes[:1], boxes[1:])[0, 0]
    expected = torchvision.ops.nms(boxes, scores, 0.3)
    assert torch.equal(nms(boxes.to(impl.device), scores.to(impl.device), 0.3).cpu(), expected), float(computed)


def test_nms_degenerate_and_non_finite_boxes_match_torchvision(impl):
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 0, 0], [5, 5, 5, 20], [1, 1, 11, 11], [float("nan"), 0, 10, 10], [0, 0, float("inf"), 10],
         [2, 2, 12, 12]],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.95, 0.8, 0.85, 0.99, 0.7, 0.6])
    for threshold in (0.0, 0.5):
        expected = torchvision.ops.nms(boxes, scores, threshold)
        assert torch.equal(nms(boxes.to(impl.device), scores.to(impl.device), threshold).cpu(), expected)


@pytest.mark.parametrize("num_boxes", [0, 1, 100, 5000])
def test_batched_nms_equals_torchvision_per_class(impl, num_boxes):
    # torchvision runs NMS per class above 4000 boxes on the CPU, and below that shifts each class's
    # coordinates apart, which perturbs the IoU's rounding. detkit is exact per class at every size,
    # so its reference is torchvision's per-class path.
    from torchvision.ops.boxes import _batched_nms_vanilla

    generator = torch.Generator().manual_seed(7)
    boxes = random_boxes(num_boxes, generator=generator)
    scores = torch.rand(num_boxes, generator=generator)
    idxs = torch.randint(0, 80, (num_boxes,), generator=generator)
    expected = _batched_nms_vanilla(boxes, scores, idxs, 0.5)
    # torchvision re-sorts the kept boxes with an unstable sort; detkit orders them by decreasing
    # score, ties by index.
    expected = sorted(expected.tolist(), key=lambda index: (-scores[index].item(), index))
    kept = batched_nms(boxes.to(impl.device), scores.to(impl.device), idxs.to(impl.device), 0.5).cpu()
    assert kept.tolist() == expected


def test_batched_nms_never_suppresses_across_categories(impl):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=torch.float32, device=impl.device)
    scores = torch.tensor([0.9, 0.8, 0.7], device=impl.device)
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0], device=impl.device), 0.5).tolist() == [0, 1]


def _soft_nms_reference(boxes, scores, iou_threshold, sigma, score_threshold, method):
    """Straightforward per-box loop in float64, written from the paper's Algorithm 1."""
    boxes = boxes.double().tolist()
    current = scores.double().tolist()
    remaining = [i for i in range(len(boxes)) if current[i] >= score_threshold]
    kept, kept_scores = [], []

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    while remaining:
        best = max(remaining, key=lambda i: (current[i], -i))
        kept.append(best)
        kept_scores.append(current[best])
        remaining.remove(best)
        for j in remaining:
            overlap = iou(boxes[best], boxes[j])
            if method == "linear":
                current[j] *= (1 - overlap) if overlap > iou_threshold else 1.0
            else:
                current[j] *= math.exp(-(overlap**2) / sigma)
        remaining = [j for j in remaining if current[j] >= score_threshold]
    return kept, kept_scores


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_nms_equals_reference(impl, method, dtype):
    generator = torch.Generator().manual_seed(3)
    boxes = random_boxes(300, canvas=300.0, max_size=100.0, dtype=dtype, generator=generator)
    scores = torch.rand(300, generator=generator, dtype=torch.float64).to(dtype)
    keep, kept_scores = soft_nms(boxes.to(impl.device), scores.to(impl.device), 0.3, 0.5, 0.01, method)
    expected_keep, expected_scores = _soft_nms_reference(boxes, scores, 0.3, 0.5, 0.01, method)
    assert keep.cpu().tolist() == expected_keep
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(kept_scores.cpu().double(), torch.tensor(expected_scores, dtype=torch.float64), rtol=tolerance, atol=tolerance)


def test_soft_nms_hand_worked(impl):
    # IoU of the two boxes is 0.5. Linear: the second score 0.8 decays to 0.8 * (1 - 0.5) = 0.4.
    # Gaussian (sigma 0.5): 0.8 * exp(-0.25 / 0.5).
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [100, 100, 110, 110]], dtype=torch.float64, device=impl.device)
    scores = torch.tensor([0.9, 0.8, 0.3], dtype=torch.float64, device=impl.device)
    keep, values = soft_nms(boxes, scores, iou_threshold=0.3, score_threshold=0.001, method="linear")
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(values.cpu(), torch.tensor([0.9, 0.4, 0.3], dtype=torch.float64))
    keep, values = soft_nms(boxes, scores, sigma=0.5, score_threshold=0.5, method="gaussian")
    assert keep.tolist() == [0]  # 0.8 * exp(-0.5) = 0.485 < 0.5 and 0.3 < 0.5 are dropped
    keep, values = soft_nms(boxes, scores, sigma=0.5, score_threshold=0.001, method="gaussian")
    torch.testing.assert_close(values.cpu(), torch.tensor([0.9, 0.8 * math.exp(-0.5), 0.3], dtype=torch.float64))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nms(torch.zeros(3, 5), torch.zeros(3), 0.5), r"boxes must have shape \[N, 4\]"),
        (lambda: nms(torch.zeros(3, 4), torch.zeros(4), 0.5), r"scores must have shape \[N\] = \[3\]"),
        (lambda: nms(torch.zeros(3, 4), torch.zeros(3, dtype=torch.float64), 0.5), "same dtype"),
        (lambda: nms(torch.zeros(3, 4), torch.zeros(3), -0.1), "iou_threshold must be a number >= 0"),
        (lambda: nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5), "floating-point"),
        (lambda: batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3), 0.5), "idxs must be an integer"),
        (lambda: soft_nms(torch.zeros(3, 4), torch.zeros(3), method="cubic"), "method must be one of"),
        (lambda: soft_nms(torch.zeros(3, 4), torch.zeros(3), sigma=0.0, method="gaussian"), "sigma must be > 0"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


@pytest.mark.skipif(not _ext.ext_loaded(), reason="detkit._C is not built")
def test_opcheck_nms_ops():
    boxes = random_boxes(50, generator=torch.Generator().manual_seed(0))
    scores = torch.rand(50)
    torch.library.opcheck(torch.ops.detkit.nms.default, (boxes, scores, 0.5),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    torch.library.opcheck(torch.ops.detkit.batched_nms.default, (boxes, scores, torch.randint(0, 3, (50,)), 0.5),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    torch.library.opcheck(torch.ops.detkit.soft_nms.default, (boxes, scores, 0.3, 0.5, 0.01, 0),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def _greedy_min_overlap_reference(boxes, scores, threshold, categories=None):
    """Plain greedy NMS where overlap = intersection / smaller area, in float64."""
    boxes, scores = boxes.double().tolist(), scores.double().tolist()
    categories = categories.tolist() if categories is not None else [0] * len(boxes)
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        suppressed = False
        for k in kept:
            if categories[k] != categories[i]:
                continue
            a, b = boxes[k], boxes[i]
            inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if smaller > 0 and inter / smaller > threshold:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept


@pytest.mark.parametrize("batched", [False, True])
def test_min_overlap_equals_reference(impl, batched):
    generator = torch.Generator().manual_seed(11)
    boxes = random_boxes(400, canvas=300.0, max_size=80.0, dtype=torch.float64, generator=generator)
    scores = torch.rand(400, generator=generator, dtype=torch.float64)
    categories = torch.randint(0, 3, (400,), generator=generator) if batched else None
    for threshold in (0.3, 0.7):
        expected = _greedy_min_overlap_reference(boxes, scores, threshold, categories)
        if batched:
            kept = batched_nms(boxes.to(impl.device), scores.to(impl.device), categories.to(impl.device), threshold,
                               overlap="min")
        else:
            kept = nms(boxes.to(impl.device), scores.to(impl.device), threshold, overlap="min")
        assert kept.cpu().tolist() == expected


def test_min_overlap_suppresses_a_box_inside_another(impl):
    # The small box lies inside the big one: IoU is 0.04, but intersection / smaller area is 1.
    boxes = torch.tensor([[0, 0, 50, 50], [10, 10, 20, 20]], dtype=torch.float32, device=impl.device)
    scores = torch.tensor([0.9, 0.8], device=impl.device)
    assert nms(boxes, scores, 0.7, overlap="iou").tolist() == [0, 1]
    assert nms(boxes, scores, 0.7, overlap="min").tolist() == [0]
    with pytest.raises(ValueError, match="overlap must be one of"):
        nms(boxes, scores, 0.7, overlap="union")
