"""The fused epilogues and Sequential's fusion plan on the CPU (reference and Numba kernels).

- The reference's fused ops equal the unfused reference ops followed by the activation ops (the existing,
  separately tested definitions), so the fused math is anchored to what the layers did before.
- The Numba ops equal the reference on fresh random inputs: float64 and float32, odd sizes, strides and
  paddings, batch 1, channel counts on both sides of conv.py's NHWC threshold, slope None / 0 / 0.2, and
  gradient buffers that already hold a gradient (the ops add into them).
- Fused pairs pass float64 finite-difference gradient checks with a random upstream gradient.
- A fused Sequential gives the unfused one's outputs and gradients (both kernel sets), with the same
  structure (layers, names, state_dict keys), the ``logits=True`` stop and param_grads/input_grad.
"""

from __future__ import annotations

import numpy as np
import pytest
from tinygan.kernels import cpu as N
from tinygan.kernels import reference as R

from tinygan import models
from tinygan.gradcheck import check_layer
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
    Sequential,
    Sigmoid,
    Tanh,
)

SLOPES = [None, 0.0, 0.2]
DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-12, np.float32: 2e-5}  # relative norm error

# (N, C, H, W, Cout, kernel, stride, padding)
CONV_CASES = [
    (2, 3, 9, 7, 5, (3, 3), (2, 2), (1, 1)),
    (1, 5, 8, 8, 17, (3, 3), (1, 1), (1, 1)),  # batch 1
    (3, 4, 11, 10, 6, (5, 5), (2, 2), (2, 2)),
    (2, 3, 7, 9, 4, (3, 2), (2, 3), (0, 1)),  # non-square kernel, stride and padding
    (2, 18, 6, 5, 20, (3, 3), (2, 2), (1, 1)),  # >= 16 channels: the NHWC tiles
]
# (N, Cin, H, W, Cout, kernel, stride, padding, output_padding)
CONVT_CASES = [
    (2, 3, 4, 5, 2, (4, 4), (2, 2), (1, 1), (0, 0)),
    (1, 2, 3, 3, 3, (3, 3), (2, 2), (1, 1), (1, 1)),  # batch 1
    (2, 2, 5, 4, 3, (3, 2), (1, 1), (0, 1), (0, 0)),
    (2, 17, 4, 4, 18, (5, 5), (2, 2), (2, 2), (1, 1)),  # the DCGAN geometry, NHWC tiles
]


def rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


def act_ref(z, slope):
    """The activation layers' own ops (the definitions the fused epilogue must reproduce)."""
    if slope is None:
        return z
    return R.relu_forward(z) if slope == 0 else R.leaky_relu_forward(z, slope)


def act_grad_ref(dy, z, slope):
    if slope is None:
        return dy
    return R.relu_backward(dy, R.relu_forward(z)) if slope == 0 else R.leaky_relu_backward(dy, z, slope)


def buffers(rng, *shapes, dtype):
    """Gradient buffers that already hold something: the fused ops must add into them."""
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# -- the reference's fused ops against the unfused reference ---------------------------------------------


