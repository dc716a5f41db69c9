"""The CuPy GPU kernels against the NumPy reference, GPU gradient checks of every layer, the Philox
generator, the ctypes cuBLAS GEMM and CUDA-graph capture.

Every test needs a CUDA GPU: tests/conftest.py skips them (with the reason) where CuPy or a device
is missing. Outputs are compared with the reference on fresh random inputs in float32 and float64,
at odd sizes; kernels that allocate their outputs get a memory pool whose free blocks were filled
with NaN first, so an element a kernel forgets to write shows up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tinygan.kernels import reference as R

import tinygan.layers
from tinygan.gradcheck import check_layer

cp = pytest.importorskip("cupy")
from gpu_streams import capture_stream  # noqa: E402  (needs CuPy)

pytestmark = pytest.mark.gpu

DTYPES = [np.float32, np.float64]


# -- helpers -------------------------------------------------------------------------------------


def tol(dtype, gemm: bool = False) -> dict:
    """Tolerances for comparing with the reference: GEMMs sum in a different order than NumPy's BLAS."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 1e-4, "atol": 1e-4} if gemm else {"rtol": 2e-6, "atol": 1e-6}
    return {"rtol": 1e-11, "atol": 1e-11} if gemm else {"rtol": 1e-13, "atol": 1e-13}


def close(gpu, ref, dtype, gemm: bool = False) -> None:
    assert isinstance(gpu, cp.ndarray), type(gpu)
    assert gpu.dtype == np.dtype(dtype), (gpu.dtype, dtype)
    host = cp.asnumpy(gpu)
    assert host.shape == np.shape(ref), (host.shape, np.shape(ref))
    assert np.isfinite(host).all() or not np.isfinite(ref).all(), "GPU output has NaN/inf where the reference has none"
    np.testing.assert_allclose(host, ref, **tol(dtype, gemm))


def poison(*shapes_dtypes) -> None:
    """Fill free pool blocks of the given sizes with NaN bytes, so outputs allocated next start as NaN."""
    blocks = []
    for shape, dtype in shapes_dtypes:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        for _ in range(4):
            b = cp.empty(max(nbytes, 1), dtype=cp.uint8)
            b.fill(0xFF)
            blocks.append(b)
    cp.cuda.Device().synchronize()
    del blocks


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def g(a):
    return cp.asarray(a)


# -- im2col / col2im / conv2d --------------------------------------------------------------------

