"""Exercise: Dropout's backward (docs/backprop.md, section 5).

    python examples/backprop_walkthrough.py --exercise dropout

Forward (given), inverted dropout with drop probability p:

    y = x * mask / (1 - p)

where mask is the boolean array (True = kept) that the layer drew in its forward pass and cached.
"""


def dropout_backward(dy, mask, p):
    """dx of dy's shape, from the upstream gradient dy, the forward's mask and p."""
    raise NotImplementedError("write dropout_backward")
