"""dense_gemm (kernels/gpu/dense_gemm.cu), the Dense layers' FP32 products at precision "fp32", against float64.

Every mode (forward with bias and activation, input gradient, weight gradient added into its buffer) at every
cluster split, on odd sizes that leave partial tiles on every side, sums shorter than a tile and longer than a
split, batch 1. The bound is FP32's own: a sum of k products, each rounded, differs from the exact one by at
most k * u * (|A| |B|) elementwise (u = 2^-24, Higham's gamma_k to first order); the test allows 2 k u plus a
few ulps of the output, so a wrong index (an error of the size of a whole product) cannot pass.
"""

from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
from bench.dev.kernel_versions import poison  # noqa: E402  (needs CuPy)

pytestmark = pytest.mark.gpu

U = 2.0**-24


def clusters() -> bool:
    from tinygan.kernels.gpu.dense_gemm import _device

    return _device()[1]


SPLITS = [1, 2, 4, 8]


def within_fp32_bound(got, a64, b64, want, k: int) -> None:
    got = cp.asnumpy(got).astype(np.float64)
    bound = 2 * max(k, 1) * U * (np.abs(a64) @ np.abs(b64)) + 4 * U * np.abs(want) + 1e-30
    err = np.abs(got - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"element {worst}: error {err[worst]:.3e} above the FP32 bound {bound[worst]:.3e}"


SHAPES = [(1, 1, 1), (1, 100, 256), (7, 3, 5), (33, 17, 65), (125, 784, 130), (250, 256, 1), (37, 1000, 70)]


@pytest.mark.parametrize("tile", ["32x64", "64x64"])
@pytest.mark.parametrize("pipeline", ["registers", "async"])
@pytest.mark.parametrize("splits", SPLITS)
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("mode", ["forward", "input", "weight"])
def test_every_mode_and_split_is_within_the_fp32_bound(rng, mode, m, k, n, splits, pipeline, tile):
    from tinygan.kernels.gpu.dense_gemm import dense_gemm

    if splits > 1 and not clusters():
        pytest.skip("thread-block clusters need compute capability 9.0")
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    how = {"splits": splits, "pipeline": pipeline, "tile": tile}
    poison(m * n * 4)  # outputs start as NaN: an element the kernel leaves unwritten shows
    if mode == "forward":  # y = act(x W + b), LeakyReLU(0.2)
        x, W, b = f32(m, k), f32(k, n), f32(n)
        got = dense_gemm(cp.asarray(x), cp.asarray(W), bias=cp.asarray(b), slope=0.2, **how)
        a64, b64 = x.astype(np.float64), W.astype(np.float64)
        z = a64 @ b64 + b
        # The activation scales the error by at most 1; the bias adds one rounding of |z|.
        want = np.where(z > 0, z, 0.2 * z)
        within_fp32_bound(got, a64, b64, want, k + 1)
    elif mode == "input":  # dx = dz W^T, W of shape (n, k)
        dz, W = f32(m, k), f32(n, k)
        got = dense_gemm(cp.asarray(dz), cp.asarray(W), trans_b=True, **how)
        a64, b64 = dz.astype(np.float64), W.astype(np.float64).T
        within_fp32_bound(got, a64, b64, a64 @ b64, k)
    else:  # dW (m, n) += x^T dz, x of shape (k, m): the old contents kept
        x, dz, dW0 = f32(k, m), f32(k, n), f32(m, n)
        out = cp.asarray(dW0)
        got = dense_gemm(cp.asarray(x), cp.asarray(dz), trans_a=True, out=out, **how)
        assert got is out
        a64, b64 = x.astype(np.float64).T, dz.astype(np.float64)
        within_fp32_bound(got, a64, b64, dW0 + a64 @ b64, k + 1)


@pytest.mark.parametrize("tile", ["32x64", "64x64"])
@pytest.mark.parametrize("splits", SPLITS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 3, 5), (33, 250, 65), (130, 125, 70)])
@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_the_gated_backward_products_and_their_bias_gradient(rng, m, k, n, slope, splits, tile):
    """Backward modes with a gate: dy enters as dz = dy * act'(y); the weight gradient's product adds db."""
    from tinygan.kernels.gpu.dense_gemm import dense_gemm

    if splits > 1 and not clusters():
        pytest.skip("thread-block clusters need compute capability 9.0")
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    # The weight gradient: dW (m, n) += x^T dz with x (k, m), dy and y (k, n); db (n) += sum_k dz.
    x, dy, y, dW0, db0 = f32(k, m), f32(k, n), f32(k, n), f32(m, n), f32(n)
    y[0, 0] = 0.0  # the boundary: act'(0) is the negative side's
    dz = np.where(y > 0, dy, slope * dy).astype(np.float64)
    dW, db = cp.asarray(dW0), cp.asarray(db0)
    how = {"splits": splits, "tile": tile}
    dense_gemm(cp.asarray(x), cp.asarray(dy), trans_a=True, out=dW, gate=cp.asarray(y), slope=slope, db=db, **how)
    a64 = x.astype(np.float64).T
    within_fp32_bound(dW, a64, dz, dW0 + a64 @ dz, k + 1)
    ones = np.ones((1, k))
    within_fp32_bound(db[None, :], ones, dz, db0[None, :] + ones @ dz, 2)  # summed in double: one rounding
    # The input gradient: dx (k, m) = dz W^T with W (m, n).
    W = f32(m, n)
    dx = dense_gemm(cp.asarray(dy), cp.asarray(W), trans_b=True, gate=cp.asarray(y), slope=slope, **how)
    within_fp32_bound(dx, dz, W.astype(np.float64).T, dz @ W.astype(np.float64).T, n)


