"""Edge cases every layer shares (issue 13, part 6): an empty batch, and backward's checks on dy.

Each test runs on the reference and the Numba kernels (the ``cpu_kernels`` fixture), and the GPU variants
on the CUDA kernels where a GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygan.backend import to_numpy
from tinygan.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    Sequential,
    Sigmoid,
    Tanh,
)

# (factory, input shape of a batch of 2): every layer class, odd sizes, strides and padding.
LAYERS = [
    (lambda: Dense(5, 3, rng=0), (2, 5)),
    (lambda: Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1, rng=0), (2, 3, 7, 6)),
    (lambda: ConvTranspose2d(3, 4, 4, stride=2, padding=1, output_padding=1, rng=0), (2, 3, 4, 5)),
    (lambda: BatchNorm1d(5), (2, 5)),
    (lambda: BatchNorm2d(3), (2, 3, 4, 4)),
    (lambda: BatchNorm2d(3, momentum=None), (2, 3, 4, 4)),
    (lambda: ReLU(), (2, 5)),
    (lambda: LeakyReLU(0.2), (2, 5)),
    (lambda: Sigmoid(), (2, 3, 2, 2)),
    (lambda: Tanh(), (2, 5)),
    (lambda: Dropout(0.3, rng=0), (2, 5)),
    (lambda: Flatten(), (2, 3, 2, 2)),
    (lambda: Reshape(3, 2, 2), (2, 12)),
]
IDS = ["Dense", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm2d-cma", "ReLU", "LeakyReLU"]
IDS += ["Sigmoid", "Tanh", "Dropout", "Flatten", "Reshape"]


def _empty_batch_round_trip(layer, shape, training, xp):
    """Forward and backward an N = 0 batch; return the layer's state before and after, as host arrays."""
    before = {k: to_numpy(v).copy() for store in (layer.params, layer.buffers) for k, v in store.items()}
    x = xp.zeros((0, *shape[1:]), dtype=np.float32)
    y = layer.forward(x, training=training)
    expected = layer.output_shape((0, *shape[1:]))
    assert y.shape == expected and y.dtype == np.float32
    assert type(y) is type(x)
    dx = layer.backward(xp.zeros(expected, dtype=np.float32))
    assert dx.shape == x.shape and dx.dtype == np.float32
    for key, g in layer.grads.items():
        assert g.shape == layer.params[key].shape and not to_numpy(g).any(), key
    after = {k: to_numpy(v) for store in (layer.params, layer.buffers) for k, v in store.items()}
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(cpu_kernels, make, shape, training):
    layer = make()
    _empty_batch_round_trip(layer, shape, training, np)
    # The layer still works on a real batch afterwards, and its gradients then are not all zero.
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = layer.forward(x, training=training)
    layer.backward(np.ones_like(y) + np.arange(y.size, dtype=np.float32).reshape(y.shape) % 3)
    assert not layer.grads or any(g.any() for g in layer.grads.values())


def test_an_empty_batch_through_a_whole_model(cpu_kernels):
    from tinygan.models import dcgan_discriminator, dcgan_generator

    G, D = dcgan_generator(), dcgan_discriminator()
    z = np.zeros((0, 100), np.float32)
    images = G.forward(z)
    assert images.shape == (0, 3, 32, 32)
    logits = D.forward(images, logits=True)
    assert logits.shape == (0, 1)
    assert D.backward(np.zeros((0, 1), np.float32)).shape == (0, 3, 32, 32)


@pytest.mark.gpu
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_gpu_empty_batch_gives_empty_outputs_and_zero_gradients(make, shape, training):
    import cupy

    _empty_batch_round_trip(make().to("gpu"), shape, training, cupy)


def _forward(make, shape):
    layer = make()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y = layer.forward(x)
    return layer, y


@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.float16])
def test_backward_refuses_a_dy_of_another_dtype(cpu_kernels, make, shape, dtype):
    layer, y = _forward(make, shape)
    with pytest.raises(ValueError) as err:
        layer.backward(np.ones(y.shape, dtype=dtype))
    name = type(layer).__name__
    assert str(err.value) == f"{name}: expected upstream gradient of dtype float32, received {np.dtype(dtype)}"
    # The right dtype passes, and the result keeps it (never a silent float64).
    dx = layer.backward(np.ones(y.shape, np.float32))
    assert dx.dtype == np.float32


@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_backward_refuses_a_dy_of_another_shape(cpu_kernels, make, shape):
    layer, y = _forward(make, shape)
    name = type(layer).__name__
    for bad in [(y.shape[0] + 1, *y.shape[1:]), y.shape[:-1], (*y.shape, 1)]:
        with pytest.raises(ValueError) as err:
            layer.backward(np.ones(bad, np.float32))
        assert str(err.value) == f"{name}: expected upstream gradient of shape {tuple(y.shape)}, received {bad}"
    with pytest.raises(ValueError, match=rf"^{name}: expected an array as upstream gradient, received list$"):
        layer.backward(np.ones(y.shape, np.float32).tolist())


@pytest.mark.parametrize("fuse,named", [(False, r"G\[1\] ReLU\(\)"), (True, r"G\[0\] Dense\(4, 3\)")])
def test_a_sequential_names_the_layer_whose_dy_is_wrong(cpu_kernels, fuse, named):
    # Fused, Dense + ReLU run as one step: the Dense (whose output is the activated one) receives dy.
    model = Sequential(Dense(4, 3, rng=0), ReLU(), name="G", fuse=fuse)
    model.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=rf"^{named}: expected upstream gradient of dtype float32, received"):
        model.backward(np.ones((2, 3), np.float64))


@pytest.mark.gpu
@pytest.mark.parametrize("make,shape", LAYERS, ids=IDS)
def test_gpu_backward_refuses_a_dy_of_another_dtype_or_device(make, shape):
    import cupy

    layer = make().to("gpu")
    y = layer.forward(cupy.asarray(np.random.default_rng(1).standard_normal(shape), dtype=cupy.float32))
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"^{name}: expected upstream gradient of dtype float32, received float64$"):
        layer.backward(cupy.ones(y.shape, dtype=cupy.float64))
    with pytest.raises(
        ValueError, match=rf"^{name}: expected the upstream gradient on the gpu, received it on the cpu$"
    ):
        layer.backward(np.ones(y.shape, np.float32))
    assert layer.backward(cupy.ones(y.shape, dtype=cupy.float32)).dtype == cupy.float32


def test_backward_refuses_a_dy_on_another_device(cpu_kernels):
    """The CPU side of the device check: a layer run on host arrays refuses a dy that claims to live elsewhere."""

    class FakeDeviceArray:  # what tinygan.backend.device_of calls a GPU array: a type from the cupy module
        shape, dtype = (2, 3), np.dtype(np.float32)

    FakeDeviceArray.__module__ = "cupy._core"
    layer, _ = _forward(lambda: Dense(5, 3, rng=0), (2, 5))
    with pytest.raises(ValueError, match=r"^Dense: expected the upstream gradient on the cpu, received it on the gpu$"):
        layer.backward(FakeDeviceArray())
