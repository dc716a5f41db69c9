"""Dense (fully connected) layer: y = x @ W + b.

Shapes: x (N, in), W (in, out), b (out,), y (N, out).

Forward::

    y[n, j] = sum_i x[n, i] W[i, j] + b[j]

Backward, given the upstream gradient dy = dL/dy::

    dx = dy @ W.T            (dL/dx[n, i] = sum_j dy[n, j] W[i, j])
    dW = x.T @ dy            (dL/dW[i, j] = sum_n x[n, i] dy[n, j])
    db = sum_n dy[n, :]

The matrix products go to the BLAS that NumPy links (cuBLAS when the arrays are CuPy's):
we never hand-write GEMM.
"""


def dense_forward(x, W, b):
    return x @ W + b


def dense_backward_data(dy, W):
    return dy @ W.T


def dense_backward_weight(dy, x):
    """Returns (dW, db)."""
    return x.T @ dy, dy.sum(axis=0)
