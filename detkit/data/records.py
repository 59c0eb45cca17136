"""Dataset records in a few flat numpy buffers, so that DataLoader workers never copy them.

A dataset that keeps one Python object per image (a dict, a dataclass holding small arrays and
lists of polygons) grows in every forked DataLoader worker as the epoch goes: reading an object
writes its reference count, which dirties the memory page holding it, and the kernel copies the
page into the worker (copy-on-read). With 100,000s of images and 8 workers per GPU this is the
memory blow-up that detectron2 and mmdetection users report; detectron2 fixed it by serialising
the records into one byte buffer with offsets. :class:`RecordStore` does the same in columns:

* per image: ``sizes [M, 2]`` int64, ``box_offsets [M + 1]`` int64 (image ``i`` owns boxes
  ``box_offsets[i]:box_offsets[i + 1]``), ``image_ids`` (an int64 array, or a
  :class:`StringColumn`), ``paths`` and ``wheres`` (:class:`StringColumn`: one utf-8 buffer with
  offsets);
* per box: ``boxes [N, 4]`` float32, ``labels [N]`` int64 and every per-box field
  (``iscrowd``, ``area``, ``difficult`` ...) as one ``[N, ...]`` array each;
* COCO segmentations (:class:`SegmentationColumn`): each box's polygons or RLE serialised into
  one byte buffer with offsets (json text from the COCO reader, a pickle otherwise).

Every buffer is a numpy array, so a worker only reads pages of raw data and never touches a
Python object per record. ``store[i]`` materialises an :class:`~detkit.data.base.ImageRecord`
(arrays are views into the buffers; segmentations come back exactly as parsed). Assigning an attribute of a materialised record (``record.path = ...``) keeps that
record object in the store for its index (copy on write), so code written for a list of records
keeps working.
"""

from __future__ import annotations

import ctypes
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageRecord", "ObjectColumn", "RecordStore", "SegmentationColumn", "StringColumn",
           "release_freed_memory"]

@dataclass
class ImageRecord:
    """One image's annotations, parsed and converted, before any pixel is read.

    Attributes:
        image_id: the dataset's id for the image (COCO int id, VOC/YOLO file stem).
        path: the image file.
        size: ``(height, width)`` in pixels as the annotations record it.
        boxes: ``[N, 4]`` float32 xyxy absolute pixels.
        labels: ``[N]`` int64 contiguous 0-based class ids.
        box_fields: other per-box arrays of length ``N`` (``iscrowd``, ``difficult`` ...),
            filtered together with the boxes.
        segmentations: ``N`` raw COCO segmentations (polygons or RLE) or ``None``.
        where: the annotation file (and item) to name in messages.
    """

    image_id: int | str
    path: Path
    size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    box_fields: dict[str, np.ndarray] = field(default_factory=dict)
    segmentations: list[Any] | None = None
    where: str = ""

    def select(self, keep: np.ndarray) -> None:
        """Keep the boxes where ``keep`` (``[N]`` bool) is true, in every per-box field."""
        indices = np.flatnonzero(keep)
        self.boxes = self.boxes[indices]
        self.labels = self.labels[indices]
        self.box_fields = {name: values[indices] for name, values in self.box_fields.items()}
        if self.segmentations is not None:
            self.segmentations = [self.segmentations[i] for i in indices]


class StoredRecord(ImageRecord):
    """An :class:`ImageRecord` read from a :class:`RecordStore`. Assigning one of its attributes
    keeps this object in the store for its index (copy on write), so that the change persists as
    it did in a list of records. It pickles as a plain :class:`ImageRecord`."""

    def _attach(self, store: RecordStore, index: int) -> None:
        object.__setattr__(self, "_store", (store, index))

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        attached = self.__dict__.get("_store")
        if attached is not None:
            attached[0]._overrides[attached[1]] = self

    def __reduce__(self) -> tuple:
        return ImageRecord, tuple(getattr(self, f.name) for f in fields(ImageRecord))


