"""facenet-pytorch's MTCNN weights (MIT licence) as a detkit checkpoint.

facenet-pytorch 2.6.0 ships ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` in its wheel: plain
float32 state dicts (legacy ``torch.save`` format, readable with ``weights_only=True``) of networks
whose layer names detkit's :class:`~detkit.models.detectors.mtcnn.PNet`, ``RNet`` and ``ONet`` keep,
so converting is prefixing the keys with ``pnet.`` / ``rnet.`` / ``onet.``. The wheel is fetched
with ``pip download --no-deps`` (never installed: it pins torch<2.3), each file is checked against
the SHA-256 pinned below, and the converted checkpoint is cached::

    python tools/fetch_weights.py mtcnn      # prints the cached checkpoint's path

    from detkit.models.convert.mtcnn_facenet import mtcnn_facenet
    model = mtcnn_facenet()                   # eval-mode MTCNN with facenet-pytorch's defaults
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from detkit.models.convert.checkpoint import converted_checkpoint
from detkit.models.detectors.mtcnn import MTCNN
from detkit.utils.checkpoint import load_weights, read_state_dict, save_checkpoint
from detkit.utils.pypi_files import default_cache_dir, fetch_pypi_file

__all__ = ["FACENET_PACKAGE", "FACENET_VERSION", "convert_mtcnn_facenet", "mtcnn_facenet", "mtcnn_facenet_weights"]

FACENET_PACKAGE = "facenet-pytorch"
FACENET_VERSION = "2.6.0"
# SHA-256 of the three files inside facenet_pytorch-2.6.0-py3-none-any.whl.
FACENET_FILES = {
    "pnet": ("facenet_pytorch/data/pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
    "rnet": ("facenet_pytorch/data/rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
    "onet": ("facenet_pytorch/data/onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
}
CHECKPOINT_NAME = f"mtcnn_facenet_pytorch-{FACENET_VERSION}.pt"


def convert_mtcnn_facenet(state_dicts: Mapping[str, Mapping[str, Tensor]]) -> dict[str, Any]:
    """Merge facenet-pytorch's three state dicts into a detkit MTCNN checkpoint.

    Args:
        state_dicts: ``{"pnet": ..., "rnet": ..., "onet": ...}``, each as read from its ``.pt``.

    Returns:
        ``{"model": MTCNN state dict, "meta": {...}}``.

    Raises:
        ValueError: a network is missing or its keys or shapes do not fit detkit's MTCNN.
    """
    missing = [name for name in FACENET_FILES if name not in state_dicts]
    if missing:
        raise ValueError(f"convert_mtcnn_facenet needs the pnet, rnet and onet state dicts; missing {missing}")
    expected = MTCNN().state_dict()
    converted = {f"{net}.{key}": value.detach().to(torch.float32).clone()
                 for net, sd in state_dicts.items() if net in FACENET_FILES for key, value in sd.items()}
    unexpected = sorted(set(converted) - set(expected))
    absent = sorted(set(expected) - set(converted))
    wrong = [k for k in converted if k in expected and converted[k].shape != expected[k].shape]
    if unexpected or absent or wrong:
        raise ValueError(
            f"these are not facenet-pytorch MTCNN weights: unexpected keys {unexpected[:5]}, missing {absent[:5]}, "
            f"wrong shapes {wrong[:5]}"
        )
    return converted_checkpoint(
        converted,
        source=f"{FACENET_PACKAGE}=={FACENET_VERSION}",
        licence="MIT (facenet-pytorch)",
        arch="mtcnn",
        num_classes=1,
    )


def mtcnn_facenet_weights(cache_dir: str | Path | None = None) -> Path:
    """Path of the converted checkpoint, fetching and converting facenet-pytorch's weights once.

    Args:
        cache_dir: cache root (default ``$DETKIT_CACHE`` or ``~/.cache/detkit``); the checkpoint
            is ``<cache_dir>/converted/mtcnn_facenet_pytorch-2.6.0.pt``.

    Returns:
        The checkpoint path (``torch.load(path, weights_only=True)`` gives ``{"model", "meta"}``).

    Raises:
        detkit.utils.pypi_files.PyPIDownloadError: pip could not fetch the wheel.
        detkit.utils.pypi_files.ChecksumMismatchError: a file does not have its pinned hash.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "converted" / CHECKPOINT_NAME
    if target.is_file():
        return target
    state_dicts = {}
    for net, (member, sha256) in FACENET_FILES.items():
        path = fetch_pypi_file(FACENET_PACKAGE, FACENET_VERSION, member, sha256, cache_dir=root)
        state_dicts[net] = read_state_dict(path)
    checkpoint = convert_mtcnn_facenet(state_dicts)
    checkpoint["meta"]["source_sha256"] = {net: sha for net, (_, sha) in FACENET_FILES.items()}
    save_checkpoint(checkpoint, target)
    return target


def mtcnn_facenet(cache_dir: str | Path | None = None, device: str | torch.device = "cpu", **kwargs: Any) -> MTCNN:
    """An eval-mode :class:`MTCNN` with facenet-pytorch's weights (fetched on first use).

    Args:
        cache_dir: see :func:`mtcnn_facenet_weights`.
        device: where to put the model.
        **kwargs: :class:`MTCNN` arguments (``min_face_size``, ``thresholds``...); the defaults are
            facenet-pytorch's.
    """
    model = MTCNN(**kwargs)
    load_weights(model, mtcnn_facenet_weights(cache_dir), strict=True)
    return model.to(device).eval()

