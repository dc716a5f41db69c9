"""Exercise: binary cross-entropy on logits, loss and gradient (docs/backprop.md, section 4).

    python examples/backprop_walkthrough.py --exercise bce

For logits s and targets t of the same shape (t in [0, 1]), p = sigmoid(s), the loss is the MEAN over
all elements of -(t log p + (1 - t) log(1 - p)). Return (loss, dlogits): the loss as a float (or a 0-d
array) and dL/ds of s's shape.

It must stay finite for every logit: s = 40 or s = -800 must not give inf or nan. Do not compute
log(sigmoid(s)); rewrite the loss in s first.
"""


def bce_with_logits(logits, targets):
    raise NotImplementedError("write bce_with_logits: (mean loss, dL/dlogits)")
