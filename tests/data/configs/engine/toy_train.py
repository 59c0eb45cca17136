"""Engine test config: the toy detector on the toy dataset, 30 SGD iterations on the CPU.

Needs ``tests/engine`` on PYTHONPATH (for ``toy_detector``)::

    PYTHONPATH=tests/engine python tools/train.py tests/data/configs/engine/toy_train.py
"""

from toy_detector import ToyDataset, ToyDetector, ToyEvaluator

from detkit.config import L
from detkit.engine import (
    MultiStepLR, build_optimizer, build_test_loader, build_train_loader, default_train,
)

model = L(ToyDetector)(num_classes=3, width=8)
dataloader = dict(
    train=L(build_train_loader)(dataset=L(ToyDataset)(size=24, augment=True), batch_size=2),
    test=L(build_test_loader)(dataset=L(ToyDataset)(size=6), batch_size=3),
)
optimizer = L(build_optimizer)(name="SGD", lr=0.05, momentum=0.9, weight_decay=1e-4)
lr_schedule = L(MultiStepLR)(milestones=[20], gamma=0.1, warmup_iters=5, warmup_factor=0.1)
train = default_train(
    max_iter=30,
    output_dir="runs/toy_engine",
    seed=1,
    device="cpu",
    checkpoint_period=5,
    keep_last=2,
    eval_period=10,
    best_metric="bbox/AP50",
    log_period=5,
    ema=dict(decay=0.9, tau=5),
    clip_grad_norm=10.0,
    progress_bar=False,
)
evaluator = L(ToyEvaluator)()
