"""The training loop: iterations, mixed precision, accumulation, EMA, checkpoints, resume.

Config layout the engine reads (built by :func:`detkit.engine.runner.build_trainer`)::

    from detkit.config import L
    from detkit.engine import (MultiStepLR, build_optimizer, build_test_loader,
                               build_train_loader, default_train)

    model = L(MyDetector)(num_classes=3)     # detector(images, targets) -> (preds, losses)
    dataloader = dict(
        train=L(build_train_loader)(dataset=L(MyDataset)(split="train"), batch_size=2,
                                    num_workers=2),       # batch_size per process
        test=L(build_test_loader)(dataset=L(MyDataset)(split="val")),   # optional
    )
    optimizer = L(build_optimizer)(name="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4,
                                   backbone_lr_multiplier=0.1)  # the model is passed by the engine
    lr_schedule = L(MultiStepLR)(milestones=[60000, 80000], gamma=0.1,
                                 warmup_iters=1000, warmup_factor=0.001)
    train = default_train(max_iter=90000, output_dir="runs/frcnn", checkpoint_period=5000,
                          eval_period=5000, best_metric="bbox/AP50", amp=True)
    # default_train lists every key (so each can be overridden); see detkit/engine/settings.py
    evaluator = L(MyEvaluator)(...)  # optional: .evaluate(model, loader) -> dict; without it the
                                     # engine builds one from dataloader.test's dataset (COCO json /
                                     # VOC / targets, detkit.engine.build_evaluator); None: no evaluation

A checkpoint's ``model`` entry holds the weights that the trainer evaluates (the EMA with
``train.ema`` and ``use_for_eval``), which ``detkit test``, ``detkit infer``, ``detkit.load`` and
the Predictor read, so they score what training-time evaluation and ``model_best.pth`` scored;
the raw trained weights, which exact resume needs, are then under ``model_raw``.

Every checkpoint is self-contained: besides the weights and the resolved config as text it holds
``model_config`` (the model section in the safe data form of :mod:`detkit.config.data`) and
``class_names``, from which ``detkit.load(path)`` rebuilds the model with no config file.

One iteration is one optimiser step over ``grad_accum_steps`` micro-batches. Losses are summed
over the detector's loss dict (each term already weighted, each a mean over its batch) and
divided by ``grad_accum_steps``. Under DistributedDataParallel the gradients are averaged over
the ranks, so W processes with batch B step like one process with batch W * B.

Resume restores model, optimiser, schedule (a function of the iteration), GradScaler, EMA, the
RNG states of every rank and the data position (``iteration * grad_accum_steps`` batches into
the (seed, epoch)-determined order of :mod:`detkit.engine.data`), so an interrupted and resumed
run ends with the same weights as an uninterrupted one.

A non-finite loss raises :class:`NonFiniteLossError` naming the iteration and every loss term,
before the backward pass and before anything is written, so the last checkpoint stays the last
good one. A batch that cannot be read raises :class:`detkit.engine.data.DataLoadingError` naming
the iteration.

Any hook can end the run early with :meth:`Trainer.request_stop` (early stopping,
``train.patience``, is the built-in :class:`detkit.engine.early_stopping.EarlyStopping` hook); the
run then ends as a normal end does, with the reason logged, in ``metrics.jsonl`` and in the final
checkpoint. With ``train.tensorboard`` the records of ``metrics.jsonl`` also go to TensorBoard
(:mod:`detkit.engine.tensorboard_log`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

import detkit
from detkit.engine.checkpoint import Checkpointer, load_checkpoint
from detkit.engine.data import (
    EpochBatchSampler, batch_to_device, is_resumable_sampler, next_batch,
)
from detkit.engine.early_stopping import EarlyStopping
from detkit.engine.ema import ModelEMA
from detkit.engine.hooks import Hook, hook_states, load_hook_states
from detkit.engine.metrics_log import MetricsLog
from detkit.engine.model_setup import freeze_by_prefix
from detkit.engine.rng import capture_rng_state, restore_rng_state
from detkit.engine.schedules import LRSchedule
from detkit.engine.settings import TrainSettings
from detkit.engine.tensorboard_log import TensorBoardLog, require_tensorboard
from detkit.utils.checkpoint import load_weights
from detkit.utils.distributed import (
    all_gather_object, all_reduce_mean, any_true, get_rank, get_world_size, is_distributed,
    is_main_process,
)

logger = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "Trainer"]

EvaluateFn = Callable[[nn.Module], Mapping[str, float]]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stopped before the backward pass."""