def _stored_copy(record: ImageRecord, store: RecordStore, index: int) -> StoredRecord:
    copy = StoredRecord(*(getattr(record, f.name) for f in fields(ImageRecord)))
    copy._attach(store, index)
    return copy


_ROWS_PER_GATHER = 1 << 16

# SegmentationColumn kinds
_NONE, _JSON, _PICKLE = 0, 1, 2

try:
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - orjson is a dependency
    from json import loads as _json_loads


def ragged_take(offsets: np.ndarray, values: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``indices`` of a ragged array, as ``(new offsets [K + 1], new values)``.

    Args:
        offsets: ``[R + 1]`` int64, row ``r`` is ``values[offsets[r]:offsets[r + 1]]``.
        values: ``[offsets[-1], ...]``.
        indices: ``[K]`` int row indices (any order, repeats allowed).
    """
    indices = np.asarray(indices, dtype=np.int64)
    starts, lengths = offsets[indices], offsets[indices + 1] - offsets[indices]
    new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    if len(indices) == len(offsets) - 1 and (indices == np.arange(len(indices))).all():
        return new_offsets, values  # every row in order: nothing to gather
    out = np.empty((int(new_offsets[-1]), *values.shape[1:]), dtype=values.dtype)
    for first in range(0, len(indices), _ROWS_PER_GATHER):  # in chunks: no gather index as long as the values
        last = min(first + _ROWS_PER_GATHER, len(indices))
        shift = starts[first:last] - new_offsets[first:last]
        begin, end = int(new_offsets[first]), int(new_offsets[last])
        out[begin:end] = values[np.repeat(shift, lengths[first:last]) + np.arange(begin, end, dtype=np.int64)]
    return new_offsets, out


def _offsets(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    return offsets


class _BytesColumn:
    """Items serialised into one uint8 buffer with ``[K + 1]`` int64 offsets."""

    def __init__(self, chunks: Sequence[bytes] | None = None, *, buffer: np.ndarray | None = None,
                 offsets: np.ndarray | None = None) -> None:
        if chunks is not None:
            self._offsets = _offsets([len(chunk) for chunk in chunks])
            self._buffer = np.frombuffer(b"".join(chunks), dtype=np.uint8)  # read-only, never written
        else:
            assert buffer is not None and offsets is not None
            self._buffer, self._offsets = buffer, offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _bytes(self, index: int) -> bytes:
        return self._buffer[self._offsets[index]:self._offsets[index + 1]].tobytes()

    def take(self, indices: np.ndarray) -> _BytesColumn:
        offsets, buffer = ragged_take(self._offsets, self._buffer, indices)
        column = object.__new__(type(self))
        column._buffer, column._offsets = buffer, offsets
        return column

    @property
    def nbytes(self) -> int:
        return self._buffer.nbytes + self._offsets.nbytes


class StringColumn(_BytesColumn):
    """``K`` strings as one utf-8 buffer with offsets; ``column[i] -> str``."""

    def __init__(self, strings: Sequence[str]) -> None:
        super().__init__([string.encode("utf-8", "surrogatepass") for string in strings])

    def __getitem__(self, index: int) -> str:
        return self._bytes(index).decode("utf-8", "surrogatepass")

    def tolist(self) -> list[str]:
        return [self[i] for i in range(len(self))]


class ObjectColumn(_BytesColumn):
    """``K`` picklable Python objects serialised into one buffer (detectron2's approach)."""

    def __init__(self, objects: Sequence[Any]) -> None:
        super().__init__([pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL) for item in objects])

    def __getitem__(self, index: int) -> Any:
        return pickle.loads(self._bytes(index))


class SegmentationColumn:
    """``N`` per-box COCO segmentations (polygon lists, RLE dicts or ``None``), each serialised
    into a shared byte buffer (detectron2's approach).

    Box ``i`` is ``buffers[chunks[i]][starts[i]:stops[i]]`` (one buffer, ``chunks`` ``None``: the
    usual case; several when parts read in parallel are joined without copying their buffers),
    read back as ``kinds[i]`` says: 0 ``None``; 1 json text (what the COCO reader stores: the
    annotation's own json value, so ints stay ints and every float is the same float); 2 a pickle
    (records a reader built in memory). Either way every value comes back exactly as it was.
    :meth:`take` only indexes ``kinds``, ``starts``, ``stops`` and ``chunks``: the buffers are
    shared, never copied.
    """

    def __init__(self, kinds: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                 buffer: np.ndarray | tuple[np.ndarray, ...], chunks: np.ndarray | None = None) -> None:
        self.kinds, self.starts, self.stops = kinds, starts, stops
        self.buffers = buffer if isinstance(buffer, tuple) else (buffer,)
        assert chunks is not None or len(self.buffers) == 1, "several buffers need the chunk of each box"
        self.chunks = chunks

    @property
    def buffer(self) -> np.ndarray:
        """The one buffer (several: their concatenation, a copy)."""
        return self.buffers[0] if len(self.buffers) == 1 else np.concatenate(self.buffers)

    @classmethod
    def from_list(cls, segmentations: Sequence[Any]) -> SegmentationColumn:
        """Pack per-box segmentations of any picklable kind."""
        kinds = np.asarray([_NONE if s is None else _PICKLE for s in segmentations], dtype=np.int8)
        chunks = [b"" if s is None else pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL) for s in segmentations]
        offsets = _offsets(np.fromiter(map(len, chunks), np.int64, len(chunks)))
        return cls(kinds, offsets[:-1], offsets[1:], np.frombuffer(b"".join(chunks), dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.kinds)

    def get(self, index: int) -> Any:
        """Box ``index``'s segmentation, as parsed."""
        kind = self.kinds[index]
        if kind == _NONE:
            return None
        buffer = self.buffers[0] if self.chunks is None else self.buffers[self.chunks[index]]
        data = buffer[self.starts[index]:self.stops[index]].tobytes()
        if kind == _JSON:
            return _json_loads(data)
        return pickle.loads(data)

    def take(self, indices: np.ndarray) -> SegmentationColumn:
        """The boxes ``indices`` (e.g. those kept by the load-time checks), on the same buffer."""
        indices = np.asarray(indices, dtype=np.int64)
        return SegmentationColumn(self.kinds[indices], self.starts[indices], self.stops[indices], self.buffers,
                                  None if self.chunks is None else self.chunks[indices])

    @classmethod
    def concatenate(cls, columns: Sequence[SegmentationColumn]) -> SegmentationColumn:
        """The boxes of ``columns`` in order, on their buffers (not copied)."""
        buffers, chunks, first = [], [], 0
        for column in columns:
            own = np.zeros(len(column), dtype=np.int32) if column.chunks is None else column.chunks.astype(np.int32)
            chunks.append(own + first)
            buffers.extend(column.buffers)
            first += len(column.buffers)
        if len(buffers) == 1:
            return cls(*(np.concatenate([getattr(c, name) for c in columns]) for name in ("kinds", "starts", "stops")),
                       buffers[0])
        return cls(*(np.concatenate([getattr(c, name) for c in columns]) for name in ("kinds", "starts", "stops")),
                   tuple(buffers), np.concatenate(chunks))

    @property
    def nbytes(self) -> int:
        chunks = 0 if self.chunks is None else self.chunks.nbytes
        return self.kinds.nbytes + self.starts.nbytes + self.stops.nbytes + chunks + sum(b.nbytes for b in self.buffers)


class RecordStore(Sequence):
    """The records of a dataset in flat buffers (see the module docstring); a read-only sequence
    of :class:`~detkit.data.base.ImageRecord` s.

    Args:
        image_ids: ``[M]`` int64 array of int ids, or a :class:`StringColumn` of str ids.
        paths: ``M`` image paths.
        sizes: ``[M, 2]`` int64 ``(height, width)``.
        wheres: ``M`` strings naming each record in messages.
        box_offsets: ``[M + 1]`` int64.
        boxes: ``[N, 4]`` float32 xyxy pixels.
        labels: ``[N]`` int64.
        box_fields: name -> ``[N, ...]`` array.
        segmentations: ``N`` per-box segmentations, or ``None`` when the records have none.
    """

    def __init__(self, image_ids: np.ndarray | StringColumn, paths: StringColumn, sizes: np.ndarray,
                 wheres: StringColumn, box_offsets: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                 box_fields: dict[str, np.ndarray], segmentations: SegmentationColumn | None = None) -> None:
        self.image_id_column, self.paths, self.sizes, self.wheres = image_ids, paths, sizes, wheres
        self.box_offsets, self.boxes, self.labels = box_offsets, boxes, labels
        self.box_fields, self.segmentations = box_fields, segmentations
        self._overrides: dict[int, ImageRecord] = {}

    # ------------------------------------------------------------------------------------------
    # building

    @classmethod
    def from_records(cls, records: Sequence[ImageRecord]) -> RecordStore | None:
        """Pack records; ``None`` when they are not regular enough for columns (per-box fields
        that differ in name, dtype or trailing shape between records, segmentations not aligned
        with the boxes): the caller then keeps its list."""
        records = list(records)
        if records:
            first = records[0]
            names = set(first.box_fields)
            layout = {name: (values.dtype, values.shape[1:]) for name, values in first.box_fields.items()}
            with_segmentations = first.segmentations is not None
        for record in records:
            if (set(record.box_fields) != names
                    or any((values.dtype, values.shape[1:]) != layout[name] for name, values in record.box_fields.items())
                    or any(len(values) != len(record.boxes) for values in record.box_fields.values())
                    or record.boxes.dtype != np.float32 or record.labels.dtype != np.int64
                    or len(record.labels) != len(record.boxes)
                    or (record.segmentations is not None) != with_segmentations
                    or (with_segmentations and len(record.segmentations) != len(record.boxes))):
                return None
        ids = [record.image_id for record in records]
        if all(type(i) is int for i in ids):
            image_ids: np.ndarray | StringColumn = np.asarray(ids, dtype=np.int64).reshape(-1)
        elif all(type(i) is str for i in ids):
            image_ids = StringColumn(ids)
        else:
            return None
        if not all(isinstance(record.path, Path) for record in records):
            return None
        box_fields = {name: np.concatenate([r.box_fields[name] for r in records]) for name in names} if records else {}
        segmentations = None
        if records and with_segmentations:
            segmentations = SegmentationColumn.from_list([s for r in records for s in r.segmentations])
        return cls(
            image_ids, StringColumn([str(r.path) for r in records]),
            np.asarray([r.size for r in records], dtype=np.int64).reshape(-1, 2),
            StringColumn([r.where for r in records]), _offsets([len(r.boxes) for r in records]),
            np.concatenate([r.boxes for r in records]) if records else np.zeros((0, 4), np.float32),
            np.concatenate([r.labels for r in records]) if records else np.zeros(0, np.int64),
            box_fields, segmentations)

    def take(self, indices: Sequence[int] | np.ndarray) -> RecordStore:
        """A new store of the records ``indices`` (in that order); overrides carried along."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        box_offsets, box_index = ragged_take(self.box_offsets, np.arange(len(self.boxes)), indices)
        image_ids = (self.image_id_column[indices] if isinstance(self.image_id_column, np.ndarray)
                     else self.image_id_column.take(indices))
        store = RecordStore(
            image_ids, self.paths.take(indices), self.sizes[indices], self.wheres.take(indices), box_offsets,
            self.boxes[box_index], self.labels[box_index],
            {name: values[box_index] for name, values in self.box_fields.items()},
            self.segmentations.take(box_index) if self.segmentations is not None else None)
        for new, old in enumerate(indices.tolist()):
            if old in self._overrides:
                store._overrides[new] = _stored_copy(self._overrides[old], store, new)
        return store

    def select_boxes(self, keep: np.ndarray, boxes: np.ndarray | None = None) -> RecordStore:
        """A new store keeping the boxes where ``keep`` (``[N]`` bool), optionally with new
        ``boxes [N, 4]`` (e.g. clipped) before the selection."""
        assert not self._overrides, "select_boxes on a store with modified records"
        kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        counts = kept_before[self.box_offsets[1:]] - kept_before[self.box_offsets[:-1]]
        source = self.boxes if boxes is None else boxes
        if keep.all():  # nothing dropped: the buffers stay as they are
            return RecordStore(self.image_id_column, self.paths, self.sizes, self.wheres, self.box_offsets, source,
                               self.labels, self.box_fields, self.segmentations)
        index = np.flatnonzero(keep)
        return RecordStore(
            self.image_id_column, self.paths, self.sizes, self.wheres, _offsets(counts), source[index],
            self.labels[index], {name: values[index] for name, values in self.box_fields.items()},
            self.segmentations.take(index) if self.segmentations is not None else None)

    # ------------------------------------------------------------------------------------------
    # reading

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int | slice) -> Any:  # type: ignore[override]
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"record index {index} out of range for {len(self)} records")
        if index in self._overrides:
            return self._overrides[index]
        return self._materialise(index)

    def __iter__(self) -> Iterator[ImageRecord]:
        for index in range(len(self)):
            yield self[index]

    def image_id(self, index: int) -> int | str:
        if index in self._overrides:
            return self._overrides[index].image_id
        column = self.image_id_column
        return int(column[index]) if isinstance(column, np.ndarray) else column[index]

    def image_ids(self) -> list[int | str]:
        """Every record's image id, without materialising records."""
        if isinstance(self.image_id_column, np.ndarray):
            ids: list[int | str] = self.image_id_column.tolist()
        else:
            ids = self.image_id_column.tolist()
        for index, record in self._overrides.items():
            ids[index] = record.image_id
        return ids

    def image_sizes(self) -> list[tuple[int, int]]:
        """Every record's ``(height, width)``, without materialising records."""
        sizes = [(h, w) for h, w in self.sizes.tolist()]
        for index, record in self._overrides.items():
            sizes[index] = tuple(record.size)
        return sizes

    def box_counts(self) -> np.ndarray:
        """``[M]`` int64 boxes per record."""
        counts = np.diff(self.box_offsets)
        for index, record in self._overrides.items():
            counts[index] = len(record.boxes)
        return counts

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        arrays = [self.sizes, self.box_offsets, self.boxes, self.labels, *self.box_fields.values()]
        total = sum(array.nbytes for array in arrays) + self.paths.nbytes + self.wheres.nbytes
        column = self.image_id_column
        total += column.nbytes
        if self.segmentations is not None:
            total += self.segmentations.nbytes
        return total

    def _materialise(self, index: int) -> ImageRecord:
        start, stop = int(self.box_offsets[index]), int(self.box_offsets[index + 1])
        height, width = self.sizes[index].tolist()
        segmentations = None
        if self.segmentations is not None:
            segmentations = [self.segmentations.get(i) for i in range(start, stop)]
        record = StoredRecord(
            image_id=self.image_id(index), path=Path(self.paths[index]), size=(height, width),
            boxes=self.boxes[start:stop], labels=self.labels[start:stop],
            box_fields={name: values[start:stop] for name, values in self.box_fields.items()},
            segmentations=segmentations, where=self.wheres[index])
        record._attach(self, index)
        return record

    def __repr__(self) -> str:
        return f"RecordStore({len(self)} records, {len(self.boxes)} boxes, {self.nbytes / 2**20:.1f} MiB)"


def release_freed_memory() -> None:
    """Give freed heap pages back to the system (glibc's ``malloc_trim``; a no-op elsewhere):
    after a large parse whose Python objects are dropped, the process's resident memory falls
    back to what it still holds."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