@pytest.mark.parametrize("slope", SLOPES)
def test_reference_fused_dense_is_dense_then_activation(rng, slope):
    x, W, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    z = R.dense_forward(x, W, b)
    y = R.dense_forward(x, W, b, slope)
    np.testing.assert_allclose(y, act_ref(z, slope), rtol=0, atol=0)
    dy = rng.standard_normal(y.shape)
    dz = act_grad_ref(dy, z, slope)
    dW, db = buffers(rng, W.shape, b.shape, dtype=np.float64)
    dW0, db0 = dW.copy(), db.copy()
    dx = R.dense_backward(dy, x, W, y if slope is not None else None, slope, dW, db)
    gW, gb = R.dense_backward_weight(dz, x)
    np.testing.assert_allclose(dx, R.dense_backward_data(dz, W), rtol=1e-13)
    np.testing.assert_allclose(dW, dW0 + gW, rtol=1e-13)
    np.testing.assert_allclose(db, db0 + gb, rtol=1e-13)


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("case", CONV_CASES[:2])
def test_reference_fused_conv2d_is_conv2d_then_activation(rng, slope, case):
    n, c, h, w, cout, k, s, p = case
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((cout, c, *k)), rng.standard_normal(cout)
    z, cols = R.conv2d_forward(x, W, b, s, p)
    y, _ = R.conv2d_forward(x, W, b, s, p, slope)
    np.testing.assert_array_equal(y, act_ref(z, slope))
    dy = rng.standard_normal(y.shape)
    dz = act_grad_ref(dy, z, slope)
    dW, db = buffers(rng, W.shape, b.shape, dtype=np.float64)
    dW0, db0 = dW.copy(), db.copy()
    dx = R.conv2d_backward(dy, cols, W, x.shape, s, p, y, slope, dW, db)
    gW, gb = R.conv2d_backward_weight(dz, cols, W.shape)
    np.testing.assert_allclose(dx, R.conv2d_backward_data(dz, W, x.shape, s, p), rtol=1e-13)
    np.testing.assert_allclose(dW, dW0 + gW, rtol=1e-13)
    np.testing.assert_allclose(db, db0 + gb, rtol=1e-13)


@pytest.mark.parametrize("slope", SLOPES)
def test_reference_fused_conv_transpose2d_is_conv_transpose2d_then_activation(rng, slope):
    n, c, h, w, cout, k, s, p, op = CONVT_CASES[0]
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, cout, *k)), rng.standard_normal(cout)
    z = R.conv_transpose2d_forward(x, W, b, s, p, op)
    y = R.conv_transpose2d_forward(x, W, b, s, p, op, slope)
    np.testing.assert_array_equal(y, act_ref(z, slope))
    dy = rng.standard_normal(y.shape)
    dz = act_grad_ref(dy, z, slope)
    dW, db = buffers(rng, W.shape, b.shape, dtype=np.float64)
    dW0, db0 = dW.copy(), db.copy()
    dx = R.conv_transpose2d_backward(dy, x, W, s, p, y, slope, dW, db)
    gW, gb = R.conv_transpose2d_backward_weight(dz, x, W.shape, s, p)
    np.testing.assert_allclose(dx, R.conv_transpose2d_backward_data(dz, W, s, p)[0], rtol=1e-13)
    np.testing.assert_allclose(dW, dW0 + gW, rtol=1e-13)
    np.testing.assert_allclose(db, db0 + gb, rtol=1e-13)


def test_the_fused_backward_needs_y_for_a_slope(rng):
    x, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    dy = rng.standard_normal((4, 2))
    for K in (R, N):
        with pytest.raises(ValueError, match="dense_backward: slope=0.2 needs y"):
            K.dense_backward(dy, x, W, None, 0.2)
        with pytest.raises(
            ValueError, match=r"dense_backward: y of shape \(3, 2\) does not match dy of shape \(4, 2\)"
        ):
            K.dense_backward(dy, x, W, dy[:3], 0.2)


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(6, 3), (2, 4, 3, 5)])
def test_reference_fused_batchnorm_is_batchnorm_then_activation(rng, slope, shape):
    x = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    z, *stats = R.batchnorm_forward(x, gamma, beta, 1e-5)
    y, *fused_stats = R.batchnorm_forward(x, gamma, beta, 1e-5, slope)
    np.testing.assert_array_equal(y, act_ref(z, slope))
    for a, b in zip(stats, fused_stats):
        np.testing.assert_array_equal(a, b)
    dy = rng.standard_normal(shape)
    _, _, xhat, inv_std = stats
    want = R.batchnorm_backward(act_grad_ref(dy, z, slope), xhat, inv_std, gamma)
    got = R.batchnorm_backward(dy, xhat, inv_std, gamma, y if slope is not None else None, slope)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(7, 5), (1, 3, 4, 6), (3, 17, 5, 3)])
