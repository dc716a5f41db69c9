"""The fused epilogues and beta = 1 gradient GEMMs on the GPU, against the float64 reference.

Written without a GPU at hand (the lead runs them on an H200): every new or changed kernel is exercised
directly and through the contract ops, on fresh random inputs, float32 and float64, odd sizes, batch 1,
strides and paddings, slope None / 0 / 0.2, each conv route (implicit GEMM and im2col), fp32 and tf32,
with output pools poisoned with NaN (an element left unwritten shows) and gradient buffers that already
hold a gradient (the ops add into them, in place, at the same address). Then fused Sequentials against
unfused ones, and a fused forward + backward captured as a CUDA graph against eager launches.

Tolerances (relative norm error against float64): fp32 1e-5, tf32 1e-3 (10-bit mantissa products, see
tests/test_gpu_conv.py), float64 1e-12; sums of dy (bias gradients) are FP32/double at every precision:
1e-5. The reference's activation gradient is handed the GPU's own y (in float64), so that it takes the
same branch where a pre-activation lies within rounding of 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from tinygan.kernels import reference as R

from tinygan import backend, models
from tinygan.layers import Conv2d, ConvTranspose2d, Dense, LeakyReLU, ReLU, Sequential

cp = pytest.importorskip("cupy")
from gpu_streams import capture_stream  # noqa: E402  (needs CuPy)

pytestmark = pytest.mark.gpu

SLOPES = [None, 0.0, 0.2]
TOLERANCE = {"fp32": 1e-5, "tf32": 1e-3}

# (N, C, H, W, Cout, kernel, stride, padding): the col2im phase kernels' geometries (3x3 s1, 3x3 s2, 5x5 s2,
# 4x4 s2) and general ones (stride 3, non-square), batch 1, channel counts that leave ragged tiles.
CONV_CASES = [
    (2, 3, 9, 7, 5, (3, 3), (1, 1), (1, 1)),
    (1, 5, 8, 8, 70, (3, 3), (2, 2), (1, 1)),
    (3, 4, 11, 10, 6, (5, 5), (2, 2), (2, 2)),
    (2, 3, 7, 9, 4, (3, 2), (2, 3), (0, 1)),
    (1, 2, 10, 10, 3, (1, 1), (3, 3), (0, 0)),
    (4, 3, 6, 4, 2, (4, 4), (2, 2), (1, 1)),
]
# (N, Cin, H, W, Cout, kernel, stride, padding, output_padding)
CONVT_CASES = [
    (2, 3, 4, 5, 2, (4, 4), (2, 2), (1, 1), (0, 0)),
    (1, 2, 3, 3, 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    (2, 2, 5, 4, 3, (3, 2), (1, 1), (0, 1), (0, 0)),
    (1, 3, 4, 4, 2, (5, 5), (3, 3), (2, 2), (2, 1)),
    (2, 70, 4, 4, 65, (5, 5), (2, 2), (2, 2), (1, 1)),  # the DCGAN geometry
]


@pytest.fixture(params=["implicit", "im2col"])
def route(request, K, monkeypatch):
    """Every conv op on the implicit-GEMM kernels (float32; the epilogue as a pass of its own), or none."""
    from tinygan.kernels.gpu import conv_igemm

    table = {op: 0 for op in conv_igemm.OPS} if request.param == "implicit" else {}
    monkeypatch.setattr(conv_igemm, "ROUTE", {p: dict(table) for p in conv_igemm.PRECISION_KERNEL})
    return request.param


def poison_pool() -> None:
    """Fill free blocks of CuPy's pool with NaN bytes, so outputs allocated next start as NaN."""
    blocks = [cp.full(1 << 22, 0xFF, dtype=cp.uint8) for _ in range(8)]
    cp.cuda.Device().synchronize()
    del blocks


def rel_err(got, want) -> float:
    host = cp.asnumpy(got).astype(np.float64) if isinstance(got, cp.ndarray) else np.asarray(got, np.float64)
    assert host.shape == np.shape(want), (host.shape, np.shape(want))
    assert np.isfinite(host).all(), "non-finite output (an element left unwritten?)"
    return float(np.linalg.norm(host - want) / max(np.linalg.norm(want), 1e-300))


