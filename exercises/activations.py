"""Exercise: the activations' backward passes (docs/backprop.md, section 3).

    python examples/backprop_walkthrough.py --exercise activations

Each takes the upstream gradient dy and what its layer cached in the forward pass (y or x), and
returns dx of dy's shape. Forwards (given):

    ReLU       y = max(x, 0)                       caches y
    LeakyReLU  y = x if x > 0 else slope * x       caches x
    Sigmoid    y = 1 / (1 + exp(-x))               caches y
    Tanh       y = tanh(x)                         caches y

Hint: write each derivative as a function of the cached tensor.
"""


def relu_backward(dy, y):
    raise NotImplementedError("write relu_backward")


def leaky_relu_backward(dy, x, negative_slope):
    raise NotImplementedError("write leaky_relu_backward")


def sigmoid_backward(dy, y):
    raise NotImplementedError("write sigmoid_backward")


def tanh_backward(dy, y):
    raise NotImplementedError("write tanh_backward")
