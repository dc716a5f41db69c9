"""MNIST: the IDX reader on files written here, the genuine set (when present) and the embedded fallback."""

import gzip
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from formats import idx_bytes

import tinygan.data.mnist as mnist
from tinygan.data import (
    DataIntegrityWarning,
    DatasetNotFoundError,
    data_identity,
    load_mnist,
    md5sum,
    mnist_for_gan,
    read_idx,
    read_idx_images,
)
from tinygan.data.mnist import MNIST_MD5, read_idx_labels, scale_mnist

EMBEDDED = Path(__file__).resolve().parents[1] / "tinygan" / "data" / "embedded"


@pytest.fixture
def tiny(rng):
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    return images, labels


def write_set(folder: Path, images, labels, prefix: str, gz: bool) -> None:
    """``prefix`` is "train" or "t10k"; ``gz`` picks the published (.gz) or decompressed names."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


# ---------------------------------------------------------------- the IDX reader


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, tiny, compress):
    images, labels = tiny
    for name, array in (("img", images), ("lab", labels)):
        data = idx_bytes(array)
        # deliberately misleading names: compression is told by the magic bytes
        (tmp_path / name).write_bytes(gzip.compress(data) if compress else data)
    got_images, got_labels = read_idx_images(tmp_path / "img"), read_idx_labels(tmp_path / "lab")
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] ^= 1  # writable, independent of the file


def test_read_idx_wider_types(tmp_path):
    values = np.array([[1, -2], [300, 4]], dtype=">i4")
    (tmp_path / "x").write_bytes(struct.pack(">I", 0x0C02) + struct.pack(">2I", 2, 2) + values.tobytes())
    got = read_idx(tmp_path / "x")
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, [[1, -2], [300, 4]])


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file_is_refused(tmp_path, tiny, compress):
    path = tmp_path / "train-images-idx3-ubyte"
    payload = idx_bytes(tiny[0])[:-5]  # a whole gzip stream of a short payload: the header dims disagree
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated IDX payload.*5488 bytes.*received 5483"):
        read_idx_images(path)


@pytest.mark.parametrize("ndim_bytes", [b"", b"\0\0\0\x07", b"\0\0\0\x07\0\0"])
def test_truncated_header_is_refused(tmp_path, ndim_bytes):
    (tmp_path / "h").write_bytes(struct.pack(">I", 0x0803) + ndim_bytes)
    with pytest.raises(ValueError, match=r"h: truncated IDX header: expected 16 bytes for 3 dims"):
        read_idx_images(tmp_path / "h")


def test_header_calling_for_gigabytes_is_refused_before_reading(tmp_path):
    (tmp_path / "big").write_bytes(struct.pack(">4I", 0x0803, 4_000_000_000, 28, 28) + bytes(100))
    with pytest.raises(ValueError, match=r"big: IDX header dims \(4000000000, 28, 28\) call for 3136000000000 bytes"):
        read_idx_images(tmp_path / "big")


def test_gzip_bomb_is_not_inflated(tmp_path, tiny):
    """A 7-image header followed by 256 MB of zeros, gzipped to 250 kB: refused after reading 5489 bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    chunks = [compressor.compress(idx_bytes(tiny[0]))]
    zeros = bytes(1 << 20)
    chunks += [compressor.compress(zeros) for _ in range(256)]
    chunks.append(compressor.flush())
    path = tmp_path / "bomb.gz"
    path.write_bytes(b"".join(chunks))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bomb\.gz: trailing bytes after IDX payload.*received more than 5488"):
            read_idx_images(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak} bytes allocated: the stream was inflated"


def test_trailing_bytes_are_refused(tmp_path, tiny):
    (tmp_path / "f").write_bytes(idx_bytes(tiny[1]) + b"\0")
    with pytest.raises(ValueError, match=r"f: trailing bytes after IDX payload.*7 bytes.*received more than 7"):
        read_idx_labels(tmp_path / "f")


