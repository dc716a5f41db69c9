"""Solution: col2im, the adjoint of im2col (docs/backprop.md, section 7). One kernel tap (i, j) at a time:
within a tap the strided window touches each pixel at most once, so += never collides; across taps it
adds the overlapping windows' contributions."""

import numpy as np


def col2im(cols, x_shape, kernel_size, stride, padding):
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    cols6 = cols.reshape(C, kh, kw, N, Ho, Wo)
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i : i + sh * Ho : sh, j : j + sw * Wo : sw] += cols6[:, i, j].transpose(1, 0, 2, 3)
    return xp[:, :, ph : ph + H, pw : pw + W]  # what landed on the padding belongs to no pixel
