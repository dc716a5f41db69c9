"""ConvTranspose2d on the GPU: the adjoint of Conv2d, built from the same im2col / col2im kernels.

W is (Cin, Cout, kh, kw) as in PyTorch; Wm = W.reshape(Cin, Cout*kh*kw). The output has size
(H-1)*stride - 2*padding + kernel + output_padding, and with x_m = x as a (Cin, N*H*W) matrix:

    y  = col2im(Wm.T @ x_m) + b    (col2im onto the output's shape: conv2d's backward-data)
    dx = Wm @ im2col(dy)           (conv2d's forward, no bias)
    dW = x_m @ im2col(dy).T        db = dy summed over N, H, W

For float32 each pass is one implicit-GEMM kernel of Conv2d (conv_igemm.py), which never stores the
col buffers: the forward is Conv2d's data gradient with dy := x (plus the bias), the data gradient is
Conv2d's forward on dy, the weight gradient Conv2d's weight gradient with the roles of x and dy swapped.
float64 (and tensors past 2**31 elements) take the im2col / col2im path above.

Fused with a following activation (``slope``, see reference.conv_transpose2d): the forward applies it in
col2im with the bias (a pass of its own on the implicit-GEMM route). ``conv_transpose2d_backward`` forms
dz = dy * act'(y) in one elementwise pass (im2col needs dz in NCHW), sums db into the bias gradient and writes
dW with a beta = 1 GEMM straight into the weight gradient.
"""

from __future__ import annotations

import math
from typing import Any

import cupy

from tinygan.backend import get_precision

from ..reference.conv_geometry import conv2d_output_hw, conv_transpose2d_output_shape
from . import conv_igemm
from ._common import BF16, device_array, gemm, low_precision, pair, same_dtype
from .activation import activate_, activation_grad
from .conv2d import accumulate_product, col2im_bias, cols_array, gemm_rows, im2col_operand, is_bf16, operand
from .layout import channel_sum, check_out, cns_to_ncs, ncs_to_cns, weight_operand
from .streams import fork_join


def conv_transpose2d_forward(
    x: cupy.ndarray,
    W: cupy.ndarray,
    b: cupy.ndarray | None,
    stride: Any,
    padding: Any,
    output_padding: Any,
    slope: float | None = None,
) -> cupy.ndarray:
    """y = act(conv_transpose(x) + b) for ``slope`` (None: no activation)."""
    x, W = device_array(x, "x", "conv_transpose2d_forward"), device_array(W, "W", "conv_transpose2d_forward")
    same_dtype("conv_transpose2d_forward", x, W=W, b=b)
    cin, _, kh, kw = W.shape
    if x.ndim != 4 or x.shape[1] != cin:
        raise ValueError(
            f"conv_transpose2d_forward: x of shape {tuple(x.shape)} does not match W of shape {tuple(W.shape)}"
        )
    stride, padding = pair(stride), pair(padding)
    y_shape = conv_transpose2d_output_shape(
        x.shape, W.shape, stride, padding, pair(output_padding), "conv_transpose2d_forward"
    )
    if conv_igemm.use_implicit("conv_transpose2d_forward", W.shape[1], x, W) and math.prod(y_shape) < 2**31:
        b = None if b is None else cupy.ascontiguousarray(b)
        y = conv_igemm.dgrad(x, W, y_shape, stride, padding, b, conv_igemm.kernel_for(get_precision()))
        return activate_(y, slope)
    lowp = low_precision(x.dtype)
    m = W.shape[1] * kh * kw
    Wm = weight_operand(W.reshape(cin, -1), lowp, gemm_rows(m, x.dtype))  # (cin, m) widened to aligned columns
    cols = gemm(Wm, ncs_to_cns(x, bf16=lowp), transa=True, out_dtype=BF16 if lowp else None)
    return col2im_bias(cols[:m], y_shape, (kh, kw), stride, padding, b, "conv_transpose2d_forward", slope)