def test_wrong_magic_is_refused(tmp_path, tiny):
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx_bytes(tiny[1])))
    with pytest.raises(
        ValueError,
        match=r"labels\.gz: wrong IDX magic number: expected 0x00000803, received 0x00000801",
    ):
        read_idx_images(tmp_path / "labels.gz")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match=r"png: not an IDX file"):
        read_idx(tmp_path / "png")
    (tmp_path / "short").write_bytes(b"\0\0")
    with pytest.raises(ValueError, match=r"short: not an IDX file: expected a 4-byte magic number"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_gzip_is_refused(tmp_path, tiny, damage):
    packed = bytearray(gzip.compress(idx_bytes(tiny[0])))
    if damage == "truncate":
        packed = packed[: len(packed) // 2]
    else:
        packed[len(packed) // 2] ^= 0xFF
        packed[-8] ^= 0xFF  # and the CRC, so no stream can slip through
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: corrupt or truncated gzip stream"):
        read_idx_images(path)


# ---------------------------------------------------------------- load_mnist on files written here


def test_load_from_data_dir_and_splits(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    images, labels = tiny
    write_set(tmp_path / "d" / "mnist", images[:4], labels[:4], "train", gz=False)
    write_set(tmp_path / "d" / "mnist", images[4:], labels[4:], "t10k", gz=False)
    lines = []
    data = load_mnist(tmp_path / "d", download=False, verbose=lines.append)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.source.kind == "local" and data.source.location == str(tmp_path / "d" / "mnist")
    np.testing.assert_array_equal(load_mnist(tmp_path / "d", "train", download=False)[1], labels[:4])
    np.testing.assert_array_equal(load_mnist(tmp_path / "d", "test", download=False)[1], labels[4:])
    assert lines == []
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist(tmp_path / "d", "validation")


def test_load_from_cache(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path / "cache" / "mnist", *tiny, "t10k", gz=False)
    data = load_mnist(None, "test", download=False)
    assert data.source.kind == "cache"
    np.testing.assert_array_equal(data.labels, tiny[1])


def test_modified_gz_warns_but_loads(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path, *tiny, "t10k", gz=True)
    with pytest.warns(DataIntegrityWarning) as record:
        images, _ = load_mnist(tmp_path, "test", download=False)
    assert len(record) == 1, "one warning per load, naming every modified file"
    message = str(record[0].message)
    assert "t10k-images-idx3-ubyte.gz (md5 " in message and "published 9fb629c4189551a2d022fa330f9573f3" in message
    assert "t10k-labels-idx1-ubyte.gz (md5 " in message and "published ec29112dd5afa0611ce80d1b7f02629c" in message
    np.testing.assert_array_equal(images, tiny[0])


def test_mismatched_counts_are_refused(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path, tiny[0], tiny[1][:5], "t10k", gz=False)
    with pytest.raises(ValueError, match="holds 7 images but .*t10k-labels-idx1-ubyte holds 5 labels"):
        load_mnist(tmp_path, "test", download=False)


def test_corrupt_local_file_is_an_error_not_a_fallback(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path, *tiny, "t10k", gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: truncated"):
        load_mnist(tmp_path, "test", download=False)


def test_file_of_zero_images_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8), "t10k", gz=True)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: expected MNIST images, the file holds 0"):
        load_mnist(tmp_path, "test", download=False)


def test_wrong_image_size_and_labels_are_refused(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path / "a", tiny[0][:, :27], tiny[1], "t10k", gz=False)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: expected 28x28 MNIST images, received \(27, 28\)"):
        load_mnist(tmp_path / "a", "test", download=False)
    write_set(tmp_path / "b", tiny[0], np.full(7, 10, np.uint8), "t10k", gz=False)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: labels must be digits 0-9, found 10"):
        load_mnist(tmp_path / "b", "test", download=False)


# ---------------------------------------------------------------- an explicit data dir is never replaced


def one_line_refusal(data_dir, split="all"):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetNotFoundError) as info:
            load_mnist(data_dir, split, verbose=pytest.fail)  # download allowed: it must not be tried
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def cached(tmp_path, tiny, monkeypatch):
    """A usable copy in the cache and download allowed: what a silent fallback would pick."""
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    for prefix in ("train", "t10k"):
        write_set(tmp_path / "cache" / "mnist", *tiny, prefix, gz=False)
    monkeypatch.setattr(mnist, "MNIST_MIRRORS", ("http://127.0.0.1:9/never/",))


def test_misspelt_data_dir_is_refused(tmp_path, cached):
    message = one_line_refusal(tmp_path / "mnsit")
    assert message.startswith(f"MNIST: data dir {tmp_path / 'mnsit'} does not exist; expected")
    for name in MNIST_MD5:
        assert name in message


def test_empty_data_dir_is_refused(tmp_path, cached):
    (tmp_path / "empty").mkdir()
    message = one_line_refusal(tmp_path / "empty", "test")
    assert f"data dir {tmp_path / 'empty'} holds none of the files for the MNIST test split" in message
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (gzip-compressed or not" in message
    assert "mnist/ or MNIST/raw/" in message and message.endswith("found nothing (an empty folder)")


def test_data_dir_with_other_files_lists_them(tmp_path, cached):
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    for i in range(10):
        (folder / f"img{i}.png").write_bytes(b"")
    message = one_line_refusal(folder)
    assert message.endswith(
        "found img0.png, img1.png, img2.png, img3.png, img4.png, img5.png, img6.png, img7.png and 3 more"
    )


def test_data_dir_missing_a_file_names_it(tmp_path, tiny, cached):
    write_set(tmp_path / "d" / "MNIST" / "raw", *tiny, "train", gz=True)
    write_set(tmp_path / "d" / "MNIST" / "raw", *tiny, "t10k", gz=False)
    (tmp_path / "d" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    message = one_line_refusal(tmp_path / "d")
    assert message.startswith(f"MNIST: data dir {tmp_path / 'd' / 'MNIST' / 'raw'} lacks t10k-labels-idx1-ubyte.gz ")
    assert "(found train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte)" in message
    # the split that is complete still loads, from that folder
    with pytest.warns(DataIntegrityWarning):  # files written here are not the published ones
        assert load_mnist(tmp_path / "d", "train").source.location == str(tmp_path / "d" / "MNIST" / "raw")


def test_data_dir_that_is_a_file_is_refused(tmp_path, cached):
    (tmp_path / "f").write_bytes(b"x")
    assert "data dir " + str(tmp_path / "f") + " is a file, not a folder" in one_line_refusal(tmp_path / "f")


def test_without_data_dir_the_cache_is_used(tmp_path, tiny, cached):
    assert load_mnist(None, "test").source.kind == "cache"


# ---------------------------------------------------------------- the data identity runs record


def test_data_identity(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    write_set(tmp_path / "gz", *tiny, "t10k", gz=True)
    write_set(tmp_path / "raw", *tiny, "t10k", gz=False)
    with pytest.warns(DataIntegrityWarning):
        from_gz = load_mnist(tmp_path / "gz", "test")
    from_raw = load_mnist(tmp_path / "raw", "test")
    a, b = data_identity(from_gz.images, from_gz.source), data_identity(from_raw.images, from_raw.source)
    assert a["sha256"] == b["sha256"], "the same pixels, read from gz or not, are the same data"
    assert a["source"] == str(from_gz.source) and "local" in a["source"] and str(tmp_path / "gz") in a["source"]
    assert (a["count"], a["shape"], a["dtype"]) == (7, [28, 28], "uint8")
    # one pixel, the order, a subset, the dtype or the scaling: each is other data
    changed = tiny[0].copy()
    changed[3, 14, 14] ^= 1
    others = [
        changed,
        tiny[0][::-1],
        tiny[0][:6],
        tiny[0].astype(np.int16),
        scale_mnist(tiny[0], "01"),
        scale_mnist(tiny[0], "tanh"),
        tiny[0].reshape(7, 784),
    ]
    digests = {data_identity(x, "s")["sha256"] for x in others}
    assert len(digests) == len(others) and a["sha256"] not in digests
    # byte order and memory layout are not: the values are what counts
    assert data_identity(tiny[0].astype(">u2"), "s")["sha256"] == data_identity(tiny[0].astype("<u2"), "s")["sha256"]
    assert data_identity(np.asfortranarray(tiny[0]), "s")["sha256"] == a["sha256"]
    flat = scale_mnist(tiny[0], "tanh")
    assert data_identity(flat, "s") == {
        "source": "s",
        "count": 7,
        "shape": [784],
        "dtype": "float32",
        "sha256": data_identity(flat.copy(), "s")["sha256"],
    }
    with pytest.raises(ValueError, match="data_identity: expected an array of images, received object"):
        data_identity(np.array([None, 1], dtype=object), "s")


@pytest.mark.parametrize("scale, low, high", [("01", 0.0, 1.0), ("tanh", -1.0, 1.0)])
def test_mnist_for_gan_scaling(tmp_path, tiny, monkeypatch, scale, low, high):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    images, _ = tiny
    images[0, 0, :3] = [0, 255, 51]
    write_set(tmp_path, images, tiny[1], "t10k", gz=False)
    x = mnist_for_gan(tmp_path, "test", scale=scale, download=False)
    assert x.shape == (7, 784) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :3], [low, high, low + (high - low) * 0.2], atol=1e-6)
    np.testing.assert_allclose(x, low + (high - low) * images.reshape(7, 784) / 255.0, atol=1e-6)
    assert scale_mnist(images, scale, np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="scale must be"):
        mnist_for_gan(tmp_path, "test", scale="11", download=False)


# ---------------------------------------------------------------- the embedded default


def test_embedded_files_are_the_published_ones():
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert md5sum(EMBEDDED / name) == MNIST_MD5[name]


@pytest.mark.parametrize("split", ["all", "train", "test"])
def test_offline_with_nothing_falls_back_to_embedded(tmp_path, monkeypatch, split):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, labels = data = load_mnist(None, split, download=False, verbose=lines.append)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.shape == (10000,)
    assert list(labels[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the test set's well-known first digits
    assert data.source.kind == "embedded"
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "embedded MNIST test set (10000 images)" in lines[0] and "download disabled" in lines[0]
    assert str(tmp_path / "cache" / "mnist") in lines[0]
    assert not (tmp_path / "cache").exists(), "nothing may be written when download is off"


def test_embedded_is_the_genuine_test_set(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    embedded = load_mnist(None, "test", download=False, verbose=None)
    genuine = load_mnist(shared_data / "mnist", "test", download=False)
    assert embedded.source.kind == "embedded" and genuine.source.kind == "local"
    np.testing.assert_array_equal(embedded.images, genuine.images)
    np.testing.assert_array_equal(embedded.labels, genuine.labels)


# ---------------------------------------------------------------- the genuine set


def test_genuine_mnist(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    folder = shared_data / "mnist"
    for name, md5 in MNIST_MD5.items():
        assert md5sum(folder / name) == md5, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # genuine files: no integrity warning
        images, labels = data = load_mnist(shared_data, "all", download=False)
    assert data.source.kind == "local"
    assert images.shape == (70000, 28, 28) and labels.shape == (70000,)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    train, test = images[:60000], images[60000:]
    assert list(labels[:5]) == [5, 0, 4, 1, 9] and list(labels[60000:60005]) == [7, 2, 1, 0, 4]
    assert labels.min() == 0 and labels.max() == 9
    assert list(np.bincount(labels[:60000])) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert images.min() == 0 and images.max() == 255
    assert abs(train.mean() - 33.32) < 0.01  # the familiar 0.1307 * 255
    assert abs(test.mean() - 33.79) < 0.02