def test_numba_fused_batchnorm_matches_the_reference(rng, numba_threads, dtype, slope, shape):
    x = (3 + rng.standard_normal(shape)).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    got = N.batchnorm_forward(x, gamma, beta, 1e-5, slope)
    want = R.batchnorm_forward(*(a.astype(np.float64) for a in (x, gamma, beta)), 1e-5, slope)
    for a, b in zip(got, want):
        assert a.dtype == dtype and rel(a, b) <= TOL[dtype]
    y, _, _, xhat, inv_std = got
    dy = rng.standard_normal(shape).astype(dtype)
    gate = y if slope is not None else None
    got = N.batchnorm_backward(dy, xhat, inv_std, gamma, gate, slope)
    f64 = [None if a is None else a.astype(np.float64) for a in (dy, xhat, inv_std, gamma, gate)]
    want = R.batchnorm_backward(*f64, slope)
    for a, b in zip(got, want):
        assert a.dtype == dtype and rel(a, b) <= TOL[dtype]
    with pytest.raises(ValueError, match="needs y"):
        N.batchnorm_backward(dy, xhat, inv_std, gamma, None, 0.2)


# -- Numba against the reference -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(1, 7), (13, 1), (125, 33)])
def test_numba_dense_ops_match_the_reference(rng, numba_threads, dtype, slope, shape):
    n, out = shape
    x = rng.standard_normal((n, 9)).astype(dtype)
    W, b = rng.standard_normal((9, out)).astype(dtype), rng.standard_normal(out).astype(dtype)
    y = N.dense_forward(x, W, b, slope)
    y_ref = R.dense_forward(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64), slope)
    assert y.dtype == dtype and rel(y, y_ref) <= TOL[dtype]
    dy = rng.standard_normal(y.shape).astype(dtype)
    gate = y if slope is not None else None
    for input_grad, with_grads in ((True, True), (False, True), (True, False)):
        dW, db = buffers(rng, W.shape, b.shape, dtype=dtype) if with_grads else (None, None)
        rW, rb = (dW.astype(np.float64), db.astype(np.float64)) if with_grads else (None, None)
        dx = N.dense_backward(dy, x, W, gate, slope, dW, db, input_grad)
        # The reference gets the fused output y in float64: the branch act'(y) takes is the same.
        f64 = [None if a is None else a.astype(np.float64) for a in (dy, x, W, gate)]
        dx_ref = R.dense_backward(*f64[:3], f64[3], slope, rW, rb, input_grad)
        if input_grad:
            assert dx.dtype == dtype and rel(dx, dx_ref) <= TOL[dtype]
        else:
            assert dx is None
        if with_grads:
            assert dW.dtype == dtype and rel(dW, rW) <= TOL[dtype] and rel(db, rb) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_numba_conv2d_ops_match_the_reference(rng, dtype, slope, case):
    n, c, h, w, cout, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W, b = rng.standard_normal((cout, c, *k)).astype(dtype), rng.standard_normal(cout).astype(dtype)
    f64 = [a.astype(np.float64) for a in (x, W, b)]
    y, cols = N.conv2d_forward(x, W, b, s, p, slope)
    y_ref, cols_ref = R.conv2d_forward(*f64, s, p, slope)
    assert y.dtype == dtype and rel(y, y_ref) <= TOL[dtype]
    dy = rng.standard_normal(y.shape).astype(dtype)
    gate = y if slope is not None else None
    dW, db = buffers(rng, W.shape, b.shape, dtype=dtype)
    rW, rb = dW.astype(np.float64), db.astype(np.float64)
    dx = N.conv2d_backward(dy, cols, W, x.shape, s, p, gate, slope, dW, db)
    gate64 = None if gate is None else gate.astype(np.float64)
    dx_ref = R.conv2d_backward(dy.astype(np.float64), cols_ref, f64[1], x.shape, s, p, gate64, slope, rW, rb)
    assert dx.dtype == dtype and rel(dx, dx_ref) <= TOL[dtype]
    assert rel(dW, rW) <= TOL[dtype] and rel(db, rb) <= TOL[dtype]
    # Weight gradients only, and input gradient only.
    assert N.conv2d_backward(dy, cols, W, x.shape, s, p, gate, slope, dW, db, input_grad=False) is None
    rel_before = rel(dW, rW)
    assert rel_before > 1e-3  # added a second time: no longer the reference's once-added buffer
    dx2 = N.conv2d_backward(dy, cols, W, x.shape, s, p, gate, slope)
    assert rel(dx2, dx_ref) <= TOL[dtype]


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("case", CONV_CASES)
def test_numba_gated_conv2d_backward_is_the_composed_one_and_yields_to_a_swapped_kernel(rng, monkeypatch, slope, case):
    """Conv2d's gated backward (dz formed in the tiles' copies of dy) gives the bits of the activation's own
    pass followed by the split ops; once the activation's backward is swapped on the namespace (the
    walkthrough's --break), the swapped kernel is the one that runs."""
    n, c, h, w, cout, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    W, b = rng.standard_normal((cout, c, *k)).astype(np.float32), rng.standard_normal(cout).astype(np.float32)
    y, cols = N.conv2d_forward(x, W, b, s, p, slope)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    start_W, start_b = buffers(rng, W.shape, b.shape, dtype=np.float32)
    dW, db = start_W.copy(), start_b.copy()
    dx = N.conv2d_backward(dy, cols, W, x.shape, s, p, y, slope, dW, db)
    dz = N.relu_backward(dy, y) if slope == 0 else N.leaky_relu_backward(dy, y, slope)
    cW, cb = start_W.copy(), start_b.copy()
    gW, gb = N.conv2d_backward_weight(dz, cols, W.shape)
    cW += gW
    cb += gb
    np.testing.assert_array_equal(dx, N.conv2d_backward_data(dz, W, x.shape, s, p))
    np.testing.assert_array_equal(dW, cW)
    np.testing.assert_array_equal(db, cb)
    name = "relu_backward" if slope == 0 else "leaky_relu_backward"
    calls = []
    own = getattr(N, name)
    monkeypatch.setattr(N, name, lambda *a: calls.append(1) or 2 * own(*a))  # a "broken" kernel: twice dz
    dx2 = N.conv2d_backward(dy, cols, W, x.shape, s, p, y, slope, None, None)
    assert calls == [1]
    np.testing.assert_allclose(dx2, 2 * dx, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("case", CONVT_CASES)
def test_numba_conv_transpose2d_ops_match_the_reference(rng, dtype, slope, case):
    n, c, h, w, cout, k, s, p, op = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W, b = rng.standard_normal((c, cout, *k)).astype(dtype), rng.standard_normal(cout).astype(dtype)
    f64 = [a.astype(np.float64) for a in (x, W, b)]
    y = N.conv_transpose2d_forward(x, W, b, s, p, op, slope)
    y_ref = R.conv_transpose2d_forward(*f64, s, p, op, slope)
    assert y.dtype == dtype and rel(y, y_ref) <= TOL[dtype]
    dy = rng.standard_normal(y.shape).astype(dtype)
    gate = y if slope is not None else None
    dW, db = buffers(rng, W.shape, b.shape, dtype=dtype)
    rW, rb = dW.astype(np.float64), db.astype(np.float64)
    dx = N.conv_transpose2d_backward(dy, x, W, s, p, gate, slope, dW, db)
    gate64 = None if gate is None else gate.astype(np.float64)
    dx_ref = R.conv_transpose2d_backward(dy.astype(np.float64), f64[0], f64[1], s, p, gate64, slope, rW, rb)
    assert dx.dtype == dtype and rel(dx, dx_ref) <= TOL[dtype]
    assert rel(dW, rW) <= TOL[dtype] and rel(db, rb) <= TOL[dtype]
    assert N.conv_transpose2d_backward(dy, x, W, s, p, gate, slope, None, None, input_grad=False) is None


def test_numba_epilogue_lets_nan_through(rng):
    """A diverged model must show: NaN stays NaN through the fused activation, as through the layers."""
    x = rng.standard_normal((3, 4)).astype(np.float32)
    W = rng.standard_normal((4, 2)).astype(np.float32)
    b = np.array([np.nan, 0.0], np.float32)
    for slope in (0.0, 0.2):
        y = N.dense_forward(x, W, b, slope)
        assert np.isnan(y[:, 0]).all() and not np.isnan(y[:, 1]).any()


# -- gradient checks of fused pairs ----------------------------------------------------------------------


def _fused_pairs(rng):
    yield "dense+relu", Sequential(Dense(5, 4, rng=rng, dtype=np.float64), ReLU()), (3, 5)
    yield "dense+leaky", Sequential(Dense(5, 4, rng=rng, dtype=np.float64), LeakyReLU(0.2)), (1, 5)
    conv = Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), rng=rng, dtype=np.float64)
    yield "conv+leaky", Sequential(conv, LeakyReLU(0.3)), (2, 3, 7, 6)
    conv = Conv2d(2, 3, 3, stride=1, padding=1, rng=rng, dtype=np.float64)
    yield "conv+relu", Sequential(conv, ReLU()), (1, 2, 5, 5)
    convt = ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=rng, dtype=np.float64)
    yield "convT+relu", Sequential(convt, ReLU()), (2, 3, 3, 4)
    convt = ConvTranspose2d(2, 3, (4, 3), stride=(2, 1), padding=(1, 0), rng=rng, dtype=np.float64)
    yield "convT+leaky", Sequential(convt, LeakyReLU(0.1)), (1, 2, 3, 3)
    yield "bn2d+leaky", Sequential(BatchNorm2d(3, dtype=np.float64), LeakyReLU(0.2)), (2, 3, 3, 5)
    yield "bn1d+relu", Sequential(BatchNorm1d(4, dtype=np.float64), ReLU()), (5, 4)


