import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels

from tinygan.gradcheck import check_layer
from tinygan.layers import Dropout, Sequential


@pytest.mark.parametrize("shape", [(1, 7), (3, 4, 5)])
def test_gradients_with_replayed_mask(rng, cpu_kernels, shape):
    layer = Dropout(0.4, rng=11)
    state = layer.rng.bit_generator.state

    def replay() -> None:
        layer.rng.bit_generator.state = state

    errors = check_layer(layer, rng.standard_normal(shape), rng, before_forward=replay)
    assert errors["x"] < 1e-6, errors


def test_gradient_check_fails_without_the_replay(rng):
    """The replay above is what makes that check pass: with a fresh mask on every forward the
    finite differences no longer see the function the backward differentiated."""
    errors = check_layer(Dropout(0.4, rng=11), rng.standard_normal((3, 4, 5)), rng)
    assert errors["x"] > 1e-2


@pytest.mark.parametrize("p", [0.0, 0.3, 0.8])
def test_mask_statistics_and_scale(cpu_kernels, p):
    x = np.ones((200, 500))
    y = Dropout(p, rng=5).forward(x)
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.01  # 7 standard deviations at p = 0.3
    np.testing.assert_array_equal(y[kept], 1 / (1 - p))
    assert abs(y.mean() - 1) < 0.05  # inverted dropout keeps E[y] = x


def test_identity_in_eval(rng, cpu_kernels):
    layer = Dropout(0.5, rng=1)
    x = rng.standard_normal((4, 6))
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    dy = rng.standard_normal((4, 6))
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_backward_uses_the_forward_mask(rng, cpu_kernels):
    layer = Dropout(0.5, rng=2)
    y = layer.forward(np.ones((6, 50)))
    dy = rng.standard_normal((6, 50))
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, dy * (y != 0) * 2.0, rtol=1e-15)
    # A second backward still uses that mask, not a new draw.
    np.testing.assert_array_equal(layer.backward(dy), dx)


def test_same_seed_same_mask_and_fresh_masks_per_call():
    x = np.ones((8, 40), np.float32)
    a, b = Dropout(0.5, rng=3), Dropout(0.5, rng=3)
    y1 = a.forward(x)
    np.testing.assert_array_equal(y1, b.forward(x))
    assert (a.forward(x) != y1).any()
    # The mask does not depend on the dtype.
    np.testing.assert_array_equal(Dropout(0.5, rng=3).forward(x.astype(np.float64)) != 0, y1 != 0)
    assert y1.dtype == np.float32


def test_p_validation_and_errors():
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"Dropout: p must satisfy 0 <= p < 1"):
            Dropout(p)
    model = Sequential(Dropout(0.5), name="D")
    with pytest.raises(ValueError, match=r"D\[0\] Dropout\(p=0.5\).*float32 or float64.*int64"):
        model.forward(np.ones((2, 3), np.int64))
    with pytest.raises(RuntimeError, match="Dropout.*before forward"):
        Dropout(0.5).backward(np.zeros((2, 3)))
    layer = Dropout(0.5)
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="upstream gradient"):
        layer.backward(np.zeros((3, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask_dtype", [np.bool_, np.uint8])
def test_numba_matches_reference(rng, numba_threads, dtype, mask_dtype):
    x = rng.standard_normal((13, 7, 3)).astype(dtype)
    mask = (rng.random(x.shape) >= 0.3).astype(mask_dtype)
    for op in ("dropout_forward", "dropout_backward"):
        ref = getattr(reference_kernels, op)(x, mask, 0.3)
        got = getattr(numba_kernels, op)(x, mask, 0.3)
        assert got.dtype == dtype and got.shape == x.shape
        np.testing.assert_allclose(got, ref, rtol=np.finfo(dtype).eps)
    with pytest.raises(ValueError, match="mask"):
        numba_kernels.dropout_forward(x, mask[:-1], 0.3)