# (N, C, H, W, kernel, stride, padding): odd sizes, non-square kernels, stride > kernel (gaps),
# padding as large as the kernel allows, and DCGAN's 4x4 / stride 2 / padding 1.
CONV_CASES = [
    (2, 3, 7, 5, (3, 3), (1, 1), (1, 1)),
    (1, 2, 8, 9, (3, 2), (2, 3), (0, 1)),
    (3, 1, 5, 5, (5, 5), (1, 1), (2, 2)),
    (2, 4, 6, 6, (4, 4), (2, 2), (1, 1)),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (2, 3, 9, 7, (2, 3), (3, 2), (1, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_col2im_match_reference(K, rng, dtype, case):
    n, c, h, w, k, s, p = case
    x = rand(rng, (n, c, h, w), dtype)
    ref_cols = R.im2col(x, k, s, p)
    poison((ref_cols.shape, dtype))
    close(K.im2col(g(x), k, s, p), ref_cols, dtype)
    cols = rand(rng, ref_cols.shape, dtype)
    poison((x.shape, dtype))
    close(K.col2im(g(cols), x.shape, k, s, p), R.col2im(cols, x.shape, k, s, p), dtype)


def test_conv_helpers_at_training_sizes_match_reference(K, rng):
    # Big enough that every grid-stride loop runs more than once and the channel sums take each path
    # (one block per channel, many blocks per channel, one thread per channel).
    x = rand(rng, (8, 64, 64, 64), np.float32)
    ref_cols = R.im2col(x, (3, 3), (1, 1), (1, 1))
    cols = K.im2col(g(x), (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(cp.asnumpy(cols), ref_cols)
    close(
        K.col2im(cols, x.shape, (3, 3), (1, 1), (1, 1)), R.col2im(ref_cols, x.shape, (3, 3), (1, 1), (1, 1)), np.float32
    )
    from tinygan.kernels.gpu.layout import channel_sum

    for shape in [(3, 5, 4, 4), (64, 3, 32, 32), (256, 64, 16, 16), (5000, 7), (125, 1024)]:
        a = rand(rng, shape, np.float32)
        axes = (0, *range(2, len(shape)))
        np.testing.assert_allclose(
            cp.asnumpy(channel_sum(g(a))), a.astype(np.float64).sum(axis=axes), rtol=1e-5, atol=1e-4
        )


def test_col2im_is_deterministic(K, rng):
    cols = g(rand(rng, (3 * 4 * 4, 2 * 8 * 8), np.float32))
    a = K.col2im(cols, (2, 3, 16, 16), (4, 4), (2, 2), (1, 1))
    b = K.col2im(cols, (2, 3, 16, 16), (4, 4), (2, 2), (1, 1))
    assert cp.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_64_bit_index_kernels_give_the_same_bits_as_the_32_bit_ones(K, rng, dtype, monkeypatch):
    """Arrays past 2**31 elements take the long long instantiation of each indexed kernel. At that
    size a test would need tens of GB, so force it on small arrays: same sums in the same order,
    so the same bits (col2im's 64-bit path is the general gather, the 32-bit one the phase-ordered
    gather for 3x3 stride 2)."""
    from tinygan.kernels.gpu import _common, layout

    x = g(rand(rng, (3, 4, 9, 7), dtype))
    W, b = g(rand(rng, (5, 4, 3, 3), dtype)), g(rand(rng, (5,), dtype))
    dy = g(rand(rng, (3, 5, 5, 4), dtype))
    big = g(rand(rng, (9, 2, 33, 31), dtype))  # more values per channel than one block sums
    gamma, beta = g(rand(rng, (4,), dtype)), g(rand(rng, (4,), dtype))

    def run_all():
        cols = K.im2col(x, (3, 3), (2, 2), (1, 1))
        y, _ = K.conv2d_forward(x, W, b, (2, 2), (1, 1))
        bn = K.batchnorm_forward(x, gamma, beta, 1e-5)
        outs = [
            cols,
            K.col2im(cols, x.shape, (3, 3), (2, 2), (1, 1)),
            y,
            *K.conv2d_backward_weight(dy, cols, W.shape),
            layout.channel_sum(big),
            layout.add_bias_(big.copy(), g(rand(np.random.default_rng(0), (2,), dtype))),
            *bn,
            *K.batchnorm_backward(x, bn[3], bn[4], gamma),
        ]
        return [cp.asnumpy(o) for o in outs]

    narrow_results = run_all()
    monkeypatch.setattr(_common, "narrow", lambda *arrays: False)
    wide_results = run_all()
    for i, (a, w) in enumerate(zip(narrow_results, wide_results)):
        np.testing.assert_array_equal(a, w, err_msg=f"output {i}")


def test_col2im_rejects_cols_of_the_wrong_shape(K, rng):
    with pytest.raises(ValueError, match="cols of shape"):
        K.col2im(g(rand(rng, (5, 7), np.float32)), (1, 1, 4, 4), (2, 2), (1, 1), (0, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_reference(K, rng, dtype, case):
    n, c, h, w, k, s, p = case
    cout = 5
    x, W, b = rand(rng, (n, c, h, w), dtype), rand(rng, (cout, c, *k), dtype), rand(rng, (cout,), dtype)
    y_ref, cols_ref = R.conv2d_forward(x, W, b, s, p)
    poison((y_ref.shape, dtype), (cols_ref.shape, dtype))
    y, cache = K.conv2d_forward(g(x), g(W), g(b), s, p)
    close(y, y_ref, dtype, gemm=True)
    cols = getattr(cache, "cols", None)  # an Im2colCache; a ConvInput on the implicit-GEMM route (no cols)
    if cols is not None:
        close(cols[: cols_ref.shape[0]], cols_ref, dtype)
        assert not cp.asnumpy(cols[cols_ref.shape[0] :]).any()  # float32 pads to 8 rows with zeros (gemm_rows)
    dy = rand(rng, y_ref.shape, dtype)
    poison((x.shape, dtype))
    close(K.conv2d_backward_data(g(dy), g(W), x.shape, s, p), R.conv2d_backward_data(dy, W, x.shape, s, p), dtype, True)
    dW_ref, db_ref = R.conv2d_backward_weight(dy, cols_ref, W.shape)
    poison((W.shape, dtype), (b.shape, dtype))
    dW, db = K.conv2d_backward_weight(g(dy), cache, W.shape)
    close(dW, dW_ref, dtype, gemm=True)
    close(db, db_ref, dtype, gemm=True)


# (N, Cin, H, W, Cout, kernel, stride, padding, output_padding), including DCGAN's 1x1 -> 4x4
# projection and 4x4 / stride 2 / padding 1 upsampling.
CONVT_CASES = [
    (2, 3, 4, 5, 2, (4, 4), (2, 2), (1, 1), (0, 0)),
    (1, 2, 3, 3, 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    (2, 2, 5, 4, 3, (3, 2), (1, 1), (0, 1), (0, 0)),
    (1, 3, 4, 4, 2, (5, 5), (3, 3), (2, 2), (2, 1)),
    (3, 4, 1, 1, 5, (4, 4), (1, 1), (0, 0), (0, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_matches_reference(K, rng, dtype, case):
    n, cin, h, w, cout, k, s, p, op = case
    x, W, b = rand(rng, (n, cin, h, w), dtype), rand(rng, (cin, cout, *k), dtype), rand(rng, (cout,), dtype)
    y_ref = R.conv_transpose2d_forward(x, W, b, s, p, op)
    poison((y_ref.shape, dtype))
    close(K.conv_transpose2d_forward(g(x), g(W), g(b), s, p, op), y_ref, dtype, gemm=True)
    dy = rand(rng, y_ref.shape, dtype)
    dx_ref, dy_cols_ref = R.conv_transpose2d_backward_data(dy, W, s, p)
    poison((x.shape, dtype), (dy_cols_ref.shape, dtype))
    dx, dy_cols = K.conv_transpose2d_backward_data(g(dy), g(W), s, p)
    close(dx, dx_ref, dtype, gemm=True)
    if dy_cols is not None:  # None where the implicit GEMM formed no cols (float32)
        close(dy_cols[: dy_cols_ref.shape[0]], dy_cols_ref, dtype)
        assert not cp.asnumpy(dy_cols[dy_cols_ref.shape[0] :]).any()  # zero rows of gemm_rows' padding
    dW_ref, db_ref = R.conv_transpose2d_backward_weight(dy, x, W.shape, s, p)
    for cached in (None, dy_cols):
        dW, db = K.conv_transpose2d_backward_weight(g(dy), g(x), W.shape, s, p, dy_cols=cached)
        close(dW, dW_ref, dtype, gemm=True)
        close(db, db_ref, dtype, gemm=True)


def test_conv_transpose2d_rejects_output_padding_not_below_stride(K, rng):
    x, W = g(rand(rng, (1, 2, 3, 3), np.float32)), g(rand(rng, (2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="output_padding"):
        K.conv_transpose2d_forward(x, W, None, (2, 2), (1, 1), (2, 0))


# -- dense ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,fin,fout", [(1, 3, 2), (5, 7, 4), (33, 65, 17), (64, 100, 257)])
def test_dense_matches_reference(K, rng, dtype, n, fin, fout):
    x, W, b, dy = rand(rng, (n, fin), dtype), rand(rng, (fin, fout), dtype), rand(rng, (fout,), dtype), None
    poison(((n, fout), dtype))
    close(K.dense_forward(g(x), g(W), g(b)), R.dense_forward(x, W, b), dtype, gemm=True)
    dy = rand(rng, (n, fout), dtype)
    close(K.dense_backward_data(g(dy), g(W)), R.dense_backward_data(dy, W), dtype, gemm=True)
    dW_ref, db_ref = R.dense_backward_weight(dy, x)
    poison(((fout,), dtype))
    dW, db = K.dense_backward_weight(g(dy), g(x))
    close(dW, dW_ref, dtype, gemm=True)
    close(db, db_ref, dtype, gemm=True)


# -- activations, dropout --------------------------------------------------------------------------

ACT_SHAPES = [(1,), (7, 3), (3, 5, 67), (2, 3, 33, 17)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ACT_SHAPES)
def test_activations_match_reference(K, rng, dtype, shape):
    x = rand(rng, shape, dtype, scale=3.0)
    dy = rand(rng, shape, dtype)
    for name, saved, extra in (
        ("relu", "y", ()),
        ("leaky_relu", "x", (0.2,)),
        ("sigmoid", "y", ()),
        ("tanh", "y", ()),
    ):
        fwd, bwd = getattr(K, f"{name}_forward"), getattr(K, f"{name}_backward")
        y_ref = getattr(R, f"{name}_forward")(x, *extra)
        poison((shape, dtype))
        y = fwd(g(x), *extra)
        close(y, y_ref, dtype)
        keep = y_ref if saved == "y" else x
        poison((shape, dtype))
        close(bwd(g(dy), g(keep), *extra), getattr(R, f"{name}_backward")(dy, keep, *extra), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_is_finite_and_exact_at_extremes(K, dtype):
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype=dtype)
    y = K.sigmoid_forward(g(x))
    close(y, R.sigmoid_forward(x), dtype)
    assert cp.isfinite(y).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.75])
@pytest.mark.parametrize("mask_dtype", [np.bool_, np.uint8])
def test_dropout_matches_reference(K, rng, dtype, p, mask_dtype):
    shape = (5, 3, 7)
    x, dy = rand(rng, shape, dtype), rand(rng, shape, dtype)
    mask = (rng.random(shape) >= p).astype(mask_dtype)
    poison((shape, dtype))
    close(K.dropout_forward(g(x), g(mask), p), R.dropout_forward(x, mask, p), dtype)
    poison((shape, dtype))
    close(K.dropout_backward(g(dy), g(mask), p), R.dropout_backward(dy, mask, p), dtype)


# -- batchnorm -----------------------------------------------------------------------------------

# The last three have more values per channel than one block reduces (BN_CHUNK = 4096): several
# chunks per channel, the last one partial, for (N, C) and (N, C, H, W).
BN_SHAPES = [
    (2, 3),
    (64, 17),
    (5, 1),
    (2, 3, 4, 5),
    (4, 8, 7, 7),
    (1, 2, 3, 3),
    (3, 300),
    (9001, 3),
    (3, 2, 47, 61),
    (16, 5, 33, 17),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batchnorm_matches_reference(K, rng, dtype, shape):
    c = shape[1]
    x = rand(rng, shape, dtype, scale=2.0) + dtype(0.5)
    gamma, beta = rand(rng, (c,), dtype), rand(rng, (c,), dtype)
    eps = 1e-5
    refs = R.batchnorm_forward(x, gamma, beta, eps)
    poison((shape, dtype), ((c,), dtype))
    outs = K.batchnorm_forward(g(x), g(gamma), g(beta), eps)
    for got, ref in zip(outs, refs):
        close(got, ref, dtype, gemm=True)
    dy = rand(rng, shape, dtype)
    xhat, inv_std = refs[3], refs[4]
    poison((shape, dtype), ((c,), dtype))
    for got, ref in zip(
        K.batchnorm_backward(g(dy), g(xhat), g(inv_std), g(gamma)), R.batchnorm_backward(dy, xhat, inv_std, gamma)
    ):
        close(got, ref, dtype, gemm=True)
    rm, rv = rand(rng, (c,), dtype), (rng.random(c) + 0.5).astype(dtype)
    poison((shape, dtype))
    close(
        K.batchnorm_inference(g(x), g(gamma), g(beta), g(rm), g(rv), eps),
        R.batchnorm_inference(x, gamma, beta, rm, rv, eps),
        dtype,
        gemm=True,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(64, 17), (4, 8, 7, 7), (9001, 3), (16, 5, 33, 17)])
def test_fused_batchnorm_gives_the_bits_of_batchnorm_then_activation(K, rng, dtype, slope, shape):
    """The fusion plan's BatchNorm + ReLU / LeakyReLU: the same bits as the BatchNorm kernels followed by the
    activation's kernels (one-block and chunked paths), and the reference's values."""
    c = shape[1]
    x = rand(rng, shape, dtype, scale=2.0) + dtype(0.5)
    gamma, beta = rand(rng, (c,), dtype), rand(rng, (c,), dtype)
    z, *stats = K.batchnorm_forward(g(x), g(gamma), g(beta), 1e-5)
    act = (lambda v: K.relu_forward(v)) if slope == 0 else (lambda v: K.leaky_relu_forward(v, slope))
    poison((shape, dtype))
    y, *fused_stats = K.batchnorm_forward(g(x), g(gamma), g(beta), 1e-5, slope)
    assert cp.array_equal(y, act(z))
    for a, b in zip(stats, fused_stats):
        assert cp.array_equal(a, b)
    close(y, R.batchnorm_forward(x, gamma, beta, 1e-5, slope)[0], dtype, gemm=True)
    dy = g(rand(rng, shape, dtype))
    _, _, xhat, inv_std = stats
    dz = K.relu_backward(dy, y) if slope == 0 else K.leaky_relu_backward(dy, z, slope)
    want = K.batchnorm_backward(dz, xhat, inv_std, g(gamma))
    poison((shape, dtype), ((c,), dtype))
    got = K.batchnorm_backward(dy, xhat, inv_std, g(gamma), y, slope)
    for a, b in zip(got, want):
        assert cp.array_equal(a, b)
    with pytest.raises(ValueError, match="needs y"):
        K.batchnorm_backward(dy, xhat, inv_std, g(gamma), None, slope)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, 0.37, None])
def test_batchnorm_running_statistics_equal_the_reference_bits(K, rng, dtype, momentum):
    """Three batches' updates of the running mean and variance (with momentum, and the cumulative average
    whose count lives on the device) give the reference's bits: the kernel rounds each product as NumPy does."""
    c, m = 37, 1_000
    rm, rv = rand(rng, c, dtype), (1 + rand(rng, c, dtype) ** 2).astype(dtype)
    host = [rm.copy(), rv.copy(), np.zeros((), dtype)]
    dev = [g(rm), g(rv), cp.zeros((), dtype)]
    for _ in range(3):
        mean, var = rand(rng, c, dtype), (rand(rng, c, dtype) ** 2).astype(dtype)
        R.batchnorm_update_running(host[0], host[1], mean, var, m, momentum, host[2])
        K.batchnorm_update_running(dev[0], dev[1], g(mean), g(var), m, momentum, dev[2])
    for want, got in zip(host, dev):
        np.testing.assert_array_equal(cp.asnumpy(got), want)
    assert float(dev[2]) == (3 if momentum is None else 0)
    with pytest.raises(ValueError, match="var has 36 values, expected one per channel \\(37\\)"):
        K.batchnorm_update_running(dev[0], dev[1], g(mean), g(var[:-1]), m, momentum, dev[2])
    with pytest.raises(ValueError, match="needs num_batches_tracked"):
        K.batchnorm_update_running(dev[0], dev[1], g(mean), g(var), m, None, None)


@pytest.mark.parametrize("n", [256, 20000])  # one block per channel; several chunks per channel
def test_batchnorm_variance_survives_a_large_mean_in_float32(K, rng, n):
    x64 = 1000.0 + 0.01 * rng.standard_normal((n, 4))
    _, mean, var, _, _ = K.batchnorm_forward(
        g(x64.astype(np.float32)), g(np.ones(4, np.float32)), g(np.zeros(4, np.float32)), 1e-5
    )
    exact = x64.astype(np.float32).astype(np.float64).var(axis=0)
    np.testing.assert_allclose(cp.asnumpy(var), exact, rtol=1e-3)


# -- bce -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (64, 1), (7, 13), (1000,)])
def test_bce_with_logits_matches_reference(K, rng, dtype, shape):
    z = rand(rng, shape, dtype, scale=4.0)
    t = rng.random(shape).astype(dtype)
    loss_ref, dz_ref = R.bce_with_logits(z, t)
    poison((shape, dtype))
    loss, dz = K.bce_with_logits(g(z), g(t))
    assert loss.shape == ()
    close(loss, loss_ref, dtype, gemm=True)
    close(dz, dz_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_extremes_and_constant_targets(K, dtype):
    z = np.array([[-200.0], [-30.0], [0.0], [30.0], [200.0]], dtype=dtype)
    for target in (0.0, 1.0):
        t = np.full(z.shape, target, dtype=dtype)
        loss_ref, dz_ref = R.bce_with_logits(z, t)
        # A number, a 0-d device array and a full device array of targets all give the same result.
        for targets in (target, g(np.asarray(target, dtype=dtype)), g(t)):
            loss, dz = K.bce_with_logits(g(z), targets)
            close(loss, loss_ref, dtype)
            close(dz, dz_ref, dtype)
    with pytest.raises(TypeError, match="CuPy array or a number"):
        K.bce_with_logits(g(z), np.zeros(z.shape, dtype))


# -- adam ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_matches_reference_over_steps(K, rng, dtype):
    shape = (7, 13)
    p, m, v = rand(rng, shape, dtype), np.zeros(shape, dtype), np.zeros(shape, dtype)
    gp, gm, gv = g(p), g(m), g(v)
    for step in range(1, 6):
        grad = rand(rng, shape, dtype)
        R.adam_update(p, grad, m, v, 2e-4, 0.5, 0.999, 1e-8, step)
        assert K.adam_update(gp, g(grad), gm, gv, 2e-4, 0.5, 0.999, 1e-8, step) is None
    for got, ref in ((gp, p), (gm, m), (gv, v)):
        close(got, ref, dtype, gemm=True)


@pytest.mark.parametrize("g_size", [1e20, 1.0])
def test_adam_float32_second_moment_does_not_overflow(K, g_size):
    """As on the CPU (tests/test_optim.py): g^2 overflows float32 for |g| > 1.8e19 while (1 - beta2) g^2
    still fits, so v is evaluated in double; the weights must move as a float64 computation says."""
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(64).astype(np.float32)
    gs = [(g_size * rng.standard_normal(64)).astype(np.float32) for _ in range(3)]
    p, m, v = g(p0), cp.zeros(64, np.float32), cp.zeros(64, np.float32)
    p64, m64, v64 = p0.astype(np.float64), np.zeros(64), np.zeros(64)
    for t, grad in enumerate(gs, start=1):
        K.adam_update(p, g(grad), m, v, 1e-2, 0.9, 0.999, 1e-8, t)
        R.adam_update(p64, grad.astype(np.float64), m64, v64, 1e-2, 0.9, 0.999, 1e-8, t)
    assert bool(cp.isfinite(v).all()) and bool(cp.isfinite(p).all())
    np.testing.assert_allclose(cp.asnumpy(v), v64, rtol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(p), p64, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_multi_equals_per_tensor_updates(K, rng, dtype):
    # Chunks of ADAM_CHUNK elements: tensors smaller than one, empty, one past a chunk, and many chunks
    # with a ragged end; the same bits as the per-tensor kernel.
    shapes = [(3, 5), (1,), (0,), (300, 7), (4, 3, 2, 2), (1025,), (600_001,)]
    params = [rand(rng, s, dtype) for s in shapes]
    single = [g(p) for p in params]
    multi = [g(p) for p in params]
    ms1, vs1 = [cp.zeros(s, dtype) for s in shapes], [cp.zeros(s, dtype) for s in shapes]
    ms2, vs2 = [cp.zeros(s, dtype) for s in shapes], [cp.zeros(s, dtype) for s in shapes]
    for step in range(1, 4):
        grads = [g(rand(rng, s, dtype)) for s in shapes]
        for p, gr, m, v in zip(single, grads, ms1, vs1):
            K.adam_update(p, gr, m, v, 1e-3, 0.9, 0.999, 1e-8, step)
        K.adam_update_multi(multi, grads, ms2, vs2, 1e-3, 0.9, 0.999, 1e-8, step)
    for a, b in zip(single + ms1 + vs1, multi + ms2 + vs2):
        assert cp.array_equal(a, b)


def test_adam_update_multi_checks_its_arguments(K):
    p = cp.zeros(3, np.float32)
    K.adam_update_multi([], [], [], [], 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(ValueError, match="got 1 params, 0 grads"):
        K.adam_update_multi([p], [], [p], [p], 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(TypeError):
        K.adam_update_multi([p, cp.zeros(3, np.float64)], [p, p], [p, p], [p, p], 1e-3, 0.9, 0.999, 1e-8, 1)
    with pytest.raises(ValueError, match="1-based"):
        K.adam_update(p, p, p.copy(), p.copy(), 1e-3, 0.9, 0.999, 1e-8, 0)


def test_kernels_name_the_op_when_handed_host_arrays(K):
    with pytest.raises(TypeError, match="relu_forward.*CuPy"):
        K.relu_forward(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        K.relu_forward(cp.zeros(3, cp.int32))


# -- the ctypes cuBLAS GEMM ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
def test_cublas_matmul_matches_numpy(K, rng, dtype, transa, transb):
    m, k, n = 37, 19, 23
    a = rand(rng, (k, m) if transa else (m, k), dtype)
    b = rand(rng, (n, k) if transb else (k, n), dtype)
    ref = (a.T if transa else a) @ (b.T if transb else b)
    close(K.cublas.matmul(g(a), g(b), transa=transa, transb=transb), ref, dtype, gemm=True)
    # A Fortran-ordered view is handled by flipping the flag, not by copying.
    close(K.cublas.matmul(g(a.T.copy()).T, g(b), transa=transa, transb=transb), ref, dtype, gemm=True)
    out = g(rand(rng, ref.shape, dtype))
    before = cp.asnumpy(out)
    K.cublas.matmul(g(a), g(b), out=out, transa=transa, transb=transb, alpha=2.0, beta=1.0)
    close(out, 2.0 * ref + before, dtype, gemm=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transa", [False, True])
def test_cublas_matmul_reads_the_pitch_of_padded_rows(K, rng, dtype, transa):
    """A matrix whose rows are evenly spaced but not contiguous (the first columns of a wider array) is read
    and written at its pitch, not copied."""
    m, k, n = 37, 27, 23
    a = rand(rng, (k, m) if transa else (m, k), dtype)
    b = rand(rng, (k, n), dtype)
    ref = (a.T if transa else a) @ b
    wide = cp.full((a.shape[0], a.shape[1] + 5), np.nan, dtype=dtype)  # NaN padding: read by mistake, it shows
    wide[:, : a.shape[1]] = g(a)
    out = cp.full((m, n + 3), np.nan, dtype=dtype)[:, :n]
    assert not out.flags.c_contiguous
    K.cublas.matmul(wide[:, : a.shape[1]], g(b), out=out, transa=transa)
    close(out, ref, dtype, gemm=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bf16", [False, True])
def test_weight_operand_widens_with_zeros(K, rng, dtype, bf16):
    """layout.weight_operand: the same values (bfloat16-rounded with bf16) in the first columns, zeros after
    (conv2d.gemm_rows: the padded extents multiply against cols' zero rows, so they must be zero, not NaN)."""
    from tinygan.kernels.bf16 import from_bf16
    from tinygan.kernels.gpu.layout import weight_operand

    if bf16 and dtype != np.float32:
        pytest.skip("bfloat16 operands are formed from float32 arrays")
    w = rand(rng, (6, 27), dtype)
    got = cp.asnumpy(weight_operand(g(w), bf16, 32))
    assert got.shape == (6, 32)
    if bf16:
        assert got.dtype == np.uint16
        got = from_bf16(got)
        np.testing.assert_allclose(got[:, :27], w, rtol=2**-8)
    else:
        np.testing.assert_array_equal(got[:, :27], w)
    np.testing.assert_array_equal(got[:, 27:], 0)
    assert weight_operand(g(w), False) is not None


# -- Philox4x32-10 -------------------------------------------------------------------------------

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(ctr: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pure-Python Philox4x32-10, written from the Random123 paper (Salmon et al., SC'11)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
    return c0, c1, c2, c3


def philox_words(seed: int, counter: int, n_counters: int) -> np.ndarray:
    key = (seed & MASK, (seed >> 32) & MASK)
    out = []
    for j in range(n_counters):
        c = (counter + j) % 2**128
        out.extend(philox4x32_10(tuple((c >> (32 * i)) & MASK for i in range(4)), key))
    return np.array(out, dtype=np.uint64)


# Random123's kat_vectors for philox4x32_10: (counter, key, expected output).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("ctr,key,expected", PHILOX_KAT)
def test_python_philox_matches_random123(ctr, key, expected):
    assert philox4x32_10(ctr, key) == expected


def _generator(seed: int, counter: int = 0):
    from tinygan.gpu_random import PhiloxGenerator

    gen = PhiloxGenerator(seed)
    gen.load_state_dict({"seed": seed, "counter": counter})
    return gen


@pytest.mark.parametrize("ctr,key,expected", PHILOX_KAT)
def test_gpu_philox_known_answers(ctr, key, expected):
    seed = key[0] | key[1] << 32
    counter = sum(w << (32 * i) for i, w in enumerate(ctr))
    words = _generator(seed, counter).random_raw(4)
    assert [int(w) for w in cp.asnumpy(words)] == list(expected)


@pytest.mark.parametrize("counter", [0, 2**64 - 3, 2**128 - 2])
def test_gpu_philox_matches_python_across_counter_carries(counter):
    seed = 0x0123456789ABCDEF
    gen = _generator(seed, counter)
    np.testing.assert_array_equal(cp.asnumpy(gen.random_raw(4 * 7 - 1)), philox_words(seed, counter, 7)[:-1])
    assert gen.state_dict()["counter"] == (counter + 7) % 2**128


def test_gpu_philox_uniform_and_normal_follow_the_documented_maps():
    seed = 42
    n = 4 * 10 + 3
    words = philox_words(seed, 0, 64)
    u32 = (words >> 8).astype(np.float64) * 2.0**-24
    np.testing.assert_array_equal(cp.asnumpy(_generator(seed).uniform((n,), np.float32)), u32[:n].astype(np.float32))
    pairs = ((words[0::2] << 32) | words[1::2]) >> 11
    u64 = pairs.astype(np.float64) * 2.0**-53
    np.testing.assert_array_equal(cp.asnumpy(_generator(seed).uniform((n,), np.float64)), u64[:n])

    # Box-Muller on (u1, u2) pairs: words (0, 1) and (2, 3) of a counter for float32, the two 53-bit
    # uniforms of a counter for float64.
    def box_muller(u1, u2):
        r = np.sqrt(-2.0 * np.log(1.0 - u1))
        return np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=1).reshape(-1)

    z32 = box_muller(u32[0::2], u32[1::2])
    np.testing.assert_allclose(cp.asnumpy(_generator(seed).normal((n,), np.float32)), z32[:n], rtol=1e-5, atol=2e-5)
    z64 = box_muller(u64[0::2], u64[1::2])
    np.testing.assert_allclose(cp.asnumpy(_generator(seed).normal((n,), np.float64)), z64[:n], rtol=1e-12, atol=1e-12)


def test_gpu_philox_counter_advances_on_device_and_state_round_trips():
    gen = _generator(7)
    a = gen.uniform((10,), np.float32)  # 3 counters
    b = gen.normal((5,), np.float64)  # 3 counters
    assert gen.state_dict() == {"seed": 7, "counter": 6}
    np.testing.assert_array_equal(
        cp.asnumpy(a), (philox_words(7, 0, 3)[:10] >> 8).astype(np.float32) * np.float32(2.0**-24)
    )
    assert not cp.array_equal(b[:2], gen.normal((2,), np.float64))
    state = gen.state_dict()
    first = gen.normal((1001,), np.float32)
    gen.load_state_dict(state)
    assert cp.array_equal(first, gen.normal((1001,), np.float32))


def test_gpu_philox_many_blocks_use_consecutive_counters():
    # 2**21 words need 2**19 counters: many blocks, so the last-block counter update is exercised.
    gen = _generator(99)
    whole = gen.random_raw(2**21)
    assert gen.state_dict()["counter"] == 2**19
    gen.load_state_dict({"seed": 99, "counter": 0})
    halves = cp.concatenate([gen.random_raw(2**20), gen.random_raw(2**20)])
    assert cp.array_equal(whole, halves)
    assert int(cp.unique(whole[:100000]).size) > 99990


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_philox_statistics(dtype):
    n = 2_000_000
    gen = _generator(2024)
    u = cp.asnumpy(gen.uniform((n,), dtype)).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 0.002
    # Kolmogorov-Smirnov against U(0, 1): the 0.1% critical value is 1.95 / sqrt(n).
    s = np.sort(u)
    ks = max((np.arange(1, n + 1) / n - s).max(), (s - np.arange(n) / n).max())
    assert ks < 1.95 / math.sqrt(n), ks
    z = cp.asnumpy(gen.normal((n,), dtype)).astype(np.float64)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 0.003
    assert abs(np.mean(np.abs(z) < 1) - 0.682689) < 0.002
    assert abs(np.mean(z**4) - 3) < 0.03
    # Lag-1 correlation, across the boundaries between counters too.
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)
    mask = cp.asnumpy(gen.bernoulli((n,), 0.7))
    assert mask.dtype == np.bool_
    assert abs(mask.mean() - 0.7) < 5 * math.sqrt(0.21 / n)
    assert cp.asnumpy(gen.bernoulli((1000,), 1.0)).all() and not cp.asnumpy(gen.bernoulli((1000,), 0.0)).any()


# -- CUDA graphs ---------------------------------------------------------------------------------


def test_captured_graph_of_gemm_elementwise_and_philox_replays_like_eager(K, rng):
    from tinygan.gpu_random import PhiloxGenerator

    n, fin, fout = 33, 17, 9
    W = g(rand(rng, (fin, fout), np.float32))
    z = cp.empty((n, fin), np.float32)
    h = cp.empty((n, fout), np.float32)
    stream = capture_stream()  # after the uploads above
    with stream:
        gen = PhiloxGenerator(5)
        # Compile, create the cuBLAS handle and bind it before capture: none of that may happen inside.
        K.cublas.bind_stream(stream)
        K.cublas.matmul(z, W, out=h)
        K.leaky_relu_forward(h, 0.2)
        gen.normal(z.shape, np.float32)
        gen.load_state_dict({"seed": 5, "counter": 0})
        stream.synchronize()

        stream.begin_capture()
        gen.normal_into(z)
        K.cublas.matmul(z, W, out=h)
        y = K.leaky_relu_forward(h, 0.2)
        graph = stream.end_capture()

        replays = []
        for _ in range(3):
            graph.launch(stream)
            stream.synchronize()
            replays.append((cp.asnumpy(z), cp.asnumpy(y)))

    eager = PhiloxGenerator(5)
    for z_replay, y_replay in replays:
        z_e = eager.normal((n, fin), np.float32)
        y_e = K.leaky_relu_forward(cp.matmul(z_e, W), 0.2)
        np.testing.assert_array_equal(z_replay, cp.asnumpy(z_e))
        np.testing.assert_allclose(y_replay, cp.asnumpy(y_e), rtol=1e-5, atol=1e-5)
    assert not np.array_equal(replays[0][0], replays[1][0]), "a replay drew the same numbers again"
    assert gen.state_dict()["counter"] == 3 * math.ceil(n * fin / 4)


def test_kernel_ops_switch_to_the_ctypes_gemm_while_capturing(K, rng):
    x = g(rand(rng, (8, 6, 5, 5), np.float32))
    W, b = g(rand(rng, (4, 6, 3, 3), np.float32)), g(rand(rng, (4,), np.float32))
    Wd, bd = g(rand(rng, (4 * 5 * 5, 7), np.float32)), g(rand(rng, (7,), np.float32))
    stream = capture_stream()  # after the uploads above
    with stream:
        K.cublas.bind_stream(stream)
        y_eager, _ = K.conv2d_forward(x, W, b, (1, 1), (1, 1))
        out_eager = K.dense_forward(K.relu_forward(y_eager).reshape(8, -1), Wd, bd)
        stream.synchronize()
        stream.begin_capture()
        y, _ = K.conv2d_forward(x, W, b, (1, 1), (1, 1))
        out = K.dense_forward(K.relu_forward(y).reshape(8, -1), Wd, bd)
        graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
    np.testing.assert_allclose(cp.asnumpy(out), cp.asnumpy(out_eager), rtol=1e-5, atol=1e-5)


# -- layers on the GPU: gradient checks in float64 -------------------------------------------------


def _layer(name: str, *args, **kwargs):
    cls = getattr(tinygan.layers, name, None)
    if cls is None:
        pytest.skip(f"tinygan.{name} is not written yet")
    return cls(*args, **kwargs)


def _gpu_check(layer, x, rng, **kwargs):
    layer.to("gpu")
    errors = check_layer(layer, cp.asarray(x), rng, **kwargs)
    assert max(errors.values()) < 1e-6, errors


LAYER_CASES = {
    "Dense": (lambda rng: _layer("Dense", 5, 4, rng=rng, dtype=np.float64), (3, 5)),
    "Conv2d": (
        lambda rng: _layer("Conv2d", 3, 4, 3, stride=2, padding=1, rng=rng, dtype=np.float64),
        (2, 3, 5, 6),
    ),
    "ConvTranspose2d": (
        lambda rng: _layer(
            "ConvTranspose2d", 3, 2, 4, stride=2, padding=1, output_padding=1, rng=rng, dtype=np.float64
        ),
        (2, 3, 3, 2),
    ),
    "ReLU": (lambda rng: _layer("ReLU"), (4, 7)),
    "LeakyReLU": (lambda rng: _layer("LeakyReLU", 0.2), (3, 2, 3, 3)),
    "Sigmoid": (lambda rng: _layer("Sigmoid"), (4, 7)),
    "Tanh": (lambda rng: _layer("Tanh"), (2, 3, 4)),
    "BatchNorm1d": (lambda rng: _layer("BatchNorm1d", 5, dtype=np.float64), (6, 5)),
    "BatchNorm2d": (lambda rng: _layer("BatchNorm2d", 3, dtype=np.float64), (2, 3, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_gradients_on_gpu(rng, name):
    make, shape = LAYER_CASES[name]
    layer = make(rng)
    for key in getattr(layer, "params", {}):
        # Non-trivial parameters: zero biases and unit gammas would hide a wrong gradient term.
        layer.params[key] = layer.params[key] + 0.3 * rng.standard_normal(layer.params[key].shape)
    _gpu_check(layer, rng.standard_normal(shape), rng)


def test_batchnorm_eval_mode_gradients_on_gpu(rng):
    layer = _layer("BatchNorm2d", 3, dtype=np.float64)
    layer.buffers["running_mean"] = rng.standard_normal(3)
    layer.buffers["running_var"] = rng.random(3) + 0.5
    _gpu_check(layer, rng.standard_normal((2, 3, 2, 3)), rng, training=False)


def test_dropout_gradients_on_gpu(rng):
    # On the GPU the masks come from the layer's device generator: replaying its state replays them.
    layer = _layer("Dropout", 0.4, rng=7).to("gpu")
    state = layer.device_rng.state_dict()

    def replay_mask():
        layer.device_rng.load_state_dict(state)

    _gpu_check(layer, rng.standard_normal((5, 6)), rng, before_forward=replay_mask)


def test_gpu_layer_output_matches_cpu_layer(rng):
    dense = _layer("Dense", 6, 3, rng=rng, dtype=np.float32)
    x = rand(rng, (4, 6), np.float32)
    y_cpu = dense.forward(x)
    y_gpu = dense.to("gpu").forward(g(x))
    np.testing.assert_allclose(cp.asnumpy(y_gpu), y_cpu, rtol=1e-5, atol=1e-5)


def test_cpu_input_to_gpu_layer_is_a_clear_error(rng):
    dense = _layer("Dense", 3, 4, rng=rng).to("gpu")
    with pytest.raises(ValueError, match=r"Dense.*cpu.*gpu"):
        dense.forward(np.zeros((2, 3), np.float32))
    back = _layer("Dense", 3, 4, rng=rng)
    with pytest.raises(ValueError, match=r"Dense.*gpu.*cpu"):
        back.forward(cp.zeros((2, 3), np.float32))


# -- whole models and the training loop on the GPU ----------------------------------------------------


def _input_shapes(family: str, n: int) -> dict[str, tuple[int, ...]]:
    image = (784,) if family == "mnist_dense" else (3, 32, 32)
    return {"G": (n, 100), "D": (n, *image)}


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
@pytest.mark.parametrize("role", ["G", "D"])
def test_models_on_gpu_match_the_reference_kernels_on_cpu(rng, family, role):
    models = pytest.importorskip("tinygan.models")
    from tinygan import backend

    try:
        cpu = models.build(family, role, dtype=np.float64)
        gpu = models.build(family, role, dtype=np.float64).to("gpu")
    except AttributeError as exc:  # a layer class the builder needs is not written yet
        pytest.skip(f"cannot build {family} {role}: {exc}")
    x = rng.standard_normal(_input_shapes(family, 3)[role])
    previous = backend.get_cpu_kernels()
    backend.set_cpu_kernels("reference")
    try:
        y_cpu = cpu.forward(x, training=True)
        dy = rng.standard_normal(y_cpu.shape)
        cpu.zero_grad()
        dx_cpu = cpu.backward(dy)
    finally:
        backend.set_cpu_kernels(previous)
    for _, layer in gpu.named_layers():
        if getattr(layer, "device_rng", None) is not None:
            layer.device_rng = None  # draw Dropout's masks on the host, as the CPU model does
    y_gpu = gpu.forward(g(x), training=True)
    gpu.zero_grad()
    dx_gpu = gpu.backward(g(dy))
    close(y_gpu, y_cpu, np.float64, gemm=True)
    close(dx_gpu, dx_cpu, np.float64, gemm=True)
    grads_cpu = {f"{p}.{k}": v for p, layer in cpu.named_layers() for k, v in layer.grads.items()}
    grads_gpu = {f"{p}.{k}": v for p, layer in gpu.named_layers() for k, v in layer.grads.items()}
    assert grads_cpu.keys() == grads_gpu.keys()
    for key in grads_cpu:
        close(grads_gpu[key], grads_cpu[key], np.float64, gemm=True)


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_gpu_training_runs_and_resumes_exactly(tmp_path, family):
    train = pytest.importorskip("tinygan.train")
    shape = _input_shapes(family, 24)["D"]
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    if family == "dcgan":
        data = 2 * data - 1

    def config(epochs):
        return train.GANConfig(
            model=family,
            epochs=epochs,
            batch_size=8,
            device="gpu",
            g_options={"seed": 0},
            d_options={"seed": 1},
            log_every=2,
            image_range="tanh" if family == "dcgan" else "01",
        )

    try:
        straight = train.GANTrainer(config(2), data, tmp_path / "a", progress=False)
    except AttributeError as exc:
        pytest.skip(f"cannot build {family}: {exc}")
    straight.run()
    first = train.GANTrainer(config(1), data, tmp_path / "b", progress=False)
    first.run()
    resumed = train.GANTrainer.resume(tmp_path / "b", data, {"epochs": 2}, progress=False)
    resumed.run()
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in straight.history)
    a = {**straight.G.state_dict(), **{"D" + k: v for k, v in straight.D.state_dict().items()}}
    b = {**resumed.G.state_dict(), **{"D" + k: v for k, v in resumed.D.state_dict().items()}}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
