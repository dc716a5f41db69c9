"""Nearest-neighbour Upsample (the resize-convolution's first half): gradient checks in float64 with a random
upstream gradient, over scales 1-3 and odd sizes, in both CPU kernel sets; the Numba and GPU kernels against
the reference on fresh random inputs; bad input refused in one line; a resize-conv block (Upsample, Conv2d)
checked end to end."""

from __future__ import annotations

import numpy as np
import pytest
from tinygan.kernels import cpu as numba_kernels
from tinygan.kernels import reference as R

from tinygan import layers as nn
from tinygan.gradcheck import check_layer

SHAPES = [(1, 1, 1, 1), (2, 3, 3, 5), (3, 2, 4, 1), (1, 4, 7, 6)]


@pytest.mark.parametrize("cpu_kernels", ["reference", "numba"], indirect=True)
@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradient_check(rng, cpu_kernels, scale, shape):
    layer = nn.Upsample(scale)
    x = rng.standard_normal(shape)
    errors = check_layer(layer, x, rng)
    assert errors["x"] < 1e-8, errors
    assert layer.forward(x).shape == (shape[0], shape[1], shape[2] * scale, shape[3] * scale)


def test_gradient_check_catches_a_wrong_backward(rng, monkeypatch):
    """The check can fail: a backward that averages the block instead of summing it."""
    layer = nn.Upsample(2)
    monkeypatch.setattr(
        layer, "backward", lambda dy, param_grads=True, input_grad=True: R.upsample_nearest_backward(dy, 2) / 4
    )
    assert check_layer(layer, rng.standard_normal((2, 2, 3, 3)), rng)["x"] > 0.1


def test_reference_forward_and_backward_by_hand():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    y = R.upsample_nearest_forward(x, 2)
    assert y[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    dy = np.arange(16.0).reshape(1, 1, 4, 4)
    # Each input pixel's gradient is the sum of its 2 x 2 block of dy.
    assert R.upsample_nearest_backward(dy, 2)[0, 0].tolist() == [
        [0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
        [8 + 9 + 12 + 13, 10 + 11 + 14 + 15],
    ]


@pytest.mark.parametrize("numba_threads", ["one thread", "all threads"], indirect=True)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_numba_matches_reference(rng, numba_threads, dtype, scale):
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(dtype)
        y = numba_kernels.upsample_nearest_forward(x, scale)
        np.testing.assert_array_equal(y, R.upsample_nearest_forward(x, scale))
        assert y.dtype == dtype
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = numba_kernels.upsample_nearest_backward(dy, scale)
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(dx, R.upsample_nearest_backward(dy, scale), rtol=tol, atol=tol)
        assert dx.dtype == dtype and dx.shape == x.shape


@pytest.mark.parametrize("K", [R, numba_kernels], ids=["reference", "numba"])
def test_bad_input_is_refused_in_one_line(K):
    x = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(
        ValueError, match=r"upsample_nearest_forward: expected x of shape \(N, C, H, W\), received \(3, 4, 4\)"
    ):
        K.upsample_nearest_forward(x[0], 2)
    with pytest.raises(ValueError, match="upsample_nearest_forward: scale must be a positive integer, received 0"):
        K.upsample_nearest_forward(x, 0)
    with pytest.raises(ValueError, match="scale must be a positive integer, received 1.5"):
        K.upsample_nearest_forward(x, 1.5)
    with pytest.raises(ValueError, match=r"dy's height and width \(4, 4\) must be multiples of the scale 3"):
        K.upsample_nearest_backward(x, 3)


def test_layer_checks():
    with pytest.raises(ValueError, match="Upsample: scale_factor must be a positive integer, received 0"):
        nn.Upsample(0)
    layer = nn.Upsample(2)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\), received \(2, 3\)"):
        layer.forward(np.zeros((2, 3), np.float32))
    assert layer.output_shape((5, 3, 8, 8)) == (5, 3, 16, 16)
    assert "scale_factor=2" in repr(layer)
    y = layer.forward(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError):
        layer.backward(np.zeros((2, 3, 4, 4), np.float32))  # not the output's shape
    assert layer.backward(np.ones_like(y)).tolist() == np.full((2, 3, 4, 4), 4.0).tolist()


@pytest.mark.parametrize("cpu_kernels", ["reference", "numba"], indirect=True)
def test_resize_conv_block_gradient_check(rng, cpu_kernels):
    block = nn.Sequential(nn.Upsample(2), nn.Conv2d(3, 2, 3, stride=1, padding=1, rng=rng, dtype=np.float64))
    errors = check_layer(block, rng.standard_normal((2, 3, 3, 4)), rng)
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_gpu_matches_reference(rng, dtype, scale):
    cp = pytest.importorskip("cupy")
    import tinygan.kernels.gpu as G

    for shape in [*SHAPES, (64, 128, 8, 8)]:
        x = rng.standard_normal(shape).astype(dtype)
        y = G.upsample_nearest_forward(cp.asarray(x), scale)
        np.testing.assert_array_equal(cp.asnumpy(y), R.upsample_nearest_forward(x, scale))
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = G.upsample_nearest_backward(cp.asarray(dy), scale)
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(cp.asnumpy(dx), R.upsample_nearest_backward(dy, scale), rtol=tol, atol=tol)
        assert dx.dtype == dtype
    with pytest.raises(TypeError, match="must be a CuPy array"):
        G.upsample_nearest_forward(np.zeros((1, 1, 2, 2), np.float32), 2)


@pytest.mark.gpu
def test_gpu_resize_generator_step_matches_the_cpu(rng):
    """The resize-conv generator on the GPU gives the CPU's output and input gradient (float64)."""
    pytest.importorskip("cupy")
    from tinygan import backend
    from tinygan.models import dcgan_generator

    cpu = dcgan_generator(seed=3, dtype=np.float64, upsample="resize")
    gpu = dcgan_generator(seed=3, dtype=np.float64, upsample="resize").to("gpu")
    z = rng.standard_normal((4, 100))
    y_cpu = cpu.forward(z, training=True)
    y_gpu = gpu.forward(backend.to_device(z, "gpu"), training=True)
    np.testing.assert_allclose(backend.to_numpy(y_gpu), y_cpu, rtol=1e-9, atol=1e-10)
    g = rng.standard_normal(y_cpu.shape)
    dz_cpu = cpu.backward(g)
    dz_gpu = gpu.backward(backend.to_device(g, "gpu"))
    np.testing.assert_allclose(backend.to_numpy(dz_gpu), dz_cpu, rtol=1e-8, atol=1e-9)
