"""Exponential moving average of parameters on the GPU (ema.cu), in place, for a whole model in one
launch: same name, signature and equations as tinygan.kernels.reference.ema::

    ema = d ema + (1 - d) param,   d = min(decay, (1 + t) / (10 + t))   (t = num_updates; None: d = decay)

``num_updates`` may also be a counter in device memory (``tinygan.kernels.gpu.adam.device_step``,
holding t): the launch then reads t, warms the decay up on the device and (with ``advance``) stores
t + 1, so that a captured CUDA graph replays successive updates rather than update t again. The
pointer tables are cached and pinned as adam_update_multi's are (same helpers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cupy
import numpy as np

from ..reference.ema import check_ema_args, ema_decay
from ._common import THREADS, CudaModule, ctype_of
from .adam import _grid, _table

__all__ = ["ema_decay", "ema_update_multi"]

_MOD = CudaModule("ema.cu", templates=("ema_update_multi", "ema_update_multi_device_count"))


def ema_update_multi(
    ema_params: Sequence[cupy.ndarray],
    params: Sequence[cupy.ndarray],
    decay: float,
    num_updates: Any = None,
    advance: bool = True,
) -> None:
    """Move every ``ema_params[i]`` towards ``params[i]`` in place (all CuPy arrays of one dtype)."""
    op = "ema_update_multi"
    ema_params, params = list(ema_params), list(params)
    check_ema_args(op, ema_params, params)
    on_device = isinstance(num_updates, cupy.ndarray)
    if on_device and (
        num_updates.dtype != np.uint64 or num_updates.shape != (2,) or not num_updates.flags.c_contiguous
    ):
        raise ValueError(f"{op}: a device count must be a contiguous uint64 array of shape (2,) (see adam.device_step)")
    if not ema_params:
        return
    first = ema_params[0]
    groups, sizes, keep = [], [], []
    for i, (e, p) in enumerate(zip(ema_params, params)):
        for name, arr in ((f"ema_params[{i}]", e), (f"params[{i}]", p)):
            if not isinstance(arr, cupy.ndarray):
                raise TypeError(f"tinygan.kernels.gpu.{op}: {name} must be a CuPy array, received {type(arr).__name__}")
        if e.dtype != first.dtype:
            raise TypeError(f"{op}: ema_params[{i}] has dtype {e.dtype}, expected {first.dtype} like ema_params[0]")
        if not e.flags.c_contiguous:
            raise ValueError(f"{op}: ema_params[{i}] is updated in place and must be C-contiguous")
        if not p.flags.c_contiguous:
            # A copy has a new address every call: its table is rebuilt each time (and cannot be captured).
            p = cupy.ascontiguousarray(p)
            keep.append(p)
        groups.append((e.data.ptr, p.data.ptr))
        sizes.append(e.size)
    ctype_of(first.dtype)
    tables = _table(groups, sizes)
    grid, n_tensors = _grid(sum(sizes)), np.int32(len(sizes))
    if on_device:
        _MOD.get("ema_update_multi_device_count", first.dtype)(
            grid, (THREADS,), (*tables, n_tensors, num_updates, np.int32(bool(advance)), np.float64(decay))
        )
        return
    if sum(sizes) == 0:
        return
    d = ema_decay(decay, num_updates)
    _MOD.get(op, first.dtype)(grid, (THREADS,), (*tables, n_tensors, np.float64(d), np.float64(1.0 - d)))