@pytest.mark.parametrize(
    "which",
    ["dense+relu", "dense+leaky", "conv+leaky", "conv+relu", "convT+relu", "convT+leaky", "bn2d+leaky", "bn1d+relu"],
)
def test_fused_pairs_pass_the_gradient_check(cpu_kernels, which):
    rng = np.random.default_rng(7)
    model, shape = next((m, s) for name, m, s in _fused_pairs(rng) if name == which)
    for key in ("b", "beta", "gamma"):  # not all zero (one)
        if key in model[0].params:
            model[0].params[key][:] = rng.standard_normal(model[0].params[key].shape)
    assert model.plan[0].fused
    x = rng.standard_normal(shape)
    errors = check_layer(model, x, rng)
    assert max(errors.values()) < 1e-6, errors


# -- Sequential: fused against unfused --------------------------------------------------------------------


def _mixed_model(dtype):
    """Every fusable pair and the unfused layers around them, with a final Sigmoid."""
    rng = np.random.default_rng(3)
    return Sequential(
        Conv2d(3, 5, 3, stride=2, padding=1, rng=rng, dtype=dtype),
        LeakyReLU(0.2),
        ConvTranspose2d(5, 4, 4, stride=2, padding=1, rng=rng, dtype=dtype),
        ReLU(),
        BatchNorm2d(4, dtype=dtype),
        LeakyReLU(0.2),  # after BatchNorm: fused into its normalization
        Conv2d(4, 2, 3, stride=1, padding=1, rng=rng, dtype=dtype),
        LeakyReLU(-0.5),  # a negative slope: not fusable
        Conv2d(2, 2, 3, stride=2, padding=1, rng=rng, dtype=dtype),
        Tanh(),
        Flatten(),
        Dense(2 * 3 * 4, 6, rng=rng, dtype=dtype),
        ReLU(),
        Dense(6, 1, rng=rng, dtype=dtype),
        Sigmoid(),
        name="M",
    )


