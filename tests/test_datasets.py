"""Dataset loaders on small fake files in the real formats; one test on the real Fashion-MNIST."""

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nkeras.datasets import DatasetUnavailableError, _fetch, cifar10, digits, fashion_mnist, mnist
from tests.datautil import requires_fashion_mnist


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty cache, one empty system directory, and a 'remote' directory served by file:// URLs."""
    home, system, remote = tmp_path / "home", tmp_path / "system", tmp_path / "remote"
    system.mkdir()
    remote.mkdir()
    monkeypatch.setenv("NKERAS_HOME", str(home))
    monkeypatch.setenv("NKERAS_DATASET_DIRS", str(system))
    monkeypatch.setattr(_fetch, "SYSTEM_DATASET_DIRS", ())
    return SimpleNamespace(home=home, system=system, remote=remote)


def sha256(content):
    return hashlib.sha256(content).hexdigest()


def with_hash(data_file, content, url=None):
    """``data_file`` expecting ``content``, and served from ``url`` when given."""
    return dataclasses.replace(data_file, sha256=sha256(content), url=url or data_file.url)


def put(directory, name, content):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(content)


# Fashion-MNIST


def idx_bytes(array):
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def fake_fashion(rng, monkeypatch, remote, n_train=5, n_test=3):
    """Fake IDX .gz files in ``remote``; FILES now expects them. Returns the arrays and the .gz bytes by name."""
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    files, gz = {}, {}
    for key, data_file in fashion_mnist.FILES.items():
        content = idx_bytes(arrays[key])
        gz[data_file.name] = gzip.compress(content)
        put(remote, data_file.name, gz[data_file.name])
        files[key] = with_hash(data_file, content, (remote / data_file.name).as_uri())
    monkeypatch.setattr(fashion_mnist, "FILES", files)
    return arrays, gz


