"""Recycled memory for the CPU kernels' large outputs: a fresh array's pages cost more than the pass that fills it.

glibc serves a request of 32 MiB or more (less, before its threshold adapts) with a fresh ``mmap`` and returns
the pages to the system on ``free``. Every training step then asks for the same large arrays again (the
discriminator's activations and gradients at 256 images are 34 and 67 MB): nine of them, 400 MB of
first-touch page faults per DCGAN step on the 2-core machine, measured with ``strace``. A fault-in costs 13 to
226 ms a step (more when the kernel compacts memory for a huge page), and writing an array whose pages are
already mapped costs about a tenth of that (``bench/results/cpu-side-by-side-2026-12-02.md``).

``empty(shape, dtype)`` is ``np.empty`` for small arrays. A large one is carved from a block kept here, reused
once nothing refers to it any more. Views of an array share their memory owner, so the block's reference count
says exactly when the last array or view made from it is gone: a block is reused only then, and what a caller
holds is never overwritten. To the caller the array is an ordinary new array; the kernels stay pure (arrays
in, arrays out). This is the CPU counterpart of a GPU framework's caching allocator, kept inside tinygan's
kernels: the host process's allocator (``MALLOC_MMAP_THRESHOLD_`` and the like) is not tinygan's to set.

Blocks that no array uses are kept up to ``IDLE_BYTES`` in all; past that the oldest idle ones are freed.
``release()`` frees every idle block now.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np

__all__ = ["empty", "release", "held_bytes"]

# Below this NumPy's own allocation is used: glibc's heap reuses freed memory of these sizes without faults.
MIN_BYTES = 4 << 20
# Idle blocks kept for reuse, in bytes, before the oldest are freed. The DCGAN step at batch 128 settles at 20
# blocks, 0.32 GB in all, a third of them in use between steps (measured).
IDLE_BYTES = 1 << 30

_lock = threading.Lock()
_blocks: list[np.ndarray] = []  # oldest first; each a 1-D uint8 array that owns its memory


def _new_lock_after_fork() -> None:
    """A child forked while another thread held the lock would wait on it forever: it starts with a free one."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _refcounts() -> list[int]:
    """Each block's reference count, counted the same way every time (so that one calibration holds)."""
    return [sys.getrefcount(block) for block in _blocks]


# What _refcounts says of a block that only the list holds, measured once rather than assumed (the count of
# temporary references differs between Python versions).
_blocks.append(np.empty(1, np.uint8))
_IDLE_REFS = _refcounts()[0]
_blocks.clear()


def empty(shape: tuple[int, ...] | int, dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array, like ``np.empty``; a large one reuses a block that no array holds."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    with _lock:
        counts = _refcounts()
        for i, block in enumerate(_blocks):
            if block.nbytes == nbytes and counts[i] <= _IDLE_REFS:
                return block.view(dtype).reshape(shape)
        _trim(IDLE_BYTES - nbytes, counts)
        block = np.empty(nbytes, np.uint8)
        _blocks.append(block)
        return block.view(dtype).reshape(shape)


def _trim(keep: int, counts: list[int]) -> None:
    """Free the oldest idle blocks until at most ``keep`` bytes of idle blocks remain (lock held)."""
    idle = [i for i, count in enumerate(counts) if count <= _IDLE_REFS]
    total = sum(_blocks[i].nbytes for i in idle)
    drop = set()
    for i in idle:
        if total <= max(keep, 0):
            break
        total -= _blocks[i].nbytes
        drop.add(i)
    if drop:
        _blocks[:] = [block for i, block in enumerate(_blocks) if i not in drop]


def release() -> None:
    """Free every block that no array uses (arrays still in use keep theirs)."""
    with _lock:
        _trim(0, _refcounts())


def held_bytes() -> tuple[int, int]:
    """(bytes in blocks some array uses, bytes in idle blocks)."""
    with _lock:
        counts = _refcounts()
        idle = sum(block.nbytes for block, count in zip(_blocks, counts) if count <= _IDLE_REFS)
        return sum(block.nbytes for block in _blocks) - idle, idle
