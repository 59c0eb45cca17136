"""dense_focal_loss against torchvision's sigmoid_focal_loss on one-hot targets: value and gradient,
anchor weights, the alpha / gamma settings; what autograd keeps; bad arguments."""

from __future__ import annotations

import pytest
import torch
import torchvision

from detkit.models.dense_heads.focal_loss import dense_focal_loss

NUM_CLASSES = 7


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((2, 300, NUM_CLASSES), generator=generator) * 4  # large and small |x|
    labels = torch.randint(0, NUM_CLASSES, (2, 300), generator=generator)
    labels[torch.rand((2, 300), generator=generator) < 0.8] = -1  # mostly background anchors
    labels[1] = -1  # an image without objects
    weights = torch.rand((2, 300), generator=generator)
    weights[0, :10] = 0  # ignored anchors
    return logits, labels, weights


def _one_hot(labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.clamp(min=0), NUM_CLASSES).float() * (labels >= 0)[..., None]


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.25, 1.5), (1.0, 3.0)])
@pytest.mark.parametrize("weighted", [True, False])
def test_value_and_gradient_equal_torchvision(alpha, gamma, weighted):
    logits, labels, weights = _inputs()
    anchor_weights = weights if weighted else None
    ours_input = logits.clone().requires_grad_()
    theirs_input = logits.clone().requires_grad_()
    ours = dense_focal_loss(ours_input, labels, anchor_weights, alpha, gamma)
    theirs = torchvision.ops.sigmoid_focal_loss(theirs_input, _one_hot(labels), alpha, gamma)
    theirs = (theirs * weights[..., None]).sum() if weighted else theirs.sum()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    (ours * 3).backward()
    (theirs * 3).backward()
    torch.testing.assert_close(ours_input.grad, theirs_input.grad, rtol=1e-5, atol=1e-6)


def test_autograd_keeps_one_logit_sized_tensor():
    """torchvision's expression keeps about ten [B, A, C] tensors for backward; this one keeps one."""
    logits, labels, weights = _inputs()
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        dense_focal_loss(logits.requires_grad_(), labels, weights)
    assert sum(saved) <= logits.numel()


def test_no_positives_and_no_anchors():
    logits = torch.randn(1, 5, 3, requires_grad=True)
    loss = dense_focal_loss(logits, torch.full((1, 5), -1), None)
    expected = torchvision.ops.sigmoid_focal_loss(logits, torch.zeros(1, 5, 3), reduction="sum")
    torch.testing.assert_close(loss, expected)
    empty = torch.zeros((1, 0, 3), requires_grad=True)
    loss = dense_focal_loss(empty, torch.zeros((1, 0), dtype=torch.int64))
    loss.backward()
    assert float(loss.detach()) == 0 and empty.grad.shape == (1, 0, 3)


def test_bad_arguments_are_errors():
    logits, labels, weights = _inputs()
    with pytest.raises(ValueError, match="alpha must be in"):
        dense_focal_loss(logits, labels, weights, alpha=2.0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        dense_focal_loss(logits, labels, weights, gamma=-1.0)
    with pytest.raises(ValueError, match=r"labels \[2, 299\].*must be the logits' \[2, 300\]"):
        dense_focal_loss(logits, labels[:, 1:], weights)
    with pytest.raises(ValueError, match="weights"):
        dense_focal_loss(logits, labels, weights[:1])