def on_gpu(a, dtype):
    return cp.asarray(np.asarray(a), dtype=dtype)


def act(z, slope):
    return z if slope is None else np.where(z > 0, z, z * slope)


def act_grad(dy, y, slope):
    return dy if slope is None else np.where(y > 0, dy, dy * slope)


def grad_buffers(rng, dtype, *shapes):
    """Gradient buffers that already hold a gradient, on the GPU, and their float64 host copies."""
    host = [rng.standard_normal(s) for s in shapes]
    return [on_gpu(h, dtype) for h in host], [h.astype(dtype).astype(np.float64) for h in host]


def cases_for(dtype, precision):
    return {np.float64: 1e-12, np.float32: TOLERANCE[precision]}[dtype]


# -- the layout kernels with their epilogues ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 64, 33)])
def test_layout_epilogues(rng, dtype, slope, shape):
    from tinygan.kernels.gpu import layout

    n, c, s = shape
    mat = rng.standard_normal((c, n * s))
    bias = rng.standard_normal(c)
    want = act(mat.reshape(c, n, s).transpose(1, 0, 2) + bias[None, :, None], slope)
    poison_pool()
    got = layout.cns_to_ncs(on_gpu(mat, dtype), (n, c, s), on_gpu(bias, dtype), slope)
    assert got.dtype == dtype and rel_err(got, want) <= 1e-6
    poison_pool()
    got = layout.cns_to_ncs(on_gpu(mat, dtype), (n, c, s), None, slope)
    assert rel_err(got, act(mat.reshape(c, n, s).transpose(1, 0, 2), slope)) <= 1e-6

    dy, y = rng.standard_normal((n, c, s)), rng.standard_normal((n, c, s))
    poison_pool()
    got = layout.ncs_to_cns(on_gpu(dy, dtype), on_gpu(y, dtype) if slope is not None else None, slope)
    want = act_grad(dy, y, slope).transpose(1, 0, 2).reshape(c, n * s)
    assert rel_err(got, want) <= 1e-6

    z = rng.standard_normal((n, c, s))
    got = layout.add_bias_(on_gpu(z, dtype), on_gpu(bias, dtype), slope)
    assert rel_err(got, act(z + bias[None, :, None], slope)) <= 1e-6


def test_ncs_to_cns_refuses_a_slope_without_y(rng):
    from tinygan.kernels.gpu import layout

    dy = on_gpu(rng.standard_normal((2, 3, 4)), np.float32)
    with pytest.raises(ValueError, match="ncs_to_cns: slope=0.2 needs y"):
        layout.ncs_to_cns(dy, None, 0.2)
    with pytest.raises(ValueError, match="ncs_to_cns: slope=0.2 needs y"):
        layout.ncs_to_cns(dy, dy[:1], 0.2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape",
    [(3, 5, 7), (1, 2, 1), (5000, 6, 1), (4, 3, 2000), (1, 70000, 1)],
    ids=["one-block", "tiny", "rows", "partial", "many-channels"],
)
def test_channel_sum_adds_into_a_buffer_on_every_path(rng, dtype, shape):
    from tinygan.kernels.gpu import layout

    x = rng.standard_normal(shape)
    start = rng.standard_normal(shape[1])
    out = on_gpu(start, dtype)
    ptr = out.data.ptr
    got = layout.channel_sum(on_gpu(x, dtype), out=out)
    assert got is out and out.data.ptr == ptr
    want = start.astype(dtype).astype(np.float64) + x.sum(axis=(0, 2))
    assert rel_err(out, want) <= 1e-6
    assert rel_err(layout.channel_sum(on_gpu(x, dtype)), x.sum(axis=(0, 2))) <= 1e-6  # still returns anew


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize(
    "shape",
    [(3, 5, 7), (2, 64, 33), (4, 3, 2000), (7, 2, 1171), (0, 3, 4), (1, 70000, 1)],
    ids=["one-block", "wide", "chunks", "ragged-chunks", "empty", "many-channels"],
)
def test_ncs_to_cns_sums_its_rows_into_a_bias_gradient_with_the_bits_of_channel_sum(rng, dtype, slope, shape):
    """Conv2d's backward: dz laid out channel-major and its rows added into db in one pass, the same bits as
    ncs_to_cns followed by channel_sum (one block, several chunks a channel with a ragged last one, no values,
    more channels than a grid's y: the unfused pair)."""
    from tinygan.kernels.gpu import layout

    n, c, s = shape
    dy, y = on_gpu(rng.standard_normal(shape), dtype), on_gpu(rng.standard_normal(shape), dtype)
    gate = y if slope is not None else None
    start = on_gpu(rng.standard_normal(c), dtype)
    want_sum = start.copy()
    want = layout.ncs_to_cns(dy, gate, slope)
    layout.channel_sum(want.reshape(1, c, -1), out=want_sum)
    got_sum = start.copy()
    poison_pool()
    got = layout.ncs_to_cns(dy, gate, slope, out_sum=got_sum)
    assert cp.array_equal(got, want) and cp.array_equal(got_sum, want_sum)
    if n * s:
        assert not cp.array_equal(got_sum, start)  # it did add
    with pytest.raises(ValueError, match="ncs_to_cns \\(out_sum\\)"):
        layout.ncs_to_cns(dy, gate, slope, out_sum=start[:-1] if c else cp.zeros(1, dtype))


