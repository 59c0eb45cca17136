"""Loading local checkpoints into detkit modules, with a report of what did not fit.

Checkpoints are read with ``torch.load(path, map_location="cpu", weights_only=True)``: a file can
hold tensors and plain containers, never code. Keys are in torchvision's format (backbones use
torchvision's parameter names), optionally rewritten by a prefix map, e.g.
``{"backbone.body.": ""}`` to take the backbone out of a torchvision detection checkpoint.
Nothing is ever downloaded here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

# Top-level keys under which training scripts commonly nest the state dict.
_NESTED_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


class WeightsMismatchError(ValueError):
    """Raised by a strict load when keys are missing, unexpected or of the wrong shape."""


@dataclass
class LoadReport:
    """What happened when a checkpoint was loaded into a module.

    Attributes:
        path: The checkpoint file.
        loaded_keys: Module keys that received a value.
        missing_keys: Module keys the checkpoint had no value for (left as initialised).
        unexpected_keys: Checkpoint keys (after the prefix map) the module has no place for.
        shape_mismatches: ``(key, checkpoint_shape, module_shape)`` for keys skipped because the
            shapes differ.
    """

    path: Path
    loaded_keys: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every module key was loaded and every checkpoint key was used."""
        return not (self.missing_keys or self.unexpected_keys or self.shape_mismatches)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded_keys)} tensors from {self.path}"]
        if self.missing_keys:
            lines.append(f"missing in checkpoint ({len(self.missing_keys)}): {_summarise(self.missing_keys)}")
        if self.unexpected_keys:
            lines.append(
                f"unexpected in checkpoint, ignored ({len(self.unexpected_keys)}): "
                f"{_summarise(self.unexpected_keys)}"
            )
        for key, checkpoint_shape, module_shape in self.shape_mismatches:
            lines.append(
                f"shape mismatch, skipped: {key}: checkpoint {list(checkpoint_shape)} vs module {list(module_shape)}"
            )
        return "\n  ".join(lines)


def _summarise(keys: list[str], limit: int = 12) -> str:
    """Lists keys in full when few, else grouped by their first two name components."""
    if len(keys) <= limit:
        return ", ".join(keys)
    groups = Counter(".".join(key.split(".")[:2]) for key in keys)
    return ", ".join(f"{group}.* ({count})" for group, count in groups.items())


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Reads a checkpoint file as a flat ``{key: tensor}`` dict."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, Mapping) and not all(isinstance(v, Tensor) for v in checkpoint.values()):
        for nested_key in _NESTED_STATE_DICT_KEYS:
            if isinstance(checkpoint.get(nested_key), Mapping):
                checkpoint = checkpoint[nested_key]
                break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(checkpoint).__name__})")
    not_tensors = [key for key, value in checkpoint.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: entries that are not tensors: {not_tensors[:10]}")
    return dict(checkpoint)


def apply_prefix_map(state_dict: Mapping[str, Tensor], prefix_map: Mapping[str, str]) -> dict[str, Tensor]:
    """Rewrites key prefixes.

    Args:
        state_dict: ``{key: tensor}``.
        prefix_map: ``{checkpoint_prefix: module_prefix}``; the longest matching prefix wins; keys
            that match none are kept unchanged.

    Returns:
        A new dict with the rewritten keys.
    """
    prefixes = sorted(prefix_map, key=len, reverse=True)
    renamed: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = prefix_map[prefix] + key[len(prefix) :]
                break
        renamed[key] = value
    return renamed


def load_weights(
    module: nn.Module,
    path: str | Path,
    *,
    prefix_map: Mapping[str, str] | None = None,
    strict: bool = False,
) -> LoadReport:
    """Loads a local checkpoint into ``module`` and reports what did not fit.

    Tensors whose shape differs from the module's are skipped (and reported), so a checkpoint with
    another number of classes still loads its other tensors. The report is logged: at INFO level
    when everything fit, else at WARNING level.

    Args:
        module: The module to fill.
        path: Local checkpoint file (a state dict, possibly nested under ``"state_dict"`` or
            ``"model"``), read with ``weights_only=True``.
        prefix_map: Optional ``{checkpoint_prefix: module_prefix}`` key rewriting.
        strict: When True, any missing, unexpected or mismatched key raises
            :class:`WeightsMismatchError` and the module is left unchanged.

    Returns:
        The :class:`LoadReport`.

    Raises:
        FileNotFoundError: When ``path`` does not exist (the message names it).
        WeightsMismatchError: With ``strict=True``, when the checkpoint does not fit exactly.
    """
    path = Path(path)
    state_dict = _read_state_dict(path)
    if prefix_map:
        state_dict = apply_prefix_map(state_dict, prefix_map)

    module_state = module.state_dict()
    mismatches = [
        (key, tuple(value.shape), tuple(module_state[key].shape))
        for key, value in state_dict.items()
        if key in module_state and value.shape != module_state[key].shape
    ]
    mismatched_keys = {key for key, _, _ in mismatches}
    loadable = {key: value for key, value in state_dict.items() if key not in mismatched_keys}

    backup = {key: value.detach().clone() for key, value in module_state.items()} if strict else None
    result = module.load_state_dict(loadable, strict=False)
    missing = [key for key in result.missing_keys if key not in mismatched_keys]
    missing_set = set(missing) | mismatched_keys
    report = LoadReport(
        path=path,
        loaded_keys=[key for key in module_state if key not in missing_set],
        missing_keys=missing,
        unexpected_keys=list(result.unexpected_keys),
        shape_mismatches=mismatches,
    )
    if strict and not report.ok:
        assert backup is not None
        module.load_state_dict(backup)
        raise WeightsMismatchError(f"checkpoint does not fit {type(module).__name__}:\n  {report}")
    logger.log(logging.INFO if report.ok else logging.WARNING, "%s: %s", type(module).__name__, report)
    return report
