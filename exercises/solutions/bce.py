"""Solution: binary cross-entropy on logits (docs/backprop.md, section 4).

loss = softplus(s) - s t = max(s, 0) - s t + log1p(exp(-|s|)), never overflowing; its derivative is
sigmoid(s) - t, and the mean divides it by the number of elements.
"""

import numpy as np


def bce_with_logits(logits, targets):
    s, t = logits, targets
    loss = (np.maximum(s, 0) - s * t + np.log1p(np.exp(-np.abs(s)))).mean()
    e = np.exp(-np.abs(s))  # sigmoid without overflow: 1 / (1 + e) for s >= 0, e / (1 + e) below
    p = np.where(s >= 0, 1 / (1 + e), e / (1 + e))
    return float(loss), (p - t) / s.size
