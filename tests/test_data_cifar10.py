"""CIFAR-10: batch files written here in the official format, the restricted unpickler, the partial genuine set."""

import builtins
import hashlib
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from formats import cifar_batch as batch_dict

import tinygan.data.cifar10 as cifar10
from tinygan.data import (
    CLASS_NAMES,
    DataIntegrityWarning,
    DatasetNotFoundError,
    UnsafePickleError,
    cifar10_for_gan,
    load_cifar10,
    read_batch,
)

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
ALL = [*TRAIN, "test_batch"]


def dump(obj, protocol: int = 2) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


@pytest.fixture
def batches(rng):
    """name -> (data, labels): 4 images per batch, labels chosen so that every class occurs."""
    out = {}
    for k, name in enumerate(ALL):
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = np.array([(4 * k + j) % 10 for j in range(4)], dtype=np.uint8)
        out[name] = data, labels
    return out


def write_folder(root: Path, batches: dict, meta: bool = True) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (data, labels) in batches.items():
        (folder / name).write_bytes(dump(batch_dict(name, data, labels)))
    if meta:
        names = [n.encode() for n in CLASS_NAMES]
        (folder / "batches.meta").write_bytes(dump({b"num_cases_per_batch": 10000, b"label_names": names}))
    return folder


def hwc(data: np.ndarray) -> np.ndarray:
    """The documented layout, written out pixel by pixel: value (c, y, x) sits at column c*1024 + y*32 + x."""
    out = np.empty((len(data), 32, 32, 3), np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, y, :, c] = data[:, c * 1024 + y * 32 : c * 1024 + y * 32 + 32]
    return out


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))


def load_quiet(*args, **kwargs):
    """load_cifar10 expecting exactly one DataIntegrityWarning (files written here are not the official ones)."""
    with pytest.warns(DataIntegrityWarning) as record:
        result = load_cifar10(*args, **kwargs)
    assert len(record) == 1
    return result, str(record[0].message)


# ---------------------------------------------------------------- layout and splits


def test_folder_load_layout_and_splits(tmp_path, batches):
    write_folder(tmp_path, batches)
    (images, labels), message = load_quiet(tmp_path, "train")
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.uint8
    expected = np.concatenate([batches[n][0] for n in TRAIN])
    np.testing.assert_array_equal(images, hwc(expected))
    np.testing.assert_array_equal(labels, np.concatenate([batches[n][1] for n in TRAIN]))
    assert "partial/modified batch: data_batch_1: 4 images" in message and "test_batch" not in message

    (images, labels), _ = load_quiet(tmp_path, "test")
    np.testing.assert_array_equal(images, hwc(batches["test_batch"][0]))
    data, _ = load_quiet(tmp_path, "all")
    assert data.images.shape == (24, 32, 32, 3) and data.source.kind == "local"
    assert data.source.location == str(tmp_path / "cifar-10-batches-py")
    assert "partial/modified" in data.source.note
    with pytest.raises(ValueError, match="split must be one of"):
        load_cifar10(tmp_path, "valid")


def test_pixel_channels_land_where_they_belong(tmp_path, batches):
    data = np.zeros((4, 3072), np.uint8)
    y, x = 3, 5
    data[1, 0 * 1024 + y * 32 + x] = 10  # red
    data[1, 1 * 1024 + y * 32 + x] = 20  # green
    data[1, 2 * 1024 + y * 32 + x] = 250  # blue
    batches["test_batch"] = data, np.array([0, 1, 2, 3], np.uint8)
    write_folder(tmp_path, batches)
    (images, _), _ = load_quiet(tmp_path, "test")
    assert list(images[1, y, x]) == [10, 20, 250]
    assert images[1].sum() == 280 and images[1, x, y].sum() == 0  # not transposed
    with pytest.warns(DataIntegrityWarning):
        gan = cifar10_for_gan(tmp_path, "test")
    assert gan.shape == (4, 3, 32, 32) and gan.dtype == np.float32 and gan.flags.c_contiguous
    np.testing.assert_allclose(gan[1, :, y, x], [10 / 127.5 - 1, 20 / 127.5 - 1, 250 / 127.5 - 1], rtol=1e-6)
    assert gan[0].min() == -1.0 and gan[0].max() == -1.0
    assert gan.min() >= -1.0 and gan.max() <= 1.0


