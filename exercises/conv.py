"""Exercise: Conv2d's backward passes (docs/backprop.md, section 7).

    python examples/backprop_walkthrough.py --exercise conv

Forward (given): cols = im2col(x) of shape (C kh kw, N Ho Wo), W_mat = W.reshape(O, C kh kw),
y_mat = W_mat @ cols of shape (O, N Ho Wo), y = y_mat reshaped to (O, N, Ho, Wo) and transposed to
(N, O, Ho, Wo), plus b[o]. That is a Dense layer with cols.T as its batch.

You may use tinygan.kernels.reference.col2im (or your own from the col2im exercise).
"""

from tinygan.kernels.reference import col2im  # noqa: F401  (for conv2d_backward_data)


def conv2d_backward_weight(dy, cols, W_shape):
    """(dW, db): dW of W_shape (O, C, kh, kw) and db (O,), from dy (N, O, Ho, Wo) and the cached cols."""
    raise NotImplementedError("write conv2d_backward_weight: (dL/dW, dL/db)")


def conv2d_backward_data(dy, W, x_shape, stride, padding):
    """dx of x_shape (N, C, H, W) from dy (N, O, Ho, Wo) and W (O, C, kh, kw); stride, padding: (h, w) pairs."""
    raise NotImplementedError("write conv2d_backward_data: dL/dx")