def conv_transpose2d_backward_data(
    dy: cupy.ndarray, W: cupy.ndarray, stride: Any, padding: Any
) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dx, dy_cols); dy_cols = im2col(dy) is reusable by conv_transpose2d_backward_weight (None on
    the implicit-GEMM path, which forms no such buffer; bfloat16 at precision "bf16")."""
    dy, W = (
        device_array(dy, "dy", "conv_transpose2d_backward_data"),
        device_array(W, "W", "conv_transpose2d_backward_data"),
    )
    same_dtype("conv_transpose2d_backward_data", dy, W=W)
    cin, cout, kh, kw = W.shape
    if dy.ndim != 4 or dy.shape[1] != cout:
        raise ValueError(
            f"conv_transpose2d_backward_data: dy of shape {tuple(dy.shape)} does not match W of shape {tuple(W.shape)}"
        )
    h, w = conv2d_output_hw(dy.shape[2:], (kh, kw), stride, padding, "conv_transpose2d_backward_data")
    n = dy.shape[0]
    if conv_igemm.use_implicit("conv_transpose2d_backward_data", cin, dy, W) and n * cin * h * w < 2**31:
        prec = conv_igemm.kernel_for(get_precision())
        return conv_igemm.fprop(dy, W, None, pair(stride), pair(padding), (h, w), prec), None
    lowp = low_precision(dy.dtype)
    dy_cols = im2col_operand(dy, (kh, kw), stride, padding, lowp, rows=gemm_rows(cout * kh * kw, dy.dtype))
    return _data_grad(dy_cols, W, lowp, (n, cin, h, w)), dy_cols


def _data_grad(dy_cols: cupy.ndarray, W: cupy.ndarray, lowp: bool, x_shape: tuple[int, ...]) -> cupy.ndarray:
    """dx = Wm @ im2col(dy), laid out as NCHW, from the im2col buffer (its rows padded to gemm_rows)."""
    wm = weight_operand(W.reshape(W.shape[0], -1), lowp, dy_cols.shape[0])
    return cns_to_ncs(gemm(wm, dy_cols), x_shape)


def conv_transpose2d_backward_weight(
    dy: cupy.ndarray,
    x: cupy.ndarray,
    W_shape: tuple[int, ...],
    stride: Any,
    padding: Any,
    dy_cols: cupy.ndarray | None = None,
) -> tuple[cupy.ndarray, cupy.ndarray]:
    """Returns (dW, db); pass the dy_cols from conv_transpose2d_backward_data to skip recomputing them."""
    op = "conv_transpose2d_backward_weight"
    dy, x = device_array(dy, "dy", op), device_array(x, "x", op)
    same_dtype(op, dy, x=x, dy_cols=None if is_bf16(dy_cols) else dy_cols)
    lowp = low_precision(dy.dtype) or is_bf16(dy_cols)
    cin, cout, kh, kw = (int(d) for d in W_shape)
    if dy_cols is None and conv_igemm.use_implicit("conv_transpose2d_backward_weight", cin, dy, x):
        (sh, sw), (ph, pw) = pair(stride), pair(padding)
        n, _, hy, wy = dy.shape
        h, w = (hy + 2 * ph - kh) // sh + 1, (wy + 2 * pw - kw) // sw + 1
        if tuple(x.shape) != (n, cin, h, w) or dy.shape[1] != cout:
            raise ValueError(
                f"{op}: dy of shape {tuple(dy.shape)} does not match x of shape {tuple(x.shape)} and W_shape "
                f"{tuple(W_shape)}: expected x of shape {(n, cin, h, w)}"
            )
        # Conv2d's weight gradient with x := dy and dy := x:
        # dW[ci, co, i, j] = sum x[n, ci, q] dy[n, co, q*s - p + (i, j)].
        dW, _ = conv_igemm.wgrad(x, dy, (kh, kw), (sh, sw), (ph, pw), False, conv_igemm.kernel_for(get_precision()))
        return dW, channel_sum(dy)
    if dy_cols is None:
        dy_cols = im2col_operand(dy, (kh, kw), stride, padding, lowp)
    else:
        dy_cols = operand(cols_array(dy_cols, "dy_cols", op), lowp)
    x_m = ncs_to_cns(x, bf16=lowp)
    m = cout * kh * kw
    if dy_cols.shape[1] != x_m.shape[1] or dy_cols.shape[0] not in (m, gemm_rows(m, dy.dtype)):
        raise ValueError(
            f"{op}: dy of shape {tuple(dy.shape)} (im2col {tuple(dy_cols.shape)}) does not match x of shape "
            f"{tuple(x.shape)} and W_shape {tuple(W_shape)}"
        )
    dW = gemm(x_m, dy_cols, transb=True)[:, :m]  # gemm_rows' padding dropped
    return cupy.ascontiguousarray(dW).reshape(cin, cout, kh, kw), channel_sum(dy)


def conv_transpose2d_backward(
    dy: cupy.ndarray,
    x: cupy.ndarray,
    W: cupy.ndarray,
    stride: Any,
    padding: Any,
    y: cupy.ndarray | None = None,
    slope: float | None = None,
    dW: cupy.ndarray | None = None,
    db: cupy.ndarray | None = None,
    input_grad: bool = True,
) -> cupy.ndarray | None:
    """The whole backward pass of y = act(conv_transpose2d(x) + b): ``dW +=``, ``db +=`` (each skipped when
    None) and dx (None when ``input_grad`` is False), from dz = dy * act'(y)."""
    op = "conv_transpose2d_backward"
    dy, x, W = device_array(dy, "dy", op), device_array(x, "x", op), device_array(W, "W", op)
    same_dtype(op, dy, x=x, W=W, y=y, dW=dW, db=db)
    cin, cout, kh, kw = W.shape
    if dy.ndim != 4 or dy.shape[1] != cout:
        raise ValueError(f"{op}: dy of shape {tuple(dy.shape)} does not match W of shape {tuple(W.shape)}")
    h, w = conv2d_output_hw(dy.shape[2:], (kh, kw), stride, padding, op)
    if tuple(x.shape) != (dy.shape[0], cin, h, w):
        raise ValueError(
            f"{op}: dy of shape {tuple(dy.shape)} does not match x of shape {tuple(x.shape)} and W of shape "
            f"{tuple(W.shape)}: expected x of shape {(dy.shape[0], cin, h, w)}"
        )
    if dW is not None:
        check_out(dW, W.shape, dy.dtype, f"{op} (dW)")
    dz = activation_grad(dy, y, slope, op)
    if (input_grad and conv_igemm.use_implicit("conv_transpose2d_backward_data", cin, dz, W)) or (
        dW is not None and conv_igemm.use_implicit("conv_transpose2d_backward_weight", cin, dz, x)
    ):  # the implicit-GEMM route: the split ops, one after the other
        dx = conv_transpose2d_backward_data(dz, W, stride, padding)[0] if input_grad else None
        if db is not None:
            channel_sum(dz, out=db)
        if dW is not None:
            dW += conv_transpose2d_backward_weight(dz, x, W.shape, stride, padding)[0]
        return dx
    lowp = low_precision(dz.dtype)
    dz_cols = None  # im2col(dz): what both products read
    if input_grad or dW is not None:
        dz_cols = im2col_operand(dz, (kh, kw), stride, padding, lowp, rows=gemm_rows(cout * kh * kw, dz.dtype))
    dx = None
    with fork_join(keep=(dz, x, dz_cols)) as side:  # the two products only read these: side by side (streams.py)
        with side:
            if db is not None:
                channel_sum(dz, out=db)
            if dW is not None:
                accumulate_product(dW.reshape(cin, -1), ncs_to_cns(x, bf16=lowp), dz_cols, f"{op} (dW)")
        if input_grad:
            dx = _data_grad(dz_cols, W, lowp, tuple(x.shape))
    return dx
