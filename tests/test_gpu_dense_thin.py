"""dense_thin (kernels/gpu/dense_thin.cu): a Dense layer with one output, its forward as a dot product per row and
its input gradient as an outer product, against float64 and against the routing that picks them.

The forward's bound is FP32's own for a sum of k products (as in tests/test_gpu_dense_gemm.py): 2 k u (|x| |w|)
plus a few ulps of the output. The outer product is one rounded product per element: exactly NumPy's float32
product. Sizes: batch 1, sums of length 1, 31, 32 and 33 (a warp's lanes, one short and one over), odd batches.
"""

from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

pytestmark = pytest.mark.gpu

U = 2.0**-24
SHAPES = [(1, 1), (1, 100), (7, 31), (33, 32), (250, 256), (125, 33), (3, 1000)]


@pytest.fixture
def full_precision():
    from tinygan.backend import precision

    with precision("fp32"):
        yield


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [None, 0.0, 0.2])
@pytest.mark.parametrize("m,k", SHAPES)
def test_the_forward_of_one_output_is_within_its_precision(rng, full_precision, m, k, slope, dtype):
    import tinygan.kernels.gpu as K
    from tinygan.kernels.reference import dense as ref

    x64, w64, b64 = rng.standard_normal((m, k)), rng.standard_normal((k, 1)), rng.standard_normal(1)
    want = ref.dense_forward(x64, w64, b64, slope)
    got = K.dense_forward(*(cp.asarray(a.astype(dtype)) for a in (x64, w64, b64)), slope=slope)
    assert got.shape == (m, 1) and got.dtype == dtype
    # The inputs rounded to dtype are the exact inputs of the sum; its own error is what the bound covers.
    xr, wr, br = (a.astype(dtype).astype(np.float64) for a in (x64, w64, b64))
    exact = ref.dense_forward(xr, wr, br, slope)
    u = U if dtype == np.float32 else 2.0**-53
    bound = 2 * (k + 1) * u * (np.abs(xr) @ np.abs(wr) + np.abs(br)) + 4 * u * np.abs(exact) + 1e-300
    err = np.abs(cp.asnumpy(got).astype(np.float64) - exact)
    assert np.all(err <= bound), f"worst error {err.max():.3e} against the bound {bound[np.argmax(err)]}"
    assert np.allclose(cp.asnumpy(got), want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k", SHAPES)
def test_the_input_gradient_of_one_output_is_the_outer_product(rng, full_precision, m, k, dtype):
    import tinygan.kernels.gpu as K

    dz, W = rng.standard_normal((m, 1)).astype(dtype), rng.standard_normal((k, 1)).astype(dtype)
    got = K.dense_backward_data(cp.asarray(dz), cp.asarray(W))
    assert got.shape == (m, k)
    assert np.array_equal(cp.asnumpy(got), dz @ W.T)  # one rounded product per element


@pytest.mark.parametrize("slope", [None, 0.2])
def test_the_whole_backward_of_one_output_matches_the_reference(rng, full_precision, slope):
    """dense_backward with one output: dx from the outer product, dW and db added into their buffers."""
    import tinygan.kernels.gpu as K
    from tinygan.kernels.reference import dense as ref

    m, k = 250, 256
    x, W, b = rng.standard_normal((m, k)), rng.standard_normal((k, 1)), rng.standard_normal(1)
    y = ref.dense_forward(x, W, b, slope)
    dy = rng.standard_normal((m, 1))
    dW0, db0 = rng.standard_normal((k, 1)), rng.standard_normal(1)
    dW_want, db_want = dW0.copy(), db0.copy()
    dx_want = ref.dense_backward(dy, x, W, y, slope, dW_want, db_want)
    dW, db = cp.asarray(dW0), cp.asarray(db0)
    dx = K.dense_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(W), cp.asarray(y), slope, dW, db)
    np.testing.assert_allclose(cp.asnumpy(dx), dx_want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(dW), dW_want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(db), db_want, rtol=1e-12, atol=1e-12)


def test_one_output_runs_on_dense_thin_at_full_precision_only(rng, monkeypatch):
    """The routing: at "fp32" a one-output layer's forward and input gradient are dense_thin's bits; at "tf32" they
    stay cuBLAS's (the precision the user asked for), and a layer with two outputs never takes dense_thin."""
    import tinygan.kernels.gpu as K
    from tinygan.kernels.gpu import dense_thin

    from tinygan.backend import precision

    calls = []
    for name in ("row_dot", "outer"):
        real = getattr(dense_thin, name)
        monkeypatch.setattr(
            "tinygan.kernels.gpu.dense." + name,
            lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw),
        )
    x = cp.asarray(rng.standard_normal((125, 256)).astype(np.float32))
    for setting, outputs, want in (("fp32", 1, ["row_dot", "outer"]), ("tf32", 1, []), ("fp32", 2, [])):
        calls.clear()
        W = cp.asarray(rng.standard_normal((256, outputs)).astype(np.float32))
        with precision(setting):
            K.dense_forward(x, W, cp.zeros(outputs, np.float32))
            K.dense_backward_data(cp.ones((125, outputs), np.float32), W)
        assert calls == want, (setting, outputs, calls)


def test_the_row_sums_give_the_same_bits_every_time(rng, full_precision):
    import tinygan.kernels.gpu as K

    x = cp.asarray(rng.standard_normal((250, 1000)).astype(np.float32))
    W = cp.asarray(rng.standard_normal((1000, 1)).astype(np.float32))
    first = K.dense_forward(x, W, None)
    for _ in range(4):
        assert cp.array_equal(K.dense_forward(x, W, None), first)
