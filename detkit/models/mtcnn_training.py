"""Moved: MTCNN's training lives in :mod:`detkit.models.detectors.mtcnn.training`; this module
re-exports it so that ``from detkit.models.mtcnn_training import ...`` keeps working."""

from detkit.models.detectors.mtcnn.training import (
    NEGATIVE,
    NEGATIVE_IOU,
    PART,
    PART_IOU,
    POSITIVE,
    POSITIVE_IOU,
    STAGE_INPUT_SIZES,
    STAGE_LOSS_WEIGHTS,
    StageSamples,
    generate_samples,
    mtcnn_losses,
    ohem_cross_entropy,
    stage_losses,
    stage_state_dict,
)

__all__ = [
    "NEGATIVE", "NEGATIVE_IOU", "PART", "PART_IOU", "POSITIVE", "POSITIVE_IOU", "STAGE_INPUT_SIZES",
    "STAGE_LOSS_WEIGHTS", "StageSamples", "generate_samples", "mtcnn_losses", "ohem_cross_entropy", "stage_losses",
    "stage_state_dict",
]  # fmt: skip
