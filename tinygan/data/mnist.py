"""MNIST (LeCun, Cortes, Burges): IDX reader, loader with mirrors, md5 and cache, and the embedded default.

Given a ``data_dir``, the loader reads the four standard files from it (or its ``mnist/`` or ``MNIST/raw/``
subfolder) and nowhere else: a folder that is misspelt, empty or lacks a file is an error saying what it
holds, never a silent switch to other data. Without one it looks in the cache folder (see
:func:`tinygan.data.download.cache_dir`); when the files are missing there and downloading is allowed it
fetches them from several public mirrors in turn, checking the published md5s. When that is impossible
(offline, download disabled) it falls back to the genuine MNIST *test* set that ships inside the package
(1.6 MB), and says so in one line.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import os
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tinygan.data.download import (
    DataIntegrityWarning,
    DatasetNotFoundError,
    DataSource,
    DownloadError,
    LoadedData,
    Verbose,
    cache_dir,
    folder_listing,
    md5sum,
)
from tinygan.data.download import download as fetch  # the loaders' own `download` flag shadows the name

__all__ = [
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "load_mnist",
    "mnist_for_gan",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "scale_mnist",
]

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# (images, labels) per split, as published
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

SPLITS = ("all", "train", "test")
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801

# IDX type byte -> big-endian dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# MNIST's largest file holds 47 MB; a header calling for more than this is damaged, not data
MAX_IDX_BYTES = 1 << 31


# ---------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (told apart by the gzip magic bytes, not the name).

    Checks the magic number (against ``expected_magic`` when given), that the payload holds exactly
    the bytes the header's dimensions call for, and raises :class:`ValueError` naming the file, what
    was expected and what was found otherwise (also for a corrupt or truncated gzip stream). A gzip
    stream is decompressed only as far as the header's dimensions call for (plus one byte, to see
    trailing data), so a small file that inflates to gigabytes is refused, not unpacked; headers that
    call for more than :data:`MAX_IDX_BYTES` are refused too. Returns a native-endian array of the
    header's shape.
    """
    path = Path(path)
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as f:
            payload, shape, dtype = _read_idx_stream(f, path, expected_magic)
    except (OSError, EOFError, zlib.error) as exc:
        if not compressed:
            raise
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({type(exc).__name__}: {exc})") from exc
    # astype copies: frombuffer over bytes is read-only, and callers may want to normalise in place
    return payload.reshape(shape).astype(dtype.newbyteorder("="))


def _read_idx_stream(
    f: BinaryIO, path: Path, expected_magic: int | None
) -> tuple[np.ndarray, tuple[int, ...], np.dtype]:
    """Header, then exactly the payload it announces: ``(flat payload, shape, big-endian dtype)``."""
    head = f.read(4)
    if len(head) < 4:
        raise ValueError(f"{path}: not an IDX file: expected a 4-byte magic number, file holds {len(head)} bytes")
    magic = int.from_bytes(head, "big")
    type_code, ndim = head[2], head[3]
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: wrong IDX magic number: expected 0x{expected_magic:08X}, received 0x{magic:08X}")
    if head[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file: magic number 0x{magic:08X} is not 0x0000TTDD")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header: expected {4 + 4 * ndim} bytes for {ndim} dims, received {4 + len(dims)}"
        )
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise ValueError(
            f"{path}: IDX header dims {shape} call for {expected} bytes of data, more than the "
            f"{MAX_IDX_BYTES} this reader accepts (a damaged header?)"
        )
    payload = f.read(expected + 1)  # one byte more: trailing data means the header is wrong
    received = len(payload)
    if received != expected:
        what = "truncated" if received < expected else "trailing bytes after"
        shown = received if received < expected else f"more than {expected}"
        raise ValueError(
            f"{path}: {what} IDX payload: dims {shape} call for {expected} bytes of data, received {shown}"
        )
    return np.frombuffer(payload, dtype=dtype), shape, dtype


def read_idx_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Images from an IDX3 file (magic 0x00000803): uint8 ``(n, rows, cols)``."""
    images = read_idx(path, IMAGE_MAGIC)
    if images.ndim != 3:
        raise ValueError(f"{path}: expected 3 dims (n, rows, cols), received {images.ndim}: {images.shape}")
    return images


def read_idx_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Labels from an IDX1 file (magic 0x00000801): uint8 ``(n,)``."""
    labels = read_idx(path, LABEL_MAGIC)
    if labels.ndim != 1:
        raise ValueError(f"{path}: expected 1 dim (n,), received {labels.ndim}: {labels.shape}")
    return labels


