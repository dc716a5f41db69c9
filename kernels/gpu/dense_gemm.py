"""The Dense layers' FP32 products as our own kernels (dense_gemm.cu): ``op(a) @ op(b)``, exact FP32, with the
forward's bias and activation applied as the product is written and the weight gradient added into its buffer.

Why not cuBLAS here: the dense MNIST GAN's products have the batch (125 or 250 rows) as one side, and cuBLAS's FP32
kernels tile them 64 x 64, which leaves most SMs idle (9 TFLOP/s on an H200, 17% of its sgemm rate). These
kernels tile 32 x 64 or 64 x 64 and, where that still gives fewer than two blocks per SM, split the sum over a
Hopper thread-block cluster of 2, 4 or 8 blocks that add their partial tiles in a fixed order (the same bits every
time). Before Hopper only the unsplit kernel exists, and before compute capability 8.0 only the pipeline that stages
tiles through registers (cp.async is 8.0's). Versions and timings: ``bench/dev/dense_gemm_versions.py``.

kernels/gpu/dense.py's plan (``plan_product``) uses them for float32 at precision "fp32" on Hopper, where they
measured faster than cuBLAS; tf32 and bf16 stay on cuBLAS's tensor cores and float64 on its DGEMM.
"""

from __future__ import annotations

import cupy
import numpy as np

from ._common import INT32_LIMIT, CudaModule, compute_capability, sm_count
from .layout import act_args, check_out

BM, BN, BK = 32, 64, 16  # dense_gemm.cu's tile
THREADS = 128
SPLITS = (1, 2, 4, 8)  # blocks of a cluster along the sum
MODES = ((0, 0), (0, 1), (1, 0))  # (TA, TB): forward, input gradient, weight gradient
PIPELINES = ("registers", "async")  # dense_gemm.cu's ASYNC 0 and 1
ASYNC_CC = 80  # the oldest compute capability with cp.async, which the "async" pipeline is made of
CLUSTER_CC = 90  # the oldest with thread-block clusters (every split above 1)
TILES = {"32x64": (0, 32), "64x64": (1, 64)}  # dense_gemm.cu's WIDE, and the tile's rows


def kernel_name(splits: int, ta: int, tb: int, pipeline: int, wide: int) -> str:
    """The instantiation of dense_gemm.cu that runs a product: ``dense_gemm_s1`` unsplit, ``dense_gemm_cluster``
    with the cluster size as its first template argument otherwise."""
    if splits == 1:
        return f"dense_gemm_s1<{ta}, {tb}, {pipeline}, {wide}>"
    return f"dense_gemm_cluster<{splits}, {ta}, {tb}, {pipeline}, {wide}>"


def _names(splits: tuple[int, ...], pipelines=(0, 1), wides=(0, 1)) -> tuple[str, ...]:
    return tuple(kernel_name(s, ta, tb, p, w) for s in splits for ta, tb in MODES for p in pipelines for w in wides)


# Every instantiation, for tools/nvcc_check.py (which compiles it for Hopper, and :func:`module`'s pre-Hopper sets
# for the older targets). At run time each (pipeline, tile) has a module of its own, compiled by NVRTC the first
# time it is used (12 kernels, or 3 before Hopper), so a process compiles only what its products run.
_ALL = CudaModule("dense_gemm.cu", plain=_names(SPLITS), min_cc=CLUSTER_CC)
_MODULES: dict[tuple[int, int, bool], CudaModule] = {}


def module(pipeline: int, wide: int, clusters: bool) -> CudaModule:
    """The kernels of one pipeline (``PIPELINES`` index) and tile (``TILES``' WIDE) at every split the device
    has: all four with ``clusters``, the unsplit one without."""
    key = (pipeline, wide, clusters)
    found = _MODULES.get(key)
    if found is None:
        found = _MODULES[key] = CudaModule(
            "dense_gemm.cu",
            plain=_names(SPLITS if clusters else (1,), (pipeline,), (wide,)),
            min_cc=CLUSTER_CC if clusters else ASYNC_CC if pipeline else 0,
        )
    return found


def device_capability() -> tuple[int, int]:
    """(SM count, compute capability as an integer: 90 for 9.0) of the current device."""
    return sm_count(), compute_capability()


