"""Deliberately broken kernels: the classic backprop mistakes, one per mode, for ``--break`` in the walkthrough.

    python examples/backprop_walkthrough.py --break batchnorm     # which check catches it? (exits 1)

Each function has the signature of the reference kernel it replaces (tinygan.kernels.reference) and is
wrong in one way a learner might be, described in ``BREAKS``. The walkthrough swaps it into the kernel
namespace the layers call, runs every check, and reports the rows that fail; tests/test_walkthrough.py
checks that every mode is caught by the check named in ``BREAKS``. Forward passes are never broken here:
the point is what finite differences catch in a backward pass (and in Adam's update).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

# The reference's own function, bound now: the walkthrough replaces the name on the namespace, and calling
# that name from here would call this file's version again.
from tinygan.kernels.reference.activation import activate_backward
from tinygan.kernels.reference.bce import bce_with_logits as reference_bce_with_logits


def tanh_backward(dy: Any, y: Any) -> Any:
    return dy * (1 - y)  # forgot the square: tanh' = 1 - y^2


def relu_backward(dy: Any, y: Any) -> Any:
    return dy * (y >= 0)  # >= instead of >: y = max(x, 0) is never negative, so nothing is blocked


def leaky_relu_backward(dy: Any, x: Any, negative_slope: float) -> Any:
    return np.where(x > 0, dy, dy * negative_slope * negative_slope)  # the slope applied twice


def sigmoid_backward(dy: Any, y: Any) -> Any:
    return dy * y  # forgot the (1 - y)


def dense_backward_weight(dy: Any, x: Any) -> tuple[Any, Any]:
    return x.T @ dy, dy.mean(axis=0)  # a bias shared by the batch sums its gradient; it does not average it


def bce_with_logits(logits: Any, targets: Any) -> tuple[Any, Any]:
    loss, dlogits = reference_bce_with_logits(logits, targets)
    return loss, dlogits * logits.size  # forgot that the loss is a mean: no 1 / numel


def dropout_backward(dy: Any, mask: Any, p: float) -> Any:
    # A fresh mask: the gradient of a network whose units were never evaluated (fixed seed, so it is repeatable).
    fresh = np.random.default_rng(12345).random(mask.shape) >= p
    return dy * fresh * (1.0 / (1.0 - p))


def batchnorm_backward(
    dy: Any, xhat: Any, inv_std: Any, gamma: Any, y: Any = None, slope: float | None = None
) -> tuple[Any, Any, Any]:
    # Treats mean and var as constants, dropping their paths back to x: x is used three times, one is kept.
    dy = activate_backward(dy, y, slope, "batchnorm_backward")  # a fused activation's gradient, done right
    axes = (0, *range(2, dy.ndim))
    shape = (1, -1) + (1,) * (dy.ndim - 2)
    return (gamma * inv_std).reshape(shape) * dy, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)


def conv2d_backward_data(
    dy: Any, W: Any, x_shape: tuple[int, ...], stride: tuple[int, int], padding: tuple[int, int]
) -> Any:
    """col2im with ``=`` where it needs ``+=``: a pixel covered by several windows keeps only the last one's
    gradient. (Gradients add at forks: an input pixel feeding several outputs is a fork.)"""
    O, C, kh, kw = W.shape
    N, _, H, Wd = x_shape
    (sh, sw), (ph, pw) = stride, padding
    Ho, Wo = dy.shape[2], dy.shape[3]
    dcols = W.reshape(O, -1).T @ dy.transpose(1, 0, 2, 3).reshape(O, -1)  # (C kh kw, N Ho Wo)
    dcols = dcols.reshape(C, kh, kw, N, Ho, Wo)
    dxp = np.zeros((N, C, H + 2 * ph, Wd + 2 * pw), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] = dcols[:, i, j].transpose(1, 0, 2, 3)  # lost: +=
    return dxp[:, :, ph : ph + H, pw : pw + Wd]


def adam_update(
    param: Any, grad: Any, m: Any, v: Any, lr: float, beta1: float, beta2: float, eps: float, step: int
) -> None:
    # No bias correction: the first step is (1 - beta1) / sqrt(1 - beta2) = 15.8 times too large for betas (0.5, 0.999).
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    param -= lr * m / (np.sqrt(v) + eps)


class Break(NamedTuple):
    kernels: dict[str, Callable[..., Any]]  # kernel name -> the broken function that replaces it
    mistake: str  # what is wrong, in one line
    caught_by: str  # the start of a walkthrough row that must FAIL (tests/test_walkthrough.py checks it)


BREAKS: dict[str, Break] = {
    "tanh": Break({"tanh_backward": tanh_backward}, "tanh' written 1 - y instead of 1 - y^2", "G[4] Tanh()"),
    "relu": Break({"relu_backward": relu_backward}, "ReLU's backward passes dy where y = 0 too", "G[2] ReLU()"),
    "leaky_relu": Break(
        {"leaky_relu_backward": leaky_relu_backward}, "LeakyReLU's slope applied twice", "D[1] LeakyReLU"
    ),
    "sigmoid": Break({"sigmoid_backward": sigmoid_backward}, "sigmoid' written y instead of y (1 - y)", "D[3] Sigmoid"),
    "dense": Break(
        {"dense_backward_weight": dense_backward_weight}, "Dense's bias gradient averaged over the batch", "D[0] Dense"
    ),
    "bce": Break({"bce_with_logits": bce_with_logits}, "BCE's gradient without the 1 / numel of the mean", "loss"),
    "dropout": Break({"dropout_backward": dropout_backward}, "Dropout's backward draws a fresh mask", "Dropout(p=0.4)"),
    "batchnorm": Break(
        {"batchnorm_backward": batchnorm_backward},
        "BatchNorm's backward treats mean and var as constants",
        "BatchNorm1d(3)",
    ),
    "conv": Break(
        {"conv2d_backward_data": conv2d_backward_data},
        "Conv2d's col2im overwrites (=) where overlapping windows must add (+=)",
        "Conv2d(2, 2)",
    ),
    "adam": Break({"adam_update": adam_update}, "Adam without bias correction", "D[0] Dense(3, 4)"),
}