def test_channel_sum_refuses_a_buffer_it_cannot_add_into(rng):
    from tinygan.kernels.gpu import layout

    x = on_gpu(rng.standard_normal((2, 4, 3)), np.float32)
    for bad in (cp.zeros(5, cp.float32), cp.zeros(4, cp.float64), cp.zeros(8, cp.float32)[::2]):
        with pytest.raises(ValueError, match="channel_sum: the gradient buffer must be"):
            layout.channel_sum(x, out=bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(1, 1), (17, 31), (250, 33), (125, 1024), (3, 1)])
@pytest.mark.parametrize("with_db", [True, False])
def test_rows_grad_sum(rng, dtype, slope, shape, with_db):
    from tinygan.kernels.gpu import layout

    dy, y = rng.standard_normal(shape), rng.standard_normal(shape)
    start = rng.standard_normal(shape[1])
    db = on_gpu(start, dtype) if with_db else None
    poison_pool()
    g_dy = on_gpu(dy, dtype)
    dz = layout.rows_grad_sum(g_dy, on_gpu(y, dtype) if slope is not None else None, slope, db)
    want = act_grad(dy, y, slope)
    assert rel_err(dz, want) <= 1e-6
    if slope is None:
        assert dz is g_dy  # no activation: dy itself, no copy
    if with_db:
        assert rel_err(db, start.astype(dtype).astype(np.float64) + want.sum(axis=0)) <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_col2im_epilogue(K, rng, dtype, slope, case):
    from tinygan.kernels.gpu.conv2d import col2im_bias

    n, c, h, w, _, k, s, p = case
    x_shape = (n, c, h, w)
    cols = R.im2col(rng.standard_normal(x_shape), k, s, p)
    cols = rng.standard_normal(cols.shape)
    bias = rng.standard_normal(c)
    want = act(R.col2im(cols, x_shape, k, s, p) + bias[None, :, None, None], slope)
    poison_pool()
    got = col2im_bias(on_gpu(cols, dtype), x_shape, k, s, p, on_gpu(bias, dtype), "test", slope)
    assert got.dtype == dtype and rel_err(got, want) <= 1e-6


