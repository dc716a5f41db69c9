"""Dense (fully connected) layer: y = x @ W + b.

Shapes: x (N, in), W (in, out), b (out,), y (N, out).

Forward::

    y[n, j] = sum_i x[n, i] W[i, j] + b[j]

Backward, given the upstream gradient dy = dL/dy::

    dx = dy @ W.T            (dL/dx[n, i] = sum_j dy[n, j] W[i, j])
    dW = x.T @ dy            (dL/dW[i, j] = sum_n x[n, i] dy[n, j])
    db = sum_n dy[n, :]

Fused with a following ReLU / LeakyReLU (``slope``, equations in ``activation.py``): the forward returns
y = act(x @ W + b) and ``dense_backward`` takes that y and forms dz = dy * act'(y) before the three
products above, with dz in the place of dy. ``dense_backward`` is the whole backward pass in one op: it adds
dW and db into the caller's gradient buffers (``dW += ...``; on the GPU a GEMM with beta = 1) and returns dx.

The matrix products go to the BLAS that NumPy links (cuBLAS when the arrays are CuPy's):
we never hand-write GEMM.
"""

from . import whole_backward
from .activation import activate, activate_backward, namespace


def dense_forward(x, W, b, slope=None):
    """y = act(x @ W + b); ``slope`` None: no activation, 0: ReLU, s: LeakyReLU(s)."""
    return activate(x @ W + b, slope)


def dense_backward_data(dy, W):
    return dy @ W.T


def dense_backward_weight(dy, x):
    """Returns (dW, db)."""
    return x.T @ dy, dy.sum(axis=0)


def dense_backward(dy, x, W, y=None, slope=None, dW=None, db=None, input_grad=True):
    """The whole backward pass of ``y = act(x @ W + b)``: dz = dy * act'(y) (dz = dy for slope None), then
    ``dW += x.T @ dz`` and ``db += sum_n dz`` into the given buffers (each skipped when None); returns
    ``dz @ W.T``, or None when ``input_grad`` is False."""
    dz = activate_backward(dy, y, slope, "dense_backward")
    return whole_backward.dense(namespace(), dz, x, W, dW, db, input_grad)
