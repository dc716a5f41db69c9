"""Binary cross-entropy on logits, the numerically stable way.

For a logit z, p = sigmoid(z) and a target t in [0, 1] (soft targets allowed)::

    loss = -(t log p + (1 - t) log(1 - p))

Since log p = -log(1 + exp(-z)) and log(1 - p) = -z - log(1 + exp(-z)), this is

    loss = log(1 + exp(-z)) + z (1 - t) = max(z, 0) - z t + log1p(exp(-|z|))

where the last form never overflows (exp of a non-positive number) and never takes the log of a
sigmoid that has rounded to 0 or 1: at z = -100 the naive form computes log(0) = -inf, this one
gives 100 exactly. The kernel returns the mean over all elements and its gradient::

    dloss/dz = (sigmoid(z) - t) / numel

(the sigmoid's derivative p (1 - p) cancels against the 1/p and 1/(1-p) of the log: the gradient
is simply "prediction minus target").
"""

import numpy as np

from .activation import sigmoid_forward

__all__ = ["bce_with_logits"]


def bce_with_logits(logits, targets):
    """Returns (loss, dlogits): the mean loss as a 0-d array of logits' dtype, and its gradient."""
    z, t = logits, targets
    elementwise = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    # keepdims + reshape gives a 0-d array (not a NumPy scalar) on both NumPy and CuPy.
    loss = elementwise.mean(keepdims=True).reshape(())
    dlogits = (sigmoid_forward(z) - t) * (1.0 / z.size)
    return loss, dlogits
