"""CIFAR-10 (Krizhevsky, 2009), read from the official python version.

Reads ``cifar-10-python.tar.gz`` directly (members are read from the archive, nothing is extracted to
disk) or its extracted ``cifar-10-batches-py/`` folder. Each batch file is a pickled dict with byte-string
keys ``b'batch_label'``, ``b'labels'``, ``b'data'`` (uint8 ``(n, 3072)``: 1024 red, 1024 green, 1024 blue
values, each plane row-major 32x32) and ``b'filenames'``.

Unpickling can run arbitrary code, and a data folder is easy to tamper with, so the batch files are read
with :class:`RestrictedUnpickler`, which resolves only the few globals these files contain (numpy's array
reconstruction) and refuses everything else before it can be called.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

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
)
from tinygan.data.download import download as fetch  # the loaders' own `download` flag shadows the name

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URLS",
    "CLASS_NAMES",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "cifar10_for_gan",
    "class_indices",
    "load_cifar10",
    "read_batch",
    "scale_cifar10",
]

CLASS_NAMES: list[str] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
CIFAR10_URLS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
SPLITS = ("train", "test", "all")
# an official batch file holds 31 MB; an archive member claiming far more is damaged or hostile
MAX_BATCH_BYTES = 1 << 28


# ---------------------------------------------------------------- restricted unpickling


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a global outside the allow-list; nothing it asked for was called."""


