import numpy as np
import pytest

from tinygan.gradcheck import check_layer
from tinygan.layers import Dense, Flatten, Reshape, Sequential


def test_flatten_forward_backward_and_gradients(rng):
    layer = Flatten()
    x = rng.standard_normal((2, 3, 4, 5))
    y = layer.forward(x)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(y[1], x[1].ravel())
    dy = rng.standard_normal((2, 60))
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(2, 3, 4, 5))
    assert layer.output_shape((None, 3, 4, 5)) == (None, 60)
    assert check_layer(Flatten(), rng.standard_normal((1, 3, 2)), rng)["x"] < 1e-9


def test_reshape_forward_backward_and_gradients(rng):
    layer = Reshape(3, 4)
    x = rng.standard_normal((5, 12))
    y = layer.forward(x)
    assert y.shape == (5, 3, 4)
    np.testing.assert_array_equal(y[2, 1], x[2, 4:8])
    dy = rng.standard_normal((5, 3, 4))
    np.testing.assert_array_equal(layer.backward(dy), dy.reshape(5, 12))
    assert Reshape((3, 4)).shape == (3, 4)
    assert layer.output_shape((None, 12)) == (None, 3, 4)
    assert check_layer(Reshape(2, 1, 3), rng.standard_normal((3, 6)), rng)["x"] < 1e-9


def test_in_a_model_with_summary(rng):
    model = Sequential(Dense(4, 12, rng=rng, dtype=np.float64), Reshape(3, 2, 2), Flatten(), name="G")
    errors = check_layer(model, rng.standard_normal((2, 4)), rng)
    assert max(errors.values()) < 1e-6, errors
    assert "(N, 3, 2, 2)" in model.summary((4,), print_fn=lambda s: None)


def test_errors_name_the_layer():
    model = Sequential(Reshape(128, 7, 7), name="G")
    with pytest.raises(ValueError, match=r"G\[0\] Reshape\(128, 7, 7\).*6272 values per sample.*\(5, 100\)"):
        model.forward(np.zeros((5, 100), np.float32))
    with pytest.raises(ValueError, match="positive ints"):
        Reshape(3, 0)
    with pytest.raises(ValueError, match="positive ints"):
        Reshape()
    with pytest.raises(ValueError, match=r"Flatten.*\(N, \.\.\.\).*\(5,\)"):
        Flatten().forward(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="Flatten.*int64"):
        Flatten().forward(np.zeros((5, 2), np.int64))
    with pytest.raises(RuntimeError, match="Reshape.*before forward"):
        Reshape(2, 2).backward(np.zeros((3, 2, 2)))
    layer = Flatten()
    layer.forward(np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="upstream gradient"):
        layer.backward(np.zeros((2, 3, 2)))
