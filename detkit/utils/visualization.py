"""Draw detections on BGR images with OpenCV: boxes, labels, masks, landmarks, keypoints and skeletons.

Colours are fixed per class (:func:`class_color`), so one class looks the same in every image,
video frame and run; a tracked result (``track_ids`` set) is coloured by track identity instead
(:func:`track_color`), each box labelled ``#id class score`` over a trail of its last centres. Sizes (font, line width, point radius) follow the image size
(:class:`DrawStyle`), so labels stay legible from thumbnails to 4K frames; a label sits on a filled
background in the class colour, above its box when there is room, and always inside the image.
"""

from __future__ import annotations

import colorsys
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from detkit.utils.result import Result, label_name

__all__ = ["DrawStyle", "LANDMARK_COLORS", "class_color", "draw_predictions", "label_position",
           "track_color"]

# Successive hues a golden-ratio step apart spread evenly around the colour wheel for any number
# of classes, so neighbouring labels never get similar colours.
_GOLDEN_RATIO_CONJUGATE = 0.6180339887498949
_FIRST_HUE = 0.05  # class 0: orange-red, readable with black or white text

# BGR points for the five face landmarks, in MTCNN's order: left eye, right eye, nose, left and
# right mouth corner.
LANDMARK_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 128, 0), (0, 128, 255), (0, 220, 0), (255, 0, 255), (0, 255, 255))

_FONT = cv2.FONT_HERSHEY_SIMPLEX