def _grads(model):
    return {f"{p}.{k}": v.copy() for p, layer in model.named_layers() for k, v in layer.grads.items()}


def _pass(model, x, dy_seed, logits, param_grads=True, input_grad=True):
    model.zero_grad()
    y = model.forward(x, training=True, logits=logits)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(y.dtype)
    dx = model.backward(dy, param_grads=param_grads, input_grad=input_grad)
    return y, dx, _grads(model)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logits", [False, True])
def test_fused_sequential_equals_unfused(cpu_kernels, dtype, logits):
    model = _mixed_model(dtype)
    assert [(s.start, s.stop) for s in model.plan if s.fused] == [(0, 2), (2, 4), (4, 6), (11, 13)]
    x = np.random.default_rng(5).standard_normal((3, 3, 6, 8)).astype(dtype)
    tol = TOL[dtype] * 10
    for param_grads, input_grad in ((True, True), (False, True), (True, False)):
        model.set_fusion(False)
        y0, dx0, g0 = _pass(model, x, 9, logits, param_grads, input_grad)
        model.set_fusion(True)
        y1, dx1, g1 = _pass(model, x, 9, logits, param_grads, input_grad)
        assert rel(y1, y0) <= tol
        if input_grad:
            assert rel(dx1, dx0) <= tol
        else:
            assert dx0 is None and dx1 is None
        assert g0.keys() == g1.keys()
        for key in g0:
            assert rel(g1[key], g0[key]) <= tol, key
        if param_grads:
            assert np.abs(g1["0.W"]).sum() > 0  # the weights did get gradients
        else:
            assert all(not np.any(v) for v in g1.values())


