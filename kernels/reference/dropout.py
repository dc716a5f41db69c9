"""Inverted dropout (Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, 2014, "Dropout: a
simple way to prevent neural networks from overfitting", JMLR 15).

In training each unit is kept with probability 1 - p; a kept unit is scaled by 1 / (1 - p) so that
E[y] = x and inference needs no rescaling at all (the layer is the identity in eval mode). With the
keep mask m (1 = kept, drawn by the layer, not here)::

    y  = x  * m / (1 - p)
    dx = dy * m / (1 - p)

The backward must use the very mask of the forward: y is linear in x with that mask fixed.
"""

__all__ = ["dropout_forward", "dropout_backward"]


def dropout_forward(x, mask, p):
    # x * mask first: a bool/uint8 mask then takes x's dtype, and the Python float keeps it.
    return x * mask * (1.0 / (1.0 - p))


def dropout_backward(dy, mask, p):
    return dy * mask * (1.0 / (1.0 - p))