@functools.lru_cache(maxsize=1024)
def class_color(label: int) -> tuple[int, int, int]:
    """The BGR colour of class ``label``: same label, same colour, always.

    Hues step by the golden ratio from class 0; saturation and value alternate a little between
    neighbours so that classes far apart with close hues still differ.
    """
    hue = (_FIRST_HUE + int(label) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = (0.85, 0.65)[int(label) % 2]
    value = (0.95, 0.80)[(int(label) // 2) % 2]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return int(round(blue * 255)), int(round(green * 255)), int(round(red * 255))


def track_color(track_id: int) -> tuple[int, int, int]:
    """The BGR colour of track ``track_id``: the same identity keeps its colour in every frame.

    The golden-ratio hues of :func:`class_color`, so consecutive identities differ clearly.
    """
    return class_color(int(track_id))


def _draw_trail(canvas: np.ndarray, points: Sequence[tuple[float, float]], color: tuple[int, int, int],
                style: DrawStyle) -> None:
    """A polyline through ``points`` (oldest first), thinner towards the oldest, in place."""
    points = [(int(round(x)), int(round(y))) for x, y in points]
    for k in range(1, len(points)):
        thickness = max(1, int(round(style.line_thickness * (0.5 + k / len(points)))))
        cv2.line(canvas, points[k - 1], points[k], color, thickness, cv2.LINE_AA)


def _text_color(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    blue, green, red = background_bgr
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


@dataclass(frozen=True)
class DrawStyle:
    """Pixel sizes for drawing on one image.

    Attributes:
        font_scale: ``cv2.putText`` scale (a scale of 1 is about 22 pixels tall for Hershey simplex).
        text_thickness: Stroke width of the text, pixels.
        line_thickness: Width of box outlines and mask contours, pixels.
        point_radius: Radius of landmark points, pixels.
        padding: Space between a label's text and the edge of its background, pixels.
    """

    font_scale: float
    text_thickness: int
    line_thickness: int
    point_radius: int
    padding: int

    @classmethod
    def for_image(cls, height: int, width: int) -> DrawStyle:
        """A style scaled to the image: text about 2.5% of the shorter side, 8 pixels at least."""
        short_side = max(1, min(height, width))
        font_scale = float(np.clip(short_side / 1000.0, 0.35, 4.0))
        text_thickness = max(1, int(round(font_scale * 1.6)))
        line_thickness = max(1, int(round(short_side / 350.0)))
        return cls(font_scale=font_scale, text_thickness=text_thickness,
                   line_thickness=line_thickness, point_radius=max(2, line_thickness + 1),
                   padding=max(1, int(round(font_scale * 4))))


def label_position(box: Sequence[float], label_size: tuple[int, int],
                   image_size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a ``(width, height)`` label for ``box``, kept inside the image.

    The label sits just above the box's top-left corner; when that leaves the image it goes
    just inside the box's top edge instead; then it is shifted into the image.

    Args:
        box: ``(x1, y1, x2, y2)`` in pixels.
        label_size: ``(width, height)`` of the label background, pixels.
        image_size: ``(height, width)`` of the image.
    """
    label_width, label_height = label_size
    height, width = image_size
    x1, y1 = int(round(box[0])), int(round(box[1]))
    top = y1 - label_height if y1 - label_height >= 0 else max(y1, 0)
    top = min(top, height - label_height)
    left = min(max(x1, 0), width - label_width)
    return max(left, 0), max(top, 0)


def _as_result(predictions: Result | Mapping[str, Any], image_size: tuple[int, int],
               class_names: Sequence[str] | None) -> Result:
    if isinstance(predictions, Result):
        if class_names is not None:
            names = [label_name(int(label), class_names) for label in predictions.labels]
            return replace(predictions, class_names=names)
        return predictions
    return Result.from_prediction(predictions, image_size, class_names)


def _blend_masks(canvas: np.ndarray, masks: np.ndarray, colors: list[tuple[int, int, int]],
                 alpha: float, style: DrawStyle) -> None:
    """Blend each bool mask in its colour (``alpha`` opacity) and outline it, in place."""
    height, width = canvas.shape[:2]
    for mask, color in zip(masks, colors):
        if mask.shape != (height, width):  # a model that gives masks at another size
            mask = cv2.resize(mask.astype(np.uint8), (width, height),
                              interpolation=cv2.INTER_NEAREST).astype(bool)
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            continue
        # blend inside the mask's bounding rectangle only, with OpenCV (fast, releases the GIL)
        top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
        region, inside = canvas[top:bottom, left:right], mask[top:bottom, left:right]
        tinted = cv2.addWeighted(region, 1.0 - alpha, np.full_like(region, color), alpha, 0.0)
        np.copyto(region, tinted, where=inside[:, :, None])
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, color, style.line_thickness, cv2.LINE_AA)


def _draw_label(canvas: np.ndarray, text: str, box: np.ndarray, color: tuple[int, int, int],
                style: DrawStyle) -> None:
    """Text on a filled rectangle in the class colour at :func:`label_position`, in place."""
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, style.font_scale,
                                                          style.text_thickness)
    size = (text_width + 2 * style.padding, text_height + baseline + 2 * style.padding)
    left, top = label_position(box, size, canvas.shape[:2])
    cv2.rectangle(canvas, (left, top), (left + size[0] - 1, top + size[1] - 1), color, cv2.FILLED)
    origin = (left + style.padding, top + style.padding + text_height)  # putText: bottom-left
    cv2.putText(canvas, text, origin, _FONT, style.font_scale, _text_color(color),
                style.text_thickness, cv2.LINE_AA)


def _draw_keypoints(canvas: np.ndarray, keypoints: np.ndarray, scores: np.ndarray | None,
                    skeleton: Sequence[tuple[int, int]], color: tuple[int, int, int], threshold: float,
                    style: DrawStyle) -> None:
    """One detection's skeleton (lines in its colour) and keypoints (dots), in place.

    A keypoint is drawn where its visibility is > 0 and its score (when given) >= ``threshold``;
    a skeleton line where both its ends are drawn."""
    shown = keypoints[:, 2] > 0
    if scores is not None:
        shown &= scores >= threshold
    points = [(int(round(float(x))), int(round(float(y)))) for x, y in keypoints[:, :2]]
    for a, b in skeleton:
        if a < len(points) and b < len(points) and shown[a] and shown[b]:
            cv2.line(canvas, points[a], points[b], color, style.line_thickness, cv2.LINE_AA)
    for k in np.flatnonzero(shown):
        cv2.circle(canvas, points[k], style.point_radius, LANDMARK_COLORS[k % len(LANDMARK_COLORS)],
                   cv2.FILLED, cv2.LINE_AA)


def draw_predictions(image_bgr: np.ndarray, predictions: Result | Mapping[str, Any],
                     class_names: Sequence[str] | None = None, score_threshold: float = 0.0, *,
                     mask_alpha: float = 0.45, show_scores: bool = True,
                     trails: Mapping[int, Sequence[tuple[float, float]]] | None = None,
                     skeleton: Sequence[Sequence[int]] | None = None,
                     keypoint_threshold: float = 0.0) -> np.ndarray:
    """Draw detections on a copy of an image.

    Masks are blended first, then boxes and landmarks, then labels (``"dog 0.87"``) on top, each
    pass from the lowest score to the highest so the best detection is drawn last.

    Args:
        image_bgr: HxWx3 uint8 BGR image (as OpenCV reads it); HxW grayscale is converted.
        predictions: A :class:`~detkit.utils.result.Result`, or a prediction dict as a detector
            returns it (``boxes``, ``labels``, ``scores``, optional ``masks`` probabilities and
            ``landmarks``; tensors or arrays) in the pixels of this image.
        class_names: Name of each label (default: the result's names, else the label as text).
        score_threshold: Draw only detections scoring at least this.
        mask_alpha: Opacity of the mask colour, in [0, 1].
        show_scores: Put the score after the class name.
        trails: ``{track_id: [(x, y), ...]}`` recent box centres (oldest first) of a tracked
            result's tracks, drawn as lines under the boxes (see
            :class:`detkit.apis.tracking.TrackTrails`).
        skeleton: ``(i, j)`` keypoint index pairs joined by lines (default: the result's).
        keypoint_threshold: draw keypoints whose score (``keypoint_scores``) is at least this.

    Keypoints (``keypoints [N, K, 3]``) are drawn as dots over the box, their skeleton as lines in
    the detection's colour (see :func:`_draw_keypoints`).

    With ``track_ids`` on the result, each detection takes its track's colour
    (:func:`track_color`) and its label starts with ``#id``.

    Returns:
        A new HxWx3 uint8 BGR array; ``image_bgr`` is not modified.
    """
    if image_bgr.ndim == 2:
        canvas = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    elif image_bgr.ndim == 3 and image_bgr.shape[2] == 3 and image_bgr.dtype == np.uint8:
        canvas = image_bgr.copy()
    else:
        raise ValueError(f"draw_predictions needs an HxWx3 uint8 BGR image, got shape "
                         f"{tuple(image_bgr.shape)} dtype {image_bgr.dtype}")
    height, width = canvas.shape[:2]
    result = _as_result(predictions, (height, width), class_names)
    order = [i for i in np.argsort(result.scores, kind="stable") if result.scores[i] >= score_threshold]
    if not order:
        return canvas
    style = DrawStyle.for_image(height, width)
    edges = [(int(a), int(b)) for a, b in (skeleton if skeleton is not None else result.skeleton or [])]
    tracked = result.track_ids is not None
    colors = [track_color(int(result.track_ids[i])) if tracked else class_color(int(result.labels[i]))
              for i in order]
    if trails and tracked:
        for i, color in zip(order, colors):
            _draw_trail(canvas, trails.get(int(result.track_ids[i]), ()), color, style)
    if result.masks is not None:
        _blend_masks(canvas, result.masks[order], colors, mask_alpha, style)
    for i, color in zip(order, colors):
        x1, y1, x2, y2 = (int(round(float(v))) for v in result.boxes[i])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, style.line_thickness, cv2.LINE_AA)
        if result.landmarks is not None:
            for k, (x, y) in enumerate(result.landmarks[i]):
                cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), style.point_radius,
                           LANDMARK_COLORS[k % len(LANDMARK_COLORS)], cv2.FILLED, cv2.LINE_AA)
        if result.keypoints is not None:
            _draw_keypoints(canvas, result.keypoints[i],
                            None if result.keypoint_scores is None else result.keypoint_scores[i],
                            edges, color, keypoint_threshold, style)
    for i, color in zip(order, colors):
        text = result.class_names[i] + (f" {result.scores[i]:.2f}" if show_scores else "")
        if tracked:
            text = f"#{int(result.track_ids[i])} {text}"
        _draw_label(canvas, text, result.boxes[i], color, style)
    return canvas
