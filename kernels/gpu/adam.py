"""Adam on the GPU (adam.cu): fused and in place, per tensor or for a whole model in one launch.

Same update as tinygan.kernels.reference.adam (``step`` is 1-based)::

    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

``adam_update_multi`` updates every tensor of a model in one launch, cut into chunks of ``ADAM_CHUNK``
elements that the blocks share (adam.cu says why), and also takes its step count from device memory
(:func:`device_step`), which the launch itself advances: what a captured CUDA graph needs to replay
successive steps.
``zero_multi`` zeroes a model's gradients in one launch.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import cupy
import numpy as np

from ._common import MAX_BLOCKS, THREADS, CudaModule, capturing, ctype_of, idx, launch, scalar, sm_count

_MOD = CudaModule(
    "adam.cu", templates=("adam_update", "adam_update_multi", "adam_update_multi_device_step", "zero_multi")
)

# Pointer tables of the multi-tensor kernels, keyed by the pointers themselves: an optimizer passes
# the same tensors every step, so after the first step no host-to-device copy is needed (which also
# lets a captured CUDA graph contain the launch). A hit is correct by construction.
_TABLES: OrderedDict[tuple, tuple[cupy.ndarray, cupy.ndarray]] = OrderedDict()
_MAX_TABLES = 16
# Tables a captured graph reads: never evicted, since the graph keeps their addresses for good.
_PINNED: dict[tuple, tuple[cupy.ndarray, cupy.ndarray]] = {}

# One block per SM and a few more per tensor is plenty for a grid-stride loop; a grid sized for the
# largest tensor would launch thousands of idle blocks for every small one (biases, BatchNorm).
_BLOCKS_PER_SM = 4


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


# Elements per thread of a chunk of adam_update_multi: must equal ADAM_PER_THREAD in adam.cu.
_PER_THREAD = 4
ADAM_CHUNK = _PER_THREAD * THREADS


def _chunks(sizes: list[int], chunk: int) -> np.ndarray:
    """(tensor, chunk within it) for every ``chunk``-element piece of every tensor, in order, as int32 pairs."""
    counts = -(-np.asarray(sizes, dtype=np.int64) // chunk)
    total = int(counts.sum())
    if total >= 2**31:
        raise ValueError(f"adam_update_multi: {total} chunks of {chunk} elements do not fit an int")
    tensor = np.repeat(np.arange(len(sizes), dtype=np.int64), counts)
    part = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([tensor, part], axis=1).astype(np.int32)


def _table(groups: list[tuple[int, ...]], sizes: list[int], chunk: int = 0) -> tuple[cupy.ndarray, ...]:
    """Device tables of the pointers in ``groups`` (one tuple per tensor) and of the sizes, cached; with
    ``chunk``, also the chunk table (:func:`_chunks`)."""
    key = (cupy.cuda.Device().id, tuple(groups), tuple(sizes), chunk)
    tables = _PINNED.get(key) or _TABLES.get(key)
    if tables is None:
        if capturing():
            raise RuntimeError(
                "tinygan.kernels.gpu: a multi-tensor launch met new tensors while a CUDA graph was being captured; "
                "run the same launch once before capturing (its pointer table is built by a host-to-device copy)"
            )
        ptrs = np.array(groups, dtype=np.uint64).reshape(-1)
        tables = (cupy.asarray(ptrs), cupy.asarray(np.array(sizes, dtype=np.int64)))
        if chunk:
            tables += (cupy.asarray(_chunks(sizes, chunk)),)
        _TABLES[key] = tables
        if len(_TABLES) > _MAX_TABLES:
            _TABLES.popitem(last=False)
    elif key in _TABLES:
        _TABLES.move_to_end(key)
    if capturing() and key not in _PINNED:
        _PINNED[key] = tables
    return tables


def _max_blocks() -> int:
    """A few blocks per SM of the current device (_BLOCKS_PER_SM), at most MAX_BLOCKS."""
    return min(MAX_BLOCKS, _BLOCKS_PER_SM * sm_count())


def _grid(total: int) -> tuple[int]:
    """One grid for all the tensors of a launch: enough blocks for the elements of all of them, at most
    a few per SM (the kernels grid-stride over each tensor in turn)."""
    return (max(1, min(_max_blocks(), -(-total // THREADS))),)


def device_step(count: int = 0) -> cupy.ndarray:
    """A step counter for ``adam_update_multi`` in device memory: ``count`` completed steps."""
    return cupy.asarray(np.array([count, 0], dtype=np.uint64))


def adam_update_multi(
    params: Sequence[cupy.ndarray],
    grads: Sequence[cupy.ndarray],
    ms: Sequence[cupy.ndarray],
    vs: Sequence[cupy.ndarray],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: Any,
    advance: bool = True,
) -> None:
    """``adam_update`` for every tensor of a model in ONE kernel launch (all of one dtype).

    ``step`` is the 1-based step as an int, or a counter from :func:`device_step` holding the number
    of completed steps: the launch then performs step ``counter + 1`` and (with ``advance``) stores
    it, all on the device, so that no host value is frozen into a captured graph.
    """
    op = "adam_update_multi"
    params, grads, ms, vs = list(params), list(grads), list(ms), list(vs)
    if not (len(params) == len(grads) == len(ms) == len(vs)):
        raise ValueError(f"{op}: got {len(params)} params, {len(grads)} grads, {len(ms)} ms and {len(vs)} vs")
    on_device = isinstance(step, cupy.ndarray)
    if on_device and (step.dtype != np.uint64 or step.shape != (2,) or not step.flags.c_contiguous):
        raise ValueError(f"{op}: a device step must be a contiguous uint64 array of shape (2,) (see device_step)")
    if not params:
        return
    first = params[0]
    if not isinstance(first, cupy.ndarray):
        raise TypeError(f"tinygan.kernels.gpu.{op}: params must be CuPy arrays, received {type(first).__name__}")
    ctype_of(first.dtype)
    groups, sizes, keep = [], [], []
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs)):
        if not isinstance(p, cupy.ndarray) or p.dtype != first.dtype:
            raise TypeError(f"{op}: params[{i}] must be a CuPy array of dtype {first.dtype}")
        for name, arr in ((f"params[{i}]", p), (f"ms[{i}]", m), (f"vs[{i}]", v)):
            _check_in_place(op, name, arr, p)
        if not isinstance(g, cupy.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(f"{op}: grads[{i}] must be a CuPy array of shape {tuple(p.shape)} and dtype {p.dtype}")
        if not g.flags.c_contiguous:
            # A copy has a new address every call: its table is rebuilt each time (and cannot be captured).
            g = cupy.ascontiguousarray(g)
            keep.append(g)
        groups.append((p.data.ptr, g.data.ptr, m.data.ptr, v.data.ptr))
        sizes.append(p.size)
    ptrs, size_table, chunk_table = _table(groups, sizes, ADAM_CHUNK)
    n_chunks = len(chunk_table)
    tables = (ptrs, size_table, chunk_table, np.int32(n_chunks))
    # A block a chunk up to a few blocks per SM, each then looping over chunks: every block ends with a fence and
    # an atomic on the step's ticket word, and a block per chunk (1,426 for the MNIST D) measured 1.34x slower on
    # the MNIST nets and 1.37x on the DCGAN's G (bench/dev/adam_versions.py, v2 against v3). At least one block,
    # so that a device step advances even when every tensor is empty.
    grid = (max(1, min(_max_blocks(), n_chunks)),)
    if on_device:
        _MOD.get("adam_update_multi_device_step", first.dtype)(
            grid,
            (THREADS,),
            (*tables, step, np.int32(bool(advance)), *(np.float64(x) for x in (lr, beta1, beta2, eps))),
        )
        return
    if n_chunks == 0:
        return
    _MOD.get(op, first.dtype)(grid, (THREADS,), (*tables, *_scalars(first.dtype, lr, beta1, beta2, eps, step)))


def zero_multi(arrays: Sequence[cupy.ndarray]) -> None:
    """Set every array (C-contiguous, all of one dtype) to zero in one launch, in place."""
    arrays = list(arrays)
    if not arrays:
        return
    dtype = arrays[0].dtype
    for i, a in enumerate(arrays):
        if not isinstance(a, cupy.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
            raise ValueError(f"zero_multi: arrays[{i}] must be a C-contiguous CuPy array of dtype {dtype}")
    ctype_of(dtype)
    sizes = [a.size for a in arrays]
    tables = _table([(a.data.ptr,) for a in arrays], sizes)
    if sum(sizes) > 0:
        _MOD.get("zero_multi", dtype)(_grid(sum(sizes)), (THREADS,), (*tables, np.int32(len(sizes))))
