"""Close mosaic: train the last epochs on plain images (ultralytics' ``close_mosaic``, 10 by default).

Mosaics show objects cut at tile borders, at scales and in contexts the evaluation images never
have; the YOLOs from v5 on finish training without them. :class:`CloseMosaic` is a trainer hook
that sets the probability of every :class:`~detkit.data.mosaic.MosaicDataset` (and, with
``mixup=True``, :class:`~detkit.data.mosaic.MixupDataset`) found in the training dataset to 0
once the run enters its last ``epochs`` epochs, as ultralytics' trainer does at the start of epoch
``max_epochs - close_mosaic`` (mosaic, mixup, cutmix and copy-paste off).

In a config::

    train.hooks = [L(CloseMosaic)(epochs=10)]

When it takes effect: the trainer reads each epoch through a new DataLoader iterator, so a switch
made after the last step of an epoch applies to the whole next epoch, in the main process and in
non-persistent workers alike; persistent workers (``persistent_workers=True`` with workers) keep
their copy of the dataset, and are refused. A resumed run is switched in ``before_train`` from its
epoch. When ``grad_accum_steps`` does not divide the batches of an epoch, the switch happens at
the first step boundary inside the epoch (the batches of that epoch already read, or prefetched by
workers, keep their mosaics).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from detkit.data.mosaic import MixupDataset, MosaicDataset
from detkit.engine.hooks import Hook

if TYPE_CHECKING:
    from detkit.engine.trainer import Trainer

__all__ = ["CloseMosaic", "multi_image_wrappers"]

logger = logging.getLogger(__name__)


def multi_image_wrappers(dataset: Any, max_depth: int = 16) -> list[Any]:
    """The :class:`MosaicDataset` and :class:`MixupDataset` objects in a dataset chain.

    Follows ``.dataset`` (the wrappers themselves, ``torch.utils.data.Subset``) and ``.datasets``
    (``ConcatDataset``) links, outermost first.
    """
    found, stack, seen = [], [(dataset, 0)], set()
    while stack:
        node, depth = stack.pop(0)
        if node is None or id(node) in seen or depth > max_depth:
            continue
        seen.add(id(node))
        if isinstance(node, (MosaicDataset, MixupDataset)):
            found.append(node)
        stack.append((getattr(node, "dataset", None), depth + 1))
        stack.extend((child, depth + 1) for child in getattr(node, "datasets", None) or ())
    return found


class CloseMosaic(Hook):
    """Switch mosaic (and mixup) off for the last ``epochs`` epochs of the run.

    Args:
        epochs: Final epochs without mosaic (ultralytics' ``close_mosaic``; 0 keeps mosaic on).
            The run's epochs are ``train.max_epochs``, or those its ``max_iter`` spans.
        mixup: Also switch :class:`MixupDataset` off (ultralytics closes mixup with mosaic).
    """

    def __init__(self, epochs: int = 10, mixup: bool = True) -> None:
        if epochs < 0:
            raise ValueError(f"CloseMosaic: epochs must be >= 0, got {epochs}")
        self.epochs = epochs
        self.mixup = mixup
        self.closed = False

    def before_train(self, trainer: Trainer) -> None:
        loader = trainer.data_loader
        if getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0:
            raise ValueError(
                "CloseMosaic: the training loader keeps persistent workers, which would keep their mosaic; build it "
                "with persistent_workers=False"
            )
        wrappers = self._wrappers(trainer)
        if self.epochs and not wrappers:
            logger.warning("CloseMosaic: no MosaicDataset%s in the training dataset; nothing to switch off",
                           " or MixupDataset" if self.mixup else "")
        self.closed = False
        self._maybe_close(trainer)

    def after_step(self, trainer: Trainer) -> None:
        self._maybe_close(trainer)

    def first_closed_epoch(self, trainer: Trainer) -> int:
        """The 0-based epoch from which the run trains without mosaic."""
        return max(self._run_epochs(trainer) - self.epochs, 0)

    def _maybe_close(self, trainer: Trainer) -> None:
        if self.closed or not self.epochs or trainer.epoch < self.first_closed_epoch(trainer):
            return
        wrappers = self._wrappers(trainer)
        for wrapper in wrappers:
            wrapper.prob = 0.0
        self.closed = True
        if wrappers:
            logger.info("epoch %d: mosaic off for the last %d epoch(s) (%s)", trainer.epoch, self.epochs,
                        ", ".join(type(w).__name__ for w in wrappers))

    def _wrappers(self, trainer: Trainer) -> list[Any]:
        wrappers = multi_image_wrappers(trainer.data_loader.dataset)
        return [w for w in wrappers if self.mixup or isinstance(w, MosaicDataset)]

    @staticmethod
    def _run_epochs(trainer: Trainer) -> int:
        if trainer.settings.max_epochs is not None:
            return trainer.settings.max_epochs
        batches = trainer.max_iter * trainer.settings.grad_accum_steps
        return -(-batches // trainer.batches_per_epoch)
