"""Solution: Conv2d's backward passes (docs/backprop.md, section 7): the Dense layer's gradients of
y_mat = W_mat @ cols, then col2im to go from the columns back to the image."""

from tinygan.kernels.reference import col2im


def _dy_mat(dy):
    """dy (N, O, Ho, Wo) -> (O, N Ho Wo), the column order of im2col."""
    return dy.transpose(1, 0, 2, 3).reshape(dy.shape[1], -1)


def conv2d_backward_weight(dy, cols, W_shape):
    dW = (_dy_mat(dy) @ cols.T).reshape(W_shape)
    return dW, dy.sum(axis=(0, 2, 3))


def conv2d_backward_data(dy, W, x_shape, stride, padding):
    O, _, kh, kw = W.shape
    dcols = W.reshape(O, -1).T @ _dy_mat(dy)  # (C kh kw, N Ho Wo)
    return col2im(dcols, x_shape, (kh, kw), stride, padding)