# ---------------------------------------------------------------- finding the files


def _variants(name: str) -> tuple[str, ...]:
    """Names the same file goes by: as published, decompressed, and the dotted spelling some mirrors use."""
    plain = name.removesuffix(".gz")
    dotted = plain.replace("-idx", ".idx")
    return (name, plain, dotted, dotted + ".gz")


def _find(folder: Path, name: str) -> Path | None:
    for candidate in _variants(name):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _candidate_dirs(data_dir: str | os.PathLike[str]) -> list[Path]:
    root = Path(data_dir).expanduser()
    return [root, root / "mnist", root / "MNIST" / "raw"]


def _not_in_data_dir(root: Path, names: list[str], split: str) -> str:
    """One line: which folder, the files the split needs, and what the folder (or its subfolders) holds."""
    expected = ", ".join(names) + " (gzip-compressed or not, also with '.idx' for '-idx')"
    what = "MNIST" if split == "all" else f"the MNIST {split} split"
    where = f"{root} or its mnist/ or MNIST/raw/ subfolder"
    if not root.exists():
        return f"MNIST: data dir {root} does not exist; expected {expected} there"
    if not root.is_dir():
        return f"MNIST: data dir {root} is a file, not a folder; expected a folder holding {expected}"
    # report the candidate folder that holds the most of the files: that is the one the user meant
    best = max(_candidate_dirs(root), key=lambda d: sum(_find(d, n) is not None for n in names))
    present = [p.name for n in names if (p := _find(best, n)) is not None]
    if present:
        missing = [n for n in names if _find(best, n) is None]
        return (
            f"MNIST: data dir {best} lacks {', '.join(missing)} for {what} "
            f"(found {', '.join(present)}); expected {expected}"
        )
    return f"MNIST: data dir {root} holds none of the files for {what}: expected {expected} in {where}; found " + (
        folder_listing(root)
    )


def _split_names(split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"MNIST split must be one of {SPLITS}, got {split!r}")
    parts = ["train", "test"] if split == "all" else [split]
    return [name for part in parts for name in MNIST_FILES[part]]


def _embedded_dir() -> Path:
    return Path(str(importlib.resources.files("tinygan.data") / "embedded"))


# ---------------------------------------------------------------- loading


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "all",
    download: bool = True,
    verbose: Verbose = print,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> LoadedData:
    """MNIST images and labels: ``(images uint8 (n, 28, 28), labels uint8 (n,))``.

    ``split``: ``"train"`` (60000), ``"test"`` (10000) or ``"all"`` (train then test, 70000).
    With ``data_dir``, reads from that folder (or its ``mnist/``, ``MNIST/raw/`` subfolder: the first that
    holds every file the split needs) and nowhere else; when none does, raises
    :class:`DatasetNotFoundError` in one line naming the folder, the files expected and what it holds.
    Without ``data_dir``, looks in the cache folder; otherwise, when ``download`` is true, the missing
    files are fetched into the cache from ``mirrors`` (default :data:`MNIST_MIRRORS`, tried in turn,
    md5-checked). If no files can be had, returns the embedded MNIST test set (10000 images, whatever
    the split) and says so in one line through ``verbose`` (None: silent).

    The result unpacks as ``images, labels``; ``.source`` (a :class:`DataSource`) tells where it came from.
    """
    names = _split_names(split)
    if data_dir is not None:
        # the user named a folder: read it or say what is wrong with it, never switch to other data
        for folder in _candidate_dirs(data_dir):
            found = [_find(folder, name) for name in names]
            if all(found):
                return _load(found, split, DataSource("MNIST", "local", str(folder)))
        raise DatasetNotFoundError(_not_in_data_dir(Path(data_dir).expanduser(), names, split))

    searched = [cache_dir("mnist")]
    found = [_find(searched[0], name) for name in names]
    if all(found):
        return _load(found, split, DataSource("MNIST", "cache", str(searched[0])))

    where = ", ".join(str(d) for d in searched)
    if not download:
        reason = f"no MNIST files in {where} and download disabled"
    else:
        try:
            paths = _download(names, mirrors or MNIST_MIRRORS, timeout, verbose)
        except DownloadError as exc:
            reason = f"no MNIST files in {where} and download failed ({exc.summary()})"
        except OSError as exc:  # e.g. a cache folder that cannot be created
            reason = f"no MNIST files in {where} and download failed ({type(exc).__name__}: {exc})"
        else:
            return _load(paths, split, DataSource("MNIST", "download", str(cache_dir("mnist"))))

    embedded = _embedded_dir()
    if verbose is not None:
        verbose(f"MNIST: {reason}; using the embedded MNIST test set (10000 images) shipped in {embedded}")
    paths = [embedded / name for name in MNIST_FILES["test"]]
    for path in paths:
        if md5sum(path) != MNIST_MD5[path.name]:
            raise ValueError(f"{path}: embedded file damaged (md5 differs from the published one); reinstall tinygan")
    return _load(paths, "test", DataSource("MNIST", "embedded", str(embedded), note=f"test set only ({reason})"))


