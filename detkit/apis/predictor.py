"""Run any detkit detector on images: build it from a config and checkpoint, feed it, read it.

::

    from detkit.apis import Predictor

    predictor = Predictor.from_config("configs/yolo/yolov3_tiny_coco.py", "yolov3_tiny.pth",
                                      score_thresh=0.3, classes=["dog", "person"])
    for result in predictor(["dog.jpg", cv2.imread("person.jpg")]):
        print(result.source, result.boxes, result.class_names)

Two score thresholds meet here. The model's own test threshold (``score_thresh`` of its head, e.g.
0.05 for Faster R-CNN, 0.005 for YOLOv3) is set low for evaluation: mAP needs the long tail, so a
model may return 100 boxes per image. The Predictor keeps everything the model returns unless it
is given ``score_thresh`` (a library default, the same results as ``detkit test`` scores); for
showing detections to people, pass ``score_thresh=DISPLAY_SCORE_THRESH`` (0.3), which is what
``detkit infer`` and ``detkit demo`` use when ``--score-thresh`` is not given. A threshold below
the model's own changes nothing: lower the model's (``model.roi_heads.score_thresh=0.001``...).

:meth:`Predictor.from_config` warns (:class:`UntrainedModelWarning`) when it builds a model with
no weights loaded: no checkpoint, and a config that does not set ``pretrained = True`` (the zoo's
``*_pretrained`` configs, whose model loads its own weights). A ``weights`` path on a part of the
model (a backbone's ImageNet weights) still leaves the detection heads random: the warning names it.

The predictor only relies on the detector interface of docs/conventions.md:
``detector(images) -> (predictions, losses)`` in eval mode, images ``[3, H, W]`` float RGB in
[0, 1], predictions per image in that image's pixels, and ``num_classes`` / ``class_names``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detkit.apis.images import (
    ImageInput, ImageReadError, as_float_image, describe_input, to_chw_tensor,
)
from detkit.apis.slicing import SliceSettings, sliced_predict
from detkit.config import instantiate, load_config
from detkit.models.fuse import inference_copy
from detkit.models.tta import build_tta
from detkit.utils.checkpoint import CheckpointError, load_weights
from detkit.utils.deprecation import renamed_keyword
from detkit.utils.result import Result

__all__ = ["DISPLAY_SCORE_THRESH", "CheckpointError", "Predictor", "UntrainedModelWarning",
           "default_device", "loaded_weights"]

logger = logging.getLogger(__name__)

# The score above which detections are shown (`detkit infer`, `detkit demo`): mmdetection's
# `--pred-score-thr` default; detectron2's demo uses 0.5, ultralytics 0.25.
DISPLAY_SCORE_THRESH = 0.3

# Marks a model built by Predictor.from_config, which the fast path may fold in place.
_OWNED = "_detkit_predictor_owns"


class UntrainedModelWarning(UserWarning):
    """A predictor runs a model with no trained weights loaded: its detections are noise."""


def default_device() -> torch.device:
    """``cuda`` when a GPU is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def __getattr__(name: str) -> Any:
    if name == "load_model_weights":
        warnings.warn("detkit.apis.load_model_weights(model, path) is deprecated: use "
                      "detkit.utils.checkpoint.load_weights(model, path, strict=True, "
                      "drop_ddp_prefix=True)",
                      DeprecationWarning, stacklevel=2)
        return _load_model_weights
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load_model_weights(model: nn.Module, checkpoint_path: str | Path) -> None:
    """The deprecated ``load_model_weights``: a strict :func:`load_weights`."""
    load_weights(model, checkpoint_path, strict=True, drop_ddp_prefix=True)