def splits_for(m: int, n: int, k: int, sms: int, clusters: bool = True, rows: int = BM) -> int:
    """Blocks of a cluster along the sum: doubled while the grid has fewer than two blocks per SM and each block
    still gets at least two k tiles of the sum (the split's reduction costs a tile's worth of shared traffic).
    ``rows``: the tile's (32, or 64 for the tile "64x64")."""
    tiles = -(-m // rows) * -(-n // BN)
    s = 1
    while clusters and s < SPLITS[-1] and tiles * s < 2 * sms and k >= 4 * s * BK:
        s *= 2
    return s


def fits(rows: int, *arrays: cupy.ndarray) -> bool:
    """Whether these kernels take a product of ``rows`` output rows over ``arrays``: float32 with 32-bit offsets
    (their index math), at most 65,535 row tiles (the grid's y)."""
    return -(-rows // BM) <= 65535 and all(a.dtype == np.float32 and a.size <= INT32_LIMIT for a in arrays)


def dense_gemm(
    a: cupy.ndarray,
    b: cupy.ndarray,
    trans_a: bool = False,
    trans_b: bool = False,
    bias: cupy.ndarray | None = None,
    slope: float | None = None,
    out: cupy.ndarray | None = None,
    splits: int | None = None,
    pipeline: str = "registers",
    tile: str = "32x64",
) -> cupy.ndarray:
    """``act(op(a) @ op(b) + bias)`` for C-contiguous 2-D float32 arrays, or with ``out`` given,
    ``out += op(a) @ op(b)`` (then no bias: the weight gradient's form). ``trans_a`` and ``trans_b`` together
    are not a Dense product.

    ``splits`` forces the cluster size (tests); by default :func:`splits_for` picks it (above 1 needs compute
    capability 9.0). ``pipeline``: how tiles reach shared memory, "registers" (staged, one tile ahead) or "async"
    (cp.async, three tiles ahead; compute capability 8.0 and up). ``tile``: "32x64" (4 x 4 outputs a thread) or
    "64x64" (8 x 4)."""
    if trans_a and trans_b:
        raise ValueError("dense_gemm: op(a) and op(b) cannot both be transposed")
    for name, arr in (("a", a), ("b", b)):
        if arr.ndim != 2 or not arr.flags.c_contiguous or not fits(0, arr):
            raise ValueError(f"dense_gemm: {name} must be a C-contiguous 2-D float32 array of fewer than 2^31 elements")
    if out is not None and bias is not None:
        raise ValueError("dense_gemm: accumulating into out takes no bias")
    if out is not None and slope is not None:
        raise ValueError("dense_gemm: accumulating into out applies no activation to the output")
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k_b, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k_b:
        raise ValueError(f"dense_gemm: op(a) of shape {(m, k)} does not match op(b) of shape {(k_b, n)}")
    if not fits(m):
        raise ValueError(f"dense_gemm: {m} output rows is more than the grid's {65535 * BM}")
    accumulate = out is not None
    if out is None:
        out = cupy.empty((m, n), dtype=a.dtype)
    else:
        check_out(out, (m, n), a.dtype, "dense_gemm (out)")
    if bias is not None and (bias.shape != (n,) or bias.dtype != a.dtype):
        raise ValueError(f"dense_gemm: bias must be a {a.dtype} vector of {n}, got {bias.dtype} {tuple(bias.shape)}")
    if pipeline not in PIPELINES:
        raise ValueError(f"dense_gemm: pipeline must be one of {PIPELINES}, got {pipeline!r}")
    if tile not in TILES:
        raise ValueError(f"dense_gemm: tile must be one of {tuple(TILES)}, got {tile!r}")
    wide, rows = TILES[tile]
    sms, cc = device_capability()
    if pipeline == "async" and cc < ASYNC_CC:
        raise ValueError(
            f"dense_gemm: pipeline 'async' needs compute capability 8.0 (cp.async); this GPU has {cc / 10}"
        )
    clusters = cc >= CLUSTER_CC
    if splits is None:
        splits = splits_for(m, n, k, sms, clusters, rows)
    elif splits not in SPLITS or (splits > 1 and not clusters):
        raise ValueError(f"dense_gemm: splits must be one of {SPLITS} (above 1 on compute capability 9.0 and up)")
    if m == 0 or n == 0:
        return out
    # Each block's share of the sum, a whole number of k tiles (k == 0: the epilogue of an empty sum).
    per_split = -(-k // splits)
    k_split = -(-per_split // BK) * BK
    ta, tb, asynchronous = int(trans_a), int(trans_b), PIPELINES.index(pipeline)
    module(asynchronous, wide, clusters).get(kernel_name(splits, ta, tb, asynchronous, wide))(
        (-(-n // BN), -(-m // rows), splits),
        (THREADS,),
        (
            a,
            b,
            out if bias is None else bias,  # never read without a bias (has_bias 0)
            np.int32(bias is not None),
            out,
            np.int32(m),
            np.int32(n),
            np.int32(k),
            np.int32(a.shape[1]),
            np.int32(b.shape[1]),
            np.int32(k_split),
            *act_args(a.dtype, slope),
            np.int32(accumulate),
        ),
    )
    return out
