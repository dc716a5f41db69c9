"""Solution: the activations' backward passes (docs/backprop.md, section 3)."""

import numpy as np


def relu_backward(dy, y):
    return dy * (y > 0)  # y > 0 exactly where x > 0


def leaky_relu_backward(dy, x, negative_slope):
    return np.where(x > 0, dy, dy * negative_slope)


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


def tanh_backward(dy, y):
    return dy * (1 - y * y)