# -- the contract ops --------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("shape", [(1, 7, 5), (125, 100, 256), (13, 33, 1)])
def test_dense_ops(K, rng, precision, dtype, slope, shape):
    n, i, o = shape
    x, W, b = rng.standard_normal((n, i)), rng.standard_normal((i, o)), rng.standard_normal(o)
    tol = cases_for(dtype, precision)
    with backend.precision(precision):
        poison_pool()
        y = K.dense_forward(on_gpu(x, dtype), on_gpu(W, dtype), on_gpu(b, dtype), slope)
        assert y.dtype == dtype and rel_err(y, R.dense_forward(x, W, b, slope)) <= tol
        dy = rng.standard_normal((n, o))
        y64 = cp.asnumpy(y).astype(np.float64) if slope is not None else None
        for input_grad, which in ((True, "both"), (False, "both"), (True, "none"), (True, "dW"), (True, "db")):
            (dW, db), (rW, rb) = grad_buffers(rng, dtype, W.shape, b.shape)
            ptrs = dW.data.ptr, db.data.ptr
            use_W, use_b = which in ("both", "dW"), which in ("both", "db")
            poison_pool()
            dx = K.dense_backward(
                on_gpu(dy, dtype), on_gpu(x, dtype), on_gpu(W, dtype), y if slope is not None else None, slope,
                dW if use_W else None, db if use_b else None, input_grad,
            )  # fmt: skip
            dx_ref = R.dense_backward(dy, x, W, y64, slope, rW if use_W else None, rb if use_b else None, input_grad)
            if input_grad:
                assert rel_err(dx, dx_ref) <= tol
            else:
                assert dx is None
            assert (dW.data.ptr, db.data.ptr) == ptrs
            assert rel_err(dW, rW) <= tol and rel_err(db, rb) <= max(tol, 1e-5)


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_ops(K, route, rng, precision, dtype, slope, case):
    n, c, h, w, cout, k, s, p = case
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((cout, c, *k)), rng.standard_normal(cout)
    tol = cases_for(dtype, precision)
    g = [on_gpu(a, dtype) for a in (x, W, b)]
    with backend.precision(precision):
        poison_pool()
        y, cache = K.conv2d_forward(*g, s, p, slope)
        y_ref, cols_ref = R.conv2d_forward(x, W, b, s, p, slope)
        assert y.dtype == dtype and rel_err(y, y_ref) <= tol
        dy = rng.standard_normal(y_ref.shape)
        y64 = cp.asnumpy(y).astype(np.float64) if slope is not None else None
        gate = y if slope is not None else None
        for input_grad, with_grads in ((True, True), (False, True), (True, False)):
            (dW, db), (rW, rb) = grad_buffers(rng, dtype, W.shape, b.shape)
            ptrs = dW.data.ptr, db.data.ptr
            bufs = (dW, db) if with_grads else (None, None)
            poison_pool()
            dx = K.conv2d_backward(on_gpu(dy, dtype), cache, g[1], x.shape, s, p, gate, slope, *bufs, input_grad)
            ref_bufs = (rW, rb) if with_grads else (None, None)
            dx_ref = R.conv2d_backward(dy, cols_ref, W, x.shape, s, p, y64, slope, *ref_bufs, input_grad)
            if input_grad:
                assert dx.dtype == dtype and rel_err(dx, dx_ref) <= tol
            else:
                assert dx is None
            assert (dW.data.ptr, db.data.ptr) == ptrs
            assert rel_err(dW, rW) <= tol and rel_err(db, rb) <= max(tol, 1e-5)


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_ops(K, route, rng, precision, dtype, slope, case):
    n, c, h, w, cout, k, s, p, op = case
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, cout, *k)), rng.standard_normal(cout)
    tol = cases_for(dtype, precision)
    g = [on_gpu(a, dtype) for a in (x, W, b)]
    with backend.precision(precision):
        poison_pool()
        y = K.conv_transpose2d_forward(*g, s, p, op, slope)
        y_ref = R.conv_transpose2d_forward(x, W, b, s, p, op, slope)
        assert y.dtype == dtype and rel_err(y, y_ref) <= tol
        dy = rng.standard_normal(y_ref.shape)
        y64 = cp.asnumpy(y).astype(np.float64) if slope is not None else None
        gate = y if slope is not None else None
        for input_grad, with_grads in ((True, True), (False, True), (True, False)):
            (dW, db), (rW, rb) = grad_buffers(rng, dtype, W.shape, b.shape)
            ptrs = dW.data.ptr, db.data.ptr
            bufs = (dW, db) if with_grads else (None, None)
            poison_pool()
            dx = K.conv_transpose2d_backward(on_gpu(dy, dtype), g[0], g[1], s, p, gate, slope, *bufs, input_grad)
            ref_bufs = (rW, rb) if with_grads else (None, None)
            dx_ref = R.conv_transpose2d_backward(dy, x, W, s, p, y64, slope, *ref_bufs, input_grad)
            if input_grad:
                assert dx.dtype == dtype and rel_err(dx, dx_ref) <= tol
            else:
                assert dx is None
            assert (dW.data.ptr, db.data.ptr) == ptrs
            assert rel_err(dW, rW) <= tol and rel_err(db, rb) <= max(tol, 1e-5)


