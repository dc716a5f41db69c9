"""Writers of small dataset files in the real formats, for tests that must not depend on downloads."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR_BATCHES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of uint8 ``array``, as the format defines it: big-endian magic (0x0800 + ndim unless
    given: 0x0803 images, 0x0801 labels), the sizes as int32, then the data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write :func:`idx_bytes` of ``array`` to ``path``, gzip-compressed unless ``compress`` is false."""
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def cifar_batch(name: str, data: np.ndarray, labels) -> dict:
    """A batch as the official files hold it: byte-string keys, uint8 rows of 3072, a list of ints."""
    return {
        b"batch_label": f"{name} of 5".encode(),
        b"labels": [int(v) for v in labels],
        b"data": data,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(data))],
    }


def write_cifar_batch(path: Path, data: np.ndarray, labels) -> Path:
    """A CIFAR-10 python batch file: a protocol-2 pickle of :func:`cifar_batch`, as the official files."""
    batch = cifar_batch(path.name, np.asarray(data, dtype=np.uint8), labels)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


def write_cifar_folder(root: Path, per_batch: int, rng: np.random.Generator) -> Path:
    """A cifar-10-batches-py folder with ``per_batch`` random images in each of the six batches."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k, name in enumerate(CIFAR_BATCHES):
        labels = [(k * per_batch + j) % 10 for j in range(per_batch)]
        write_cifar_batch(folder / name, rng.integers(0, 256, size=(per_batch, 3072)), labels)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_stroke_digits(folder: Path, train: int = 600, test: int = 100) -> Path:
    """Four MNIST IDX files of ``train`` + ``test`` images, each class a stroke at its own place (easy to
    classify, so a classifier and a GAN learn them in seconds)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 4 + label : 14 + label, 6 + label : 10 + label] = rng.integers(150, 256, size=(10, 4))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder
