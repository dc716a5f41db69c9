"""Conv2d on the GPU: implicit-GEMM kernels for float32 (conv_igemm.py), im2col / col2im (conv2d.cu)
around cuBLAS GEMMs for float64 and for tensors past 2**31 elements.

Same equations as tinygan.kernels.reference.conv2d: with cols = im2col(x) of shape (C*kh*kw, N*Ho*Wo)
and Wm = W.reshape(Cout, C*kh*kw),

    y  = Wm @ cols + b             (then laid out as NCHW)
    dx = col2im(Wm.T @ dy_m)       dy_m = dy as a (Cout, N*Ho*Wo) matrix
    dW = dy_m @ cols.T             db = dy summed over N, H, W

The implicit-GEMM kernels form the tiles of cols in shared memory and never store cols, so their
forward pass caches :class:`ConvInput` (x and its geometry) instead of cols; conv2d_backward_weight
takes either. Which ops take them at which precision is conv_igemm.ROUTE (from measurements); all
products follow tinygan.backend's precision setting ("fp32", "tf32", "bf16").

Fused with a following activation (``slope``, see reference.conv2d): on the im2col route the forward applies
it in ``cns_to_ncs`` with the bias, and ``conv2d_backward`` forms dz = dy * act'(y) in the one ``ncs_to_cns``
transpose that both products then read, sums db from dz's rows into the bias gradient and writes dW with a
beta = 1 GEMM straight into the weight gradient. The implicit-GEMM route applies the epilogue as a pass of its
own (activation.activate_ / activation_grad) around its kernels.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import cupy
import numpy as np

from tinygan.backend import get_precision

from ..fastdiv import fast_div_args
from ..reference.conv_geometry import conv2d_output_hw, conv_args
from . import conv_igemm
from ._common import (
    BF16,
    INT32_LIMIT,
    THREADS,
    CudaModule,
    device_array,
    gemm,
    idx,
    launch,
    low_precision,
    narrow,
    same_dtype,
)
from .activation import activate_, activation_grad
from .cublas import matmul_accumulate
from .layout import act_args, as_bf16, channel_sum, check_out, cns_to_ncs, ncs_to_cns, weight_operand
from .streams import fork_join

_MOD = CudaModule("conv2d.cu", indexed=("im2col", "im2col_bf16", "col2im", "col2im_bf16"))

# Rows of cols one im2col thread writes: the column's (n, oh, ow) is decoded once for all of them.
IM2COL_ROWS = 16


class Geometry(NamedTuple):
    """The sizes of one convolution, validated once and handed to every kernel of conv2d.cu."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    ho: int
    wo: int

    def kernel_args(self) -> tuple:
        """The trailing arguments every kernel of conv2d.cu takes, in its order."""
        return (
            idx(self.n),
            idx(self.c),
            idx(self.h),
            idx(self.w),
            *map(cupy.int32, (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw)),
            idx(self.ho),
            idx(self.wo),
        )


def geometry(x_shape: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, what: str) -> Geometry:
    (kh, kw), (sh, sw), (ph, pw) = conv_args(kernel_size, stride, padding, what)
    if len(x_shape) != 4:
        raise ValueError(f"{what}: expected an (N, C, H, W) shape, received {tuple(x_shape)}")
    n, c, h, w = (int(d) for d in x_shape)
    ho, wo = conv2d_output_hw((h, w), (kh, kw), (sh, sw), (ph, pw), what)
    return Geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo)


def im2col(x: cupy.ndarray, kernel_size: Any, stride: Any, padding: Any) -> cupy.ndarray:
    """(N, C, H, W) -> cols of shape (C*kh*kw, N*Ho*Wo); a thread fills one column (four at stride 1) for
    IM2COL_ROWS rows."""
    return im2col_operand(x, kernel_size, stride, padding, False)


def gemm_rows(k: int, dtype: Any) -> int:
    """The extent a convolution GEMM gives the C*kh*kw side of its matrices: for float32, ``k`` rounded up to a
    multiple of 8, with zeros in the added rows of cols and columns of W. cuBLAS (CUTLASS's can_implement)
    takes its vectorised kernels only when each operand's contiguous extent is a multiple of 16 bytes: the
    RGB layers (27 = 3*3*3, 75 = 3*5*5) ran on its "align1" kernels, 125 us of the bf16 DCGAN step on an H200
    (bench/results/gpu-kernel-versions-2026-12-02.md). float64: ``k``."""
    return -(-k // 8) * 8 if np.dtype(dtype) == np.float32 else k


def im2col_operand(
    x: cupy.ndarray,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    bf16: bool,
    vec: int | None = None,
    rows: int | None = None,
) -> cupy.ndarray:
    """:func:`im2col`, with ``bf16`` as bfloat16 bits (``_common.BF16``): a GEMM operand at precision "bf16",
    and ``rows`` rows (>= C*kh*kw; default C*kh*kw), the ones past C*kh*kw zero (:func:`gemm_rows`).
    ``vec``: columns a thread writes with one store, 4, 2 or 1 (default: the largest dividing N*Ho*Wo, for float32
    values; bench/dev times vec=1 as the version before)."""
    x = device_array(x, "x", "im2col")
    g = geometry(x.shape, kernel_size, stride, padding, "im2col")
    k = g.c * g.kh * g.kw
    rows = k if rows is None else rows
    cols = cupy.empty((rows, g.n * g.ho * g.wo), dtype=BF16 if bf16 else x.dtype)
    if rows > k:
        cols[k:] = 0
    length = cols.shape[1]
    if k * length > 0:
        # The kernel writes the first k rows. Each block row covers IM2COL_ROWS of them (more when there are
        # over 65535 block rows), and enough blocks along x to cover the columns, vec a thread (conv2d.cu says why).
        per_block = max(IM2COL_ROWS, -(-k // 65535))
        if vec is None:
            # Measured on an H200 (bench/dev v3 against v2): 1.34x on the stride-1 layer, but at stride 2 a
            # thread's 4 reads lie 2 apart and a warp's loads touch twice the sectors: 1.04x on the largest such
            # layer, 1.3-1.6x slower on the others. So 4 columns a thread at stride 1 only. bfloat16 cols at
            # stride 2 take 2 (one 4-byte store a row instead of two 2-byte ones): 1.06-1.26x on every stride-2
            # layer of the DCGAN (bench/dev im2col_bf16 v5 against v4, ninth session).
            if x.dtype != np.float32:
                vec = 1
            elif g.sw == 1:
                vec = next(v for v in (4, 2, 1) if length % v == 0)
            else:
                vec = 2 if bf16 and length % 2 == 0 else 1
        grid = (max(1, min(-(-length // (THREADS * vec)), 4096)), -(-k // per_block))
        kernel = _MOD.get_for("im2col_bf16" if bf16 else "im2col", x.dtype, x, cols)
        kernel(grid, (THREADS,), (x, cols, *g.kernel_args(), cupy.int32(per_block), cupy.int32(vec)))
    return cols


# The geometries (kh, kw, sh, sw) for which conv2d.cu's col2im_any runs a thread per block of sh x sw pixels
# (col2im_blocks); it dispatches on the same list.
COL2IM_BLOCKED = ((3, 3, 1, 1), (3, 3, 2, 2), (4, 4, 2, 2), (5, 5, 2, 2))


def col2im_threads(g: Geometry, wide: bool) -> int:
    """Threads for a col2im launch: one per block of sh x sw pixels where the kernel takes its blocked path,
    one per pixel otherwise (the grid-stride loop is correct for any count; this one leaves none idle)."""
    if not wide and (g.kh, g.kw, g.sh, g.sw) in COL2IM_BLOCKED:
        return g.n * g.c * -(-g.h // g.sh) * -(-g.w // g.sw)
    return g.n * g.c * g.h * g.w


def col2im_bias(
    cols: cupy.ndarray,
    x_shape: tuple[int, ...],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    bias: cupy.ndarray | None,
    what: str = "col2im",
    slope: float | None = None,
) -> cupy.ndarray:
    """col2im with ``bias[c]`` added to every pixel of channel c and the fused activation ``slope`` applied,
    in the same pass. bfloat16 cols (``_common.BF16``, precision "bf16") are summed into a float32 result."""
    bf16 = is_bf16(cols)
    cols = cols_array(cols, "cols", what)
    dtype = np.dtype(np.float32) if bf16 else cols.dtype
    g = geometry(x_shape, kernel_size, stride, padding, what)
    expected = (g.c * g.kh * g.kw, g.n * g.ho * g.wo)
    # The kernel trusts the shape: a mismatch would read past the end of cols.
    if tuple(cols.shape) != expected:
        raise ValueError(
            f"{what}: cols of shape {tuple(cols.shape)} do not match x_shape {tuple(x_shape)}: expected {expected}"
        )
    if bias is not None and bias.dtype != dtype:
        raise TypeError(f"tinygan.kernels.gpu.{what}: bias has dtype {bias.dtype}, expected {dtype}")
    x = cupy.empty(tuple(int(d) for d in x_shape), dtype=dtype)
    has_bias = bias is not None
    # The blocked paths cover each (n, c) plane with whole blocks of sh x sw pixels (see conv2d.cu), and number
    # the pixels of those blocks with an int: past 2**31 of them, the 64-bit kernel's general path.
    ha, wb = -(-g.h // g.sh), -(-g.w // g.sw)
    wide = not narrow(cols, x) or g.n * g.c * ha * g.sh * wb * g.sw > INT32_LIMIT
    launch(
        _MOD.get("col2im_bf16" if bf16 else "col2im", dtype, wide=wide),
        col2im_threads(g, wide),
        (
            cols,
            x,
            cupy.ascontiguousarray(bias) if has_bias else x,
            cupy.int32(has_bias),
            *act_args(dtype, slope),
            *g.kernel_args(),
            *fast_div_args(wb, ha, g.c),
        ),
    )
    return x


def col2im(cols: cupy.ndarray, x_shape: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any) -> cupy.ndarray:
    """Sum the patches in ``cols`` back into an array of ``x_shape``: a gather, one thread per pixel."""
    return col2im_bias(cols, x_shape, kernel_size, stride, padding, None)


def is_bf16(a: Any) -> bool:
    """Whether ``a`` is an array of bfloat16 bits (``_common.BF16``): cols formed at precision "bf16"."""
    return isinstance(a, cupy.ndarray) and a.dtype == BF16


def cols_array(cols: Any, what: str, op: str) -> cupy.ndarray:
    """:func:`device_array` for a cols buffer, which may also hold bfloat16 bits (formed at precision "bf16")."""
    return cupy.ascontiguousarray(cols) if is_bf16(cols) else device_array(cols, what, op)


def operand(a: cupy.ndarray, lowp: bool) -> cupy.ndarray:
    """A GEMM operand in the product's type: ``a`` as bfloat16 when ``lowp`` (precision "bf16"), else as it is."""
    return as_bf16(a) if lowp else a


def _out(lowp: bool) -> Any:
    """The type of a product that only a col2im reads: bfloat16 at precision "bf16" (the default otherwise)."""
    return BF16 if lowp else None


def accumulate_product(grad: cupy.ndarray, a: cupy.ndarray, b: cupy.ndarray, what: str) -> None:
    """``grad += a @ b.T`` for a weight gradient (rows, k) whose ``b`` may carry :func:`gemm_rows`' zero rows
    past k: then the aligned product and one add of its first k columns, else one beta = 1 GEMM into grad."""
    k = grad.shape[1]
    if b.shape[0] == k:
        matmul_accumulate(grad, a, b, transb=True, what=what)
    else:
        grad += gemm(a, b, transb=True)[:, :k]


class ConvInput(NamedTuple):
    """The cache of an implicit-GEMM conv2d_forward: its input and geometry, from which
    conv2d_backward_weight gathers the tiles of cols again (cols itself is never stored)."""

    x: cupy.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


class Im2colCache(NamedTuple):
    """The cache of an im2col conv2d_forward: ``cols`` = im2col(x) (bfloat16 bits at precision "bf16", rows
    padded to gemm_rows), and the weight operand ``wm`` its GEMM multiplied by (W as a (cout, rows) matrix,
    bfloat16 at "bf16"), formed from the array ``w``. conv2d_backward reuses ``wm`` for the data gradient when
    it is handed that same array: the backward differentiates the forward that ran, as autograd does with the
    weights it saves (a W changed in place in between is not seen, at any precision). At "bf16" that saves a
    cast a backward (7 of the DCGAN step's 24, 2.4 us each on an H200)."""

    cols: cupy.ndarray
    w: cupy.ndarray
    wm: cupy.ndarray


def conv2d_forward(
    x: cupy.ndarray, W: cupy.ndarray, b: cupy.ndarray | None, stride: Any, padding: Any, slope: float | None = None
) -> tuple[cupy.ndarray, Im2colCache | ConvInput]:
    """Returns (y, cache): the cache conv2d_backward and conv2d_backward_weight take, an :class:`Im2colCache`
    (cols = im2col(x) and the weight operand) on the im2col path, a :class:`ConvInput` on the implicit-GEMM one.
    y = act(conv(x) + b) for ``slope`` (None: no activation)."""
    w_arg = W
    x, W = device_array(x, "x", "conv2d_forward"), device_array(W, "W", "conv2d_forward")
    same_dtype("conv2d_forward", x, W=W, b=b)
    cout, cin, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != cin:
        raise ValueError(f"conv2d_forward: x of shape {tuple(x.shape)} does not match W of shape {tuple(W.shape)}")
    g = geometry(x.shape, (kh, kw), stride, padding, "conv2d_forward")
    if conv_igemm.use_implicit("conv2d_forward", cout, x, W) and g.n * cout * g.ho * g.wo < 2**31:
        b = None if b is None else cupy.ascontiguousarray(b)
        prec = conv_igemm.kernel_for(get_precision())
        y = conv_igemm.fprop(x, W, b, (g.sh, g.sw), (g.ph, g.pw), (g.ho, g.wo), prec)
        return activate_(y, slope), ConvInput(x, (g.sh, g.sw), (g.ph, g.pw))
    lowp = low_precision(x.dtype)
    kp = gemm_rows(cin * kh * kw, x.dtype)
    cols = im2col_operand(x, (kh, kw), stride, padding, lowp, rows=kp)
    wm = weight_operand(W.reshape(cout, -1), lowp, kp)
    y = cns_to_ncs(gemm(wm, cols), (g.n, cout, g.ho, g.wo), b, slope)
    return y, Im2colCache(cols, w_arg, wm)


def conv2d_backward_data(
    dy: cupy.ndarray, W: cupy.ndarray, x_shape: tuple[int, ...], stride: Any, padding: Any
) -> cupy.ndarray:
    dy, W = device_array(dy, "dy", "conv2d_backward_data"), device_array(W, "W", "conv2d_backward_data")
    same_dtype("conv2d_backward_data", dy, W=W)
    cout, _, kh, kw = W.shape
    g = geometry(x_shape, (kh, kw), stride, padding, "conv2d_backward_data")
    if tuple(dy.shape) != (g.n, cout, g.ho, g.wo):
        raise ValueError(
            f"conv2d_backward_data: dy of shape {tuple(dy.shape)} does not match x_shape {tuple(x_shape)} and W of "
            f"shape {tuple(W.shape)}: expected {(g.n, cout, g.ho, g.wo)}"
        )
    if conv_igemm.use_implicit("conv2d_backward_data", g.c, dy, W) and g.n * g.c * g.h * g.w < 2**31:
        prec = conv_igemm.kernel_for(get_precision())
        return conv_igemm.dgrad(dy, W, x_shape, (g.sh, g.sw), (g.ph, g.pw), None, prec)
    lowp = low_precision(dy.dtype)
    k = g.c * kh * kw
    Wm = weight_operand(W.reshape(cout, -1), lowp, gemm_rows(k, dy.dtype))
    dcols = gemm(Wm, ncs_to_cns(dy, bf16=lowp), transa=True, out_dtype=_out(lowp))
    return col2im_bias(dcols[:k], x_shape, (kh, kw), stride, padding, None, "conv2d_backward_data")


def conv2d_backward_weight(
    dy: cupy.ndarray, cols: cupy.ndarray | Im2colCache | ConvInput, W_shape: tuple[int, ...]
) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dW, db); ``cols`` is the cache conv2d_forward returned (an :class:`Im2colCache` or a
    :class:`ConvInput`), or a cols matrix."""
    op = "conv2d_backward_weight"
    if isinstance(cols, Im2colCache):
        cols = cols.cols
    if isinstance(cols, ConvInput):
        dy = device_array(dy, "dy", op)
        x = cols.x
        same_dtype(op, dy, x=x)
        cout, cin, kh, kw = (int(d) for d in W_shape)
        g = geometry(x.shape, (kh, kw), cols.stride, cols.padding, op)
        if tuple(dy.shape) != (g.n, cout, g.ho, g.wo) or g.c != cin:
            raise ValueError(
                f"{op}: dy of shape {tuple(dy.shape)} does not match the cached input of shape {tuple(x.shape)} "
                f"and W_shape {tuple(W_shape)}"
            )
        if conv_igemm.use_implicit(op, cout, dy, x):
            prec = conv_igemm.kernel_for(get_precision())
            return conv_igemm.wgrad(dy, x, (kh, kw), cols.stride, cols.padding, True, prec)
        cols = im2col_operand(x, (kh, kw), cols.stride, cols.padding, low_precision(x.dtype))
    dy = device_array(dy, "dy", op)
    cols = cols_array(cols, "cols", op)
    if not is_bf16(cols):
        same_dtype("conv2d_backward_weight", dy, cols=cols)
    lowp = is_bf16(cols) or low_precision(dy.dtype)
    k = math.prod(int(d) for d in W_shape[1:])
    dW = gemm(ncs_to_cns(dy, bf16=lowp), operand(cols, lowp), transb=True)[:, :k]  # gemm_rows' padding dropped
    return cupy.ascontiguousarray(dW).reshape(tuple(int(d) for d in W_shape)), channel_sum(dy)


def conv2d_backward(
    dy: cupy.ndarray,
    cols: cupy.ndarray | Im2colCache | ConvInput,
    W: cupy.ndarray,
    x_shape: tuple[int, ...],
    stride: Any,
    padding: Any,
    y: cupy.ndarray | None = None,
    slope: float | None = None,
    dW: cupy.ndarray | None = None,
    db: cupy.ndarray | None = None,
    input_grad: bool = True,
) -> cupy.ndarray | None:
    """The whole backward pass of y = act(conv2d(x) + b): ``dW +=``, ``db +=`` (each skipped when None) and dx
    (None when ``input_grad`` is False), from dz = dy * act'(y). ``cols`` is conv2d_forward's cache.

    im2col route: one ``ncs_to_cns`` forms dz channel-major (with the activation's gradient) and sums its rows
    into the bias gradient as it writes them, dW = dz @ cols.T is a beta = 1 GEMM into the weight gradient, and
    dx = col2im(Wm.T @ dz). The implicit-GEMM route runs the split ops on dz and adds their results.
    """
    op = "conv2d_backward"
    wm = None
    if isinstance(cols, Im2colCache):
        cols, wm = cols.cols, (cols.wm if cols.w is W else None)  # the forward's operand, for its own weights
    dy, W = device_array(dy, "dy", op), device_array(W, "W", op)
    same_dtype(op, dy, W=W, y=y, dW=dW, db=db)
    cout, cin, kh, kw = W.shape
    g = geometry(x_shape, (kh, kw), stride, padding, op)
    if tuple(dy.shape) != (g.n, cout, g.ho, g.wo):
        raise ValueError(
            f"{op}: dy of shape {tuple(dy.shape)} does not match x_shape {tuple(x_shape)} and W of shape "
            f"{tuple(W.shape)}: expected {(g.n, cout, g.ho, g.wo)}"
        )
    want_w = dW is not None or db is not None
    if dW is not None:
        check_out(dW, W.shape, dy.dtype, f"{op} (dW)")
    if db is not None:
        check_out(db, (cout,), dy.dtype, f"{op} (db)")
    implicit_w = (
        want_w and isinstance(cols, ConvInput) and conv_igemm.use_implicit("conv2d_backward_weight", cout, dy, cols.x)
    )
    implicit_d = input_grad and conv_igemm.use_implicit("conv2d_backward_data", g.c, dy, W)
    if implicit_w or implicit_d:
        dz = activation_grad(dy, y, slope, op)
        if want_w:
            gW, gb = conv2d_backward_weight(dz, cols, W.shape)
            if dW is not None:
                dW += gW
            if db is not None:
                db += gb
        return conv2d_backward_data(dz, W, x_shape, stride, padding) if input_grad else None
    # bfloat16 operands at precision "bf16", or when the forward formed its cols so.
    lowp = low_precision(dy.dtype) or is_bf16(cols)
    k = cin * kh * kw
    kp = gemm_rows(k, dy.dtype)
    if dW is not None:  # checked before dz adds into db, so that a mismatch changes no buffer
        if isinstance(cols, ConvInput):
            if tuple(cols.x.shape) != tuple(int(d) for d in x_shape):
                raise ValueError(
                    f"{op}: the cached input of shape {tuple(cols.x.shape)} does not match x_shape {tuple(x_shape)}"
                )
        else:
            cols = cols_array(cols, "cols", op)
            if cols.shape[1] != g.n * g.ho * g.wo or cols.shape[0] not in (k, kp):
                raise ValueError(
                    f"{op}: cols of shape {tuple(cols.shape)} do not match x_shape {tuple(x_shape)}: expected "
                    f"{(k, g.n * g.ho * g.wo)}" + (f" or {(kp, g.n * g.ho * g.wo)}" if kp != k else "")
                )
    # (cout, N Ho Wo): what both products read; the bias gradient summed as it is written.
    dz = ncs_to_cns(dy, y, slope, out_sum=db, bf16=lowp)
    dx = None
    with fork_join(keep=(dz, cols)) as side:  # the two products only read dz: side by side (streams.py)
        if dW is not None:
            with side:
                if isinstance(cols, ConvInput):
                    cols = im2col_operand(cols.x, (kh, kw), cols.stride, cols.padding, lowp, rows=kp)
                accumulate_product(dW.reshape(cout, -1), dz, operand(cols, lowp), f"{op} (dW)")
        if input_grad:
            if wm is None or wm.shape != (cout, kp) or is_bf16(wm) != lowp:
                wm = weight_operand(W.reshape(cout, -1), lowp, kp)
            dcols = gemm(wm, dz, transa=True, out_dtype=_out(lowp))
            dx = col2im_bias(dcols[:k], x_shape, (kh, kw), stride, padding, None, op)
    return dx
