"""Where Numba keeps the compiled CPU kernels: the user's cache, never inside the installed package.

Numba's default (``cache=True``) writes next to the source, into ``kernels/cpu/__pycache__``. For an
installed tinygan that is ``site-packages/tinygan/kernels/cpu/__pycache__``: pip's uninstall does not
know those files and leaves the folder behind, and a later ``pip install -e .`` then finds it first and
imports it as an empty namespace package (``tinygan.kernels.cpu has no attribute dense_forward``). A
read-only install could not hold them at all.

So while this package's modules are imported (the moment Numba picks a cache folder for each
``@njit(cache=True)`` function), Numba's cache folder is pointed at :func:`cache_dir`, then restored:
the user's own Numba functions keep Numba's normal behaviour. ``NUMBA_CACHE_DIR``, when set, wins.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numba


def cache_dir() -> Path | None:
    """The folder for tinygan's compiled kernels, or None when Numba's own setting applies.

    ``$NUMBA_CACHE_DIR`` if set (Numba reads it itself: None here); else
    ``$XDG_CACHE_HOME/tinygan/numba`` or ``~/.cache/tinygan/numba``; if that cannot be created or
    written (a read-only home), a per-user folder in the temporary directory.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    for folder in (Path(base) / "tinygan" / "numba", Path(tempfile.gettempdir()) / f"tinygan-numba-{uid}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None  # nowhere writable: Numba falls back to its own locators (or compiles without a cache)


@contextlib.contextmanager
def kernel_cache() -> Iterator[None]:
    """Point Numba's cache at :func:`cache_dir` for the ``@njit(cache=True)`` decorations inside."""
    folder = cache_dir()
    if folder is None:
        yield
        return
    config = numba.config
    saved = config.CACHE_DIR
    config.CACHE_DIR = str(folder)
    try:
        yield
    finally:
        config.CACHE_DIR = saved