def assert_fashion_equal(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"), (y_test, "y_test")):
        assert got.dtype == np.uint8 and got.flags.writeable
        np.testing.assert_array_equal(got, arrays[key])


def test_fashion_cache_hit(places, rng, monkeypatch):
    arrays, gz = fake_fashion(rng, monkeypatch, places.remote)
    for name, content in gz.items():
        put(places.home / "datasets" / "fashion-mnist", name, content)
        (places.remote / name).unlink()
    assert_fashion_equal(fashion_mnist.load_data(), arrays)


def test_fashion_system_copy_recompressed(places, rng, monkeypatch):
    arrays, gz = fake_fashion(rng, monkeypatch, places.remote)
    for name, content in gz.items():
        put(places.system / "fashion-mnist", name, gzip.compress(gzip.decompress(content), compresslevel=1, mtime=1))
        (places.remote / name).unlink()
    assert_fashion_equal(fashion_mnist.load_data(), arrays)
    assert not places.home.exists()


def test_fashion_corrupt_cache_falls_back_to_system_copy(places, rng, monkeypatch):
    arrays, gz = fake_fashion(rng, monkeypatch, places.remote)
    for name, content in gz.items():
        put(places.home / "datasets" / "fashion-mnist", name, content[:-9])
        put(places.system / "fashion-mnist", name, content)
    assert_fashion_equal(fashion_mnist.load_data(), arrays)


def test_fashion_download_writes_cache(places, rng, monkeypatch):
    arrays, gz = fake_fashion(rng, monkeypatch, places.remote)
    assert_fashion_equal(fashion_mnist.load_data(), arrays)
    cache = places.home / "datasets" / "fashion-mnist"
    assert sorted(os.listdir(cache)) == sorted(gz)
    for name in gz:
        (places.remote / name).unlink()
    assert_fashion_equal(fashion_mnist.load_data(), arrays)


def test_download_checksum_mismatch_leaves_nothing(places, rng, monkeypatch):
    fake_fashion(rng, monkeypatch, places.remote)
    train_images = fashion_mnist.FILES["x_train"]
    monkeypatch.setitem(fashion_mnist.FILES, "x_train", dataclasses.replace(train_images, sha256="0" * 64))
    with pytest.raises(DatasetUnavailableError, match="SHA-256 mismatch") as error:
        fashion_mnist.load_data()
    assert train_images.url in str(error.value)
    assert os.listdir(places.home / "datasets" / "fashion-mnist") == []


def test_all_sources_fail_explains_where_and_what_to_do(places, rng, monkeypatch):
    fake_fashion(rng, monkeypatch, places.remote)
    for path in places.remote.iterdir():
        path.unlink()
    with pytest.raises(DatasetUnavailableError) as error:
        fashion_mnist.load_data()
    message = str(error.value)
    cache = places.home / "datasets" / "fashion-mnist"
    name = "train-images-idx3-ubyte.gz"
    assert f"{cache / name}: not found" in message
    assert f"{places.system / 'fashion-mnist' / name}: not found" in message
    assert f"download from {(places.remote / name).as_uri()}" in message
    assert "apt-get install dataset-fashion-mnist" in message and "NKERAS_DATASET_DIRS" in message
    assert fashion_mnist.FILES["x_train"].sha256 in message
    assert os.listdir(cache) == []


class _BrokenResponse(io.BytesIO):
    def __init__(self, error):
        super().__init__()
        self.error = error
        self.calls = 0

    def read(self, size=-1):
        self.calls += 1
        if self.calls > 1:
            raise self.error
        return b"\x1f\x8b" + b"x" * 100


@pytest.mark.parametrize("error", [ConnectionResetError("connection reset"), KeyboardInterrupt()])
def test_interrupted_download_keeps_old_file_and_leaves_no_partial(places, rng, monkeypatch, error):
    fake_fashion(rng, monkeypatch, places.remote)
    cache = places.home / "datasets" / "fashion-mnist"
    put(cache, "train-images-idx3-ubyte.gz", b"stale")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _BrokenResponse(error))
    with pytest.raises((DatasetUnavailableError, KeyboardInterrupt)):
        fashion_mnist.load_data()
    assert os.listdir(cache) == ["train-images-idx3-ubyte.gz"]
    assert (cache / "train-images-idx3-ubyte.gz").read_bytes() == b"stale"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "magic number missing"),
        (bytes([0, 0, 8, 3]) + b"\0" * 12, "magic number 00000803, expected 00000801"),
        (bytes([0, 0, 9, 1, 0, 0, 0, 1, 7]), "magic number 00000901"),
        (bytes([0, 0, 8, 1, 0, 0]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), r"shape \(3,\), i.e. 11 bytes, but the file has 10"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), r"shape \(1,\), i.e. 9 bytes, but the file has 10"),
    ],
    ids=["empty", "wrong-ndim", "wrong-type", "short-header", "short-data", "trailing-data"],
)
def test_parse_idx_rejects_corrupt_files(content, message):
    with pytest.raises(ValueError, match=f"labels.gz: .*{message}"):
        fashion_mnist.parse_idx(content, "labels.gz", ndim=1)


def test_parse_idx_reads_big_endian_dims(rng):
    array = rng.integers(0, 256, (3, 2, 5), dtype=np.uint8)
    np.testing.assert_array_equal(fashion_mnist.parse_idx(idx_bytes(array), "x", ndim=3), array)


def test_fashion_corrupt_idx_with_matching_hash(places, rng, monkeypatch):
    fake_fashion(rng, monkeypatch, places.remote)
    corrupt = idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-1]
    put(places.system / "fashion-mnist", "train-images-idx3-ubyte.gz", gzip.compress(corrupt))
    monkeypatch.setitem(fashion_mnist.FILES, "x_train", with_hash(fashion_mnist.FILES["x_train"], corrupt))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: the header gives shape"):
        fashion_mnist.load_data()


def test_fashion_label_count_must_match(places, rng, monkeypatch):
    fake_fashion(rng, monkeypatch, places.remote)
    labels = idx_bytes(np.ones(4, np.uint8))
    put(places.system / "fashion-mnist", "train-labels-idx1-ubyte.gz", gzip.compress(labels))
    monkeypatch.setitem(fashion_mnist.FILES, "y_train", with_hash(fashion_mnist.FILES["y_train"], labels))
    with pytest.raises(ValueError, match=r"train split: .* got images \(5, 28, 28\) and 4 labels"):
        fashion_mnist.load_data()


