import math

import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels

from tinygan.gradcheck import check_layer
from tinygan.layers import LeakyReLU, ReLU, Sequential, Sigmoid, Tanh


def away_from_kinks(rng, shape):
    """Normal draws pushed at least 0.1 away from 0, where ReLU's derivative jumps: central
    differences straddling the kink would be wrong, not the backward."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (0.1 + np.abs(x))


LAYERS = [ReLU, lambda: LeakyReLU(0.2), lambda: LeakyReLU(0.01), Sigmoid, Tanh]


@pytest.mark.parametrize("make", LAYERS, ids=["relu", "leaky0.2", "leaky0.01", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", [(1, 7), (3, 5, 2, 3)])
def test_activation_gradients(rng, cpu_kernels, make, shape):
    errors = check_layer(make(), away_from_kinks(rng, shape), rng)
    assert errors["x"] < 1e-6, errors


def test_forward_values_match_definitions():
    x = np.array([[-2.0, -0.5, 0.5, 3.0]])
    np.testing.assert_array_equal(ReLU().forward(x), [[0, 0, 0.5, 3]])
    np.testing.assert_allclose(LeakyReLU().forward(x), [[-0.4, -0.1, 0.5, 3]], rtol=1e-15)
    np.testing.assert_allclose(Sigmoid().forward(x), [[1 / (1 + math.exp(-v)) for v in x[0]]], rtol=1e-15)
    np.testing.assert_allclose(Tanh().forward(x), [[math.tanh(v) for v in x[0]]], rtol=1e-15)
    assert LeakyReLU().negative_slope == 0.2


def test_each_layer_caches_the_cheap_tensor(rng):
    x = rng.standard_normal((3, 4))
    for layer in (ReLU(), Sigmoid(), Tanh()):
        y = layer.forward(x)
        assert layer.cache is y
    leaky = LeakyReLU()
    leaky.forward(x)
    assert leaky.cache is x


def sigmoid_exact(v: float) -> float:
    # Independent of the code under test: the branch keeps math.exp from overflowing.
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_and_accurate_for_large_inputs(cpu_kernels, dtype):
    x = np.array([-1000, -100, -80, -30, -5, 0, 5, 30, 100, 1000], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = Sigmoid().forward(x)
    expected = np.array([sigmoid_exact(float(v)) for v in x])
    # Relative accuracy all the way down: 1 - sigmoid(-x) would return 0 for x = -30 in float32.
    tiny = np.finfo(dtype).tiny
    np.testing.assert_allclose(y, expected.astype(dtype), rtol=2 * np.finfo(dtype).eps, atol=tiny * 4)
    assert y.dtype == dtype
    assert y[3] > 0


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("op", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_numba_matches_reference(rng, numba_threads, op, dtype, rtol):
    x = (3 * rng.standard_normal((13, 7, 3))).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    args = (0.2,) if op == "leaky_relu" else ()
    results = []
    for K in (reference_kernels, numba_kernels):
        y = getattr(K, f"{op}_forward")(x, *args)
        cached = x if op == "leaky_relu" else y
        dx = getattr(K, f"{op}_backward")(dy, cached, *args)
        assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape and dx.shape == x.shape
        results.append((y, dx))
    (y_ref, dx_ref), (y_nb, dx_nb) = results
    np.testing.assert_allclose(y_nb, y_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dx_nb, dx_ref, rtol=rtol, atol=rtol)


def test_numba_handles_non_contiguous_input(rng):
    x = rng.standard_normal((6, 5)).T
    np.testing.assert_array_equal(numba_kernels.relu_forward(x), np.maximum(x, 0))
    np.testing.assert_allclose(numba_kernels.tanh_backward(x, x), x * (1 - x * x), rtol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        numba_kernels.relu_backward(np.ones((3, 4)), np.ones((4, 3)))


def test_bad_input_and_order_errors():
    model = Sequential(Tanh(), ReLU(), name="G")
    with pytest.raises(ValueError, match=r"G\[0\] Tanh\(\).*float32 or float64.*int64"):
        model.forward(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="LeakyReLU"):
        LeakyReLU().forward([1.0, 2.0])
    with pytest.raises(RuntimeError, match="Sigmoid.*before forward"):
        Sigmoid().backward(np.zeros((2, 3)))
    layer = ReLU()
    layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"upstream gradient.*\(2, 3\).*\(3, 2\)"):
        layer.backward(np.zeros((3, 2)))
    assert layer.backward(np.zeros((2, 3)), input_grad=False) is None