@pytest.mark.parametrize("mode", ["forward", "weight"])
def test_the_split_sum_gives_the_same_bits_every_time(rng, mode):
    """The cluster adds its partial tiles in rank order, whichever block finishes first: no atomics."""
    from tinygan.kernels.gpu.dense_gemm import dense_gemm

    splits = 8 if clusters() else 1
    a = cp.asarray(rng.standard_normal((125, 1024)).astype(np.float32))
    b = cp.asarray(rng.standard_normal((1024, 784)).astype(np.float32))
    if mode == "forward":
        runs = [dense_gemm(a, b, splits=splits) for _ in range(5)]
    else:
        dz = a[:, :300].copy()  # dW (1024, 300) += a^T dz, a sum over the 125 rows
        runs = [dense_gemm(a, dz, trans_a=True, out=cp.zeros((1024, 300), cp.float32), splits=4) for _ in range(5)]
    for other in runs[1:]:
        assert cp.array_equal(runs[0], other)


@pytest.mark.parametrize("sms", [1, 132, 1000])
@pytest.mark.parametrize("m,k,n", [(125, 784, 1024), (250, 1024, 512), (784, 250, 1024), (125, 100, 256), (1, 1, 1)])
def test_the_automatic_split_fills_the_card_without_starving_a_block(m, k, n, sms):
    from tinygan.kernels.gpu.dense_gemm import BK, BM, BN, SPLITS, splits_for

    tiles = -(-m // BM) * -(-n // BN)
    s = splits_for(m, n, k, sms)
    assert s in SPLITS
    assert s == 1 or k >= 2 * s * BK, "each block of a split gets at least two k tiles"
    # It stops only at two blocks an SM, at the largest cluster, or where a further split would starve a block.
    assert tiles * s >= 2 * sms or s == SPLITS[-1] or k < 4 * s * BK
    assert splits_for(m, n, k, sms, clusters=False) == 1


def test_arguments_that_make_no_product_are_refused():
    from tinygan.kernels.gpu.dense_gemm import dense_gemm

    a, b = cp.ones((4, 3), cp.float32), cp.ones((5, 2), cp.float32)
    with pytest.raises(ValueError, match="does not match"):
        dense_gemm(a, b)
    with pytest.raises(ValueError, match="both be transposed"):
        dense_gemm(a, b, trans_a=True, trans_b=True)
    with pytest.raises(ValueError, match="float32"):
        dense_gemm(a.astype(cp.float64), b)
    with pytest.raises(ValueError, match="no activation to the output"):
        dense_gemm(a, cp.ones((3, 2), cp.float32), out=cp.zeros((4, 2), cp.float32), slope=0.0)
    with pytest.raises(ValueError, match="backward products"):
        dense_gemm(a, cp.ones((3, 2), cp.float32), gate=cp.ones((4, 3), cp.float32), slope=0.0)
    with pytest.raises(ValueError, match="gate must be"):
        dense_gemm(a, cp.ones((2, 3), cp.float32), trans_b=True, gate=cp.ones((3, 4), cp.float32), slope=0.0)
    with pytest.raises(ValueError, match="db"):
        dense_gemm(a, cp.ones((2, 3), cp.float32), trans_b=True, db=cp.zeros(2, cp.float32))
    with pytest.raises(ValueError, match="splits"):
        dense_gemm(a, cp.ones((3, 2), cp.float32), splits=3)


@pytest.mark.parametrize("m,k,n", [(125, 256, 512), (250, 784, 1024)])
def test_dense_forward_runs_what_the_plan_says(rng, m, k, n):
    """The routing: at "fp32" the Dense forward gives the bits of the kernel ``plan_product`` names (dense_gemm,
    or cuBLAS then the bias pass); at "tf32" always cuBLAS's."""
    import tinygan.kernels.gpu as K
    from tinygan.kernels.gpu._common import gemm
    from tinygan.kernels.gpu.dense import plan_product
    from tinygan.kernels.gpu.dense_gemm import dense_gemm
    from tinygan.kernels.gpu.layout import add_bias_

    from tinygan.backend import get_precision, set_precision

    x = cp.asarray(rng.standard_normal((m, k)).astype(np.float32))
    W = cp.asarray(rng.standard_normal((k, n)).astype(np.float32))
    b = cp.asarray(rng.standard_normal(n).astype(np.float32))
    old = get_precision()
    try:
        for precision in ("fp32", "tf32"):
            set_precision(precision)
            plan = plan_product("forward", m, n, k) if precision == "fp32" else None
            want = dense_gemm(x, W, bias=b, slope=0.0, **plan) if plan else add_bias_(gemm(x, W), b, 0.0)
            assert cp.array_equal(K.dense_forward(x, W, b, slope=0.0), want), (precision, plan)
    finally:
        set_precision(old)
