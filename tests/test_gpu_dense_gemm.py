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
    from tinygan.kernels.gpu.dense_gemm import CLUSTER_CC, device_capability

    return device_capability()[1] >= CLUSTER_CC


def has_async() -> bool:
    from tinygan.kernels.gpu.dense_gemm import ASYNC_CC, device_capability

    return device_capability()[1] >= ASYNC_CC


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
    if pipeline == "async" and not has_async():
        pytest.skip("cp.async needs compute capability 8.0")
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
    with pytest.raises(ValueError, match="splits"):
        dense_gemm(a, cp.ones((3, 2), cp.float32), splits=3)
    with pytest.raises(ValueError, match="pipeline"):
        dense_gemm(a, cp.ones((3, 2), cp.float32), pipeline="tma")


@pytest.mark.parametrize("cc", [75, 80, 86])
def test_what_an_older_gpu_lacks_is_refused_not_compiled(monkeypatch, cc):
    """Before compute capability 8.0 there is no cp.async, before 9.0 no cluster: asking for either says so in
    one line (rather than an NVRTC error about PTX), and the register pipeline without a split still runs."""
    from tinygan.kernels.gpu import dense_gemm as mod

    monkeypatch.setattr(mod, "device_capability", lambda: (40, cc))
    a, b = cp.ones((4, 3), cp.float32), cp.ones((3, 2), cp.float32)
    with pytest.raises(ValueError, match="splits must be one of"):
        mod.dense_gemm(a, b, splits=2)
    if cc < 80:
        with pytest.raises(ValueError, match=r"'async' needs compute capability 8.0 \(cp.async\); this GPU has 7.5"):
            mod.dense_gemm(a, b, pipeline="async")
    got = mod.dense_gemm(a, b, pipeline="registers")  # the unsplit kernel, the only one compiled there
    assert cp.array_equal(got, cp.full((4, 2), 3.0, cp.float32))


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
    if not clusters():
        pytest.skip("the plan runs dense_gemm on Hopper only (test_an_older_gpu_runs_every_product_on_cublas)")
    old = get_precision()
    try:
        for precision in ("fp32", "tf32"):
            set_precision(precision)
            plan = plan_product("forward", m, n, k) if precision == "fp32" else None
            want = dense_gemm(x, W, bias=b, slope=0.0, **plan) if plan else add_bias_(gemm(x, W), b, 0.0)
            assert cp.array_equal(K.dense_forward(x, W, b, slope=0.0), want), (precision, plan)
    finally:
        set_precision(old)


def test_an_older_gpu_runs_every_product_on_cublas(monkeypatch, rng):
    """The plan was measured on Hopper with split sums; without clusters dense_gemm lost to cuBLAS, so there the
    Dense layers' products are cuBLAS's: the same bits as cuBLAS then the bias pass."""
    import tinygan.kernels.gpu as K
    from tinygan.kernels.gpu import dense
    from tinygan.kernels.gpu._common import gemm
    from tinygan.kernels.gpu.layout import add_bias_

    monkeypatch.setattr(dense, "device_capability", lambda: (108, 80))
    x = cp.asarray(rng.standard_normal((125, 256)).astype(np.float32))
    W = cp.asarray(rng.standard_normal((256, 512)).astype(np.float32))
    b = cp.asarray(rng.standard_normal(512).astype(np.float32))
    assert dense.plan_product("forward", 125, 512, 256) is not None  # Hopper's plan would take this one
    assert cp.array_equal(K.dense_forward(x, W, b, slope=0.0), add_bias_(gemm(x, W), b, 0.0))


@pytest.mark.parametrize("cc,refused", [(75, True), (80, False), (90, False)])
def test_the_tensor_core_precisions_say_which_cards_have_them(monkeypatch, cc, refused):
    """tf32 and bf16 before compute capability 8.0: one line naming the card; fp32 is never refused. cuBLAS's
    products at those precisions check it too, so a Python API user is told the same."""
    from tinygan.kernels.gpu import cublas

    from tinygan import backend

    real = cp.cuda.Device

    class Device:  # the card at hand, reporting compute capability cc (CuPy's Device type is immutable)
        def __init__(self, *args):
            self._real = real(*args)
            self.id, self.compute_capability = self._real.id, str(cc)

    monkeypatch.setattr(cp.cuda, "Device", Device)
    assert backend.precision_unavailable_reason("fp32") is None
    for precision in ("tf32", "bf16"):
        reason = backend.precision_unavailable_reason(precision)
        if not refused:
            assert reason is None
            continue
        assert reason.startswith(f"precision {precision} needs {precision.upper()} tensor cores") and "7.5" in reason
        with pytest.raises(ValueError, match=f"cublas.matmul: precision {precision}"):
            cublas.matmul(cp.ones((2, 3), cp.float32), cp.ones((3, 2), cp.float32), precision=precision)


def test_a_module_made_for_newer_gpus_says_so_before_nvrtc(monkeypatch):
    """A CudaModule whose kernels need a newer GPU (min_cc) refuses in one line naming the file and both
    capabilities, instead of failing in NVRTC's PTX assembly."""
    from tinygan.kernels.gpu import _common

    from tinygan.backend import DeviceError

    monkeypatch.setattr(_common, "compute_capability", lambda: 75)
    mod = _common.CudaModule("dense_gemm.cu", plain=("dense_gemm_s1<0, 0, 1, 0>",), min_cc=80)
    with pytest.raises(DeviceError, match=r"^dense_gemm.cu: .* capability 8.0 or newer; this one has 7.5$"):
        mod.get("dense_gemm_s1<0, 0, 1, 0>")
