"""darknet ``.cfg`` + ``.weights`` into detkit's YOLOv3 / YOLOv3-tiny, and detkit back to ``.weights``.

The cfg format: ``[section]`` headers followed by ``key=value`` lines, ``#`` comments. The first
section is ``[net]`` (input size, training settings); every later section is a layer, numbered
from 0, and layers refer to each other by these numbers:

- ``[convolutional]``: ``filters``, ``size``, ``stride``, ``pad=1`` (padding ``size // 2``; else
  ``padding``), ``batch_normalize`` (then the conv has no bias), ``activation`` (leaky: slope 0.1;
  linear).
- ``[maxpool]``: ``size``, ``stride``; output ``ceil(in / stride)`` (see
  :class:`~detkit.models.backbones.darknet.DarknetMaxPool` for the stride-1 pool of yolov3-tiny).
- ``[upsample] stride=2``: nearest neighbour.
- ``[route] layers=a, b``: concatenation of the outputs of the listed layers along channels, in
  that order; negative numbers are relative to the route itself (``-1`` is the previous layer).
  With one entry it just re-reads an earlier output (``-4`` after a ``[yolo]`` goes back to the
  branch point of the head).
- ``[shortcut] from=-3 activation=linear``: previous output plus the output of layer ``from``.
- ``[yolo]``: decodes its input with the anchors listed in ``mask``; ``classes``, ``num``
  (number of anchors), ``ignore_thresh``; ``jitter``, ``truth_thresh``, ``random`` are training
  settings with no effect on the network (ignored).

:func:`build_yolov3_from_cfg` recognises the two architectures of ``yolov3.cfg`` (Darknet-53,
three ``[yolo]`` layers; it has ``[shortcut]`` layers) and ``yolov3-tiny.cfg`` (two ``[yolo]``),
with any classes, anchors and input size, builds detkit's model and checks that the cfg's
convolutions, in order, have exactly the shapes of the model's (input channels as the cfg's routes
and shortcuts wire them, filters, size, stride, padding, batch norm, activation) and that its
``[yolo]`` layers sit at the head's strides. A layer type or option outside this list is an error
naming the layer, its index and the option.

The ``.weights`` file: int32 ``major, minor, revision``, then ``seen`` (images seen in training) as
int64 when ``major * 10 + minor >= 2`` (and both below 1000), else int32; then float32 values,
convolution by convolution in cfg order: with batch norm ``[beta (bn bias), gamma (bn weight),
running_mean, running_var, conv weight]``, without ``[conv bias, conv weight]``; conv weights
``[out, in, k, k]`` row-major, the same layout as PyTorch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detkit.models.detectors.yolo import YOLOv3
from detkit.models.zoo import YOLOV3_ARCHS, build_yolov3

# Options each layer type accepts. [net] accepts anything (its training settings do not shape the
# network); only width, height and channels are read.
SUPPORTED_OPTIONS: dict[str, set[str]] = {
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding", "activation"},
    "maxpool": {"size", "stride"},
    "upsample": {"stride"},
    "route": {"layers"},
    "shortcut": {"from", "activation"},
    "yolo": {"mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh", "random"},
}
ACTIVATIONS = ("leaky", "linear")


class DarknetCfgError(ValueError):
    """A cfg that detkit cannot read or build; the message names the file, layer and option."""


class DarknetWeightsError(ValueError):
    """A ``.weights`` file whose size does not fit the model (expected vs actual counts named)."""


@dataclass
class DarknetLayer:
    """One ``[section]`` of a cfg.

    Attributes:
        type: Section name (``"convolutional"``...).
        options: ``key -> raw value`` strings.
        index: Layer number (``-1`` for ``[net]``).
        line: Line of the header in the file, 1-based.
    """

    type: str
    options: dict[str, str] = field(default_factory=dict)
    index: int = -1
    line: int = 0

    def where(self, source: str) -> str:
        return f"{source}:{self.line}: layer {self.index} [{self.type}]"


def parse_darknet_cfg(path: str | Path) -> list[DarknetLayer]:
    """Reads a cfg file into sections (``[net]`` first, then layers 0, 1, ...).

    Raises:
        DarknetCfgError: On a line outside a section, a line without ``=``, or no ``[net]`` first.
    """
    path = Path(path)
    sections: list[DarknetLayer] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            sections.append(DarknetLayer(header.group(1), {}, len(sections) - 1, number))
        elif not sections or "=" not in line:
            raise DarknetCfgError(f"{path}:{number}: expected '[section]' or 'key=value', got {raw!r}")
        else:
            key, value = (part.strip() for part in line.split("=", 1))
            sections[-1].options[key] = value
    if not sections or sections[0].type not in ("net", "network"):
        raise DarknetCfgError(f"{path}: the first section must be [net]")
    return sections


def _int(layer: DarknetLayer, key: str, source: str, default: int | None = None) -> int:
    value = layer.options.get(key)
    if value is None:
        if default is None:
            raise DarknetCfgError(f"{layer.where(source)}: missing option {key!r}")
        return default
    try:
        return int(value)
    except ValueError:
        raise DarknetCfgError(f"{layer.where(source)}: option {key}={value!r} is not an integer") from None


def _ints(layer: DarknetLayer, key: str, source: str) -> list[int]:
    return [int(v) for v in _floats(layer, key, source)]


def _floats(layer: DarknetLayer, key: str, source: str) -> list[float]:
    try:
        return [float(v) for v in layer.options[key].split(",") if v.strip()]
    except KeyError:
        raise DarknetCfgError(f"{layer.where(source)}: missing option {key!r}") from None
    except ValueError:
        value = layer.options[key]
        raise DarknetCfgError(f"{layer.where(source)}: option {key}={value!r} is not a list of numbers") from None


@dataclass
class _CfgSummary:
    """What the importer needs from a cfg: conv shapes in order and the [yolo] settings."""

    input_size: tuple[int, int]
    convs: list[tuple[DarknetLayer, tuple[Any, ...]]]  # (layer, (in, out, k, stride, pad, bn, act))
    yolo: list[tuple[DarknetLayer, int]]  # (layer, stride of its input)
    has_shortcut: bool


def _check_options(layer: DarknetLayer, source: str) -> None:
    if layer.type not in SUPPORTED_OPTIONS:
        raise DarknetCfgError(
            f"{layer.where(source)}: layer type [{layer.type}] is not supported by detkit "
            f"(supported: {sorted(SUPPORTED_OPTIONS)})"
        )
    unknown = sorted(set(layer.options) - SUPPORTED_OPTIONS[layer.type])
    if unknown:
        raise DarknetCfgError(
            f"{layer.where(source)}: unsupported option(s) {unknown} "
            f"(supported for [{layer.type}]: {sorted(SUPPORTED_OPTIONS[layer.type])})"
        )
    activation = layer.options.get("activation", "linear" if layer.type == "shortcut" else "logistic")
    if layer.type == "convolutional" and activation not in ACTIVATIONS:
        raise DarknetCfgError(
            f"{layer.where(source)}: unsupported option activation={activation} (supported: {ACTIVATIONS})"
        )
    if layer.type == "shortcut" and activation != "linear":
        raise DarknetCfgError(f"{layer.where(source)}: unsupported option activation={activation} (only linear)")
    if layer.type == "upsample" and _int(layer, "stride", source, 2) != 2:
        raise DarknetCfgError(f"{layer.where(source)}: unsupported option stride={layer.options['stride']} (only 2)")


def _summarise(sections: list[DarknetLayer], source: str) -> _CfgSummary:
    """Validates every layer and follows channels and strides through routes and shortcuts."""
    net, layers = sections[0], sections[1:]
    if _int(net, "channels", source, 3) != 3:
        raise DarknetCfgError(f"{net.where(source)}: unsupported option channels={net.options['channels']} (only 3)")
    input_size = (_int(net, "height", source, 416), _int(net, "width", source, 416))
    channels: list[int] = []
    strides: list[int] = []
    convs, yolo = [], []
    in_channels, stride = 3, 1
    for layer in layers:
        _check_options(layer, source)
        kind = layer.type

        def resolve(value: int) -> int:
            target = layer.index + value if value < 0 else value
            if not 0 <= target < layer.index:
                raise DarknetCfgError(
                    f"{layer.where(source)}: refers to layer {value} -> {target}, not an earlier layer"
                )
            return target

        if kind == "convolutional":
            size, step = _int(layer, "size", source, 1), _int(layer, "stride", source, 1)
            padding = size // 2 if _int(layer, "pad", source, 0) else _int(layer, "padding", source, 0)
            bn = bool(_int(layer, "batch_normalize", source, 0))
            activation = layer.options.get("activation", "logistic")
            spec = (in_channels, _int(layer, "filters", source, 1), size, step, padding, bn, activation)
            convs.append((layer, spec))
            in_channels, stride = spec[1], stride * step
        elif kind == "maxpool":
            stride *= _int(layer, "stride", source, 1)
        elif kind == "upsample":
            stride //= 2
        elif kind == "route":
            targets = [resolve(v) for v in _ints(layer, "layers", source)]
            if len({strides[t] for t in targets}) != 1:
                raise DarknetCfgError(f"{layer.where(source)}: concatenates layers {targets} of different strides")
            in_channels, stride = sum(channels[t] for t in targets), strides[targets[0]]
        elif kind == "shortcut":
            other = resolve(_int(layer, "from", source))
            if channels[other] != in_channels or strides[other] != stride:
                raise DarknetCfgError(f"{layer.where(source)}: adds layer {other} of another shape")
        elif kind == "yolo":
            yolo.append((layer, stride))
        channels.append(in_channels)
        strides.append(stride)
    return _CfgSummary(input_size, convs, yolo, any(l.type == "shortcut" for l in layers))


def _yolo_settings(summary: _CfgSummary, source: str) -> dict[str, Any]:
    """Classes, anchors, masks (shallowest level first) and ignore threshold from the [yolo] layers."""
    if not summary.yolo:
        raise DarknetCfgError(f"{source}: no [yolo] layer")
    settings = []
    for layer, _ in summary.yolo:
        values = _floats(layer, "anchors", source)
        num = _int(layer, "num", source, len(values) // 2)
        if len(values) != 2 * num:
            raise DarknetCfgError(f"{layer.where(source)}: num={num} but {len(values)} anchor values")
        settings.append(
            (
                _int(layer, "classes", source),
                tuple(zip(values[0::2], values[1::2])),
                tuple(_ints(layer, "mask", source)),
                float(layer.options.get("ignore_thresh", 0.5)),
            )
        )
    for (layer, _), other in zip(summary.yolo, settings):
        if other[:2] != settings[0][:2] or other[3] != settings[0][3]:
            raise DarknetCfgError(
                f"{layer.where(source)}: classes, anchors and ignore_thresh must be the same in every [yolo] layer"
            )
    order = sorted(range(len(settings)), key=lambda k: summary.yolo[k][1])  # shallowest (smallest stride) first
    return {
        "num_classes": settings[0][0],
        "anchors": settings[0][1],
        "anchor_masks": tuple(settings[k][2] for k in order),
        "ignore_thresh": settings[0][3],
        "strides": [summary.yolo[k][1] for k in order],
    }


def _model_spec(conv: nn.Conv2d, norm: nn.Module | None) -> tuple[Any, ...]:
    return (
        conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0],
        norm is not None, "leaky" if norm is not None else "linear",
    )  # fmt: skip


def build_yolov3_from_cfg(cfg_path: str | Path, **detector_kwargs: Any) -> YOLOv3:
    """Builds detkit's YOLOv3 or YOLOv3-tiny for a darknet cfg (weights left initialised).

    Args:
        cfg_path: A ``yolov3.cfg``- or ``yolov3-tiny.cfg``-shaped file (any classes, anchors, size).
        **detector_kwargs: Passed to :func:`~detkit.models.zoo.build_yolov3` (the detector's
            keywords and the head's detection settings); ``input_size`` defaults to the cfg's
            ``[net] height, width``.

    Returns:
        The model (train mode, as built).

    Raises:
        DarknetCfgError: Unsupported layer or option, or a network that is not one of the two
            architectures; the message names the file, the layer index and type.
    """
    source = str(cfg_path)
    summary = _summarise(parse_darknet_cfg(cfg_path), source)
    settings = _yolo_settings(summary, source)
    strides = settings.pop("strides")
    detector_kwargs.setdefault("input_size", summary.input_size)
    arch = YOLOV3_ARCHS["darknet53" if summary.has_shortcut else "tiny"]
    name = arch.name
    if strides != arch.strides:
        raise DarknetCfgError(
            f"{source}: [yolo] layers at strides {strides}; detkit's {name} has them at {arch.strides}"
        )
    model = build_yolov3(arch, **settings, **detector_kwargs)
    expected = [_model_spec(conv, norm) for conv, norm in model.darknet_convs()]
    if len(expected) != len(summary.convs):
        raise DarknetCfgError(
            f"{source}: {len(summary.convs)} [convolutional] layers; detkit's {name} has {len(expected)}"
        )
    keys = ("in_channels", "filters", "size", "stride", "padding", "batch_normalize", "activation")
    for position, ((layer, spec), wanted) in enumerate(zip(summary.convs, expected)):
        if spec != wanted:
            diff = ", ".join(f"{k}={a} (detkit: {b})" for k, a, b in zip(keys, spec, wanted) if a != b)
            raise DarknetCfgError(
                f"{layer.where(source)}: convolution #{position} does not fit detkit's {name}: {diff}"
            )
    return model


# ---------------------------------------------------------------------------- .weights


@dataclass(frozen=True)
class DarknetHeader:
    """The header of a ``.weights`` file.

    Attributes:
        major, minor, revision: Format version (darknet writes 0, 2, 0).
        seen: Images seen in training; int64 when ``major * 10 + minor >= 2``, else int32.
    """

    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_int64(self) -> bool:
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.seen_is_int64 else 4)


def _tensors_in_file_order(model: YOLOv3) -> list[torch.Tensor]:
    """The tensors a ``.weights`` file holds, in its order (see the module docstring)."""
    if getattr(model, "fused", False):
        raise ValueError("the model was fused (fuse()); darknet weights keep batch norms separate")
    tensors = []
    for conv, norm in model.darknet_convs():
        if norm is not None:
            tensors += [norm.bias, norm.weight, norm.running_mean, norm.running_var, conv.weight]
        else:
            if conv.bias is None:
                raise ValueError(f"conv {conv} has neither batch norm nor bias; darknet always has one")
            tensors += [conv.bias, conv.weight]
    return tensors


def read_darknet_header(data: bytes, source: str = "<bytes>") -> DarknetHeader:
    """Parses the header at the start of ``data``."""
    if len(data) < 16:
        raise DarknetWeightsError(f"{source}: {len(data)} bytes, too short for a darknet header")
    major, minor, revision = np.frombuffer(data, "<i4", 3)
    probe = DarknetHeader(int(major), int(minor), int(revision))
    seen = np.frombuffer(data, "<i8" if probe.seen_is_int64 else "<i4", 1, offset=12)[0]
    return DarknetHeader(probe.major, probe.minor, probe.revision, int(seen))


@torch.no_grad()
def load_darknet_weights(model: YOLOv3, path: str | Path) -> DarknetHeader:
    """Copies a darknet ``.weights`` file into ``model`` (built by :func:`build_yolov3_from_cfg`).

    Args:
        model: The detector; its convs are filled in darknet's cfg order.
        path: The ``.weights`` file.

    Returns:
        The file's header (keep it to write the file back identically).

    Raises:
        DarknetWeightsError: When the file holds more or fewer floats than the model needs; the
            message gives both counts.
    """
    data = Path(path).read_bytes()
    header = read_darknet_header(data, str(path))
    if (len(data) - header.nbytes) % 4:
        raise DarknetWeightsError(f"{path}: {len(data) - header.nbytes} bytes after the header, not whole float32s")
    values = torch.from_numpy(np.frombuffer(data, "<f4", offset=header.nbytes).copy())
    tensors = _tensors_in_file_order(model)
    expected = sum(t.numel() for t in tensors)
    if values.numel() != expected:
        raise DarknetWeightsError(
            f"{path}: holds {values.numel()} float32 values after its {header.nbytes}-byte header, "
            f"but the model needs {expected} ({'too short' if values.numel() < expected else 'too long'}); "
            "is it the weights of this cfg?"
        )
    offset = 0
    for tensor in tensors:
        tensor.copy_(values[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()
    return header


def darknet_weights_bytes(model: YOLOv3, header: DarknetHeader = DarknetHeader()) -> bytes:
    """The ``.weights`` file content for ``model`` (header, then float32 values in cfg order)."""
    head = np.array([header.major, header.minor, header.revision], "<i4").tobytes()
    head += np.array([header.seen], "<i8" if header.seen_is_int64 else "<i4").tobytes()
    body = torch.cat([t.detach().reshape(-1).float().cpu() for t in _tensors_in_file_order(model)])
    return head + body.numpy().astype("<f4").tobytes()


def save_darknet_weights(model: YOLOv3, path: str | Path, header: DarknetHeader = DarknetHeader()) -> Path:
    """Writes ``model`` as a darknet ``.weights`` file; with the header :func:`load_darknet_weights`
    returned, a loaded file is written back byte for byte.

    Args:
        model: A detector built from a cfg (not fused).
        path: Output file.
        header: Version and ``seen`` to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.write_bytes(darknet_weights_bytes(model, header))
    return path


__all__ = [
    "DarknetCfgError", "DarknetHeader", "DarknetLayer", "DarknetWeightsError", "build_yolov3_from_cfg",
    "darknet_weights_bytes", "load_darknet_weights", "parse_darknet_cfg", "read_darknet_header",
    "save_darknet_weights",
]  # fmt: skip
