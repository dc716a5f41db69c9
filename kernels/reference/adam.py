"""Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", ICLR), in PyTorch's form.

With gradient g at step t (1-based)::

    m     = beta1 m + (1 - beta1) g
    v     = beta2 v + (1 - beta2) g^2
    param = param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

This is algorithm 1 of the paper with the bias corrections folded in the way torch.optim.Adam does:
eps is added to the bias-corrected sqrt(v), which differs slightly from the paper's
"epsilon-hat" variant in section 2 (there eps is added before correcting). Matching PyTorch keeps
hyperparameters such as eps transferable between the two.

The one in-place kernel: param, m and v are updated where they lie (a CuPy array stays on the GPU).

Precision: v is evaluated in float64 and rounded once to v's dtype, as the Numba kernel does. In
float32, g^2 overflows to inf for |g| > 1.8e19 although (1 - beta2) g^2 may still fit; v = inf would
then make the update m / inf = 0 and freeze the weight for good. (Where (1 - beta2) g^2 itself exceeds
the dtype's range, about |g| > 5.8e20 in float32, v cannot be stored in that dtype at all.)
"""

import math

import numpy as np

__all__ = ["adam_update"]


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    m *= beta1
    m += (1 - beta1) * grad
    g = grad.astype(np.float64)
    v[...] = beta2 * v.astype(np.float64) + (1 - beta2) * (g * g)
    step_size = lr / (1 - beta1**step)
    denom = np.sqrt(v) / math.sqrt(1 - beta2**step) + eps
    param -= step_size * (m / denom)
