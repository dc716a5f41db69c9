"""2-D convolution (cross-correlation, as in every deep-learning library) through im2col + GEMM.

Shapes (NCHW): x (N, C, H, W), W (O, C, kh, kw), b (O,), y (N, O, Ho, Wo) with
``Ho = (H + 2 ph - kh) // sh + 1`` and ``Wo = (W + 2 pw - kw) // sw + 1`` (computed and checked by
``conv_geometry``, the one place for sizes and argument checks). ``xp`` is x zero-padded by
``ph`` rows and ``pw`` columns on each side.

Forward::

    y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] xp[n, c, oh sh + i, ow sw + j]

im2col (Chellapilla, Puri & Simard, 2006, "High performance convolutional neural networks for
document processing") unrolls every receptive field into one column, so the convolution becomes a
single matrix product::

    cols[(c, i, j), (n, oh, ow)] = xp[n, c, oh sh + i, ow sw + j]       cols: (C kh kw, N Ho Wo)
    y_mat = W.reshape(O, C kh kw) @ cols                                  y_mat: (O, N Ho Wo)

Backward, given dy = dL/dy and its matrix form dy_mat[o, (n, oh, ow)] = dy[n, o, oh, ow]::

    dW = (dy_mat @ cols.T).reshape(O, C, kh, kw)
    db[o] = sum_{n, oh, ow} dy[n, o, oh, ow]
    dcols = W.reshape(O, C kh kw).T @ dy_mat
    dx = col2im(dcols)

col2im is the adjoint (transpose) of im2col: every input pixel appears in several overlapping
receptive fields, so its gradient is the sum of the column entries it was copied to::

    dxp[n, c, h', w'] = sum over (i, j, oh, ow) with oh sh + i = h', ow sw + j = w' of dcols[(c, i, j), (n, oh, ow)]

and dx is dxp with the padding cut off. The same col2im is the forward pass of the transposed
convolution (see ``conv_transpose2d.py``). The matrix products go to NumPy's BLAS.

Fused with a following ReLU / LeakyReLU (``slope``; equations in ``activation.py``): the forward returns
y = act(conv(x) + b), and ``conv2d_backward``, the whole backward pass in one op, takes that y, forms
dz = dy * act'(y) and uses dz in the place of dy above, adding dW and db into the caller's buffers.
"""

from __future__ import annotations

import numpy as np

from . import whole_backward
from .activation import activate, activate_backward, namespace
from .conv_geometry import conv2d_output_hw, conv2d_output_shape, conv_args

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight", "conv2d_backward"]


def im2col(
    x: np.ndarray, kernel_size: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Unroll the receptive fields of x (N, C, H, W) into cols (C kh kw, N Ho Wo)."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = conv_args(kernel_size, stride, padding, "im2col")
    Ho, Wo = conv2d_output_hw((H, W), kernel_size, stride, padding, "im2col")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((C, kh, kw, N, Ho, Wo), dtype=x.dtype)
    # One kernel offset (i, j) at a time: the pixels it sees form a strided window of xp.
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw]  # (N, C, Ho, Wo)
            cols[:, i, j] = window.transpose(1, 0, 2, 3)
    return cols.reshape(C * kh * kw, N * Ho * Wo)


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Fold cols (C kh kw, N Ho Wo) back into an image of ``x_shape``, summing overlapping patches."""
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = conv_args(kernel_size, stride, padding, "col2im")
    Ho, Wo = conv2d_output_hw((H, W), kernel_size, stride, padding, "col2im")
    cols6 = cols.reshape(C, kh, kw, N, Ho, Wo)
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    # += because windows overlap when stride < kernel: a pixel collects one term from every window covering it.
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] += cols6[:, i, j].transpose(1, 0, 2, 3)
    # Entries that landed on the zero padding belong to no input pixel: they are dropped.
    return xp[:, :, ph : ph + H, pw : pw + W].copy()


def conv2d_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    slope: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (y, cols); cols is what conv2d_backward_weight needs. b=None means no bias; ``slope`` None
    no activation, 0 ReLU, s LeakyReLU(s) applied to the output."""
    N, O, Ho, Wo = conv2d_output_shape(x.shape, W.shape, stride, padding, "conv2d_forward")
    cols = im2col(x, W.shape[2:], stride, padding)
    y_mat = W.reshape(O, -1) @ cols
    y = y_mat.reshape(O, N, Ho, Wo).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.reshape(1, O, 1, 1)
    return np.ascontiguousarray(activate(y, slope)), cols


def _as_matrix(dy: np.ndarray) -> np.ndarray:
    """dy (N, O, Ho, Wo) -> dy_mat (O, N Ho Wo), the column order of im2col."""
    return dy.transpose(1, 0, 2, 3).reshape(dy.shape[1], -1)


def conv2d_backward_data(
    dy: np.ndarray,
    W: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    O, _, kh, kw = W.shape
    dcols = W.reshape(O, -1).T @ _as_matrix(dy)
    return col2im(dcols, x_shape, (kh, kw), stride, padding)


def conv2d_backward_weight(
    dy: np.ndarray, cols: np.ndarray, W_shape: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dW, db)."""
    dW = (_as_matrix(dy) @ cols.T).reshape(W_shape)
    return dW, dy.sum(axis=(0, 2, 3))


def conv2d_backward(
    dy: np.ndarray,
    cols: np.ndarray,
    W: np.ndarray,
    x_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    y: np.ndarray | None = None,
    slope: float | None = None,
    dW: np.ndarray | None = None,
    db: np.ndarray | None = None,
    input_grad: bool = True,
) -> np.ndarray | None:
    """The whole backward pass of ``y = act(conv2d(x) + b)``: dz = dy * act'(y) (dz = dy for slope None),
    ``dW += `` and ``db += `` its weight and bias gradients (each skipped when None), returns dx (None when
    ``input_grad`` is False). ``cols`` is conv2d_forward's cache."""
    dz = activate_backward(dy, y, slope, "conv2d_backward")
    return whole_backward.conv2d(namespace(), dz, cols, W, x_shape, stride, padding, dW, db, input_grad)