def test_class_filter(tmp_path, batches):
    write_folder(tmp_path, batches)
    (images, labels), _ = load_quiet(tmp_path, "train", classes=["cat", 9])
    expected = np.concatenate([batches[n][1] for n in TRAIN])
    assert set(labels) == {3, 9} and len(labels) == np.isin(expected, [3, 9]).sum()
    mask = np.isin(expected, [3, 9])
    np.testing.assert_array_equal(images, hwc(np.concatenate([batches[n][0] for n in TRAIN])[mask]))
    with pytest.warns(DataIntegrityWarning):
        horses = cifar10_for_gan(tmp_path, "train", class_name="horse")
    assert len(horses) == (expected == CLASS_NAMES.index("horse")).sum() > 0
    with pytest.raises(ValueError, match="unknown CIFAR-10 class 'cats'.*airplane"):
        load_cifar10(tmp_path, classes="cats")
    with pytest.raises(ValueError, match="int 0-9, got 10"):
        load_cifar10(tmp_path, classes=[10])


def test_official_md5_means_no_warning(tmp_path, batches, monkeypatch):
    folder = write_folder(tmp_path, batches)
    for name in ALL[1:]:
        monkeypatch.setitem(cifar10.CIFAR10_MD5, name, hashlib.md5((folder / name).read_bytes()).hexdigest())
    (_, labels), message = load_quiet(tmp_path, "all")
    assert "partial/modified batch: data_batch_1: 4 images (md5" in message and "data_batch_2" not in message
    monkeypatch.setitem(cifar10.CIFAR10_MD5, "data_batch_1", hashlib.md5((folder / TRAIN[0]).read_bytes()).hexdigest())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_cifar10(tmp_path, "all")[1]) == 24


def test_archive_and_other_folder_layouts(tmp_path, batches):
    folder = write_folder(tmp_path / "src", batches)
    (tmp_path / "a").mkdir()
    with tarfile.open(tmp_path / "a" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    from_dir, _ = load_quiet(tmp_path / "src", "all")
    from_tar, _ = load_quiet(tmp_path / "a", "all")
    assert from_tar.source.location == str(tmp_path / "a" / "cifar-10-python.tar.gz")
    np.testing.assert_array_equal(from_tar.images, from_dir.images)
    np.testing.assert_array_equal(from_tar.labels, from_dir.labels)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["cifar-10-python.tar.gz"], "nothing extracted"
    # the batches folder itself, and a folder one level above the one holding it
    np.testing.assert_array_equal(load_quiet(folder, "all")[0].images, from_dir.images)
    np.testing.assert_array_equal(load_quiet(tmp_path, "all")[0].images, from_dir.images)


def test_cache_is_searched_after_data_dir(tmp_path, batches):
    write_folder(tmp_path / "cache" / "cifar10", batches)
    data, _ = load_quiet(None, "test", download=False)
    assert data.source.kind == "cache"


def test_missing_batch_is_named(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    (folder / "data_batch_3").unlink()
    assert len(load_quiet(tmp_path, "test")[0][1]) == 4
    with pytest.raises(FileNotFoundError, match=r"missing batch file\(s\) \['data_batch_3'\]"):
        load_cifar10(tmp_path, "train")


def test_str_keys_and_protocol_5_are_read(tmp_path, batches):
    data, labels = batches["test_batch"]
    blob = dump({"data": data, "labels": labels.tolist()}, protocol=5)
    got_data, got_labels = read_batch(blob, "p5")
    np.testing.assert_array_equal(got_data, data)
    np.testing.assert_array_equal(got_labels, labels)


# ---------------------------------------------------------------- refusing what is not a batch file


class RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Evaluates:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload", [RunsCommand, Evaluates])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_without_running(tmp_path, batches, payload, protocol):
    folder = write_folder(tmp_path, batches)
    marker = tmp_path / "pwned"
    data, labels = batches["data_batch_2"]
    evil = {**batch_dict("data_batch_2", data, labels), b"batch_label": payload(marker)}
    (folder / "data_batch_2").write_bytes(dump(evil, protocol))
    name = r"posix\.system" if payload is RunsCommand else r"(__builtin__|builtins)\.eval"
    with pytest.raises(UnsafePickleError, match=rf"data_batch_2: refusing to unpickle: it asks for {name}"):
        load_cifar10(tmp_path, "train")
    assert not marker.exists()
    with pytest.raises(ValueError, match="refusing"):  # also a ValueError, for callers that catch those
        read_batch(folder / "data_batch_2")
    assert not marker.exists()


def test_codecs_encode_only_as_latin1(tmp_path):
    # what protocol 2 writes for b"x", with the encoding swapped for another codec
    blob = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="only latin-1"):
        read_batch(blob, "odd")
    assert (
        cifar10.RestrictedUnpickler(
            io.BytesIO(blob.replace(b"\x05\x00\x00\x00rot13", b"\x06\x00\x00\x00latin1"))
        ).load()
        == b"x"
    )


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda d: [d], r"expected a pickled dict, received list"),
        (lambda d: {k: v for k, v in d.items() if k != b"data"}, r"missing key\(s\) \[b'data'\]"),
        (
            lambda d: {**d, b"data": d[b"data"].astype(np.float32)},
            r"uint8 array of shape \(n, 3072\), received float32",
        ),
        (lambda d: {**d, b"data": d[b"data"][:, :1024]}, r"received uint8 array of shape \(4, 1024\)"),
        (lambda d: {**d, b"data": d[b"data"].tobytes()}, r"received bytes"),
        (lambda d: {**d, b"labels": d[b"labels"][:3]}, r"b'labels' must be 4 integers"),
        (lambda d: {**d, b"labels": [0.5] * 4}, r"b'labels' must be 4 integers"),
        (lambda d: {**d, b"labels": [0, 1, 2, 10]}, r"labels must be 0-9, received values 0..10"),
        (lambda d: {**d, b"filenames": []}, r"b'filenames' must be a list of 4 names .*, received 0 entries"),
        (lambda d: {**d, b"filenames": 4}, r"b'filenames' must be a list of 4 names .*, received int"),
        (lambda d: {1: 2, b"labels": d[b"labels"]}, r"missing key\(s\) \[b'data'\]; .*found 1, b'labels'$"),
        (lambda d: {**d, b"labels": ["cat"] * 4}, r"b'labels' must be 4 integers .*received <U3"),
        (lambda d: {**d, b"labels": [[1, 2]] * 4}, r"b'labels' must be 4 integers .*shape \(4, 2\)"),
        (lambda d: {**d, b"labels": [-1, 0, 1, 2]}, r"labels must be 0-9, received values -1..2"),
        (lambda d: {**d, b"data": d[b"data"].reshape(4, 3, 32, 32)}, r"received uint8 array of shape \(4, 3, 32, 32\)"),
        (lambda d: {b"fine_labels": d[b"labels"], b"data": d[b"data"]}, r"CIFAR-100"),
    ],
)
def test_wrong_structure_is_refused(tmp_path, batches, mangle, message):
    folder = write_folder(tmp_path, batches)
    data, labels = batches["test_batch"]
    (folder / "test_batch").write_bytes(dump(mangle(batch_dict("test_batch", data, labels))))
    with pytest.raises(ValueError, match=f"test_batch: .*{message}"):
        load_cifar10(tmp_path, "test")