def test_backward_ops_refuse_gradient_buffers_they_cannot_write_in_place(K, rng):
    x = on_gpu(rng.standard_normal((3, 4)), np.float32)
    W = on_gpu(rng.standard_normal((4, 2)), np.float32)
    dy = on_gpu(rng.standard_normal((3, 2)), np.float32)
    with pytest.raises(ValueError, match=r"dense_backward \(dW\): the gradient buffer must be"):
        K.dense_backward(dy, x, W, dW=cp.zeros((2, 4), cp.float32).T)  # right shape, not C-contiguous
    with pytest.raises(TypeError, match="dense_backward: dW has dtype float64"):
        K.dense_backward(dy, x, W, dW=cp.zeros((4, 2), cp.float64))
    xc = on_gpu(rng.standard_normal((2, 3, 5, 5)), np.float32)
    Wc = on_gpu(rng.standard_normal((4, 3, 3, 3)), np.float32)
    y, cache = K.conv2d_forward(xc, Wc, None, (1, 1), (1, 1))
    with pytest.raises(ValueError, match=r"conv2d_backward \(dW\): the gradient buffer must be"):
        K.conv2d_backward(y, cache, Wc, xc.shape, (1, 1), (1, 1), dW=cp.zeros((4, 3, 3, 2), cp.float32))


# -- layers, Sequential, capture ---------------------------------------------------------------------------


def _grads(model):
    return {f"{p}.{k}": cp.asnumpy(v) for p, layer in model.named_layers() for k, v in layer.grads.items()}


def _mixed(dtype):
    rng = np.random.default_rng(3)
    return Sequential(
        Conv2d(3, 8, 3, stride=2, padding=1, rng=rng, dtype=dtype),
        LeakyReLU(0.2),
        ConvTranspose2d(8, 4, 4, stride=2, padding=1, rng=rng, dtype=dtype),
        ReLU(),
        Conv2d(4, 2, 3, stride=2, padding=1, rng=rng, dtype=dtype),
        LeakyReLU(0.2),
        Conv2d(2, 2, 1, rng=rng, dtype=dtype),
        name="M",
    )


