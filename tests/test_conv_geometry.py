"""One conv geometry (tinygan.kernels.reference.conv_geometry): the sizes every kernel set and layer uses,
and the argument checks they share."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
from tinygan.kernels.reference import conv_geometry as G

from tinygan.layers.conv2d import Conv2d
from tinygan.layers.conv_transpose2d import ConvTranspose2d

CPU_SETS = ["tinygan.kernels.reference", "tinygan.kernels.cpu"]
GRID = list(itertools.product(range(1, 8), range(1, 5), range(1, 4), range(0, 3)))  # size, kernel, stride, padding


def _positions(size: int, k: int, s: int, p: int) -> int:
    """Kernel positions counted one by one: windows [start, start + k) inside [-p, size + p)."""
    return sum(1 for start in range(-p, size + p) if (start + p) % s == 0 and start + k <= size + p)


def test_conv_output_size_counts_the_kernel_positions():
    for size, k, s, p in GRID:
        count, formula = _positions(size, k, s, p), G.conv_output_size(size, k, s, p)
        assert formula == count or (count == 0 and formula <= 0), (size, k, s, p)


def test_transposed_output_size_is_every_size_the_convolution_maps_back():
    """The transposed convolution's outputs for output_padding 0..s-1 are exactly the input sizes that a
    convolution with the same k, s, p maps to ``size`` (its adjoint's domain)."""
    for size, k, s, p in GRID:
        preimages = [n for n in range(1, size * s + k + 2 * p + 2) if G.conv_output_size(n, k, s, p) == size]
        produced = [G.transpose_output_size(size, k, s, p, op) for op in range(s)]
        assert sorted(n for n in produced if n >= 1) == preimages, (size, k, s, p)


def test_sizes_agree_with_the_layers_and_every_cpu_kernel_set(rng):
    x = rng.standard_normal((2, 3, 7, 5))
    for module in CPU_SETS:
        K = importlib.import_module(module)
        for k, s, p in [((3, 2), (2, 1), (1, 0)), ((2, 2), (3, 2), (0, 1))]:
            W = rng.standard_normal((4, 3, *k))
            y, _ = K.conv2d_forward(x, W, None, s, p)
            assert y.shape == G.conv2d_output_shape(x.shape, W.shape, s, p, "test")
            assert y.shape == Conv2d(3, 4, k, s, p).output_shape(x.shape)
            Wt = rng.standard_normal((3, 4, *k))
            op = (1, 0) if s[0] > 1 else (0, 0)
            yt = K.conv_transpose2d_forward(x, Wt, None, s, p, op)
            assert yt.shape == G.conv_transpose2d_output_shape(x.shape, Wt.shape, s, p, op, "test")
            assert yt.shape == ConvTranspose2d(3, 4, k, s, p, op).output_shape(x.shape)


@pytest.mark.parametrize("module", CPU_SETS)
@pytest.mark.parametrize("hw", [(0, 5), (5, 0), (0, 0)])
def test_kernels_refuse_a_zero_size_input_even_when_padding_makes_it_fit(module, hw):
    """PyTorch refuses these; a 3x3 kernel with padding 2 would otherwise give a 3-row output of pure padding."""
    K = importlib.import_module(module)
    x = np.zeros((2, 3, *hw))
    with pytest.raises(ValueError, match=r"^conv2d_forward: input height and width must be >= 1, received") as err:
        K.conv2d_forward(x, np.zeros((4, 3, 3, 3)), None, (1, 1), (2, 2))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^im2col: input height and width must be >= 1"):
        K.im2col(x, (3, 3), (1, 1), (2, 2))
    with pytest.raises(ValueError, match=r"^conv_transpose2d_forward: input height and width must be >= 1"):
        K.conv_transpose2d_forward(x, np.zeros((3, 4, 3, 3)), None, (1, 1), (0, 0), (0, 0))


@pytest.mark.gpu
def test_gpu_kernels_refuse_a_zero_size_input_even_when_padding_makes_it_fit():
    import cupy
    from tinygan.kernels import gpu as K

    x = cupy.zeros((2, 3, 0, 5), dtype=cupy.float32)
    with pytest.raises(ValueError, match=r"^conv2d_forward: input height and width must be >= 1"):
        K.conv2d_forward(x, cupy.zeros((4, 3, 3, 3), dtype=cupy.float32), None, (1, 1), (2, 2))


@pytest.mark.parametrize("layer", [Conv2d(3, 4, 3, padding=2), ConvTranspose2d(3, 4, 3)])
@pytest.mark.parametrize("hw", [(0, 5), (5, 0)])
def test_layers_refuse_a_zero_size_input_in_one_line_naming_the_layer(cpu_kernels, layer, hw):
    name = type(layer).__name__
    with pytest.raises(
        ValueError, match=rf"^{name}: input height and width must be >= 1, received \({hw[0]}, {hw[1]}\)$"
    ):
        layer.forward(np.zeros((2, 3, *hw), dtype=np.float32))


@pytest.mark.parametrize(
    "args,message",
    [
        (((0, 3), 1, 0), r"^op: kernel_size must be >= 1, received \(0, 3\)$"),
        ((3, 0, 0), r"^op: stride must be >= 1, received 0$"),
        ((3, 1, -1), r"^op: padding must be >= 0, received -1$"),
        ((3, 1.5, 0), r"^op: stride must be an int or a pair of ints, received 1.5$"),
        ((3, (1, 2, 3), 0), r"^op: stride must be an int or a pair of ints, received \(1, 2, 3\)$"),
        ((True, 1, 0), r"^op: kernel_size must be an int or a pair of ints, received True$"),
        (((3, True), 1, 0), r"^op: kernel_size must be an int or a pair of ints, received \(3, True\)$"),
        ((3, (2, 0), 0), r"^op: stride must be >= 1, received \(2, 0\)$"),
        ((3, 1, (0, -1)), r"^op: padding must be >= 0, received \(0, -1\)$"),
    ],
)
def test_argument_checks_are_one_line_naming_the_option(args, message):
    with pytest.raises(ValueError, match=message):
        G.conv_args(*args, "op")


def test_output_padding_check_and_empty_outputs():
    with pytest.raises(ValueError, match=r"^op: output_padding \(2, 0\) must be smaller than stride \(2, 2\)"):
        G.conv_args(3, 2, 0, "op", (2, 0))
    with pytest.raises(ValueError, match=r"^op: input of size \(2, 2\) padded by \(0, 0\) is smaller than the kernel"):
        G.conv2d_output_hw((2, 2), 3, 1, 0, "op")
    with pytest.raises(ValueError, match=r"^op: input of size \(1, 1\) gives an empty output \(-1, -1\)"):
        G.conv_transpose2d_output_hw((1, 1), 1, 1, 1, 0, "op")
    with pytest.raises(ValueError, match=r"^op: input of shape \(2, 5, 4, 4\) does not match W of shape"):
        G.conv2d_output_shape((2, 5, 4, 4), (4, 3, 3, 3), 1, 0, "op")


def test_an_empty_batch_has_a_geometry():
    assert G.conv2d_output_shape((0, 3, 8, 8), (4, 3, 4, 4), 2, 1, "op") == (0, 4, 4, 4)
    assert G.conv_transpose2d_output_shape((0, 3, 4, 4), (3, 4, 4, 4), 2, 1, 0, "op") == (0, 4, 8, 8)


@pytest.mark.parametrize(
    "value", [3, (3, 2), [3, 2], np.int64(3), (np.int32(3), 2), (3, np.int64(2)), np.array([3, 2])[0]]
)
def test_as_pair_gives_python_ints_whatever_int_types_come_in(value):
    # Plain Python ints take a shortcut (the layers' path, a hundred times a step); every int type must give
    # the same pair of Python ints either way.
    pair = G.as_pair(value, "stride", 1, "op")
    expected = (int(value), int(value)) if np.ndim(value) == 0 else (int(value[0]), int(value[1]))
    assert pair == expected and all(type(v) is int for v in pair)
