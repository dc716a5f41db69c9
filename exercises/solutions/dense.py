"""Solution: Dense's backward (docs/backprop.md, section 2)."""


def dense_backward_data(dy, W):
    return dy @ W.T  # (N, out) @ (out, in) = (N, in)


def dense_backward_weight(dy, x):
    return x.T @ dy, dy.sum(axis=0)  # a weight shared by the batch sums its gradient over it
