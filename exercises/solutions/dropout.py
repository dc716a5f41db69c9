"""Solution: Dropout's backward (docs/backprop.md, section 5). For the forward's fixed mask, y is linear
in x with a diagonal matrix: the backward multiplies by the same diagonal."""


def dropout_backward(dy, mask, p):
    return dy * mask / (1.0 - p)
