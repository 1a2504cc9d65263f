"""Corrupt and unreadable dataset files: one :class:`DatasetError` naming the file, never a raw
``zlib.error`` / ``OSError``; the CLI turns it into one ``error:`` line and exit status 2.

Every file is written here (tiny IDX files in the MNIST t10k names, gzip members built by hand), so
the tests need no real dataset.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import tarfile
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from core.data import DataConfig, DatasetError, load_dataset
from core.data.catalogue import check_sha256
from core.data.mnist import read_idx
from core.train.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
N = 100


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWBIT_DATA", str(tmp_path / "cache"))


def _idx(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file: magic ``00 00 08 ndim``, big-endian dims, then the bytes."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def _images_and_labels() -> tuple[bytes, bytes]:
    rng = np.random.default_rng(0)
    images = np.zeros((N, 28, 28), np.uint8)
    for i in range(N):  # a small bright patch per image: compressible, so deflate codes it (no stored blocks)
        r, c = rng.integers(4, 20, size=2)
        images[i, r:r + 8, c:c + 4] = rng.integers(0, 256, size=(8, 4))
    return _idx(images), _idx(rng.integers(0, 10, size=N).astype(np.uint8))


def _gzip(raw: bytes, corrupt_middle: bool = False) -> bytes:
    """One gzip member of ``raw`` whose deflate stream is fully flushed halfway through, so a new block
    starts on a byte boundary in the middle of the payload. ``corrupt_middle`` sets that block's header
    byte to BFINAL=1, BTYPE=11 (reserved): the CRC and length stay right, but inflating fails there."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(raw[: len(raw) // 2]) + co.flush(zlib.Z_FULL_FLUSH)
    body = bytearray(head + co.compress(raw[len(raw) // 2:]) + co.flush())
    if corrupt_middle:
        body[len(head)] = 0b111
    header = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x00\xff"
    return header + bytes(body) + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


def _corrupt(kind: str, raw: bytes) -> bytes:
    """A gzip of ``raw`` broken in one way, checked to raise what gzip raises for it."""
    good = _gzip(raw)
    assert gzip.decompress(good) == raw
    if kind == "deflate":  # bad deflate data in the middle of the payload: zlib.error
        bad, expected = _gzip(raw, corrupt_middle=True), zlib.error
    elif kind == "crc":  # valid deflate data, wrong CRC-32 in the trailer: gzip.BadGzipFile
        bad, expected = good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:], gzip.BadGzipFile
    elif kind == "magic":  # not a gzip header at all: gzip.BadGzipFile
        bad, expected = b"\x1f\x8c" + good[2:], gzip.BadGzipFile
    else:  # cut in the middle of the payload: EOFError
        bad, expected = good[: len(good) // 2], EOFError
    with pytest.raises(expected):
        gzip.decompress(bad)
    return bad


def _t10k_folder(folder: Path, broken: str | None = None) -> Path:
    """The two t10k files in ``folder``; the images file broken as ``broken`` says (None: valid)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = _images_and_labels()
    (folder / IMAGES).write_bytes(_gzip(images) if broken is None else _corrupt(broken, images))
    (folder / LABELS).write_bytes(_gzip(labels))
    return folder


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


KINDS = ["deflate", "crc", "magic", "truncated"]


def test_valid_handmade_t10k_files_load(tmp_path):
    """The hand-built gzip members are valid when not corrupted (so the failures below are the corruption)."""
    d = load_dataset(DataConfig(name="mnist-t10k", root=str(_t10k_folder(tmp_path / "m")), verify=False))
    assert d.input_shape == (1, 28, 28) and len(d.train) + len(d.test) == N


@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupt_gzip_idx_file_is_a_dataset_error_naming_it(tmp_path, kind):
    folder = _t10k_folder(tmp_path / "m", broken=kind)
    path = folder / IMAGES
    with pytest.raises(DatasetError, match=f"cannot read IDX file {re.escape(str(path))}") as ei:
        read_idx(path)
    assert ei.value.__cause__ is not None
    with pytest.raises(DatasetError, match=f"cannot read IDX file {re.escape(str(path))}"):
        load_dataset(DataConfig(name="mnist-t10k", root=str(folder), verify=False))


@pytest.mark.parametrize("kind", KINDS)
def test_the_cli_reports_a_corrupt_gzip_idx_file_in_one_line(tmp_path, capsys, kind):
    folder = _t10k_folder(tmp_path / "m", broken=kind)
    store = tmp_path / "runs.sqlite"
    rc, out, err = _main(["--dataset", "mnist-t10k", "--data-root", str(folder), "--no-verify", "--store",
                          str(store), "--no-progress", "--epochs", "1", "--max-steps", "1"], capsys)
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(folder / IMAGES) in lines[0], err
    assert out == "" and not store.exists()


def test_a_real_process_reports_a_corrupt_deflate_stream_in_one_line(tmp_path):
    folder = _t10k_folder(tmp_path / "m", broken="deflate")
    env = dict(os.environ, LOWBIT_STORE=str(tmp_path / "runs.sqlite"), LOWBIT_DATA=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "core.train", "--dataset", "mnist-t10k", "--data-root", str(folder),
                        "--no-verify", "--no-progress", "--max-steps", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    assert str(folder / IMAGES) in lines[0] and r.stdout == ""
    assert not (tmp_path / "runs.sqlite").exists()


# ---- unreadable files while the SHA-256 is checked (verify on)

needs_proc_mem = pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux /proc/self/mem")


def _unreadable_by_mode(folder: Path) -> Path:
    path = _t10k_folder(folder) / IMAGES
    path.chmod(0)
    return path


def _unreadable_for_anyone(folder: Path) -> Path:
    """A regular file that opens but cannot be read, even by root: a link to this process's own memory
    (``/proc/self/mem``; reading at offset 0, which is never mapped, fails with EIO)."""
    _t10k_folder(folder)
    path = folder / IMAGES
    path.unlink()
    path.symlink_to("/proc/self/mem")
    assert path.is_file()
    return path


CASES = [
    pytest.param(_unreadable_by_mode, "permission denied", id="chmod-000",
                 marks=pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                                          reason="root reads a chmod 000 file")),
    pytest.param(_unreadable_for_anyone, "input/output error", id="unreadable-for-root-too", marks=needs_proc_mem),
]


@pytest.mark.parametrize("make, reason", CASES)
def test_an_unreadable_file_is_a_dataset_error_when_its_checksum_is_checked(tmp_path, make, reason):
    path = make(tmp_path / "m")
    try:
        with pytest.raises(DatasetError, match=f"cannot read {re.escape(str(path))}: {reason}") as ei:
            load_dataset(DataConfig(name="mnist-t10k", root=str(tmp_path / "m")))
        assert isinstance(ei.value.__cause__, OSError)
        with pytest.raises(DatasetError, match=f"cannot read {re.escape(str(path))}: {reason}"):
            check_sha256(path, "0" * 64)
    finally:
        if not path.is_symlink():
            path.chmod(0o644)


@pytest.mark.parametrize("make, reason", CASES)
def test_the_cli_reports_an_unreadable_file_in_one_line(tmp_path, capsys, make, reason):
    path = make(tmp_path / "m")
    store = tmp_path / "runs.sqlite"
    try:
        rc, out, err = _main(["--dataset", "mnist-t10k", "--data-root", str(tmp_path / "m"), "--store", str(store),
                              "--no-progress", "--max-steps", "1"], capsys)
    finally:
        if not path.is_symlink():
            path.chmod(0o644)
    assert rc == 2, err
    assert err == f"error: cannot read {path}: {reason}\n"
    assert out == "" and not store.exists()


def test_a_folder_where_a_checksummed_file_is_expected_is_a_dataset_error(tmp_path):
    """The checksum step itself, given a path it cannot read as a file (IsADirectoryError, as root too)."""
    folder = tmp_path / "t10k-images-idx3-ubyte.gz"
    folder.mkdir()
    with pytest.raises(DatasetError, match=f"cannot read {re.escape(str(folder))}: is a directory"):
        check_sha256(folder, "0" * 64)


def test_a_truncated_cifar_archive_is_a_dataset_error_naming_it(tmp_path):
    """With verify off the archive is extracted unchecked: a cut gzip stream (EOFError) is one clear error."""
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (src / b).write_bytes(bytes(range(256)) * 64 + b.encode() * 1000)
    root = tmp_path / "root"
    root.mkdir()
    arc = root / "cifar-10-python.tar.gz"
    with tarfile.open(tmp_path / "whole.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-py")
    whole = (tmp_path / "whole.tar.gz").read_bytes()
    arc.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(EOFError):
        gzip.decompress(arc.read_bytes())
    with pytest.raises(DatasetError, match=f"cannot extract {re.escape(str(arc))}"):
        load_dataset(DataConfig(name="cifar10", root=str(root), verify=False))
