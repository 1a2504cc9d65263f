"""Dataset loaders: digits, MNIST-1D, MNIST IDX (real t10k files), CIFAR-10 pickles, checks and errors."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import DataConfig, DatasetError, list_datasets, load_dataset
from core.data import catalogue as load_catalogue
from core.data.mnist import read_idx

from datafiles import T10K  # noqa: E402
needs_t10k = pytest.mark.skipif(not (T10K / "t10k-images-idx3-ubyte.gz").is_file(), reason="MNIST t10k files missing")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWBIT_DATA", str(tmp_path / "cache"))


def test_registry_lists_all_datasets():
    assert set(list_datasets()) >= {"digits", "mnist1d", "mnist", "mnist-t10k", "cifar10"}
    with pytest.raises(DatasetError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")


def test_digits_split_normalised_and_deterministic():
    a = load_dataset(DataConfig(name="digits", split_seed=3))
    b = load_dataset(DataConfig(name="digits", split_seed=3))
    c = load_dataset(DataConfig(name="digits", split_seed=4))
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train) + len(a.test) == 1797 and len(a.test) == 359
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.y, c.test.y)
    assert abs(float(a.train.x.mean())) < 1e-5 and abs(float(a.train.x.std()) - 1) < 1e-3
    s = load_dataset(DataConfig(name="digits", train_subset=100, test_subset=50))
    assert len(s.train) == 100 and len(s.test) == 50


def test_mnist1d_generated_offline_and_cached(tmp_path):
    d = load_dataset(DataConfig(name="mnist1d", root=str(tmp_path / "m1d")))
    assert d.input_shape == (40,) and len(d.train) == 4000 and len(d.test) == 1000
    assert sorted(set(d.train.y.tolist())) == list(range(10))
    cached = list((tmp_path / "m1d").glob("*.npz"))
    assert len(cached) == 1
    again = load_dataset(DataConfig(name="mnist1d", root=str(tmp_path / "m1d")))
    assert torch.equal(d.train.x, again.train.x)


@needs_t10k
def test_mnist_t10k_split_real_files():
    d = load_dataset(DataConfig(name="mnist-t10k", root=str(T10K)))
    assert d.input_shape == (1, 28, 28)
    assert len(d.train) == 8000 and len(d.test) == 2000
    labels = torch.cat([d.train.y, d.test.y])
    # the real MNIST test set has these class counts
    assert torch.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_t10k
def test_mnist_raw_idx_and_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(T10K / f"{name}.gz", "rb") as f:
            (raw / name).write_bytes(f.read())
    d = load_dataset(DataConfig(name="mnist-t10k", root=str(tmp_path), test_subset=100))
    ref = load_dataset(DataConfig(name="mnist-t10k", root=str(T10K), test_subset=100))
    assert torch.equal(d.test.x, ref.test.x) and torch.equal(d.test.y, ref.test.y)


@needs_t10k
def test_mnist_checksum_mismatch_is_one_clear_error(tmp_path):
    shutil.copy(T10K / "t10k-labels-idx1-ubyte.gz", tmp_path)
    images = gzip.decompress((T10K / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images[:-1] + b"\x01"))
    with pytest.raises(DatasetError, match="checksum mismatch.*t10k-images-idx3-ubyte.gz"):
        load_dataset(DataConfig(name="mnist-t10k", root=str(tmp_path)))
    # verify=False accepts the user's own files
    d = load_dataset(DataConfig(name="mnist-t10k", root=str(tmp_path), verify=False))
    assert len(d.train) == 8000


def test_mnist_missing_files_message_says_where(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    msg = str(ei.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg and "download" in msg


def test_offline_download_fails_with_clear_message(tmp_path, monkeypatch):
    cat = dict(load_catalogue())
    cat["mnist"] = dict(cat["mnist"], mirrors=["http://127.0.0.1:9/"])
    monkeypatch.setattr("core.data.mnist.catalogue", lambda: cat)
    with pytest.raises(DatasetError, match="could not download t10k-images.*Put the file into"):
        load_dataset(DataConfig(name="mnist-t10k", root=str(tmp_path), download=True))


def test_idx_structural_errors(tmp_path):
    bad = tmp_path / "x-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(bad)
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(bad)
    good = tmp_path / "g-idx1-ubyte"
    good.write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([7, 8, 9]))
    assert read_idx(good).tolist() == [7, 8, 9]


def _write_cifar(folder: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Write tiny batches in the exact CIFAR-10 python format (bytes keys, (N, 3072) uint8, protocol 2)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if b == "test_batch" else n_train
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        d = {b"batch_label": b.encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with (folder / b).open("wb") as f:
            pickle.dump(d, f, protocol=2)
        out[b] = data
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": n_train}, f, protocol=2)
    return out


def test_cifar_tiny_pickles_exact_format(tmp_path):
    raw = _write_cifar(tmp_path / "cifar-10-batches-py")
    d = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert d.input_shape == (3, 32, 32) and len(d.train) == 30 and len(d.test) == 4
    assert d.train.x.dtype == torch.uint8
    # first training image, channel-major (R plane, then G, then B), as in the CIFAR docs
    assert torch.equal(d.train.x[0], torch.from_numpy(raw["data_batch_1"][0].reshape(3, 32, 32)))
    x, y = d.train.batch(torch.arange(30))
    assert x.dtype == torch.float32 and x.shape == (30, 3, 32, 32)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_cifar_archive_checked_then_extracted(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _write_cifar(src / "cifar-10-batches-py")
    root = tmp_path / "root"
    root.mkdir()
    arc = root / "cifar-10-python.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        tf.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset(DataConfig(name="cifar10", root=str(root)))
    assert not (root / "cifar-10-batches-py").exists()  # nothing extracted from an unverified archive
    cat = dict(load_catalogue())
    cat["cifar10"] = dict(cat["cifar10"], archive_sha256=hashlib.sha256(arc.read_bytes()).hexdigest())
    monkeypatch.setattr("core.data.cifar.catalogue", lambda: cat)
    d = load_dataset(DataConfig(name="cifar10", root=str(root)))
    assert len(d.train) == 30


def test_cifar_rejects_code_in_pickles_and_bad_structure(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"\(N, 3072\) uint8"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="missing data_batch_3"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_dataconfig_validation():
    with pytest.raises(ValueError, match="train_subset"):
        DataConfig(train_subset=0)
    with pytest.raises(ValueError, match="test_fraction"):
        DataConfig(test_fraction=1.0)