def _weight_paths(node: Any, path: str) -> Iterator[str]:
    """The dotted keys of the non-empty ``weights`` arguments in a (lazy) config tree."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "weights" and value not in (None, "", False):
                yield f"{path}.{key}"
            elif isinstance(value, (Mapping, list, tuple)):
                yield from _weight_paths(value, f"{path}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _weight_paths(value, f"{path}.{index}")


def loaded_weights(cfg: Mapping[str, Any], checkpoint_path: str | Path | None) -> str | None:
    """What trained weights a model built from ``cfg`` (and ``checkpoint_path``) will hold.

    Args:
        cfg: A loaded config with ``model``.
        checkpoint_path: The checkpoint loaded into it after building, or None.

    Returns:
        ``"checkpoint PATH"``, ``"pretrained (the config's model loads its own weights)"``, or
        None when the detector's weights are random (a ``weights`` path on a part only, such as
        the backbone, leaves the rest random).
    """
    if checkpoint_path is not None:
        return f"checkpoint {checkpoint_path}"
    if cfg.get("pretrained", False):
        return "pretrained (the config's model loads its own weights)"
    return None


class Predictor:
    """Runs a detector in eval mode on images of any kind and returns :class:`Result` objects.

    Args:
        model: A detector following docs/conventions.md (put in eval mode, moved to ``device``).
        device: Where the model runs; default ``cuda`` when available, else ``cpu``.
        class_names: Name of each label; default ``model.class_names`` (labels as text if None).
        score_thresh: Drop detections scoring below this. Default None: keep all the model gives
            (it applies its own, evaluation, threshold); :data:`DISPLAY_SCORE_THRESH` (0.3) for
            showing them, as ``detkit infer`` does.
        classes: Keep only these classes, by name or 0-based id (a list, or ``"dog,person"``).
        detections_per_img: Keep at most this many detections per image, highest scores first.
        label_to_category_id: Map from label to dataset category id for COCO output; default
            ``model.label_to_category_id`` when the model has one.
        score_threshold, max_detections: Deprecated names of ``score_thresh`` and
            ``detections_per_img``.
        slice_size: Run the model on tiles of this many pixels (an int, or ``(height, width)``)
            and merge their detections (sliced inference, :mod:`detkit.apis.slicing`), for small
            objects in large images; None (the default) runs it on whole images.
        slice_overlap: Fraction of a tile shared with its neighbour, in [0, 1).
        slice_full_image: Also run the model on the whole image (large objects).
        slice_merge: ``"nms"`` (class-wise NMS) or ``"merge"`` (overlapping boxes of a class
            merged into their union); both match by intersection over the smaller box > 0.5.
            With slicing, ``score_thresh`` applies before the merge.
        tta: Test-time augmentation: False (none), True (the image and its horizontal flip,
            merged by class-wise NMS) or a dict of
            :class:`~detkit.models.tta.TestTimeAugmentation` options (``flips``, ``scales``,
            ``merge``, ``nms_thresh``, ``detections_per_img``, ``keypoint_flip_pairs``); the model
            is wrapped in it (``self.model``), its class names and ids read through it.
        fuse: Run the fast path (the default): an eval-mode copy of the model with its batch
            norms folded into the convolutions and channels-last weights on the CPU
            (:func:`detkit.models.fuse.inference_copy`); the model given is left untouched (a
            trainer's model stays trainable). False: the model itself, put in eval mode and
            moved to ``device``, as it is. (The onnxruntime backend runs the exported graph as it is.)
        backend: ``"torch"`` (default: the model itself) or ``"onnxruntime"``: ``model`` is then
            an ``.onnx`` file written by :func:`detkit.export` (class names and preprocessing
            read from its metadata), or a torch detector exported to a temporary file first
            (:func:`detkit.apis.onnx_backend.as_backend_model`); it runs on the CPU.

    Attributes:
        weights: What trained weights the model holds, as :meth:`from_config` knows it
            (``"checkpoint PATH"``, ``"pretrained ..."``, or None: random weights); None too for
            a model handed in ready (the predictor cannot tell).
        slicing: The :class:`~detkit.apis.slicing.SliceSettings`, or None (no slicing).

    Raises:
        ValueError: A class name or id in ``classes`` that the model does not have; a bad
            ``slice_*`` value (the message names it); a bad ``tta`` option.
    """

    def __init__(self, model: nn.Module | str | Path, *, device: str | torch.device | None = None,
                 class_names: Sequence[str] | None = None, score_thresh: float | None = None,
                 classes: Iterable[str | int] | str | None = None,
                 detections_per_img: int | None = None,
                 label_to_category_id: Mapping[int, int] | None = None,
                 score_threshold: float | None = None, max_detections: int | None = None,
                 slice_size: int | tuple[int, int] | None = None, slice_overlap: float = 0.2,
                 slice_full_image: bool = True, slice_merge: str = "nms",
                 tta: bool | Mapping[str, Any] = False, fuse: bool = True, backend: str = "torch") -> None:
        if backend != "torch":  # an exported model (detkit.apis.onnx_backend); it runs on the CPU
            from detkit.apis.onnx_backend import as_backend_model

            model = as_backend_model(model, backend)
            device = "cpu" if device is None else device
        self.backend = backend
        self.device = torch.device(device) if device is not None else default_device()
        model = build_tta(model, tta, "Predictor(tta=...)")  # test-time augmentation (the tta option)
        self.fuse = fuse and backend == "torch"
        owned = getattr(model, _OWNED, False)  # built by from_config: nobody else holds it
        self.model = (inference_copy(model, device=self.device, inplace=owned) if self.fuse
                      else model.eval().to(self.device))
        names = class_names if class_names is not None else getattr(model, "class_names", None)
        self.class_names: list[str] | None = list(names) if names is not None else None
        self.num_classes: int | None = getattr(model, "num_classes", None)
        self.score_thresh = renamed_keyword("Predictor", "score_threshold", score_threshold, "score_thresh",
                                            score_thresh, None)
        self.detections_per_img = renamed_keyword("Predictor", "max_detections", max_detections,
                                                  "detections_per_img", detections_per_img, None)
        self.label_to_category_id = (label_to_category_id if label_to_category_id is not None
                                     else getattr(model, "label_to_category_id", None))
        self.class_ids = self._resolve_classes(classes)
        self.weights: str | None = None
        self.slicing: SliceSettings | None = None
        if slice_size is not None:
            self.slicing = SliceSettings(slice_size, slice_overlap, slice_full_image, slice_merge)

    @classmethod
    def from_config(cls, config_path: str | Path, checkpoint_path: str | Path | None = None, *,
                    device: str | torch.device | None = None, overrides: Sequence[str] | None = None,
                    score_thresh: float | None = None,
                    classes: Iterable[str | int] | str | None = None,
                    detections_per_img: int | None = None,
                    score_threshold: float | None = None, max_detections: int | None = None,
                    slice_size: int | tuple[int, int] | None = None, slice_overlap: float = 0.2,
                    slice_full_image: bool = True, slice_merge: str = "nms",
                    tta: bool | Mapping[str, Any] = False, fuse: bool = True) -> Predictor:
        """Build ``model`` of a detkit config, load a checkpoint into it, wrap it.

        Args:
            config_path: A detkit lazy config defining ``model``.
            checkpoint_path: A checkpoint whose ``"model"`` entry is the state dict (or a bare
                state dict, also one saved from DistributedDataParallel), loaded strictly by
                :func:`detkit.utils.checkpoint.load_weights`;
                None for a config whose model loads its own weights.
            device, score_thresh, classes, detections_per_img, score_threshold, max_detections,
                slice_size, slice_overlap, slice_full_image, slice_merge, tta, fuse: As for
                :class:`Predictor` (the model built here is folded in place: nobody else holds it).
            overrides: ``"key.path=value"`` config overrides.

        Warns:
            UntrainedModelWarning: no checkpoint and a config whose model does not load its own
                weights (see :func:`loaded_weights`): the detections come from random weights.

        Raises:
            detkit.utils.checkpoint.CheckpointError: The checkpoint is missing, unreadable or
                does not fit the model (the one-line message names the file and a few keys).
            detkit.config.ConfigError: A bad config or override.
        """
        cfg = load_config(config_path, list(overrides or []))
        if "model" not in cfg:
            raise KeyError(f"{config_path}: the config defines no 'model' (it has: {', '.join(cfg)})")
        model = instantiate(cfg.model)
        if checkpoint_path is not None:
            load_weights(model, checkpoint_path, strict=True, drop_ddp_prefix=True)
        setattr(model, _OWNED, True)  # fold in place, no copy (the model is only the predictor's)
        predictor = cls(model, device=device, score_thresh=score_thresh, classes=classes,
                        detections_per_img=detections_per_img, score_threshold=score_threshold,
                        max_detections=max_detections, slice_size=slice_size,
                        slice_overlap=slice_overlap, slice_full_image=slice_full_image,
                        slice_merge=slice_merge, tta=tta, fuse=fuse)
        predictor.weights = loaded_weights(cfg, checkpoint_path)
        if predictor.weights is None:
            parts = list(_weight_paths(cfg.model, "model"))
            partial = (f"; only {', '.join(parts)} {'is' if len(parts) == 1 else 'are'} loaded, the "
                       "rest is random") if parts else ""
            warnings.warn(UntrainedModelWarning(
                f"{config_path}: no checkpoint given and the config's model does not load its own "
                f"weights (no `pretrained = True`){partial}: the detections come from untrained "
                "weights; give a checkpoint"), stacklevel=2)
        return predictor

    def _resolve_classes(self, classes: Iterable[str | int] | str | None) -> set[int] | None:
        """Class names and ids -> the set of label ids to keep (None: keep all)."""
        if classes is None:
            return None
        if isinstance(classes, str):
            classes = [c.strip() for c in classes.split(",") if c.strip()]
        names = self.class_names or []
        ids: set[int] = set()
        for item in classes:
            if isinstance(item, str) and item in names:
                ids.add(names.index(item))
            elif isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
                label = int(item)
                count = self.num_classes if self.num_classes is not None else len(names) or None
                if label < 0 or (count is not None and label >= count):
                    raise ValueError(f"class id {label} is out of range: the model has {count} classes")
                ids.add(label)
            else:
                known = ", ".join(names) if names else "(the model has no class names; use ids)"
                raise ValueError(f"unknown class {item!r}; the model's classes are: {known}")
        return ids

    def run_model(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The raw model predictions for ``[3, H, W]`` RGB images, float in [0, 1] or uint8.

        Images are moved to the device first, then made float (uint8 travels 4x lighter); a
        model whose class sets ``uint8_images_are_levels`` (YOLOv3: its 8-bit resize reads them
        directly, the same numbers) gets uint8 images as they are.
        """
        levels = getattr(type(self.model), "uint8_images_are_levels", False)
        images = [image.to(self.device, non_blocking=True) for image in images]
        images = [image if levels and image.dtype == torch.uint8 else as_float_image(image) for image in images]
        with torch.inference_mode():
            output = self.model(images)
        predictions = output[0] if isinstance(output, tuple) else output
        if not isinstance(predictions, list) or len(predictions) != len(images):
            raise TypeError(f"{type(self.model).__name__} returned {type(predictions).__name__} "
                            f"for {len(images)} images; a detector returns (predictions: list of "
                            "one dict per image, losses) in eval mode")
        return predictions

    def detect(self, images: list[torch.Tensor], batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
        """The model's predictions for ``[3, H, W]`` images: :meth:`run_model`, or with
        :attr:`slicing` each image tile by tile, ``batch_size`` tiles per model call, merged."""
        if self.slicing is None:
            return self.run_model(images)
        # the cap only when no class filter follows (it must apply after that filter)
        cap = self.detections_per_img if self.class_ids is None else None
        return [sliced_predict(self.run_model, image.to(self.device), self.slicing,
                               batch_size=batch_size, score_thresh=self.score_thresh,
                               detections_per_img=cap) for image in images]

    def to_result(self, prediction: Mapping[str, torch.Tensor], image_size: tuple[int, int],
                  source: str = "") -> Result:
        """Filter one prediction dict (score, classes, count) and make it a :class:`Result`.

        Raises:
            ValueError: the model's ``scores`` or ``boxes`` hold NaN or inf (names ``source``).
        """
        scores = torch.as_tensor(prediction["scores"])
        _check_finite(prediction, source)
        keep = torch.ones_like(scores, dtype=torch.bool)
        if self.score_thresh is not None:
            keep &= scores >= self.score_thresh
        if self.class_ids is not None:
            labels = torch.as_tensor(prediction["labels"])
            allowed = torch.tensor(sorted(self.class_ids), dtype=labels.dtype, device=labels.device)
            keep &= torch.isin(labels, allowed)
        kept = torch.nonzero(keep).flatten()
        kept = kept[torch.argsort(scores[kept], descending=True, stable=True)]
        if self.detections_per_img is not None:
            kept = kept[: self.detections_per_img]
        selected: dict[str, Any] = {}
        for key in ("boxes", "scores", "labels", "masks", "landmarks", "keypoints", "keypoint_scores"):
            value = prediction.get(key)
            if value is not None:
                value = torch.as_tensor(value)
                value = value[kept.to(value.device)]
                # masks: threshold where they are (the GPU), move bool masks to the CPU
                selected[key] = value >= 0.5 if key == "masks" and value.dtype != torch.bool else value
        return Result.from_prediction(selected, image_size, self.class_names, source,
                                      skeleton=getattr(self.model, "skeleton", None))

    def __call__(self, inputs: ImageInput | Sequence[ImageInput], *, rgb: bool = False,
                 batch_size: int = 8, sources: Sequence[str] | None = None) -> list[Result]:
        """Detect objects in each input, ``batch_size`` images per model call.

        Args:
            inputs: One input or a list of them, mixed freely: image file paths (``str`` or
                ``Path``), numpy arrays HxWx3 uint8 BGR as OpenCV gives them (RGB with
                ``rgb=True``) or HxW grayscale, tensors ``[3, H, W]`` RGB float in [0, 1] or
                uint8. A 4-D array or tensor is a batch of images.
            rgb: Numpy arrays are RGB rather than BGR.
            batch_size: Images per model call; images of different sizes may share a batch.
            sources: A name per input for :attr:`Result.source` (default: the path, or
                ``"array[i]"``).

        Returns:
            One :class:`Result` per input, in order, in the pixel coordinates of that input.

        Raises:
            detkit.apis.images.ImageReadError: A file that is missing or cannot be decoded.
            ValueError: An input of an unsupported type or shape, or a model output with NaN
                or inf scores or boxes (the message names the input).
        """
        items, names = self._inputs(inputs, batch_size, sources)
        results: list[Result] = []
        for start in range(0, len(items), batch_size):
            images = [to_chw_tensor(item, rgb=rgb) for item in items[start:start + batch_size]]
            predictions = self.detect(images, batch_size)
            results += [self.to_result(prediction, _size(image), name) for image, prediction, name
                        in zip(images, predictions, names[start:start + batch_size])]
        return results

    predict = __call__

    def predict_each(self, inputs: ImageInput | Sequence[ImageInput], *, rgb: bool = False,
                     batch_size: int = 8, sources: Sequence[str] | None = None
                     ) -> list[Result | Exception]:
        """As :meth:`__call__`, but an input's own fault is its outcome instead of an exception.

        For runs over many inputs (``detkit infer``) where one bad input must not cost the
        others: an input that cannot be read, a model output with NaN or inf for that image,
        or a model error (``RuntimeError`` / ``ValueError``, e.g. out of memory) on a batch:
        the batch is then re-run one image at a time, so only the image that fails alone fails.

        Args:
            inputs, rgb, batch_size, sources: As for :meth:`__call__`.

        Returns:
            One outcome per input, in order: its :class:`Result`, or the exception it met (its
            message names the input).

        Raises:
            ValueError: ``batch_size`` below 1 or ``sources`` of the wrong length.
            TypeError: a model that does not follow the detector interface (not an input's fault).
        """
        items, names = self._inputs(inputs, batch_size, sources)
        outcomes: list[Result | Exception] = []
        for start in range(0, len(items), batch_size):
            chunk: dict[int, Result | Exception] = {}  # index in items -> outcome
            images, ready = [], []
            for index in range(start, min(start + batch_size, len(items))):
                try:
                    images.append(to_chw_tensor(items[index], rgb=rgb))
                    ready.append(index)
                except ImageReadError as error:  # names the file
                    chunk[index] = error
                except ValueError as error:  # an array of a bad shape or dtype
                    chunk[index] = ValueError(f"{names[index]}: {error}")
            chunk.update(zip(ready, self._outcomes(images, [names[index] for index in ready],
                                                   batch_size)))
            outcomes += [chunk[index] for index in sorted(chunk)]
        return outcomes

    def _outcomes(self, images: list[torch.Tensor], names: list[str],
                  batch_size: int = 8) -> list[Result | Exception]:
        """Results of one batch, or per image the error it alone causes (see :meth:`predict_each`)."""
        if not images:
            return []
        try:
            predictions = self.detect(images, batch_size)
        except (RuntimeError, ValueError) as error:
            if len(images) == 1:
                return [RuntimeError(f"{names[0]}: the model failed on this image: {error}")]
            logger.warning("the model failed on a batch of %d images (%s); running them one at a time",
                           len(images), str(error).splitlines()[0] if str(error) else type(error).__name__)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # an out-of-memory batch leaves its blocks cached
            return [outcome for image, name in zip(images, names)
                    for outcome in self._outcomes([image], [name], batch_size)]
        outcomes: list[Result | Exception] = []
        for image, prediction, name in zip(images, predictions, names):
            try:
                outcomes.append(self.to_result(prediction, _size(image), name))
            except ValueError as error:  # non-finite scores or boxes for this image
                outcomes.append(error)
        return outcomes

    def _inputs(self, inputs: ImageInput | Sequence[ImageInput], batch_size: int,
                sources: Sequence[str] | None) -> tuple[list[ImageInput], list[str]]:
        """The inputs as a list, and a name for each (``sources``, or the path / ``array[i]``)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = _as_list(inputs)
        if sources is not None and len(sources) != len(items):
            raise ValueError(f"{len(sources)} sources for {len(items)} inputs")
        names = list(sources) if sources is not None else [
            describe_input(item, index) for index, item in enumerate(items)]
        return items, names

    def __repr__(self) -> str:
        return (f"Predictor({type(self.model).__name__}, device={self.device}, "
                f"score_thresh={self.score_thresh}, classes={self.class_ids}, "
                f"detections_per_img={self.detections_per_img}"
                + (f", slicing={self.slicing}" if self.slicing is not None else "") + ")")


def _check_finite(prediction: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise when the raw ``scores [N]`` or ``boxes [N, 4]`` of one image hold NaN or inf.

    Checked before any filtering: a NaN score passes no threshold, so it would otherwise vanish
    silently along with the fault that produced it.
    """
    for key, what in (("scores", "score"), ("boxes", "box")):
        value = prediction.get(key)
        if value is None:
            continue
        value = torch.as_tensor(value)
        value = value.reshape(1) if value.dim() == 0 else value
        if value.numel() == 0 or not value.is_floating_point():
            continue
        finite = torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten()
            first = value[bad[0]].tolist()
            raise ValueError(
                f"{source or 'input'}: the model returned a non-finite {what} {first} for detection "
                f"{int(bad[0])} ({len(bad)} of {len(finite)} detections); a numerical fault of the model "
                "or its weights (no weights loaded? fp16 overflow? a corrupt checkpoint?)"
            )


def _size(image: torch.Tensor) -> tuple[int, int]:
    """``(height, width)`` of a ``[3, H, W]`` image."""
    return int(image.shape[-2]), int(image.shape[-1])


def _as_list(inputs: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One input, a batch array/tensor, or a sequence of inputs -> a list of single inputs."""
    if isinstance(inputs, (str, Path)):
        return [inputs]
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return list(inputs) if inputs.ndim == 4 else [inputs]
    if isinstance(inputs, Sequence):
        return list(inputs)
    raise ValueError(f"unsupported inputs of type {type(inputs).__name__}: give a path, an array, "
                     "a tensor or a list of them")