class Trainer:
    """Runs training for a detector built elsewhere (see :mod:`detkit.engine.runner`).

    Args:
        model: The unwrapped model, already on ``device``; wrapped in DistributedDataParallel
            here when a process group of several ranks is initialised.
        optimizer: Optimiser; each group's ``base_lr`` (set by ``build_optimizer``, else taken
            from its ``lr`` here) is what the schedule multiplies.
        lr_schedule: Learning-rate multiplier as a function of (iteration, epoch).
        data_loader: Training loader yielding ``(images, targets)`` whose batch sampler has
            ``set_epoch(epoch, start_batch)`` and ``len()``, its order a function of (seed,
            epoch) only: :class:`EpochBatchSampler` (``build_train_loader``) or the like.
        settings: The checked ``train`` section.
        device: Device of the model.
        evaluate: Optional ``fn(model) -> {metric: value}`` run on every rank with the model (or
            its EMA) in eval mode; rank 0 must return the metrics, other ranks may return ``{}``.
        config_text: The resolved config as text, stored in checkpoints.
        model_config: The model's config in the safe data form (``detkit.config.config_to_data``),
            stored in checkpoints as ``model_config`` so that ``detkit.load`` rebuilds the model.
        class_names: Stored in checkpoints as ``class_names``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 lr_schedule: LRSchedule, data_loader: DataLoader, settings: TrainSettings,
                 device: torch.device | str = "cpu", evaluate: EvaluateFn | None = None,
                 config_text: str = "", model_config: Mapping[str, Any] | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        sampler = data_loader.batch_sampler
        if not is_resumable_sampler(sampler):
            raise TypeError("the training loader needs a resumable batch sampler, with "
                            "set_epoch(epoch, start_batch) and len() (batches per epoch), such as "
                            "the EpochBatchSampler of detkit.engine.build_train_loader; got "
                            f"{type(sampler).__name__}")
        for key in ("best_metric", "patience"):
            if getattr(settings, key) is not None and evaluate is None:
                raise ValueError(f"train.{key}={getattr(settings, key)!r} needs an evaluator "
                                 "(a dataloader.test and an evaluator that is not None)")
        if settings.tensorboard and is_main_process():
            require_tensorboard()  # before any work: a missing package is a one-line error
        self.settings = settings
        self.device = torch.device(device)
        self.output_dir = Path(settings.output_dir)
        self.unwrapped_model = model
        self.frozen_modules = freeze_by_prefix(model, settings.freeze)
        self.model: nn.Module = model
        if is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(
                model, device_ids=device_ids,
                find_unused_parameters=settings.find_unused_parameters)
        self.optimizer = optimizer
        for group in optimizer.param_groups:  # the schedule multiplies base_lr, never lr itself
            group.setdefault("base_lr", group["lr"])
        self.lr_schedule = lr_schedule
        self.data_loader = data_loader
        self.batch_sampler: EpochBatchSampler = sampler  # or any sampler with its interface
        self.evaluate_fn = evaluate
        self.config_text = config_text
        self.model_config = model_config
        self.class_names = None if class_names is None else list(class_names)
        self.hooks: list[Hook] = list(settings.hooks)
        if settings.patience is not None:  # the trainer's own hook runs before the user's
            assert settings.best_metric is not None  # checked by TrainSettings
            self.hooks.insert(0, EarlyStopping(settings.best_metric, settings.patience,
                                               settings.best_mode))
        self.checkpointer = Checkpointer(self.output_dir, settings.keep_last)
        self.ema = ModelEMA(model, settings.ema.decay, settings.ema.tau) if settings.ema else None
        self.autocast_dtype, use_scaler = self._amp_mode()
        self.scaler = torch.amp.GradScaler(self.device.type) if use_scaler else None

        self.batches_per_epoch = len(sampler)
        accum = settings.grad_accum_steps
        if settings.max_iter is not None:
            self.max_iter = settings.max_iter
        else:
            assert settings.max_epochs is not None
            self.max_iter = settings.max_epochs * self.batches_per_epoch // accum
            if self.max_iter < 1:
                raise ValueError(f"train.max_epochs={settings.max_epochs} is less than one "
                                 f"step of {accum} batches ({self.batches_per_epoch} per epoch)")
        # Schedules and the evaluation period stated relative to the run follow its length.
        epochs = settings.max_epochs or -(-self.max_iter * accum // self.batches_per_epoch)
        for problem in lr_schedule.fit_to_run(self.max_iter, epochs):
            logger.warning("%s", problem)
        self.eval_period = settings.resolved_eval_period(self.max_iter)
        logger.info("lr schedule for %d iterations: %s; evaluation every %s", self.max_iter,
                    lr_schedule.state_dict(), self.eval_period or "run (at the end)")
        if settings.patience is not None and not self.eval_period:
            logger.warning("train.patience=%d: evaluation runs only at the end, so early "
                           "stopping cannot stop this run (set train.eval_period)",
                           settings.patience)
        self.iteration = 0
        self.best: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self._accepting_stop = False
        self._last_eval_iteration: int | None = None
        self.metrics_log: MetricsLog | None = None
        self.tensorboard_log: TensorBoardLog | None = None
        self._bar = tqdm(disable=True)
        self.last_loss = math.nan
        self._period_losses: dict[str, Tensor] = {}
        self._period_times = [0.0, 0.0, 0]  # step seconds, data seconds, iterations

    # ----------------------------------------------------------------------------- positions
    @property
    def epoch(self) -> int:
        """The epoch of the next batch to be read."""
        return self.iteration * self.settings.grad_accum_steps // self.batches_per_epoch

    def _epoch_of_micro(self, micro: int) -> int:
        """The epoch of micro-batch ``micro`` of the step being run."""
        position = self.iteration * self.settings.grad_accum_steps + micro
        return position // self.batches_per_epoch

    def _epoch_of_last_step(self) -> int:
        """The epoch the last completed step read its (final) batch from."""
        position = max(self.iteration * self.settings.grad_accum_steps - 1, 0)
        return position // self.batches_per_epoch

    def _batch_stream(self) -> Iterator[Any]:
        """Batches from the current data position on, epoch after epoch."""
        position = self.iteration * self.settings.grad_accum_steps
        epoch, start = divmod(position, self.batches_per_epoch)
        while True:
            self.batch_sampler.set_epoch(epoch, start)
            yield from self.data_loader
            epoch, start = epoch + 1, 0

    def _amp_mode(self) -> tuple[torch.dtype | None, bool]:
        amp = self.settings.amp
        if amp == "bf16":
            return torch.bfloat16, False
        if amp in (True, "fp16"):
            if self.device.type == "cuda":
                return torch.float16, True
            logger.info("train.amp=%r: float16 mixed precision needs CUDA; training in float32 "
                        "on %s (use amp='bf16' for bfloat16 autocast on the CPU)", amp, self.device)
        return None, False

    # ---------------------------------------------------------------------------------- loop
    def train(self, resume: str | Path | None = None) -> None:
        """Train until ``max_iter`` or until a hook asks to stop, optionally resuming from a
        checkpoint file first."""
        if resume is not None:
            self.resume(resume)
        if is_main_process():
            self.metrics_log = MetricsLog(self.output_dir / "metrics.jsonl",
                                          resume_iteration=self.iteration)
            if self.settings.tensorboard:
                self.tensorboard_log = TensorBoardLog(self.output_dir / "tensorboard",
                                                      resume_iteration=self.iteration)
        self._set_train_mode()
        self.stop_reason, self._accepting_stop = None, True
        try:
            for hook in self.hooks:
                hook.before_train(self)
            logger.info("training from iteration %d to %d (%d batches per epoch, %d process(es))",
                        self.iteration, self.max_iter, self.batches_per_epoch, get_world_size())
            self._bar = tqdm(total=self.max_iter, initial=self.iteration, dynamic_ncols=True,
                             disable=not (is_main_process() and self.settings.progress_bar),
                             desc="train")
            stream = self._batch_stream()
            while self.iteration < self.max_iter and not self._stop_agreed():
                self.last_loss = self._run_step(stream)
                self.iteration += 1
                self._bar.update(1)
                self._after_step()
            self._accepting_stop = False
            if self.stop_reason is not None:
                self._record_stop()
            self._finish()
        finally:
            self._accepting_stop = False
            self._bar.close()
            for log in (self.metrics_log, self.tensorboard_log):
                if log is not None:
                    log.close()
            self.metrics_log = self.tensorboard_log = None

    def request_stop(self, reason: str) -> None:
        """Ask the loop to end after the current step, as a normal end does (final evaluation
        unless this step was just evaluated, ``model_final.pth``, ``after_train``).

        Callable from any hook method on any rank; the first reason is kept, logged, written to
        ``metrics.jsonl`` and to the final checkpoint (``stop_reason``). A request once the loop
        has ended (from ``after_train`` or the final evaluation) changes nothing.

        Args:
            reason: One line saying why (shown in the log).
        """
        if not self._accepting_stop:
            logger.debug("stop requested after the loop ended, ignored: %s", reason)
            return
        if self.stop_reason is None:
            self.stop_reason = str(reason)

    def _stop_agreed(self) -> bool:
        """Whether a stop was requested on any rank (then every rank takes the first reason)."""
        if not any_true(self.stop_reason is not None):
            return False
        reasons = [r for r in all_gather_object(self.stop_reason) if r is not None]
        self.stop_reason = self.stop_reason or reasons[0]
        return True

    def _record_stop(self) -> None:
        """The log line, the last train record and the ``"stop"`` record of an early end."""
        logger.info("stopping at iteration %d of %d: %s", self.iteration, self.max_iter,
                    self.stop_reason)
        if self._period_times[2]:  # steps since the last train record: written as at the end
            self._write_train_record()
        self._log_record({"type": "stop", "iter": self.iteration,
                          "epoch": self._epoch_of_last_step(), "reason": self.stop_reason})

    def _log_record(self, record: dict[str, Any]) -> None:
        """One record to ``metrics.jsonl`` and, with ``train.tensorboard``, to TensorBoard."""
        for log in (self.metrics_log, self.tensorboard_log):
            if log is not None:
                log.write(record)

    def _run_step(self, stream: Iterator[Any]) -> float:
        """One optimiser step over ``grad_accum_steps`` micro-batches; returns the total loss."""
        accum = self.settings.grad_accum_steps
        factor = self.lr_schedule(self.iteration, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        adjust_groups = getattr(self.lr_schedule, "adjust_param_groups", None)
        if adjust_groups is not None:  # schedules with per-group warm-ups (YOLOLinearLR)
            adjust_groups(self.optimizer.param_groups, self.iteration, self.epoch)
        self.optimizer.zero_grad(set_to_none=True)
        step_start = time.perf_counter()
        data_seconds, total_value = 0.0, 0.0
        for micro in range(accum):
            data_start = time.perf_counter()
            images, targets = next_batch(stream, self.iteration + 1, self._epoch_of_micro(micro))
            images, targets = batch_to_device(images, targets, self.device)
            data_seconds += time.perf_counter() - data_start
            sync = micro == accum - 1 or not isinstance(self.model, DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self._autocast():
                    _, losses = self.model(images, targets)
                total = sum(losses.values())
                total_value += self._check_finite(losses, total) / accum
                scaled = total / accum
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            for name, value in losses.items():
                value = value.detach().float() / accum
                self._period_losses[name] = self._period_losses.get(name, 0) + value
        if self.settings.clip_grad_norm is not None:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.settings.clip_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.unwrapped_model)
        self._period_times[0] += time.perf_counter() - step_start
        self._period_times[1] += data_seconds
        self._period_times[2] += 1
        return total_value

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _check_finite(self, losses: Mapping[str, Tensor], total: Tensor) -> float:
        """The total loss as a float; raises on every rank when any rank's loss is not finite
        (before the backward pass, which would otherwise hang the other ranks in DDP)."""
        value = float(total.detach())
        bad = not math.isfinite(value)
        if not any_true(bad):
            return value
        terms = ", ".join(f"{name}={float(term.detach()):.6g}" for name, term in losses.items())
        latest = self.checkpointer.latest()
        rank = f" on rank {get_rank()}" if is_distributed() else ""
        where = (f"the last checkpoint, {latest}, was written before it and is intact"
                 if latest else "no checkpoint was written")
        raise NonFiniteLossError(
            f"non-finite loss at iteration {self.iteration + 1} (epoch {self.epoch}){rank}: "
            f"{terms}, total={float(total.detach()):.6g}"
            + ("" if bad else " (finite here, non-finite on another rank)")
            + f". Training stopped; {where}. Lower the learning rate, enable "
            "train.clip_grad_norm or check the data of this iteration.")

    def _lr(self) -> float:
        return max(group["lr"] for group in self.optimizer.param_groups)

    def _set_train_mode(self) -> None:
        self.model.train()
        for module in self.frozen_modules:
            module.eval()

    # ------------------------------------------------------------------- periodic duties
    def _after_step(self) -> None:
        s = self.settings
        last = self.iteration == self.max_iter
        if self.iteration % s.log_period == 0 or last:
            self._write_train_record()
        if not last:  # the final evaluation and checkpoint are done by _finish
            if self.eval_period and self.evaluate_fn and self.iteration % self.eval_period == 0:
                self.run_evaluation()
            if s.checkpoint_period and self.iteration % s.checkpoint_period == 0:
                self.save_checkpoint(self.checkpointer.periodic_path(self.iteration))
        for hook in self.hooks:
            hook.after_step(self)

    def _finish(self) -> None:
        if self.evaluate_fn is not None and self._last_eval_iteration != self.iteration:
            self.run_evaluation()
        self.save_checkpoint(self.checkpointer.final_path)
        for hook in self.hooks:
            hook.after_train(self)

    def _write_train_record(self) -> None:
        """Mean losses and times over the period, averaged over the ranks, to the log."""
        seconds, data_seconds, count = self._period_times
        values = {name: float(total) / max(count, 1)
                  for name, total in sorted(self._period_losses.items())}
        values["total_loss"] = sum(values.values())
        values = all_reduce_mean(values)
        self._period_losses, self._period_times = {}, [0.0, 0.0, 0]
        record = {"type": "train", "iter": self.iteration, "epoch": self._epoch_of_last_step(),
                  "lr": self._lr(),
                  **values, "time": seconds / max(count, 1),
                  "data_time": data_seconds / max(count, 1)}
        self._log_record(record)
        self._bar.set_postfix({**{k: f"{v:.4g}" for k, v in values.items()},
                               "lr": f"{record['lr']:.3g}"}, refresh=False)
        remaining = (self.max_iter - self.iteration) * record["time"]
        eta = str(datetime.timedelta(seconds=int(remaining)))
        losses = "  ".join(f"{k}: {v:.4g}" for k, v in values.items())
        logger.info("iter %d/%d  epoch %d  lr %.4g  %s  time %.3fs  data %.3fs  eta %s",
                    self.iteration, self.max_iter, record["epoch"], record["lr"], losses,
                    record["time"], record["data_time"], eta)

    def eval_model(self) -> nn.Module:
        """The model evaluated and judged for the best checkpoint: the EMA when configured."""
        if self.ema is not None and self.settings.ema and self.settings.ema.use_for_eval:
            return self.ema.module
        return self.unwrapped_model

    def run_evaluation(self) -> dict[str, float]:
        """Evaluate now, log the metrics and keep the best checkpoint when it improved."""
        assert self.evaluate_fn is not None
        model = self.eval_model()
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.evaluate_fn(model).items()}
        self._set_train_mode()
        self._last_eval_iteration = self.iteration
        self._log_record({"type": "eval", "iter": self.iteration,
                          "epoch": self._epoch_of_last_step(), **metrics})
        logger.info("evaluation at iteration %d: %s", self.iteration,
                    ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if self.settings.best_metric:
            decision = all_gather_object(self._improves_best(metrics))[0]  # rank 0 decides
            if isinstance(decision, str):
                raise KeyError(decision)
            if decision:
                self.save_checkpoint(self.checkpointer.best_path, best=True)
        for hook in self.hooks:
            after_eval = getattr(hook, "after_eval", None)  # duck-typed hooks may lack it
            if after_eval is not None:
                after_eval(self, metrics)
        return metrics

    def _improves_best(self, metrics: Mapping[str, float]) -> bool | str:
        """On rank 0: whether ``metrics`` beat the best so far (recording the new best), or an
        error message when the metric is missing. Other ranks (which may have no metrics)
        answer False; every rank acts on rank 0's answer."""
        if not is_main_process():
            return False
        name = self.settings.best_metric
        if name not in metrics:
            return (f"train.best_metric={name!r} is not among the evaluator's metrics: "
                    f"{', '.join(sorted(metrics)) or '(none)'}")
        value, previous = metrics[name], self.best.get("value")
        better = previous is None or (value > previous if self.settings.best_mode == "max"
                                      else value < previous)
        if better:
            self.best = {"name": name, "value": value, "iteration": self.iteration}
        return better

    # -------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        """The full training state (collective: gathers the RNG states of all ranks)."""
        rng = all_gather_object(capture_rng_state())
        described = {} if self.model_config is None else {
            "model_config": self.model_config, "class_names": self.class_names}
        evaluated = self.eval_model()
        weights = {"model": evaluated.state_dict()}
        if evaluated is not self.unwrapped_model:  # the EMA: the raw weights for resume
            weights["model_raw"] = self.unwrapped_model.state_dict()
        return {
            **weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.lr_schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": rng,
            "iteration": self.iteration,
            "epoch": self.epoch,
            "data_position": self.iteration * self.settings.grad_accum_steps,
            "best": dict(self.best),
            "hooks": hook_states(self.hooks),
            "last_eval_iteration": self._last_eval_iteration,
            "stop_reason": self.stop_reason,
            "config": self.config_text,
            **described,
            "meta": {"detkit_version": detkit.__version__, "torch_version": str(torch.__version__),
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                     "world_size": get_world_size(),
                     "model_weights": "ema" if "model_raw" in weights else "trained",
                     "grad_accum_steps": self.settings.grad_accum_steps},
        }

    def save_checkpoint(self, path: Path, best: bool = False) -> None:
        """Write the training state to ``path`` on rank 0 (every rank must call it)."""
        state = self.checkpoint_state()
        if is_main_process():
            if best:
                self.checkpointer.save_best(state)
            else:
                self.checkpointer.save(state, path)

    def resume(self, path: str | Path) -> None:
        """Restore the full training state written by :meth:`save_checkpoint` (the raw weights
        from ``model_raw`` when the checkpoint's ``model`` holds the EMA)."""
        checkpoint = load_checkpoint(path)
        missing = [k for k in ("model", "optimizer", "iteration", "rng") if k not in checkpoint]
        if missing:
            raise KeyError(f"{path} is not a training checkpoint: no {', '.join(missing)} "
                           "(use train.init_checkpoint to start from weights only)")
        # Strict, through load_weights: a checkpoint of another model is one line naming the file.
        load_weights(self.unwrapped_model, checkpoint.get("model_raw", checkpoint["model"]), strict=True,
                     name=path)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        for change in self.lr_schedule.load_state_dict(checkpoint.get("scheduler") or {}):
            logger.warning("lr schedule differs from the checkpoint's: %s", change)
        if self.scaler is not None and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        if self.ema is not None:
            if checkpoint.get("ema"):
                self.ema.load_state_dict(checkpoint["ema"])
            else:
                logger.warning("%s has no EMA state: the average restarts from the weights", path)
        self.iteration = int(checkpoint["iteration"])
        self.best = dict(checkpoint.get("best") or {})
        self._last_eval_iteration = checkpoint.get("last_eval_iteration")
        load_hook_states(self.hooks, checkpoint.get("hooks") or {})
        saved_accum = checkpoint.get("meta", {}).get("grad_accum_steps", 1)
        if saved_accum != self.settings.grad_accum_steps:
            logger.warning("grad_accum_steps changed from %s to %s: the data position is "
                           "recomputed", saved_accum, self.settings.grad_accum_steps)
        rng = checkpoint["rng"]
        if len(rng) == get_world_size():
            restore_rng_state(rng[get_rank()])
        else:
            logger.warning("%s was written by %d process(es), now %d: RNG states not restored",
                           path, len(rng), get_world_size())
        logger.info("resumed from %s at iteration %d (epoch %d)", path, self.iteration,
                    self.epoch)
