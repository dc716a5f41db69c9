"""Exercise: col2im, the adjoint of im2col (docs/backprop.md, section 7).

    python examples/backprop_walkthrough.py --exercise col2im

im2col (given: tinygan.kernels.reference.im2col) copies every receptive field of the zero-padded image
xp into one column:

    cols[(c, i, j), (n, oh, ow)] = xp[n, c, oh * sh + i, ow * sw + j]        cols: (C kh kw, N Ho Wo)

col2im is its adjoint: it sends each entry of cols back to the pixel it was copied from, ADDING where
windows overlap, and drops the entries that came from the padding. Return an array of x_shape.
Check: np.vdot(im2col(x, ...), cols) == np.vdot(x, col2im(cols, x.shape, ...)) for any x and cols.
"""


def col2im(cols, x_shape, kernel_size, stride, padding):
    """cols (C kh kw, N Ho Wo) -> dx (N, C, H, W); kernel_size, stride and padding are (h, w) pairs."""
    raise NotImplementedError("write col2im")