@pytest.mark.parametrize("build", ["mnist_G", "mnist_D", "dcgan_D", "dcgan_G"])
def test_seed_models_fused_equal_unfused(cpu_kernels, build):
    family, role = {"mnist_G": ("mnist_dense", "G"), "mnist_D": ("mnist_dense", "D"),
                    "dcgan_D": ("dcgan", "D"), "dcgan_G": ("dcgan", "G")}[build]  # fmt: skip
    fused, plain = models.build(family, role), models.build(family, role)
    plain.set_fusion(False)
    shape = {"mnist_G": (4, 100), "mnist_D": (4, 784), "dcgan_D": (4, 3, 32, 32), "dcgan_G": (4, 100)}[build]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    # Evaluation mode keeps Dropout out of the comparison (its masks are drawn per forward).
    outs = []
    for model in (plain, fused):
        model.zero_grad()
        y = model.forward(x, training=(role == "G"), logits=True)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        outs.append((y, model.backward(dy), _grads(model)))
    (y0, dx0, g0), (y1, dx1, g1) = outs
    assert rel(y1, y0) <= 1e-5 and rel(dx1, dx0) <= 1e-5
    for key in g0:
        # Against the layer's largest gradient: the bias of a layer followed by BatchNorm has a zero gradient
        # in exact arithmetic (BatchNorm removes any per-channel constant), so in float32 it is rounding noise
        # of ~1e-7, which the fused and unfused orders round differently.
        layer = key.rsplit(".", 1)[0]
        scale = max(np.linalg.norm(v) for k, v in g0.items() if k.rsplit(".", 1)[0] == layer)
        assert np.linalg.norm(g1[key] - g0[key]) <= 1e-5 * scale, key
    assert fused.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batchnorm_layer_equals_batchnorm_then_activation(cpu_kernels, slope, training):
    """The layer's fused step in training and in evaluation (running statistics): the outputs, dx and the
    parameter gradients of BatchNorm followed by the activation layer."""
    rng = np.random.default_rng(11)
    x = (1 + rng.standard_normal((4, 3, 5, 2))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    outs = []
    for fuse in (False, True):
        bn = BatchNorm2d(3)
        bn.params["gamma"][:], bn.params["beta"][:] = gamma, beta
        model = Sequential(bn, ReLU() if slope == 0 else LeakyReLU(slope), fuse=fuse)
        model.forward(x, training=True)  # running statistics to evaluate with
        model.zero_grad()
        y = model.forward(x, training=training)
        dx = model.backward(dy)
        outs.append((y, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy()))
    assert model.plan[0].fused
    for got, want in zip(outs[1], outs[0]):
        assert rel(got, want) <= 1e-6


# -- the plan itself ----------------------------------------------------------------------------------------


def test_plan_of_the_seed_models():
    D = models.build("mnist_dense", "D")
    assert [(s.start, s.stop, s.fused) for s in D.plan] == [
        (0, 2, True), (2, 3, False), (3, 5, True), (5, 6, False), (6, 8, True), (8, 9, False), (9, 10, False),
        (10, 11, False),
    ]  # fmt: skip
    assert len(D.layers) == 11 and isinstance(D[1], ReLU) and isinstance(D[2], Dropout)
    text = models.build("dcgan", "D").describe()
    assert text.splitlines()[0] == "D: 6 steps for 10 layers, 4 fused"
    assert "0-1: Conv2d(3, 64" in text and "[fused: LeakyReLU(0.2) in the epilogue]" in text
    assert "8: Flatten()" in text
    text = models.build("dcgan", "G").describe()
    assert text.splitlines()[0] == "G: 9 steps for 12 layers, 3 fused"
    assert "2-3: BatchNorm2d(128" in text and "8-9: BatchNorm2d(64" in text and "11: Tanh()" in text


def test_fusion_can_be_turned_off_and_on():
    model = Sequential(Dense(3, 2, rng=0), ReLU(), Dense(2, 1, rng=1), fuse=False)
    assert not model.fuse and not any(s.fused for s in model.plan)
    assert "(fusion off)" in model.describe().splitlines()[0]
    assert model.set_fusion(True) is model
    assert [s.fused for s in model.plan] == [True, False]
    with pytest.raises(ValueError, match=r"^Sequential: fuse must be True or False, got 'yes'$"):
        model.set_fusion("yes")


def test_the_plan_follows_the_layers_and_slopes():
    act = LeakyReLU(0.2)
    model = Sequential(Dense(3, 2, rng=0), act)
    assert model.plan[0].fused and model.plan[0].slope == 0.2
    act.negative_slope = -0.1  # a negative slope: the sign of y no longer tells the branch; not fused
    assert not model.plan[0].fused
    act.negative_slope = 0.5
    assert model.plan[0].slope == 0.5
    model.layers.append(ReLU())
    assert len(model.plan) == 2 and model.plan[-1].layers[0] is model.layers[-1]


def test_backward_runs_the_steps_its_forward_ran():
    rng = np.random.default_rng(0)
    model = Sequential(Dense(3, 4, rng=0), LeakyReLU(0.2), Dense(4, 2, rng=1))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 2)).astype(np.float32)
    y = model.forward(x)
    model.set_fusion(False)  # after the forward: the backward still runs the fused steps
    dx = model.backward(dy)
    model.zero_grad()
    assert np.allclose(model.forward(x), y, atol=1e-6)
    assert np.allclose(model.backward(dy), dx, atol=1e-6)