@requires_fashion_mnist
def test_real_fashion_mnist_system_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("NKERAS_HOME", str(tmp_path))
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert np.array_equal(np.bincount(y_train), [6000] * 10) and np.array_equal(np.bincount(y_test), [1000] * 10)
    assert x_train.max() == 255 and 60 < x_train.mean() < 80
    assert not tmp_path.joinpath("datasets").exists()


# MNIST


def fake_mnist(rng, monkeypatch, remote, **overrides):
    arrays = {
        "x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 4, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 2, dtype=np.uint8),
    }
    arrays.update(overrides)
    buffer = io.BytesIO()
    np.savez(buffer, **{key: value for key, value in arrays.items() if value is not None})
    content = buffer.getvalue()
    put(remote, "mnist.npz", content)
    monkeypatch.setattr(mnist, "FILE", with_hash(mnist.FILE, content, (remote / "mnist.npz").as_uri()))
    return arrays, content


def assert_mnist_equal(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"), (y_test, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key])


def test_mnist_cache_hit_and_download(places, rng, monkeypatch):
    arrays, content = fake_mnist(rng, monkeypatch, places.remote)
    assert_mnist_equal(mnist.load_data(), arrays)
    cached = places.home / "datasets" / "mnist" / "mnist.npz"
    assert cached.read_bytes() == content
    (places.remote / "mnist.npz").unlink()
    assert_mnist_equal(mnist.load_data(), arrays)


def test_mnist_path_relative_and_absolute(places, rng, monkeypatch, tmp_path):
    arrays, content = fake_mnist(rng, monkeypatch, places.remote)
    mnist.load_data(path="sub/mine.npz")
    assert (places.home / "datasets" / "mnist" / "sub" / "mine.npz").read_bytes() == content
    absolute = tmp_path / "elsewhere" / "m.npz"
    assert_mnist_equal(mnist.load_data(path=str(absolute)), arrays)
    assert absolute.read_bytes() == content


def test_mnist_refuses_pickled_arrays(places, rng, monkeypatch):
    fake_mnist(rng, monkeypatch, places.remote, y_test=np.array([1, "two"], dtype=object))
    with pytest.raises(ValueError, match="mnist.npz: not a readable .npz archive of plain arrays"):
        mnist.load_data()


def test_mnist_missing_array(places, rng, monkeypatch):
    fake_mnist(rng, monkeypatch, places.remote, x_test=None)
    with pytest.raises(ValueError, match=r"missing arrays \['x_test'\]"):
        mnist.load_data()


# CIFAR-10


def py2_pickle(batch):
    """Pickle ``{bytes: uint8 array or list of ints}`` as Python 2's cPickle did for CIFAR-10 (protocol 2,
    str as BINSTRING, arrays through numpy.core.multiarray._reconstruct)."""

    def string(value):
        return b"T" + struct.pack("<i", len(value)) + value

    def integer(value):
        return b"J" + struct.pack("<i", value)

    def array(value):
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b") + b"\x87R"
            + b"(" + integer(1) + b"(" + b"".join(integer(d) for d in value.shape) + b"t"
            + b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"
            + b"(" + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb"
            + b"\x89" + string(value.tobytes()) + b"tb"
        )

    def item(value):
        if isinstance(value, np.ndarray):
            return array(value)
        return b"](" + b"".join(integer(v) for v in value) + b"e"

    return b"\x80\x02}(" + b"".join(string(key) + item(value) for key, value in batch.items()) + b"u."


