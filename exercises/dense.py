"""Exercise: the Dense layer's backward (docs/backprop.md, section 2).

    python examples/backprop_walkthrough.py --exercise dense

Forward (given): y = x @ W + b, with x (N, in), W (in, out), b (out,), y (N, out).
Shapes are the best check of a transpose: dx has x's shape, dW has W's, db has b's.
"""


def dense_backward_data(dy, W):
    """dx (N, in) from dy (N, out) and W (in, out)."""
    raise NotImplementedError("write dense_backward_data: dx = dL/dx")


def dense_backward_weight(dy, x):
    """(dW, db): dW (in, out) and db (out,) from dy (N, out) and the cached input x (N, in).
    Every sample of the batch uses the same W and b."""
    raise NotImplementedError("write dense_backward_weight: (dL/dW, dL/db)")
