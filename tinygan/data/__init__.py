"""Data sets for the examples: MNIST and CIFAR-10 readers, downloads with md5, and the embedded default.

>>> from tinygan.data import load_mnist, mnist_for_gan, load_cifar10, cifar10_for_gan
>>> data = load_mnist(split="train")          # doctest: +SKIP
>>> images, labels = data; print(data.source)  # doctest: +SKIP

A run records what it trained on with :func:`data_identity` (source, image count, a SHA-256 of
the array), so that a resume on other data can be refused:

>>> from tinygan.data import data_identity
>>> identity = data_identity(images, data.source)   # doctest: +SKIP
>>> identity["count"], identity["sha256"][:12]      # doctest: +SKIP

An explicit ``data_dir`` is read and nowhere else: a folder that is misspelt, empty or lacks a file
raises :class:`DatasetNotFoundError` in one line (the folder, the files expected, what it holds). Only
without one do the loaders try the cache, a download and (MNIST) the embedded test set.

The downloader itself is :func:`tinygan.data.download.download`. It is not re-exported here because
a package attribute named ``download`` would hide the ``tinygan.data.download`` module.
"""

from tinygan.data.cifar10 import (
    CLASS_NAMES,
    RestrictedUnpickler,
    UnsafePickleError,
    cifar10_for_gan,
    load_cifar10,
    read_batch,
    scale_cifar10,
)
from tinygan.data.download import (
    DataIntegrityWarning,
    DatasetNotFoundError,
    DataSource,
    DownloadError,
    LoadedData,
    cache_dir,
    data_identity,
    md5sum,
)
from tinygan.data.mnist import (
    load_mnist,
    mnist_for_gan,
    read_idx,
    read_idx_images,
    read_idx_labels,
    scale_mnist,
)

__all__ = [
    "CLASS_NAMES",
    "DataIntegrityWarning",
    "DataSource",
    "DatasetNotFoundError",
    "DownloadError",
    "LoadedData",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "cache_dir",
    "cifar10_for_gan",
    "data_identity",
    "load_cifar10",
    "load_mnist",
    "md5sum",
    "mnist_for_gan",
    "read_batch",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "scale_cifar10",
    "scale_mnist",
]
