"""2-D transposed convolution ("deconvolution", fractionally strided convolution) as the adjoint of conv2d.

Dumoulin & Visin (2016), "A guide to convolution arithmetic for deep learning", section 4: the
transposed convolution is the map whose matrix is the transpose of a convolution's matrix. Take the
convolution ``conv`` with weight W (Cin, Cout, kh, kw) read as conv2d's (out, in, kh, kw), stride s and
padding p, which maps images (N, Cout, Hout, Wout) to (N, Cin, H, W). Then, for shared W and zero bias,

    <conv(y), x> = <y, conv_transpose(x)>           for every x (N, Cin, H, W), y (N, Cout, Hout, Wout)

so the three passes of the transposed convolution are the three passes of conv2d, swapped:

* forward  = conv2d's input gradient:  cols = W.reshape(Cin, Cout kh kw).T @ x_mat, y = col2im(cols) + b
* backward to the input = conv2d's forward (without bias): dy_cols = im2col(dy), dx_mat = W.reshape(Cin, -1) @ dy_cols
* backward to the weight = conv2d's weight gradient with x in the role of dy:
  dW = (x_mat @ dy_cols.T).reshape(Cin, Cout, kh, kw);  db[o] = sum_{n, h, w} dy[n, o, h, w]

where x_mat[ci, (n, h, w)] = x[n, ci, h, w]. Written out, the forward is

    y[n, co, oh, ow] = b[co] + sum_{ci, h, w, i, j : h s + i - p = oh, w s + j - p = ow} x[n, ci, h, w] W[ci, co, i, j]

Output size ``Hout = (H - 1) sh - 2 ph + kh + oph`` (PyTorch's; computed and checked by
``conv_geometry``). Several output sizes share one input size under a strided convolution;
``output_padding`` (< stride) picks one by adding rows and columns at the bottom and right that
receive no input contribution, only the bias.

Fused with a following ReLU / LeakyReLU (``slope``; equations in ``activation.py``): the forward returns
y = act(conv_transpose(x) + b), and ``conv_transpose2d_backward``, the whole backward pass in one op, takes
that y, forms dz = dy * act'(y) and uses dz in the place of dy, adding dW and db into the caller's buffers.
"""

from __future__ import annotations

import numpy as np

from . import whole_backward
from .activation import activate, activate_backward, namespace
from .conv2d import conv2d_backward_data, conv2d_backward_weight, conv2d_forward, im2col
from .conv_geometry import conv_transpose2d_output_shape

__all__ = [
    "conv_transpose2d_forward",
    "conv_transpose2d_backward_data",
    "conv_transpose2d_backward_weight",
    "conv_transpose2d_backward",
]


def conv_transpose2d_forward(
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    slope: float | None = None,
) -> np.ndarray:
    """y = act(conv_transpose(x) + b); ``slope`` None: no activation, 0: ReLU, s: LeakyReLU(s)."""
    op = "conv_transpose2d_forward"
    y_shape = conv_transpose2d_output_shape(x.shape, W.shape, stride, padding, output_padding, op)
    y = conv2d_backward_data(x, W, y_shape, stride, padding)
    return activate(y if b is None else y + b.reshape(1, -1, 1, 1), slope)


def conv_transpose2d_backward_data(
    dy: np.ndarray, W: np.ndarray, stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dx, dy_cols); dy_cols = im2col(dy) can be handed to conv_transpose2d_backward_weight."""
    return conv2d_forward(dy, W, None, stride, padding)


def conv_transpose2d_backward_weight(
    dy: np.ndarray,
    x: np.ndarray,
    W_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dy_cols: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (dW, db). im2col(dy) recovers x's spatial size because output_padding < stride."""
    if dy_cols is None:
        dy_cols = im2col(dy, (W_shape[2], W_shape[3]), stride, padding)
    dW, _ = conv2d_backward_weight(x, dy_cols, W_shape)
    return dW, dy.sum(axis=(0, 2, 3))


def conv_transpose2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    W: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    y: np.ndarray | None = None,
    slope: float | None = None,
    dW: np.ndarray | None = None,
    db: np.ndarray | None = None,
    input_grad: bool = True,
) -> np.ndarray | None:
    """The whole backward pass of ``y = act(conv_transpose2d(x) + b)``: dz = dy * act'(y) (dz = dy for slope
    None), ``dW += `` and ``db += `` its weight and bias gradients (each skipped when None), returns dx (None
    when ``input_grad`` is False)."""
    dz = activate_backward(dy, y, slope, "conv_transpose2d_backward")
    return whole_backward.conv_transpose2d(namespace(), dz, x, W, stride, padding, dW, db, input_grad)
