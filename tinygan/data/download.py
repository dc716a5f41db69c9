"""Cache folder, checksums and mirror-by-mirror downloads shared by the dataset loaders.

Only the standard library (``urllib``) does the network work; ``tqdm`` draws a progress bar when the
server announces a size and stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DataIntegrityWarning",
    "DataSource",
    "DatasetNotFoundError",
    "DownloadError",
    "LoadedData",
    "cache_dir",
    "data_identity",
    "download",
    "folder_listing",
    "md5sum",
]

Verbose = Callable[[str], Any] | None

_CHUNK = 1 << 20
_SCHEMES = ("http", "https", "file")
_USER_AGENT = "tinygan/0.1 (+https://pypi.org/project/tinygan)"


class DownloadError(OSError):
    """Every mirror failed; ``attempts`` holds ``(url, what went wrong)`` for each one, in order."""

    def __init__(self, message: str, attempts: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.attempts = list(attempts)

    def summary(self) -> str:
        """The attempts on one line, for log messages."""
        return "; ".join(f"{url}: {reason}" for url, reason in self.attempts) or str(self)


class DatasetNotFoundError(FileNotFoundError):
    """The data set is neither on disk nor downloadable; the message says where to put it."""


class DataIntegrityWarning(UserWarning):
    """Files parse correctly but are not byte-identical to the official release (md5 differs)."""


@dataclass(frozen=True)
class DataSource:
    """Where a loader found its data.

    ``kind`` is one of ``"local"`` (the ``data_dir`` argument), ``"cache"`` (the cache folder, found there),
    ``"download"`` (fetched into the cache by this call) or ``"embedded"`` (shipped inside the package).
    """

    dataset: str
    kind: str
    location: str
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.dataset} from {self.kind} ({self.location})"
        return f"{text}: {self.note}" if self.note else text


class LoadedData(tuple):
    """An ``(images, labels)`` pair that also carries its :class:`DataSource` as ``.source``.

    It unpacks like a plain pair (``images, labels = load_mnist()``), so the source is there for
    whoever wants to log it and invisible to everyone else.
    """

    source: DataSource

    def __new__(cls, images: np.ndarray, labels: np.ndarray, source: DataSource) -> LoadedData:
        self = super().__new__(cls, (images, labels))
        self.source = source
        return self

    @property
    def images(self) -> np.ndarray:
        return self[0]

    @property
    def labels(self) -> np.ndarray:
        return self[1]


def data_identity(images: np.ndarray, source: DataSource | str) -> dict[str, Any]:
    """What a run records about its training data, so that a resume on other data can be told apart.

    Returns a JSON-ready dict: ``source`` (``str(source)``, e.g. "MNIST from local (/data/mnist)"),
    ``count`` (``len(images)``), ``shape`` (one image's shape), ``dtype``, and ``sha256``: the SHA-256 of
    the dtype name, the full shape and the array's bytes in C order, so the same pixels give the same
    digest whether they come from the gz files, the decompressed ones or the cache, and a different
    subset (``--limit``, a class), order, scaling or dtype gives another. Works on the uint8 arrays the
    loaders return and on the float arrays scaled for the GAN alike; hashes about 1 GB/s, without a copy
    when ``images`` is already C-contiguous.

    >>> data_identity(np.zeros((2, 28, 28), np.uint8), "MNIST from embedded (test set)")["count"]
    2
    """
    array = np.ascontiguousarray(images)
    if array.ndim < 1 or array.dtype.hasobject:
        raise ValueError(f"data_identity: expected an array of images, received {array.dtype} of shape {array.shape}")
    # native little/big endian would hash differently: fix the byte order first (a no-op on x86 and ARM)
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return {
        "source": str(source),
        "count": int(len(array)),
        "shape": [int(d) for d in array.shape[1:]],
        "dtype": str(array.dtype),
        "sha256": digest.hexdigest(),
    }


def cache_dir(subdir: str | None = None) -> Path:
    """The data cache folder: ``$TINYGAN_DATA`` if set, else ``~/.cache/tinygan`` (not created here)."""
    env = os.environ.get("TINYGAN_DATA")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "tinygan"
    return root / subdir if subdir else root


def folder_listing(folder: str | os.PathLike[str], limit: int = 8) -> str:
    """A folder's entries for an error message, on one line: the first ``limit`` names, then how many more."""
    try:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir())
    except OSError as exc:
        return f"nothing readable ({type(exc).__name__}: {exc.strerror or exc})"
    if not entries:
        return "nothing (an empty folder)"
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(entries[:limit]) + more


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file, read in chunks so that large archives do not fill memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    md5: str | None = None,
    timeout: float = 30.0,
    *,
    progress: bool = True,
    verbose: Verbose = None,
) -> Path:
    """Fetch ``dest`` from the first mirror in ``urls`` that delivers it intact, and return ``dest``.

    Each attempt streams into a temporary file beside ``dest`` and moves it into place with
    ``os.replace`` only once it is complete and (when ``md5`` is given) its md5 matches, so ``dest``
    is never a partial or corrupt file, even if the process dies or another one downloads the same file.
    A failed attempt (HTTP error, refused connection, timeout, short read, md5 mismatch) leaves nothing
    behind and moves on to the next mirror. ``timeout`` bounds each connect and each read, in seconds.

    Raises :class:`DownloadError` listing what each mirror said when none succeeds; when the failure
    was a checksum, the message names the file, the expected and the received md5.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError(f"download of {dest}: no URL given")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempts: list[tuple[str, str]] = []
    for url in urls:
        reason = _try_one(url, dest, md5, timeout, progress)
        if reason is None:
            if verbose is not None:
                verbose(f"downloaded {dest.name} from {url}")
            return dest
        attempts.append((url, reason))
    lines = "\n".join(f"  {url}: {reason}" for url, reason in attempts)
    raise DownloadError(f"could not download {dest.name} ({len(urls)} mirror(s) tried):\n{lines}", attempts)


def _try_one(url: str, dest: Path, md5: str | None, timeout: float, progress: bool) -> str | None:
    """One mirror: None on success (``dest`` in place), else why it failed, in a few words."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in _SCHEMES:
        return f"unsupported URL scheme {scheme!r} (use one of {', '.join(_SCHEMES)})"
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                total = _content_length(response)
                received_md5, size = _stream(response, out, total, progress, dest.name)
        if total is not None and size != total:
            return f"transfer cut short: {size} of {total} bytes"
        if md5 is not None and received_md5 != md5.lower():
            return f"md5 mismatch for {dest.name}: expected {md5.lower()}, received {received_md5}"
        os.replace(tmp, dest)
        return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"{type(exc.reason).__name__}: {exc.reason}" if isinstance(exc.reason, Exception) else str(exc.reason)
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    except Exception as exc:  # http.client errors, resets, a full disk: all mean "try the next mirror"
        return f"{type(exc).__name__}: {exc}"
    finally:
        tmp.unlink(missing_ok=True)


def _content_length(response: Any) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream(response: Any, out: Any, total: int | None, progress: bool, name: str) -> tuple[str, int]:
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    bar = None
    if progress and total:
        from tqdm import tqdm

        # disable=None: tqdm stays quiet when stderr is not a terminal (logs, CI, tests)
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=None, leave=False)
    try:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest(), size
