"""Softmax and softmax cross-entropy on logits, the numerically stable way.

For one row of logits z (K classes), with m = max_j z_j::

    log_softmax(z)_k = z_k - m - log sum_j exp(z_j - m)
    softmax(z)_k     = exp(log_softmax(z)_k)

Subtracting m changes nothing mathematically (it cancels between numerator and denominator) but
makes every exponent <= 0, so nothing overflows, and the largest term of the sum is exactly 1, so
the log never sees 0: at z = (1000, 0) the naive log(exp(z) / sum exp(z)) gives nan, this form gives
(0, -1000).

Cross-entropy against target rows t (one-hot labels, or any probability vectors), averaged over the
N rows of a batch::

    loss = -(1/N) sum_n sum_k t_nk log_softmax(z_n)_k

Backward: d log_softmax(z)_k / dz_j = [k == j] - softmax(z)_j, hence

    dloss/dz_nj = (softmax(z_n)_j * sum_k t_nk - t_nj) / N = (softmax(z_n)_j - t_nj) / N

where the last form holds when each target row sums to 1, as one-hot labels do. Like the sigmoid
in binary cross-entropy, the softmax's Jacobian cancels against the log: the gradient is
"prediction minus target", and it stays finite however confident the logits are.

Only NumPy ufuncs and array methods are used, so CuPy arrays work through the same code.
"""

import numpy as np

__all__ = ["log_softmax", "softmax", "softmax_cross_entropy"]


def log_softmax(z):
    """Row-wise log-softmax of ``z`` (N, K), shifted by the row maximum so nothing overflows."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    """Row-wise softmax of ``z`` (N, K); each row sums to 1."""
    return np.exp(log_softmax(z))


def softmax_cross_entropy(logits, targets):
    """Returns (loss, dlogits): the mean cross-entropy as a 0-d array of logits' dtype, and its
    gradient. ``targets`` has logits' shape (N, K): one-hot rows or probability vectors."""
    logp = log_softmax(logits)
    n = logits.shape[0]
    # keepdims + reshape gives a 0-d array (not a NumPy scalar) on both NumPy and CuPy.
    loss = (-(targets * logp).sum(keepdims=True) * (1.0 / n)).reshape(())
    dlogits = (np.exp(logp) * targets.sum(axis=1, keepdims=True) - targets) * (1.0 / n)
    return loss, dlogits