def _download(names: list[str], mirrors: Sequence[str], timeout: float, verbose: Verbose) -> list[Path]:
    folder = cache_dir("mnist")
    paths = []
    for name in names:
        path = _find(folder, name)
        if path is None:
            urls = [mirror.rstrip("/") + "/" + name for mirror in mirrors]
            path = fetch(urls, folder / name, MNIST_MD5[name], timeout, verbose=verbose)
        paths.append(path)
    return paths


def _load(paths: Sequence[Path | None], split: str, source: DataSource) -> LoadedData:
    images_parts, labels_parts = [], []
    for image_path, label_path in zip(paths[0::2], paths[1::2]):
        assert image_path is not None and label_path is not None
        images = read_idx_images(image_path)
        labels = read_idx_labels(label_path)
        if len(images) == 0:
            raise ValueError(f"{image_path}: expected MNIST images, the file holds 0 (header dims {images.shape})")
        if images.shape[1:] != (28, 28):
            raise ValueError(f"{image_path}: expected 28x28 MNIST images, received {images.shape[1:]}")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise ValueError(f"{image_path}, {label_path}: expected uint8 data, received {images.dtype}/{labels.dtype}")
        if len(images) != len(labels):
            raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{label_path}: labels must be digits 0-9, found {int(labels.max())}")
        images_parts.append(images)
        labels_parts.append(labels)
    _warn_if_modified([p for p in paths if p is not None])
    if len(images_parts) == 1:
        return LoadedData(images_parts[0], labels_parts[0], source)
    return LoadedData(np.concatenate(images_parts), np.concatenate(labels_parts), source)


def _warn_if_modified(paths: Sequence[Path]) -> None:
    """A re-compressed or edited copy still loads since it parses; only say, once, that it is not the original."""
    # decompressed or renamed files have no published md5 to compare with
    modified = [
        f"{path} (md5 {received}, published {MNIST_MD5[path.name]})"
        for path in paths
        if path.name in MNIST_MD5 and (received := md5sum(path)) != MNIST_MD5[path.name]
    ]
    if modified:
        warnings.warn(
            f"MNIST: md5 differs from the published one for {', '.join(modified)}; using the files since they parse",
            DataIntegrityWarning,
            stacklevel=4,
        )


# ---------------------------------------------------------------- for the GAN


def scale_mnist(images: np.ndarray, scale: str = "tanh", dtype: np.dtype | type = np.float32) -> np.ndarray:
    """uint8 ``(n, 28, 28)`` -> flat ``(n, 784)`` floats in [0, 1] (``"01"``) or [-1, 1] (``"tanh"``)."""
    _check_scale(scale)
    flat = images.reshape(len(images), -1).astype(dtype)
    # scalars of the array's own type, so float32 stays float32
    if scale == "01":
        return flat / flat.dtype.type(255)
    return flat / flat.dtype.type(127.5) - flat.dtype.type(1)


def _check_scale(scale: str) -> None:
    if scale not in ("01", "tanh"):
        raise ValueError(f"scale must be '01' or 'tanh', got {scale!r}")


def mnist_for_gan(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "all",
    scale: str = "tanh",
    download: bool = True,
    verbose: Verbose = print,
    *,
    dtype: np.dtype | type = np.float32,
    mirrors: Sequence[str] | None = None,
) -> np.ndarray:
    """MNIST images as flat ``(n, 784)`` float32 rows in [0, 1] (``scale="01"``) or [-1, 1] (``"tanh"``).

    Loads through :func:`load_mnist` (same search, download and fallback); to log where the data came
    from, call :func:`load_mnist` and :func:`scale_mnist` yourself and read ``.source``.
    """
    _check_scale(scale)  # before a possibly long load
    images, _ = load_mnist(data_dir, split, download, verbose, mirrors=mirrors)
    return scale_mnist(images, scale, dtype)
