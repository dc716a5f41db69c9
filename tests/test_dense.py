import numpy as np
import pytest

from tinygan import Dense, Sequential
from tinygan.gradcheck import check_layer


@pytest.mark.parametrize("n,fin,fout", [(1, 3, 2), (5, 7, 4), (4, 1, 9)])
def test_dense_gradients(rng, n, fin, fout):
    layer = Dense(fin, fout, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(fout)
    errors = check_layer(layer, rng.standard_normal((n, fin)), rng)
    assert max(errors.values()) < 1e-6, errors


def test_dense_forward_matches_definition(rng):
    layer = Dense(5, 3, rng=rng, dtype=np.float64)
    layer.params["b"][:] = rng.standard_normal(3)
    x = rng.standard_normal((4, 5))
    y = layer.forward(x)
    W, b = layer.params["W"], layer.params["b"]
    expected = np.array([[sum(x[n, i] * W[i, j] for i in range(5)) + b[j] for j in range(3)] for n in range(4)])
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_glorot_uniform_bounds_and_seed():
    a, b = Dense(300, 100, rng=7), Dense(300, 100, rng=7)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    limit = np.sqrt(6 / 400)
    assert np.abs(a.params["W"]).max() <= limit
    assert np.abs(a.params["W"]).max() > 0.95 * limit
    assert not a.params["b"].any()


def test_grads_accumulate_and_param_grads_false_leaves_them(rng):
    layer = Dense(3, 2, rng=rng)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dy = rng.standard_normal((4, 2)).astype(np.float32)
    layer.forward(x)
    layer.backward(dy)
    once = layer.grads["W"].copy()
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["W"], 2 * once, rtol=1e-6)
    layer.backward(dy, param_grads=False)
    np.testing.assert_allclose(layer.grads["W"], 2 * once, rtol=1e-6)


def test_bad_input_errors_name_layer(rng):
    model = Sequential(Dense(3, 4, rng=rng), Dense(4, 2, rng=rng), name="D")
    with pytest.raises(ValueError, match=r"D\[0\] Dense\(3, 4\).*\(N, 3\).*\(5, 4\)"):
        model.forward(np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"dtype float32.*float64"):
        model.forward(np.zeros((5, 3), np.float64))
    with pytest.raises(ValueError, match="dtype"):
        model.forward(np.zeros((5, 3), np.int64))
    with pytest.raises(RuntimeError, match="before forward"):
        Dense(3, 4).backward(np.zeros((5, 4), np.float32))
    layer = Dense(3, 4)
    layer.forward(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match="upstream gradient"):
        layer.backward(np.zeros((5, 3), np.float32))


def test_sequential_gradients_and_frozen_backward(rng):
    model = Sequential(Dense(4, 5, rng=rng, dtype=np.float64), Dense(5, 3, rng=rng, dtype=np.float64))
    errors = check_layer(model, rng.standard_normal((3, 4)), rng)
    assert max(errors.values()) < 1e-6, errors
    model.zero_grad()
    model.forward(rng.standard_normal((3, 4)))
    dx = model.backward(rng.standard_normal((3, 3)), param_grads=False)
    assert dx.shape == (3, 4)
    assert all(not g.any() for _, layer in model.named_layers() for g in layer.grads.values())
    model.forward(rng.standard_normal((3, 4)))
    assert model.backward(rng.standard_normal((3, 3)), input_grad=False) is None