@pytest.mark.parametrize("build", ["mnist_G", "mnist_D", "dcgan_D", "mixed64"])
def test_fused_sequential_equals_unfused_on_the_gpu(build):
    family, role = {"mnist_G": ("mnist_dense", "G"), "mnist_D": ("mnist_dense", "D"), "dcgan_D": ("dcgan", "D"),
                    "mixed64": (None, None)}[build]  # fmt: skip
    dtype = np.float64 if build == "mixed64" else np.float32
    make = (lambda: _mixed(dtype)) if family is None else (lambda: models.build(family, role))
    shape = {"mnist_G": (16, 100), "mnist_D": (16, 784), "dcgan_D": (16, 3, 32, 32), "mixed64": (3, 3, 9, 10)}[build]
    x = cp.asarray(np.random.default_rng(0).standard_normal(shape).astype(dtype))
    outs = []
    for fuse in (False, True):
        model = make().to("gpu").set_fusion(fuse)
        assert any(s.fused for s in model.plan) == fuse
        model.zero_grad()
        y = model.forward(x, training=(role != "D"), logits=True)  # D in evaluation mode: no dropout masks
        dy = cp.asarray(np.random.default_rng(1).standard_normal(y.shape).astype(dtype))
        dx = model.backward(dy)
        outs.append((cp.asnumpy(y), cp.asnumpy(dx), _grads(model)))
    (y0, dx0, g0), (y1, dx1, g1) = outs
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert rel_err(y1, y0) <= tol and rel_err(dx1, dx0) <= tol
    for key in g0:
        assert rel_err(g1[key], g0[key]) <= tol, key


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_a_fused_step_captured_as_a_graph_gives_the_eager_bits(precision, family):
    """Forward and backward of fused models, zeroed gradients accumulated by beta = 1 GEMMs and in-kernel bias
    sums, recorded as one CUDA graph and replayed twice: the same bits as eager launches, and the gradient
    buffers never move (the graph writes them by address)."""
    from tinygan.kernels.gpu._common import capture_gemm

    shape = {"mnist_dense": (32, 784), "dcgan": (16, 3, 32, 32)}[family]
    x = cp.asarray(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    dy = cp.asarray(np.random.default_rng(1).standard_normal((shape[0], 1)).astype(np.float32))

    def make():
        model = models.build(family, "D").to("gpu")
        assert any(s.fused for s in model.plan)
        return model

    def step(model):
        for _, layer in model.named_layers():
            for grad in layer.grads.values():
                grad.fill(0)
        model.forward(x, training=False, logits=True)
        return model.backward(dy)

    with backend.precision(precision), capture_gemm():
        eager = make()
        for _ in range(3):
            dx_eager = step(eager)
        want = _grads(eager)
        dx_want = cp.asnumpy(dx_eager)

        model = make()
        ptrs = [g.data.ptr for _, layer in model.named_layers() for g in layer.grads.values()]
        stream = capture_stream()
        with stream:
            step(model)  # compile, allocate and bind cuBLAS to the stream outside the capture
            stream.synchronize()
            stream.begin_capture()
            dx = step(model)
            graph = stream.end_capture()
            for _ in range(2):
                graph.launch(stream)
            stream.synchronize()
        assert [g.data.ptr for _, layer in model.named_layers() for g in layer.grads.values()] == ptrs
        got = _grads(model)
        np.testing.assert_array_equal(cp.asnumpy(dx), dx_want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
            assert np.abs(got[key]).sum() > 0, key


FUSED_PAIRS = {
    "dense+relu": (lambda rng: Sequential(Dense(5, 4, rng=rng, dtype=np.float64), ReLU()), (3, 5)),
    "dense+leaky": (lambda rng: Sequential(Dense(5, 33, rng=rng, dtype=np.float64), LeakyReLU(0.2)), (1, 5)),
    "conv+leaky": (
        lambda rng: Sequential(
            Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), rng=rng, dtype=np.float64), LeakyReLU(0.3)
        ),
        (2, 3, 7, 6),
    ),  # fmt: skip
    "convT+relu": (
        lambda rng: Sequential(
            ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=rng, dtype=np.float64), ReLU()
        ),
        (2, 3, 3, 4),
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(FUSED_PAIRS))
def test_fused_pairs_pass_the_gradient_check_on_the_gpu(rng, name):
    """Finite differences in float64 with a random upstream gradient, through the fused GPU kernels."""
    from tinygan.gradcheck import check_layer

    make, shape = FUSED_PAIRS[name]
    model = make(rng)
    model[0].params["b"] = rng.standard_normal(model[0].params["b"].shape)  # not all zero
    model.to("gpu")
    assert model.plan[0].fused
    errors = check_layer(model, cp.asarray(rng.standard_normal(shape)), rng)
    assert max(errors.values()) < 1e-6, errors


def test_dense_forward_fuses_the_activation_without_a_bias(K, rng):
    x, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    y = K.dense_forward(on_gpu(x, np.float64), on_gpu(W, np.float64), None, 0.2)
    assert rel_err(y, act(x @ W, 0.2)) <= 1e-12
