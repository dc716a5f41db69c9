"""Adam on the GPU (adam.cu): fused and in place, per tensor or for a whole model in one launch.

Same update as tinygan.kernels.reference.adam (``step`` is 1-based)::

    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import cupy
import numpy as np

from ._common import MAX_BLOCKS, THREADS, CudaModule, ctype_of, idx, launch, scalar

_MOD = CudaModule("adam.cu", templates=("adam_update", "adam_update_multi"))

# Pointer tables of adam_update_multi, keyed by the pointers themselves: an optimizer passes the
# same tensors every step, so after the first step no host-to-device copy is needed (which also
# lets a captured CUDA graph contain the launch). A hit is correct by construction.
_TABLES: OrderedDict[tuple, tuple[cupy.ndarray, cupy.ndarray]] = OrderedDict()
_MAX_TABLES = 16


def _scalars(dtype: np.dtype, lr: float, beta1: float, beta2: float, eps: float, step: int) -> tuple:
    step = int(step)
    if step < 1:
        raise ValueError(f"adam_update: step is 1-based, got {step}")
    step_size = lr / (1.0 - beta1**step)
    sqrt_bc2 = math.sqrt(1.0 - beta2**step)
    return tuple(scalar(dtype, s) for s in (step_size, beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, sqrt_bc2))


def _check_in_place(op: str, name: str, arr: object, like: cupy.ndarray) -> None:
    if not isinstance(arr, cupy.ndarray):
        raise TypeError(f"tinygan.kernels.gpu.{op}: {name} must be a CuPy array, received {type(arr).__name__}")
    if arr.shape != like.shape or arr.dtype != like.dtype:
        raise ValueError(
            f"{op}: {name} has shape {tuple(arr.shape)} and dtype {arr.dtype}, expected "
            f"{tuple(like.shape)} and {like.dtype}"
        )
    if not arr.flags.c_contiguous:
        raise ValueError(f"{op}: {name} is updated in place and must be C-contiguous")


def adam_update(
    param: cupy.ndarray,
    grad: cupy.ndarray,
    m: cupy.ndarray,
    v: cupy.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: int,
) -> None:
    """Update ``param``, ``m`` and ``v`` in place."""
    op = "adam_update"
    if not isinstance(param, cupy.ndarray):
        raise TypeError(f"tinygan.kernels.gpu.{op}: param must be a CuPy array, received {type(param).__name__}")
    ctype_of(param.dtype)
    for name, arr in (("param", param), ("m", m), ("v", v)):
        _check_in_place(op, name, arr, param)
    if not isinstance(grad, cupy.ndarray) or grad.shape != param.shape or grad.dtype != param.dtype:
        raise ValueError(f"{op}: grad must be a CuPy array of the param's shape {tuple(param.shape)} and dtype")
    grad = cupy.ascontiguousarray(grad)
    launch(
        _MOD.get(op, param.dtype),
        param.size,
        (param, grad, m, v, *_scalars(param.dtype, lr, beta1, beta2, eps, step), idx(param.size)),
    )


def adam_update_multi(
    params: Sequence[cupy.ndarray],
    grads: Sequence[cupy.ndarray],
    ms: Sequence[cupy.ndarray],
    vs: Sequence[cupy.ndarray],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: int,
) -> None:
    """``adam_update`` for every tensor of a model in ONE kernel launch (all of one dtype)."""
    op = "adam_update_multi"
    params, grads, ms, vs = list(params), list(grads), list(ms), list(vs)
    if not (len(params) == len(grads) == len(ms) == len(vs)):
        raise ValueError(f"{op}: got {len(params)} params, {len(grads)} grads, {len(ms)} ms and {len(vs)} vs")
    if not params:
        return
    first = params[0]
    if not isinstance(first, cupy.ndarray):
        raise TypeError(f"tinygan.kernels.gpu.{op}: params must be CuPy arrays, received {type(first).__name__}")
    ctype_of(first.dtype)
    # A launch has at most 65535 blocks along y, one per tensor.
    if len(params) > 65535:
        raise ValueError(f"{op}: at most 65535 tensors per launch, got {len(params)}")
    keep = []
    key = []
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs)):
        if not isinstance(p, cupy.ndarray) or p.dtype != first.dtype:
            raise TypeError(f"{op}: params[{i}] must be a CuPy array of dtype {first.dtype}")
        for name, arr in ((f"params[{i}]", p), (f"ms[{i}]", m), (f"vs[{i}]", v)):
            _check_in_place(op, name, arr, p)
        if not isinstance(g, cupy.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(f"{op}: grads[{i}] must be a CuPy array of shape {tuple(p.shape)} and dtype {p.dtype}")
        if not g.flags.c_contiguous:
            g = cupy.ascontiguousarray(g)
            keep.append(g)
        key.append((p.data.ptr, g.data.ptr, m.data.ptr, v.data.ptr, p.size))
    key_t = (cupy.cuda.Device().id, tuple(key))
    tables = _TABLES.get(key_t)
    if tables is None:
        ptrs = np.array([k[:4] for k in key], dtype=np.uint64).reshape(-1)
        sizes = np.array([k[4] for k in key], dtype=np.int64)
        tables = (cupy.asarray(ptrs), cupy.asarray(sizes))
        _TABLES[key_t] = tables
        if len(_TABLES) > _MAX_TABLES:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key_t)
    largest = max(k[4] for k in key)
    if largest == 0:
        return
    grid = (min(MAX_BLOCKS, -(-largest // THREADS)), len(key))
    _MOD.get(op, first.dtype)(grid, (THREADS,), (*tables, *_scalars(first.dtype, lr, beta1, beta2, eps, step)))
