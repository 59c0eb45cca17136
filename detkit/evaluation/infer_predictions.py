"""``detkit infer``'s ``predictions.json`` as COCO results for a COCO ground truth.

``detkit infer`` writes one record per detection: ``{"file_name", "frame_index" (videos),
"bbox" [x, y, w, h], "score", "category_id", "category_name"}`` plus ``"segmentation"`` and
``"landmarks"`` when the model gives them; ``category_id`` is the model's label, or
``label_to_category_id[label]`` when the model has that mapping. To score them against a COCO
annotation file, :func:`infer_records_to_results`

* maps each ``file_name`` to the id of the ground-truth image with that exact ``file_name``, else
  with the same base name (infer records the path it was given, ``data/val/0001.jpg``, where the
  annotation file says ``0001.jpg``); a name that matches no image, or several by base name, is an
  error naming them and their count;
* keeps the category ids when they are the annotation file's (each id known, with the same name
  where the record has one); otherwise maps ``category_name`` to the category of that name (and
  says so in one line); a name the file does not know is an error;
* refuses records of video frames (``frame_index``): a COCO file has no frames to match them to.

Images of the annotation file without any record are still evaluated (their objects are misses),
as for any COCO results file: an image where the model found nothing has no record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from .matching import ground_truth_dict

__all__ = ["INFER_KEYS", "infer_records_to_results", "is_infer_predictions"]

INFER_KEYS = ("file_name", "bbox", "score", "category_id")
"""The keys every ``predictions.json`` record has."""

_KEPT = ("bbox", "score", "segmentation")  # what a COCO result carries over


def _listing(names: Sequence[str], limit: int = 5, quote: bool = True) -> str:
    shown = ", ".join(repr(n) if quote else n for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _base(name: str) -> str:
    """The last part of a path written with / or \\ separators."""
    return PureWindowsPath(PurePosixPath(name).name).name


def is_infer_predictions(records: Sequence[Mapping[str, Any]], source: str = "predictions") -> bool:
    """Whether ``records`` are ``detkit infer`` records (``file_name``, no ``image_id``).

    Raises:
        ValueError: a mix of both kinds (naming ``source`` and the first record of each).
    """
    named = [i for i, r in enumerate(records) if isinstance(r, Mapping) and "file_name" in r and "image_id" not in r]
    if named and len(named) != len(records):
        other = next(i for i in range(len(records)) if i not in set(named))
        raise ValueError(f"{source}: record {named[0]} names a file_name (detkit infer's format) but record {other} "
                         f"does not (COCO results name an image_id): one format per file")
    return bool(named)


def _image_ids(records: Sequence[Mapping[str, Any]], images: Sequence[Mapping[str, Any]], source: str,
               gt_source: str) -> tuple[dict[str, int], int]:
    """file_name in the records -> gt image id (exact name, else unique base name), and how many
    names matched exactly."""
    exact: dict[str, list[int]] = defaultdict(list)
    by_base: dict[str, list[int]] = defaultdict(list)
    for image in images:
        if image.get("file_name") is not None:
            exact[str(image["file_name"])].append(int(image["id"]))
            by_base[_base(str(image["file_name"]))].append(int(image["id"]))
    ids: dict[str, int] = {}
    missing, ambiguous = [], []
    num_exact = 0
    for name in dict.fromkeys(str(r["file_name"]) for r in records):
        num_exact += name in exact
        found = exact.get(name) or by_base.get(_base(name), [])
        if len(found) == 1:
            ids[name] = found[0]
        elif found:
            ambiguous.append(f"{name!r} (image ids {sorted(found)[:5]})")
        else:
            missing.append(name)
    if missing:
        raise ValueError(f"{source}: {len(missing)} file name(s) match no image of {gt_source} by file_name or "
                         f"base name: {_listing(missing)}")
    if ambiguous:
        raise ValueError(f"{source}: {len(ambiguous)} file name(s) match several images of {gt_source}: "
                         f"{_listing(ambiguous, quote=False)}")
    return ids, num_exact


def _category_ids(records: Sequence[Mapping[str, Any]], categories: Sequence[Mapping[str, Any]], source: str,
                  gt_source: str) -> tuple[dict[tuple[Any, Any], int], str | None]:
    """(category_id, category_name) of the records -> gt category id, and the note to print."""
    id_to_name = {int(c["id"]): str(c.get("name")) for c in categories}
    name_to_ids: dict[str, list[int]] = defaultdict(list)
    for cid, name in id_to_name.items():
        name_to_ids[name].append(cid)
    pairs = list(dict.fromkeys((r.get("category_id"), r.get("category_name")) for r in records))

    def same(cid: Any, name: Any) -> bool:
        return isinstance(cid, int) and cid in id_to_name and (name is None or id_to_name[cid] == str(name))

    if all(same(cid, name) for cid, name in pairs):
        return {p: int(p[0]) for p in pairs}, None
    unnamed = sorted({str(cid) for cid, name in pairs if name is None and not same(cid, name)})
    if unnamed:
        raise ValueError(f"{source}: category ids {unnamed[:10]} are not {gt_source}'s and the records give no "
                         "category_name to map them by")
    unknown = sorted({str(name) for _, name in pairs if str(name) not in name_to_ids})
    if unknown:
        raise ValueError(f"{source}: the category ids are not {gt_source}'s and {len(unknown)} category name(s) are "
                         f"not among its categories: {_listing(unknown)}")
    doubled = sorted({str(name) for _, name in pairs if len(name_to_ids[str(name)]) > 1})
    if doubled:
        raise ValueError(f"{gt_source}: several categories are named {_listing(doubled)}; cannot map "
                         f"{source}'s categories by name")
    mapping = {p: name_to_ids[str(p[1])][0] for p in pairs}
    moved = [f"{name!r} {cid} -> {mapping[(cid, name)]}" for cid, name in pairs if cid != mapping[(cid, name)]]
    note = (f"{source}: category ids do not match {gt_source}'s; mapped by category_name "
            f"({len(pairs)} categories, e.g. {', '.join(moved[:3])})")
    return mapping, note


def infer_records_to_results(
    records: Sequence[Mapping[str, Any]],
    gt: Any,
    source: str = "predictions.json",
    gt_source: str = "the annotation file",
) -> tuple[list[dict[str, Any]], list[str]]:
    """COCO results from ``detkit infer`` records (see the module docstring).

    Args:
        records: the records of a ``predictions.json``.
        gt: the COCO ground truth (dataset dict or pycocotools ``COCO``); its images need
            ``file_name``.
        source: names the records in messages (the predictions file).
        gt_source: names the ground truth in messages (the annotation file).

    Returns:
        ``(results, notes)``: one COCO result per record (``image_id``, ``category_id``,
        ``bbox``, ``score``, and ``segmentation`` when present), and the lines to tell the user
        (how names and categories were matched).

    Raises:
        ValueError: one line: video-frame records, a record without one of :data:`INFER_KEYS`,
            file names that match no image or several, categories that cannot be mapped.
    """
    data = ground_truth_dict(gt)
    frames = [i for i, r in enumerate(records) if r.get("frame_index") is not None]
    if frames:
        raise ValueError(f"{source}: {len(frames)} of {len(records)} records come from video frames (frame_index, "
                         f"first: record {frames[0]}); a COCO annotation file has images, not frames: evaluate "
                         "predictions of images")
    for i, r in enumerate(records):
        absent = [k for k in INFER_KEYS if k not in r]
        if absent:
            raise ValueError(f"{source}: record {i} has no {', '.join(absent)} (a detkit infer record has "
                             f"{', '.join(INFER_KEYS)}, category_name)")
    if not records:
        return [], []
    image_ids, exact = _image_ids(records, data.get("images", []), source, gt_source)
    categories, note = _category_ids(records, data.get("categories", []), source, gt_source)
    results = []
    for r in records:
        result = {"image_id": image_ids[str(r["file_name"])],
                  "category_id": categories[(r.get("category_id"), r.get("category_name"))]}
        result.update({k: r[k] for k in _KEPT if k in r})
        results.append(result)
    how = "by file_name" if exact == len(image_ids) else f"{exact} by file_name, {len(image_ids) - exact} by base name"
    notes = [f"{source}: {len(records)} detkit infer records of {len(image_ids)} images, matched to {gt_source} {how}"]
    if note:
        notes.append(note)
    return results, notes
