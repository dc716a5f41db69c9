"""Nearest-neighbour upsampling by an integer factor s, for NCHW images.

Forward: every input pixel becomes an s x s block of copies::

    y[n, c, i, j] = x[n, c, i // s, j // s]            y: (N, C, s H, s W)

Backward: each input pixel fed its s x s block, so its gradient is the block's sum::

    dx[n, c, h, w] = sum_{a, b < s} dy[n, c, s h + a, s w + b]

Followed by a stride-1 convolution it is the "resize-convolution" of Odena, Dumoulin and Olah, 2016,
"Deconvolution and checkerboard artifacts" (Distill): unlike a transposed convolution whose kernel the
stride does not divide, every output pixel is made the same way, so no checkerboard is built in.
"""

import numpy as np

__all__ = ["upsample_nearest_forward", "upsample_nearest_backward"]


def check_upsample_args(op, x, scale, what="x"):
    """One message for all three kernel sets: a 4-d array and a positive integer factor."""
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{op}: expected {what} of shape (N, C, H, W), received {tuple(getattr(x, 'shape', ()))}")
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"{op}: scale must be a positive integer, received {scale!r}")
    return int(scale)


def check_upsampled_grad(op, dy, scale):
    s = check_upsample_args(op, dy, scale, "dy")
    if dy.shape[2] % s or dy.shape[3] % s:
        raise ValueError(f"{op}: dy's height and width {tuple(dy.shape[2:])} must be multiples of the scale {s}")
    return s


def upsample_nearest_forward(x, scale):
    s = check_upsample_args("upsample_nearest_forward", x, scale)
    return np.repeat(np.repeat(x, s, axis=2), s, axis=3)


def upsample_nearest_backward(dy, scale):
    s = check_upsampled_grad("upsample_nearest_backward", dy, scale)
    n, c, h, w = dy.shape
    return dy.reshape(n, c, h // s, s, w // s, s).sum(axis=(3, 5))