def test_a_fused_activation_does_not_run_and_says_so():
    model = Sequential(Dense(3, 4, rng=0), ReLU())
    model.forward(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"ReLU\(\): backward\(\) called before forward\(\)"):
        model[1].backward(np.ones((2, 4), np.float32))


@pytest.mark.parametrize("slope", [-0.1, float("nan"), "0.2", True])
def test_weight_layers_refuse_a_bad_slope(slope):
    layer = Dense(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"^Dense: slope \(the fused activation\) must be None or a finite number"):
        layer.forward(np.ones((1, 3), np.float32), slope=slope)


def test_standalone_layers_keep_their_own_passes(cpu_kernels):
    """Unfused, each layer's forward and backward are the ones of before: a Dense then a ReLU by hand equal
    the Dense with the ReLU fused into it."""
    rng = np.random.default_rng(2)
    dense, relu = Dense(6, 5, rng=4), ReLU()
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    y = relu.forward(dense.forward(x))
    dx = dense.backward(relu.backward(dy))
    gW = dense.grads["W"].copy()
    dense.zero_grad()
    y2 = dense.forward(x, slope=0.0)
    dx2 = dense.backward(dy)
    assert rel(y2, y) <= 1e-6 and rel(dx2, dx) <= 1e-6 and rel(dense.grads["W"], gW) <= 1e-6
