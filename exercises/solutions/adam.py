"""Solution: Adam's update in PyTorch's form (docs/backprop.md, section 9)."""

import math

import numpy as np


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    param -= lr / (1 - beta1**step) * m / (np.sqrt(v) / math.sqrt(1 - beta2**step) + eps)
