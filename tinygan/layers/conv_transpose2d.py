"""ConvTranspose2d: the transposed convolution, conv2d's adjoint (see tinygan.kernels.reference.conv_transpose2d)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tinygan.backend import kernels_for
from tinygan.init import glorot_uniform, make_rng
from tinygan.kernels.reference.conv_geometry import conv_args, conv_transpose2d_output_hw
from tinygan.layers.activation import check_fusion_slope
from tinygan.layers.base import Layer
from tinygan.layers.conv2d import set_geometry

__all__ = ["ConvTranspose2d"]


class ConvTranspose2dCache(NamedTuple):
    """What ConvTranspose2d's backward needs: the input, and with a fused activation the output y and slope."""

    x: Any
    y: Any
    slope: float | None


class ConvTranspose2d(Layer):
    """2-D transposed ("fractionally strided") convolution, as PyTorch's ``nn.ConvTranspose2d``.

    Parameters ``W`` (in_channels, out_channels, kh, kw) (PyTorch's layout) and ``b`` (out_channels,).
    Each input pixel scatters a W-weighted kh x kw patch into the output, the patches ``stride`` apart,
    and ``padding`` rows and columns are cropped from every side::

        y[n, o, h s + i - p, w s + j - p] += x[n, c, h, w] W[c, o, i, j]      (then y += b[o])

    Output size ``(H - 1) stride - 2 padding + kernel + output_padding`` (sizes and checks in
    tinygan.kernels.reference.conv_geometry); ``output_padding`` (< stride)
    adds rows and columns at the bottom and right, so that for a stride-2 layer 4 -> 8 rather than 7.

    This is the adjoint of Conv2d with the same W, stride and padding (Dumoulin & Visin, 2016):
    forward = Conv2d's input gradient (col2im of ``W.reshape(C, -1).T @ x_mat``), and backward::

        dx = W.reshape(C, -1) @ im2col(dy)          (Conv2d's forward)
        dW = x_mat @ im2col(dy).T                   (Conv2d's weight gradient with x in the role of dy)
        db[o] = sum_{n, h, w} dy[n, o, h, w]

    with x_mat = x as a (C, N H W) matrix. ``kernel_size``, ``stride``, ``padding`` and ``output_padding``
    take an int or an (h, w) pair.

    Initialization: Glorot-uniform weights (fans as PyTorch computes them for this layout), zero biases.

    ``forward(x, slope=s)`` fuses a following ReLU (s = 0) or LeakyReLU(s) into the output,
    y = act(conv_transpose(x) + b), in the kernel's epilogue; ``backward`` then takes dL/dy of that activated
    output. ``Sequential``'s fusion plan does this for a ConvTranspose2d followed by ReLU / LeakyReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        rng: np.random.Generator | int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        set_geometry(self, in_channels, out_channels, kernel_size, stride, padding)
        # output_padding >= stride is refused: Conv2d of the output would no longer map back onto the input.
        *_, self.output_padding = conv_args(kernel_size, stride, padding, self.name, output_padding)
        shape = (self.in_channels, self.out_channels, *self.kernel_size)
        self.params["W"] = glorot_uniform(make_rng(rng), shape, layout="conv_transpose").astype(dtype)
        self.params["b"] = np.zeros(self.out_channels, dtype=dtype)
        self.zero_grad()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, output_padding={self.output_padding}"
        )

    def output_shape(self, input_shape: tuple) -> tuple:
        hw = conv_transpose2d_output_hw(
            input_shape[2:], self.kernel_size, self.stride, self.padding, self.output_padding, self.name
        )
        return (input_shape[0], self.out_channels, *hw)

    def forward(self, x: Any, training: bool = True, *, slope: float | None = None) -> Any:
        """y = conv_transpose(x) + b, or act(...) with the fused activation ``slope`` (0: ReLU, s: LeakyReLU(s))."""
        self.check_input(x, (None, self.in_channels, None, None))
        slope = check_fusion_slope(slope, self.name)
        out_shape = self.output_shape(tuple(x.shape))
        K = kernels_for(x)
        W, b = self.params["W"], self.params["b"]
        y = K.conv_transpose2d_forward(x, W, b, self.stride, self.padding, self.output_padding, slope)
        self.cache = ConvTranspose2dCache(x, None if slope is None else y, slope)
        self.remember_output(out_shape, x)
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        cache = self.check_grad(dy)
        # One op: the activation's gradient, dW and db added into the gradient buffers, dx.
        return kernels_for(dy).conv_transpose2d_backward(
            dy,
            cache.x,
            self.params["W"],
            self.stride,
            self.padding,
            cache.y,
            cache.slope,
            dW=self.grads["W"] if param_grads else None,
            db=self.grads["b"] if param_grads else None,
            input_grad=input_grad,
        )