def _resolve(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; resolve to the real object either way, so old (Python 2
    # era) and new pickles both load without touching numpy.core's deprecation shim
    import importlib

    for candidate in (module, module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to latin-1: how protocol-2 pickles written by Python 3 spell bytes."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed (only latin-1)")
    return codecs.encode(obj, "latin1", errors)


_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    # protocol-5 pickles of arrays
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10 batch files that resolves only what such files contain.

    Allowed: numpy's array reconstruction (``numpy[._]core.multiarray._reconstruct``,
    ``numpy[._]core.numeric._frombuffer``), ``numpy.ndarray``, ``numpy.dtype``, and ``_codecs.encode``
    restricted to latin-1 (how Python 3 writes bytes in protocol 2). Any other global (``os.system``,
    ``builtins.eval``, ``subprocess.Popen``, ...) raises :class:`UnsafePickleError` naming ``filename``
    before it is imported or called. Strings from Python 2 pickles stay ``bytes`` (``encoding="bytes"``).
    """

    def __init__(self, file: BinaryIO, filename: str = "<pickle>"):
        super().__init__(file, encoding="bytes")
        self.filename = filename

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        obj = _resolve(module, name) if (module, name) in _ARRAY_GLOBALS else None
        if obj is None:
            raise UnsafePickleError(
                f"{self.filename}: refusing to unpickle: it asks for {module}.{name}, which a CIFAR-10 batch "
                "file never contains (only numpy array reconstruction is allowed); the file is not a genuine "
                "batch file and may be malicious"
            )
        return obj


def _unpickle(data: bytes, filename: str) -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(data), filename).load()
    except UnsafePickleError as exc:
        if exc.args and str(exc.args[0]).startswith(filename):
            raise
        raise UnsafePickleError(f"{filename}: refusing to unpickle: {exc}") from exc
    except Exception as exc:  # truncated, not a pickle, numpy refusing the array state...
        raise ValueError(f"{filename}: not a readable CIFAR-10 batch file ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------- batch files


def read_batch(source: str | os.PathLike[str] | bytes, filename: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> ``(data uint8 (n, 3072), labels uint8 (n,))``.

    ``source`` is a path, or the file's bytes with ``filename`` to name it in messages.

    Unpickles with :class:`RestrictedUnpickler` and validates the structure (a dict with ``b'data'`` of
    shape ``(n, 3072)`` and dtype uint8, ``b'labels'`` of ``n`` integers 0-9, ``b'filenames'`` of ``n``
    names if present); a :class:`ValueError` names the file and what was wrong.
    """
    if isinstance(source, bytes):
        data, name = source, filename or "<bytes>"
    else:
        data, name = Path(source).read_bytes(), filename or str(source)
    return _parse_batch(_unpickle(data, name), name)


def _parse_batch(batch: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict):
        raise ValueError(f"{name}: expected a pickled dict, received {type(batch).__name__}")
    # a batch re-saved from Python 3 may have str keys; the official files have bytes
    batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
    keys = sorted(map(repr, batch))  # keys of mixed types do not sort; their reprs do
    if b"fine_labels" in batch and b"labels" not in batch:
        raise ValueError(f"{name}: this is a CIFAR-100 file (b'fine_labels'), expected CIFAR-10")
    missing = [key for key in (b"data", b"labels") if key not in batch]
    if missing:
        raise ValueError(
            f"{name}: missing key(s) {missing}; expected b'data' and b'labels', found {', '.join(keys) or 'none'}"
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{name}: b'data' must be a uint8 array of shape (n, 3072), received {got}")
    n = len(data)
    if n == 0:
        raise ValueError(f"{name}: b'data' holds 0 images; expected a uint8 array of shape (n, 3072), n >= 1")
    try:
        labels = np.asarray(batch[b"labels"])
    except Exception as exc:
        raise ValueError(f"{name}: b'labels' is not a list of integers ({exc})") from exc
    if labels.ndim != 1 or len(labels) != n or (n and labels.dtype.kind not in "iu"):
        raise ValueError(
            f"{name}: b'labels' must be {n} integers (one per row of b'data'), "
            f"received {labels.dtype} of shape {labels.shape}"
        )
    if n and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{name}: labels must be 0-9, received values {int(labels.min())}..{int(labels.max())}")
    filenames = batch.get(b"filenames")
    if filenames is not None and (not isinstance(filenames, list | tuple | np.ndarray) or len(filenames) != n):
        got = (
            f"{len(filenames)} entries"
            if isinstance(filenames, list | tuple | np.ndarray)
            else type(filenames).__name__
        )
        raise ValueError(f"{name}: b'filenames' must be a list of {n} names (one per image), received {got}")
    return data, labels.astype(np.uint8)


def _read_meta(data: bytes, name: str) -> None:
    meta = _unpickle(data, name)
    if not isinstance(meta, dict):
        raise ValueError(f"{name}: expected a pickled dict, received {type(meta).__name__}")
    names = meta.get(b"label_names", meta.get("label_names"))
    if names is None:
        return
    decoded = (
        [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names] if isinstance(names, list) else names
    )
    if decoded != CLASS_NAMES:
        raise ValueError(f"{name}: label_names {str(names)[:200]} differ from CIFAR-10's {CLASS_NAMES}")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------- finding the data


def _batches_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` that look like ``cifar-10-batches-py`` (root itself, its child, a grandchild)."""
    found = [root] if _is_batches_dir(root) else []
    found += [root / BATCHES_DIR] if _is_batches_dir(root / BATCHES_DIR) else []
    if root.is_dir():
        found += sorted(p for p in root.glob(f"*/{BATCHES_DIR}") if _is_batches_dir(p))
    return found


def _is_batches_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in (*TRAIN_BATCHES, *TEST_BATCHES))


def _locate(root: Path) -> Path | None:
    """The batches folder or archive under ``root``, folder first (no decompression needed)."""
    dirs = _batches_dirs(root)
    if dirs:
        return dirs[0]
    archive = root / ARCHIVE_NAME
    return archive if archive.is_file() else None


def _iter_dir(folder: Path, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        present = sorted(name for name in (*TRAIN_BATCHES, *TEST_BATCHES) if (folder / name).is_file())
        raise DatasetNotFoundError(
            f"{folder}: missing batch file(s) {missing} for the requested split (found {present or 'none'})"
        )
    for name in names:
        yield name, (folder / name).read_bytes()
    if (folder / "batches.meta").is_file():
        yield "batches.meta", (folder / "batches.meta").read_bytes()


def _iter_archive(archive: Path, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """Batch files straight from the tar.gz, in archive order, one at a time (no extraction to disk)."""
    wanted = {*names, "batches.meta"}
    seen = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in seen:
                    if member.size > MAX_BATCH_BYTES:
                        raise ValueError(
                            f"{archive}: member {member.name} claims {member.size} bytes; a CIFAR-10 batch file "
                            f"holds about 31 MB (at most {MAX_BATCH_BYTES} accepted)"
                        )
                    seen.add(base)
                    f = tar.extractfile(member)
                    assert f is not None
                    yield base, f.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{archive}: corrupt or truncated archive ({type(exc).__name__}: {exc})") from exc
    missing = [name for name in names if name not in seen]
    if missing:
        raise ValueError(f"{archive}: archive lacks batch file(s) {missing}")


def _split_batches(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise ValueError(f"CIFAR-10 split must be one of {SPLITS}, got {split!r}")
    return {"train": TRAIN_BATCHES, "test": TEST_BATCHES, "all": TRAIN_BATCHES + TEST_BATCHES}[split]


def class_indices(classes: str | int | Sequence[str | int] | None) -> list[int] | None:
    """Class names or indices -> sorted indices 0-9 (None stays None: every class)."""
    if classes is None:
        return None
    items = [classes] if isinstance(classes, str | int) else list(classes)
    out = set()
    for item in items:
        if isinstance(item, str):
            if item not in CLASS_NAMES:
                raise ValueError(f"unknown CIFAR-10 class {item!r}; choose from {CLASS_NAMES}")
            out.add(CLASS_NAMES.index(item))
        elif isinstance(item, int | np.integer) and 0 <= item <= 9:
            out.add(int(item))
        else:
            raise ValueError(f"CIFAR-10 class must be a name in {CLASS_NAMES} or an int 0-9, got {item!r}")
    return sorted(out)


def _not_found(searched: Sequence[Path], reason: str) -> DatasetNotFoundError:
    cache = cache_dir("cifar10")
    looked = ", ".join(str(p) for p in searched)
    return DatasetNotFoundError(
        f"CIFAR-10 not found ({reason}); looked in {looked}. "
        f"Put the official archive {ARCHIVE_NAME} ({CIFAR10_URLS[0]}, md5 {ARCHIVE_MD5}) or its extracted "
        f"folder {BATCHES_DIR}/ into {cache} (the cache folder; set TINYGAN_DATA to move it), or into any "
        f"folder DIR and pass --data-dir DIR to the example (data_dir=DIR to load_cifar10)."
    )


def _not_in_data_dir(root: Path) -> DatasetNotFoundError:
    """One line: which folder, what a CIFAR-10 folder holds, and what this one holds instead."""
    expected = (
        f"{ARCHIVE_NAME}, or a {BATCHES_DIR}/ folder of the batch files {', '.join(TRAIN_BATCHES + TEST_BATCHES)} "
        f"(and batches.meta), in it or one level below it, or that folder itself"
    )
    if not root.exists():
        state = "does not exist"
    elif not root.is_dir():
        state = "is a file but not a readable tar archive"
    else:
        state = f"holds {folder_listing(root)}"
    return DatasetNotFoundError(f"CIFAR-10: data dir {root} {state}; expected {expected}")


# ---------------------------------------------------------------- loading


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "train",
    classes: str | int | Sequence[str | int] | None = None,
    download: bool = True,
    verbose: Verbose = print,
    *,
    urls: Sequence[str] | None = None,
    timeout: float = 60.0,
) -> LoadedData:
    """CIFAR-10 images and labels: ``(images uint8 (n, 32, 32, 3) HWC, labels uint8 (n,))``.

    ``split``: ``"train"`` (the five data batches), ``"test"`` or ``"all"`` (train then test).
    ``classes``: None for all, or class names / indices (see :data:`CLASS_NAMES`) to keep.
    With ``data_dir`` (a folder holding ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``, one level
    of subfolders holding ``cifar-10-batches-py/``, the batches folder itself, or the archive file), reads
    from there and nowhere else: when it holds no CIFAR-10 data, raises :class:`DatasetNotFoundError` in one
    line naming the folder, what was expected and what it holds. Without ``data_dir``, looks in the cache
    folder; when nothing is there and ``download`` is true, downloads the archive (md5-checked) into the
    cache. Otherwise raises :class:`DatasetNotFoundError` saying where to put the data.

    Files whose md5 differs from the official release but which parse correctly (e.g. a partial copy) are
    used, with one :class:`DataIntegrityWarning` per call listing them. The result unpacks as
    ``images, labels`` and carries ``.source``.
    """
    names = _split_batches(split)
    keep = class_indices(classes)
    cache = cache_dir("cifar10")
    if data_dir is not None:
        # the user named a folder: read it or say what is wrong with it, never switch to other data
        root = Path(data_dir).expanduser()
        kind, location = "local", (root if root.is_file() and tarfile.is_tarfile(root) else _locate(root))
        if location is None:
            raise _not_in_data_dir(root)
    else:
        kind, location = "cache", _locate(cache)
    if location is None:
        if not download:
            raise _not_found([cache], "download disabled")
        try:
            location = fetch(list(urls or CIFAR10_URLS), cache / ARCHIVE_NAME, ARCHIVE_MD5, timeout)
        except DownloadError as exc:
            raise _not_found([cache], f"download failed: {exc.summary()}") from exc
        kind = "download"
        if verbose is not None:
            verbose(f"CIFAR-10: downloaded {ARCHIVE_NAME} into {cache}")

    members = _iter_dir(location, names) if location.is_dir() else _iter_archive(location, names)
    return _assemble(members, names, keep, DataSource("CIFAR-10", kind, str(location)))


def _assemble(
    members: Iterator[tuple[str, bytes]], names: Sequence[str], keep: list[int] | None, source: DataSource
) -> LoadedData:
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    modified: list[str] = []
    for name, blob in members:
        if name == "batches.meta":
            _read_meta(blob, f"{source.location}/{name}")
            continue
        data, labels = _parse_batch(_unpickle(blob, f"{source.location}/{name}"), f"{source.location}/{name}")
        if _md5(blob) != CIFAR10_MD5[name]:
            modified.append(f"{name}: {len(data)} images")
        if keep is not None:
            mask = np.isin(labels, keep)
            data, labels = data[mask], labels[mask]
        parts[name] = data, labels
    data = np.concatenate([parts[name][0] for name in names])
    labels = np.concatenate([parts[name][1] for name in names])
    if len(data) == 0:  # only a class filter can get here: every batch holds at least one image
        wanted = [CLASS_NAMES[k] for k in keep or []]
        raise ValueError(f"{source.location}: no images of class {', '.join(wanted)} in {', '.join(names)}")
    if modified:
        warnings.warn(
            f"CIFAR-10 in {source.location}: partial/modified batch: {', '.join(modified)} "
            "(md5 differs from the official release; the files parse correctly and are used as they are)",
            DataIntegrityWarning,
            stacklevel=3,
        )
        source = DataSource(source.dataset, source.kind, source.location, f"partial/modified: {', '.join(modified)}")
    # rows are 3 planes of 32x32 (R, G, B): split the planes, then move channels last
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return LoadedData(images, labels, source)


# ---------------------------------------------------------------- for the GAN


def scale_cifar10(images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """uint8 HWC ``(n, 32, 32, 3)`` -> NCHW ``(n, 3, 32, 32)`` floats in [-1, 1]."""
    x = images.transpose(0, 3, 1, 2).astype(dtype)
    return np.ascontiguousarray(x / x.dtype.type(127.5) - x.dtype.type(1))


def cifar10_for_gan(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "train",
    class_name: str | int | None = None,
    download: bool = True,
    verbose: Verbose = print,
    *,
    dtype: np.dtype | type = np.float32,
    urls: Sequence[str] | None = None,
) -> np.ndarray:
    """CIFAR-10 images as float32 NCHW ``(n, 3, 32, 32)`` in [-1, 1], optionally of one class only.

    Loads through :func:`load_cifar10`; to log where the data came from, call :func:`load_cifar10` and
    :func:`scale_cifar10` yourself and read ``.source``.
    """
    images, _ = load_cifar10(data_dir, split, class_name, download, verbose, urls=urls)
    return scale_cifar10(images, dtype)
