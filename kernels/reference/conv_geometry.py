"""Convolution geometry: the output-size formulas and argument checks, in ONE place.

Every convolution in tinygan (the reference, Numba and CUDA kernels of conv2d and conv_transpose2d,
and the Conv2d / ConvTranspose2d layers) sizes its output and validates its arguments here.

Along one spatial axis, with input size ``n``, kernel ``k``, stride ``s``, padding ``p`` and, for the
transposed convolution, output padding ``op`` (Dumoulin & Visin, 2016, "A guide to convolution
arithmetic for deep learning", relationships 6 and 14)::

    convolution:            out = (n + 2 p - k) // s + 1     (kernel positions inside the padded input)
    transposed convolution: out = (n - 1) s - 2 p + k + op    (its adjoint: the size that convolution maps back to n)

Several inputs share one convolution output size when s > 1; ``0 <= op < s`` picks one of them, and
with ``op >= s`` the convolution of the output would no longer map back onto the input (no adjoint).

Checks (each failure is a one-line ValueError that starts with ``what``, the layer or op name):
kernel and stride >= 1, padding >= 0, ``0 <= output_padding < stride``, input height and width >= 1
(as PyTorch, even when padding would make a zero-size input fit) and output height and width >= 1.
An empty batch (N = 0) is allowed: the output is empty too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_pair",
    "conv_args",
    "conv_output_size",
    "transpose_output_size",
    "conv2d_output_hw",
    "conv_transpose2d_output_hw",
    "conv2d_output_shape",
    "conv_transpose2d_output_shape",
]

Pair = tuple[int, int]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_pair(value: Any, name: str, minimum: int, what: str) -> Pair:
    """An int or an (h, w) pair of ints, each >= minimum, as a pair of Python ints."""
    # Python ints first: the layers pass them, about 330 times a DCGAN step (conv_args about 100), and kernel
    # by kernel (--no-cuda-graph) the GPU step is host-bound. conv_args on ints: 5 us with the general checks
    # below on the project's CPU, 0.5 us with this shortcut (python -m timeit): about 0.5 ms of a 6.9 ms step.
    if type(value) is int and value >= minimum:
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        if value[0] >= minimum and value[1] >= minimum:
            return value
    pair = (value, value) if _is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{what}: {name} must be an int or a pair of ints, received {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{what}: {name} must be >= {minimum}, received {value!r}")
    return int(pair[0]), int(pair[1])


def conv_args(kernel_size: Any, stride: Any, padding: Any, what: str, output_padding: Any = None) -> tuple[Pair, ...]:
    """Checked (kernel, stride, padding) pairs, plus output_padding when it is given (transposed convolution)."""
    kernel = as_pair(kernel_size, "kernel_size", 1, what)
    stride = as_pair(stride, "stride", 1, what)
    padding = as_pair(padding, "padding", 0, what)
    if output_padding is None:
        return kernel, stride, padding
    output_padding = as_pair(output_padding, "output_padding", 0, what)
    if any(op >= s for op, s in zip(output_padding, stride)):
        raise ValueError(
            f"{what}: output_padding {output_padding} must be smaller than stride {stride} in each dimension "
            f"(as PyTorch requires)"
        )
    return kernel, stride, padding, output_padding


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Kernel positions along one axis of the padded input: (size + 2 padding - kernel) // stride + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def transpose_output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> int:
    """Output size of the transposed convolution along one axis: (size - 1) stride - 2 padding + kernel + op."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _check_input_hw(hw: tuple[int, ...], what: str) -> tuple[int, int]:
    if len(hw) != 2:
        raise ValueError(f"{what}: expected an (H, W) input size, received {tuple(hw)}")
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"{what}: input height and width must be >= 1, received {(h, w)}")
    return h, w


def conv2d_output_hw(hw: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, what: str) -> Pair:
    """(Ho, Wo) of a convolution of an (H, W) input, after checking the arguments and that both are >= 1."""
    (kh, kw), (sh, sw), (ph, pw) = conv_args(kernel_size, stride, padding, what)
    h, w = _check_input_hw(hw, what)
    ho, wo = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if ho < 1 or wo < 1:
        raise ValueError(f"{what}: input of size {(h, w)} padded by {(ph, pw)} is smaller than the kernel {(kh, kw)}")
    return ho, wo


def conv_transpose2d_output_hw(
    hw: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, output_padding: Any, what: str
) -> Pair:
    """(Hout, Wout) of a transposed convolution of an (H, W) input, after the same checks."""
    (kh, kw), (sh, sw), (ph, pw), (oph, opw) = conv_args(kernel_size, stride, padding, what, output_padding)
    h, w = _check_input_hw(hw, what)
    ho, wo = transpose_output_size(h, kh, sh, ph, oph), transpose_output_size(w, kw, sw, pw, opw)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{what}: input of size {(h, w)} gives an empty output {(ho, wo)}: padding {(ph, pw)} crops more "
            f"than the transposed convolution produces"
        )
    return ho, wo


def _check_shapes(x_shape: tuple[int, ...], W_shape: tuple[int, ...], channel_axis: int, what: str) -> None:
    if len(x_shape) != 4 or len(W_shape) != 4:
        raise ValueError(
            f"{what}: expected (N, C, H, W) input and 4-d weight shapes, received {tuple(x_shape)} and {tuple(W_shape)}"
        )
    if x_shape[1] != W_shape[channel_axis]:
        raise ValueError(f"{what}: input of shape {tuple(x_shape)} does not match W of shape {tuple(W_shape)}")


def conv2d_output_shape(
    x_shape: tuple[int, ...], W_shape: tuple[int, ...], stride: Any, padding: Any, what: str
) -> tuple[int, int, int, int]:
    """(N, O, Ho, Wo) of conv2d(x, W) with W (O, C, kh, kw); checks that x is (N, C, H, W)."""
    _check_shapes(x_shape, W_shape, 1, what)
    ho, wo = conv2d_output_hw(x_shape[2:], tuple(W_shape[2:]), stride, padding, what)
    return int(x_shape[0]), int(W_shape[0]), ho, wo


def conv_transpose2d_output_shape(
    x_shape: tuple[int, ...], W_shape: tuple[int, ...], stride: Any, padding: Any, output_padding: Any, what: str
) -> tuple[int, int, int, int]:
    """(N, Cout, Hout, Wout) of conv_transpose2d(x, W) with W (Cin, Cout, kh, kw); checks that x is (N, Cin, H, W)."""
    _check_shapes(x_shape, W_shape, 0, what)
    ho, wo = conv_transpose2d_output_hw(x_shape[2:], tuple(W_shape[2:]), stride, padding, output_padding, what)
    return int(x_shape[0]), int(W_shape[1]), ho, wo
