"""Exercise: BatchNorm's backward (docs/backprop.md, section 6).

    python examples/backprop_walkthrough.py --exercise batchnorm

Forward (given), per channel c over the M values it has in the batch (axis 0 for (N, C) inputs; axes
0, 2 and 3 for (N, C, H, W) inputs, where M = N H W):

    mean     = (1/M) sum x
    centered = x - mean
    var      = (1/M) sum centered^2
    inv_std  = 1 / sqrt(var + eps)
    xhat     = centered * inv_std
    y        = gamma * xhat + beta

The layer cached xhat (x's shape) and inv_std (C,). Return (dx, dgamma, dbeta). x is used three times
(directly, through mean, through var): every path counts. Handling (N, C) is enough for the walkthrough;
the guide's simplified formula handles both shapes in three lines.

``y`` and ``slope`` are for a fused ReLU / LeakyReLU (Sequential's fusion plan): dy is then the gradient of
the activated output y, and the activation's gradient comes first, dy if y > 0 else slope * dy. The
walkthrough leaves them None; handle them last.
"""


def batchnorm_backward(dy, xhat, inv_std, gamma, y=None, slope=None):
    raise NotImplementedError("write batchnorm_backward: (dx, dgamma, dbeta)")