def tar_gz(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def fake_cifar(rng, monkeypatch, remote, replace=None):
    """Six batches of two images; ``replace`` swaps in raw member bytes. Returns the channels-first batches."""
    batches, members = {}, {}
    for name in (*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH, "batches.meta"):
        batches[name] = (rng.integers(0, 256, (2, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, 10, 2)])
        members[name] = py2_pickle({b"batch_label": b"fake", b"labels": batches[name][1], b"data": batches[name][0]})
    members.update(replace or {})
    content = tar_gz(members)
    put(remote, cifar10.FILE.name, content)
    monkeypatch.setattr(cifar10, "FILE", with_hash(cifar10.FILE, content, (remote / cifar10.FILE.name).as_uri()))
    return batches


def test_cifar10_layout_and_download(places, rng, monkeypatch):
    batches = fake_cifar(rng, monkeypatch, places.remote)
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    assert y_train.shape == (10, 1) and y_test.shape == (2, 1)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert x_train.flags.c_contiguous
    train_data = np.concatenate([batches[name][0] for name in cifar10.TRAIN_BATCHES])
    for image in range(10):
        for row, col, channel in ((0, 0, 0), (3, 17, 1), (31, 30, 2)):
            assert x_train[image, row, col, channel] == train_data[image, channel * 1024 + row * 32 + col]
    np.testing.assert_array_equal(y_train[:, 0], sum((batches[name][1] for name in cifar10.TRAIN_BATCHES), []))
    np.testing.assert_array_equal(x_test.transpose(0, 3, 1, 2).reshape(2, -1), batches[cifar10.TEST_BATCH][0])
    assert (places.home / "datasets" / "cifar-10" / cifar10.FILE.name).is_file()


class _Gadget:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_cifar10_refuses_code_in_pickles(places, rng, monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    gadget = pickle.dumps({b"data": _Gadget(marker)}, protocol=4)
    fake_cifar(rng, monkeypatch, places.remote, replace={"data_batch_3": gadget})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load pathlib.Path.touch"):
        cifar10.load_data()
    assert not marker.exists()


def test_cifar10_checks_hash_before_unpickling(places, rng, monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    gadget = pickle.dumps({b"data": _Gadget(marker)}, protocol=4)
    fake_cifar(rng, monkeypatch, places.remote, replace={"data_batch_1": gadget})
    monkeypatch.setattr(cifar10, "FILE", dataclasses.replace(cifar10.FILE, sha256=cifar10.FILE.sha256[::-1]))
    monkeypatch.setattr(cifar10, "_ArrayUnpickler", None)
    with pytest.raises(DatasetUnavailableError, match="SHA-256 mismatch"):
        cifar10.load_data()
    assert not marker.exists()
    assert not (places.home / "datasets" / "cifar-10" / cifar10.FILE.name).exists()


@pytest.mark.parametrize(
    "member, message",
    [
        (py2_pickle({b"data": np.zeros((2, 3071), np.uint8), b"labels": [1, 2]}), "uint8 array of shape"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}), "2 integers in 0..9"),
        (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "2 integers in 0..9"),
    ],
    ids=["data-shape", "label-range", "label-count"],
)
def test_cifar10_malformed_batch(places, rng, monkeypatch, member, message):
    fake_cifar(rng, monkeypatch, places.remote, replace={"test_batch": member})
    with pytest.raises(ValueError, match=f"cifar-10-batches-py/test_batch: .*{message}"):
        cifar10.load_data()


# Digits


def test_digits_shapes_values_and_split():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1437, 8, 8) and x_test.shape == (360, 8, 8)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert x_train.max() == 16 and x_test.max() == 16
    labels = np.concatenate([y_train, y_test])
    assert set(np.unique(y_test)) == set(range(10))
    assert 170 <= np.bincount(labels).min() and np.bincount(labels).max() <= 190


def test_digits_split_is_deterministic_and_seeded():
    first, again, other = digits.load_data(seed=7), digits.load_data(seed=7), digits.load_data(seed=8)
    np.testing.assert_array_equal(first[1][0], again[1][0])
    assert not np.array_equal(first[1][0], other[1][0])
    all_first = np.concatenate([first[0][0], first[1][0]]).reshape(1797, -1)
    all_other = np.concatenate([other[0][0], other[1][0]]).reshape(1797, -1)
    assert sorted(map(bytes, all_first)) == sorted(map(bytes, all_other))


def test_digits_test_split():
    (x_train, _), (x_test, y_test) = digits.load_data(test_split=0)
    assert len(x_train) == 1797 and x_test.shape == (0, 8, 8) and y_test.shape == (0,)
    assert len(digits.load_data(test_split=0.5)[1][0]) == 1797 - 898
    for bad in (1, -0.1, "0.2", None):
        with pytest.raises(ValueError, match="test_split must be a number in"):
            digits.load_data(test_split=bad)


def test_digits_embedded_file_is_small_and_unpickled():
    assert digits.DATA_PATH.stat().st_size < 100_000
    assert "CC BY 4.0" in (digits.DATA_PATH.parent / "README.md").read_text()