@pytest.mark.parametrize("blob", [b"not a pickle at all", None])
def test_unreadable_file_is_refused(tmp_path, batches, blob):
    folder = write_folder(tmp_path, batches)
    if blob is None:
        blob = (folder / "test_batch").read_bytes()[:5000]
    (folder / "test_batch").write_bytes(blob)
    with pytest.raises(ValueError, match=r"test_batch: not a readable CIFAR-10 batch file"):
        load_cifar10(tmp_path, "test")


def test_truncated_archive_is_refused(tmp_path, batches):
    folder = write_folder(tmp_path / "src", batches)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz: corrupt or truncated archive"):
        load_cifar10(tmp_path / "a", "all", download=False)


# ---------------------------------------------------------------- offline with nothing


def test_offline_with_nothing_says_where_to_put_the_data(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(None, download=False)
    message = str(info.value)
    assert "\n" not in message and "download disabled" in message
    assert str(tmp_path / "cache" / "cifar10") in message
    assert "cifar-10-python.tar.gz" in message and "cifar-10-batches-py/" in message
    assert "--data-dir" in message and "TINYGAN_DATA" in message
    assert not (tmp_path / "cache").exists()


def test_unreachable_download_says_where_to_put_the_data(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/cifar-10-python.tar.gz"
    with pytest.raises(DatasetNotFoundError, match=r"(?s)download failed: .*Connection.*--data-dir"):
        load_cifar10(None, urls=[url], timeout=5)


# ---------------------------------------------------------------- the genuine partial set


def test_genuine_partial_set(shared_data):
    root = shared_data / "cifar10-partial"
    folder = root / "cifar-10-batches-py"
    assert hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest() == cifar10.CIFAR10_MD5["batches.meta"]
    (images, labels), message = load_quiet(root, "all")
    assert images.shape == (6 * 761, 32, 32, 3) and labels.shape == (6 * 761,)
    assert labels.min() == 0 and labels.max() == 9 and len(np.unique(labels)) == 10
    assert list(labels[:10]) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # data_batch_1's well-known first labels
    for name in ALL:
        assert f"{name}: 761 images" in message
    assert "partial/modified batch" in message
    train, _ = load_quiet(shared_data, "train")  # found one level down
    assert len(train.images) == 5 * 761
    np.testing.assert_array_equal(train.images, images[: 5 * 761])
    # the raw file, read the plain way, agrees with the loader's layout
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(images[:761], hwc(raw[b"data"]))


# ---------------------------------------------------------------- an explicit data dir is never replaced


def refusal(data_dir, **kwargs) -> str:
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(data_dir, urls=["http://127.0.0.1:9/never.tar.gz"], timeout=1, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "download" not in message, "a named folder is never replaced by a download"
    return message


@pytest.mark.parametrize("layout", ["missing", "empty", "other files", "a file"])
def test_data_dir_without_cifar_is_refused_even_with_a_cached_copy(tmp_path, batches, layout):
    write_folder(tmp_path / "cache" / "cifar10", batches)  # what a silent fallback would pick
    root = tmp_path / "data"
    if layout == "empty":
        root.mkdir()
    elif layout == "other files":
        (root / "cifar-10-batches").mkdir(parents=True)  # misspelt
        (root / "notes.txt").write_text("x")
    elif layout == "a file":
        root.write_bytes(b"not a tar")
    message = refusal(root)
    assert message.startswith(f"CIFAR-10: data dir {root} ")
    assert (
        "expected cifar-10-python.tar.gz, or a cifar-10-batches-py/ folder of the batch files data_batch_1" in message
    )
    found = {
        "missing": "does not exist",
        "empty": "holds nothing (an empty folder)",
        "other files": "holds cifar-10-batches/, notes.txt;",
        "a file": "is a file but not a readable tar archive",
    }[layout]
    assert found in message


def test_archive_file_itself_as_data_dir(tmp_path, batches):
    folder = write_folder(tmp_path / "src", batches)
    archive = tmp_path / "my-cifar.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    data, _ = load_quiet(archive, "test")
    assert data.source.kind == "local" and data.source.location == str(archive)
    np.testing.assert_array_equal(data.labels, batches["test_batch"][1])


def test_batches_folder_lacking_the_split_says_what_it_holds(tmp_path, batches):
    folder = write_folder(tmp_path, {"test_batch": batches["test_batch"]})
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, "train", download=False)
    assert str(info.value) == (
        f"{folder}: missing batch file(s) {TRAIN} for the requested split (found ['test_batch'])"
    )


@pytest.mark.parametrize(
    "meta, message",
    [
        ([1, 2], "batches.meta: expected a pickled dict, received list"),
        ({b"label_names": 7}, "batches.meta: label_names 7 differ from CIFAR-10's"),
        ({b"label_names": [b"cat"] * 10}, r"batches.meta: label_names \[b'cat'"),
    ],
)
def test_wrong_meta_is_refused(tmp_path, batches, meta, message):
    folder = write_folder(tmp_path, batches)
    (folder / "batches.meta").write_bytes(dump(meta))
    with pytest.raises(ValueError, match=message):
        load_cifar10(tmp_path, "test")


def test_archive_member_claiming_too_many_bytes_is_refused_before_reading(tmp_path, batches, monkeypatch):
    folder = write_folder(tmp_path / "src", batches)
    (tmp_path / "a").mkdir()
    with tarfile.open(tmp_path / "a" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    size = (folder / "test_batch").stat().st_size
    monkeypatch.setattr(cifar10, "MAX_BATCH_BYTES", size - 1)
    with pytest.raises(
        ValueError, match=rf"cifar-10-python\.tar\.gz: member cifar-10-batches-py/\w+ claims {size} bytes"
    ):
        load_cifar10(tmp_path / "a", "test")


def test_class_filter_that_keeps_nothing_is_refused(tmp_path, batches):
    only_cats = {name: (data[:1], np.full(1, 3, np.uint8)) for name, (data, _) in batches.items()}
    write_folder(tmp_path, only_cats)
    with pytest.raises(ValueError, match=r"cifar-10-batches-py: no images of class dog in test_batch"):
        load_cifar10(tmp_path, "test", classes="dog")


def test_batch_of_zero_images_is_refused(batches):
    data, labels = batches["test_batch"]
    blob = dump(batch_dict("test_batch", data[:0], labels[:0]), protocol=4)  # protocol 2 spells b"" as a call
    with pytest.raises(ValueError, match=r"^empty: b'data' holds 0 images; expected a uint8 array of shape"):
        read_batch(blob, "empty")
