"""Lazy Python configs: ``L()`` records calls, ``instantiate()`` makes them.

A config file is plain Python that describes a tree of calls without making them::

    from configs.common.rcnn import faster_rcnn
    from detkit.models.backbones import ResNet

    model = faster_rcnn(num_classes=20)          # a base: a function returning a fresh tree
    model.backbone = L(ResNet)(depth=50)         # a child sets attributes
    train = dict(output_dir="runs/frcnn", max_iter=90000)

``load_config(path, overrides)`` runs the file and returns its top-level names as a
:class:`ConfigDict`; ``instantiate(cfg.model)`` builds the objects. The import statement is the
registry: every ``_target_`` is the callable itself, never a string. ``save_config`` writes the
resolved tree back as Python that imports each target by module and qualified name.

Values said once: ``Inherit("num_classes")`` stands for the value of ``num_classes`` at the
nearest enclosing node, taken when the tree is built, so ``model.num_classes=20`` reaches every
head. A node can hold such a value for its sub-tree without passing it to its target:
``L(YOLOv3, config_only=["num_classes"])``.

The package, one concept per module:

- :mod:`detkit.config.lazy`: :class:`ConfigDict`, :class:`LazyCall`, :func:`L`, :class:`Inherit`,
  the errors;
- :mod:`detkit.config.instantiate`: :func:`instantiate`;
- :mod:`detkit.config.loader`: :func:`load_config`, :func:`apply_overrides`, the ``configs``
  import binding, :class:`ConfigFileError` (``file:line: reason`` of a config that does not run);
- :mod:`detkit.config.override_types`: whether an override's value fits the value it replaces
  (:class:`OverrideTypeError`);
- :mod:`detkit.config.writer`: :func:`save_config`, :func:`format_config`;
- :mod:`detkit.config.data`: the safe data form stored in checkpoints (:func:`config_to_data`,
  :func:`config_from_data`, :func:`model_config_entries`).

Keys are checked against the target's signature when a node is created and when an attribute is
set, so a typo fails at once naming the key, the target, the nearest valid names and (while a
config file is loading) the file and line. Plain dicts become :class:`ConfigDict` once loaded; a
base that wants attribute access inside config files returns ``ConfigDict(...)``.
"""

from detkit.config.data import (
    CLASS_NAMES_KEY, DEFAULT_ALLOWED_MODULES, DEFAULT_DENIED_MODULES, MODEL_CONFIG_KEY,
    UnsafeConfigError, config_from_data, config_to_data, import_target, model_config_entries,
)
from detkit.config.instantiate import instantiate, resolve_inherit
from detkit.config.lazy import (
    ConfigDict, ConfigError, ConfigKeyError, Inherit, InstantiationError, L, LazyCall,
)
from detkit.config.loader import ConfigFileError, apply_overrides, config_imports, load_config
from detkit.config.override_types import OverrideTypeError
from detkit.config.writer import format_config, save_config

__all__ = [
    "CLASS_NAMES_KEY", "ConfigDict", "ConfigError", "ConfigFileError", "ConfigKeyError",
    "DEFAULT_ALLOWED_MODULES", "DEFAULT_DENIED_MODULES", "Inherit", "InstantiationError", "L",
    "LazyCall", "MODEL_CONFIG_KEY", "OverrideTypeError", "UnsafeConfigError", "apply_overrides",
    "config_from_data", "config_imports", "config_to_data", "format_config", "import_target",
    "instantiate", "load_config", "model_config_entries", "resolve_inherit", "save_config",
]
