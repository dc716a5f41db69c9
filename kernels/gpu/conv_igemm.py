"""Implicit-GEMM convolution kernels (conv_igemm.cu): the three passes of Conv2d without an im2col buffer.

With x (N, C, H, W), W (Cout, C, kh, kw) and y (N, Cout, Ho, Wo):

    fprop  y[n, o, p]  = sum_{c,i,j} W[o, c, i, j] x[n, c, p*s - pad + (i, j)] + b[o]
    dgrad  dx[n, c, q] = sum_{o,i,j} W[o, c, i, j] dy[n, o, (q + pad - (i, j)) / s]   (where s divides it)
    wgrad  dW[o, c, i, j] = sum_{n,p} dy[n, o, p] x[n, c, p*s - pad + (i, j)]      db[o] = sum_{n,p} dy[n, o, p]

each one matrix product whose operand tiles are gathered from the NCHW tensors into shared memory.
ConvTranspose2d's passes are the same kernels with the roles swapped (conv_transpose2d.py).

``precision`` picks the product (see tinygan.backend.set_precision): ``"fp32"`` FP32 accuracy (split-TF32
on tensor cores, or SIMT FMAs: ``FP32_KERNEL``), ``"tf32"`` and ``"bf16"`` one tensor-core product with
operands rounded to TF32 or BF16; FP32 accumulation in all. Inputs and outputs are float32 arrays.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ._common import CudaModule

BM = BN = 64
BK = 32
THREADS = 128
FPROP, DGRAD, WGRAD = 0, 1, 2
SIMT, TF32, BF16, X3TF32 = 0, 1, 2, 3

# The product each precision runs: "fp32" takes the faster of the two exact schemes (measured:
# bench/results/gpu-kernel-versions-2026-12-02.md).
FP32_KERNEL = X3TF32
PRECISION_KERNEL = {"fp32": FP32_KERNEL, "tf32": TF32, "bf16": BF16}

_MOD = CudaModule(
    "conv_igemm.cu",
    plain=tuple(f"conv_igemm<{m}, {p}>" for m in (FPROP, DGRAD, WGRAD) for p in (SIMT, TF32, BF16, X3TF32))
    + ("ig_splitk_reduce",),
)

# Blocks to aim for when splitting the weight gradient's long K: a few waves of the card's SMs.
_TARGET_BLOCKS = 2 * 132
_MIN_K_PER_SPLIT = 8 * BK


def supports(*arrays: cupy.ndarray) -> bool:
    """Whether these arrays can take the implicit-GEMM kernels: float32, every offset within an int."""
    return all(a.dtype == np.float32 and a.size < 2**31 for a in arrays)


def kernel_for(precision: str) -> int:
    try:
        return PRECISION_KERNEL[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {tuple(PRECISION_KERNEL)}, got {precision!r}") from None


def _geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo) -> tuple:
    return tuple(np.int32(v) for v in (n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _null() -> Any:
    return np.uintp(0)


def fprop(
    x: cupy.ndarray, W: cupy.ndarray, bias: cupy.ndarray | None, stride, padding, out_hw, prec: int
) -> cupy.ndarray:
    """y = conv2d(x, W) + bias for contiguous float32 x (N, C, H, W) and W (Cout, C, kh, kw)."""
    n, c, h, w = x.shape
    cout, _, kh, kw = W.shape
    (sh, sw), (ph, pw), (ho, wo) = stride, padding, out_hw
    y = cupy.empty((n, cout, ho, wo), dtype=np.float32)
    grid = (-(-(n * ho * wo) // BN), -(-cout // BM), 1)
    if y.size:
        _MOD.get(f"conv_igemm<{FPROP}, {prec}>")(
            grid,
            (THREADS,),
            (
                W,
                x,
                y,
                bias if bias is not None else _null(),
                _null(),
                *_geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo),
                np.int32(0),
            ),
        )
    return y


def dgrad(
    dy: cupy.ndarray, W: cupy.ndarray, x_shape, stride, padding, bias: cupy.ndarray | None, prec: int
) -> cupy.ndarray:
    """dx of conv2d (plus ``bias[c]``: ConvTranspose2d's forward) for dy (N, Cout, Ho, Wo), W (Cout, C, kh, kw)."""
    n, c, h, w = (int(d) for d in x_shape)
    _, cout, ho, wo = dy.shape
    _, _, kh, kw = W.shape
    (sh, sw), (ph, pw) = stride, padding
    dx = cupy.empty((n, c, h, w), dtype=np.float32)
    hq, wq = -(-h // sh), -(-w // sw)
    grid = (-(-(n * hq * wq) // BN), -(-c // BM), sh * sw)
    if dx.size:
        _MOD.get(f"conv_igemm<{DGRAD}, {prec}>")(
            grid,
            (THREADS,),
            (
                W,
                dy,
                dx,
                bias if bias is not None else _null(),
                _null(),
                *_geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo),
                np.int32(0),
            ),
        )
    return dx


def wgrad(
    dy: cupy.ndarray, x: cupy.ndarray, kernel, stride, padding, with_bias: bool, prec: int
) -> tuple[cupy.ndarray, cupy.ndarray | None]:
    """(dW, db) of conv2d for dy (N, Cout, Ho, Wo) and x (N, C, H, W); db (the row sums of dy) only when asked."""
    n, c, h, w = x.shape
    _, cout, ho, wo = dy.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ng, k_total = c * kh * kw, n * ho * wo
    tiles = -(-ng // BN) * -(-cout // BM)
    # Split K so the grid fills the card, each split at least _MIN_K_PER_SPLIT deep.
    splits = max(1, min(-(-_TARGET_BLOCKS // tiles), -(-k_total // _MIN_K_PER_SPLIT)))
    k_per_split = _cdiv(_cdiv(k_total, splits), BK) * BK
    splits = max(1, -(-k_total // k_per_split))
    dW = cupy.empty((cout, c, kh, kw), dtype=np.float32)
    db = cupy.empty(cout, dtype=np.float32) if with_bias else None
    if k_total == 0 or dW.size == 0:
        dW.fill(0)
        if db is not None:
            db.fill(0)
        return dW, db
    part = dW if splits == 1 else cupy.empty((splits, cout, ng), dtype=np.float32)
    pbias = db if (splits == 1 or db is None) else cupy.empty((splits, cout), dtype=np.float32)
    grid = (-(-ng // BN), -(-cout // BM), splits)
    _MOD.get(f"conv_igemm<{WGRAD}, {prec}>")(
        grid,
        (THREADS,),
        (
            dy,
            x,
            part,
            _null(),
            pbias if pbias is not None else _null(),
            *_geom_args(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, ho, wo),
            np.int32(k_per_split),
        ),
    )
    if splits > 1:
        reduce = _MOD.get("ig_splitk_reduce")
        count = cout * ng
        reduce((min(4096, -(-count // 256)),), (256,), (part, dW, np.int32(count), np.int32(splits)))
        if db is not None:
            reduce((max(1, -(-cout // 256)),), (256,), (pbias, db, np.int32(cout), np.int32(splits)))
    return dW, db
