"""Elementwise activations and their derivatives.

Each backward takes whichever of x or y makes the derivative cheapest to evaluate, so the layer
caches only that tensor.

ReLU::

    y = max(x, 0)                      dx = dy * [y > 0]

LeakyReLU (Maas, Hannun & Ng, 2013, "Rectifier nonlinearities improve neural network acoustic
models"), with slope ``a`` for negative inputs::

    y = x if x > 0 else a x            dx = dy if x > 0 else a dy

The backward takes x rather than y: for a < 0 the sign of y would not tell the two branches apart.

Sigmoid::

    y = 1 / (1 + exp(-x))              dx = dy * y * (1 - y)

Evaluated as ``1 / (1 + e)`` for x >= 0 and ``e / (1 + e)`` for x < 0, with e = exp(-|x|) <= 1:
exp never overflows, and for very negative x the result keeps its full relative precision
(``1 - 1/(1 + exp(x))`` would cancel to 0).

Tanh::

    y = tanh(x)                        dx = dy * (1 - y^2)

Everything is written with ufuncs and array operators, so the same code runs on CuPy arrays.

The fused epilogue (``activate`` / ``activate_backward``, not contract ops of their own: the weight ops'
``slope`` parameter applies them, through the activation ops above). A weight layer followed by ReLU or
LeakyReLU(s), s >= 0, runs as one op whose output is already activated (``Sequential``'s fusion plan,
docs/ARCHITECTURE.md)::

    y = act(z) = z if z > 0 else slope z       (slope None: no activation; 0: ReLU; s: LeakyReLU(s))
    dz = dy if y > 0 else slope dy

The backward reads y, not z (the fused op never stores z): for slope >= 0, y > 0 exactly when z > 0, so
the branch is the same one the separate layers take (ReLU's ``y > 0``, LeakyReLU's ``x > 0``).
"""

import sys

import numpy as np

__all__ = [
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
]


def namespace():
    """The kernel set these ops belong to, looked up at call time: the fused ops below and the whole-backward
    ops call the activation, dense and conv ops through it, so a kernel swapped on the namespace (the
    walkthrough's --break and --exercise) reaches fused layers too, as it reaches the others."""
    return sys.modules[__package__]


def activate(z, slope, K=None):
    """The fused epilogue's activation: z for slope None, else ReLU (slope 0) or LeakyReLU(slope), looked up on
    the kernel set ``K`` (default: this one) at call time."""
    if slope is None:
        return z
    K = namespace() if K is None else K
    return K.relu_forward(z) if slope == 0 else K.leaky_relu_forward(z, slope)


def check_gate(dy, y, slope, op):
    """The fused backward's arguments, for a slope: y given, and of dy's shape. ``op`` names the caller."""
    if y is None:
        raise ValueError(f"{op}: slope={slope} needs y, the fused forward's output")
    if tuple(y.shape) != tuple(dy.shape):
        raise ValueError(f"{op}: y of shape {tuple(y.shape)} does not match dy of shape {tuple(dy.shape)}")


def activate_backward(dy, y, slope, op="activate_backward", K=None):
    """dL/dz of ``y = activate(z, slope)`` from the output y (slope >= 0, see the module docstring): the
    activation's own backward, handed y where LeakyReLU's takes x (same sign), looked up on the kernel set
    ``K`` (default: this one) at call time. ``op`` names the caller in the errors: slope without y, or a y
    that does not match dy."""
    if slope is None:
        return dy
    check_gate(dy, y, slope, op)
    K = namespace() if K is None else K
    return K.relu_backward(dy, y) if slope == 0 else K.leaky_relu_backward(dy, y, slope)


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, y):
    return dy * (y > 0)


def leaky_relu_forward(x, negative_slope):
    return np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(dy, x, negative_slope):
    return np.where(x > 0, dy, dy * negative_slope)


def sigmoid_forward(x):
    e = np.exp(-np.abs(x))
    pos = 1 / (1 + e)
    return np.where(x >= 0, pos, e * pos)


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dy, y):
    return dy * (1 - y * y)
