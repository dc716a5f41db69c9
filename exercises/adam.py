"""Exercise: Adam's update (docs/backprop.md, section 9).

    python examples/backprop_walkthrough.py --exercise adam

Update param, m and v IN PLACE (use -=, *=, +=; return nothing). step counts from 1. PyTorch's form:

    m     = beta1 m + (1 - beta1) g
    v     = beta2 v + (1 - beta2) g^2
    param = param - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

The walkthrough checks the first step against its closed form, -lr g / (|g| + eps).
"""


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, step):
    raise NotImplementedError("write adam_update (in place)")
