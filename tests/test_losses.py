import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels

from tinygan.gradcheck import numerical_gradient, relative_error
from tinygan.losses import bce_with_logits, generator_loss


def softplus(a):
    """log(1 + exp(a)) via logaddexp, an implementation independent of the code under test."""
    return np.logaddexp(0.0, np.asarray(a, dtype=np.float64))


def bce_exact(z, t):
    # -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) = t softplus(-z) + (1 - t) softplus(z)
    return float(np.mean(t * softplus(-z) + (1 - t) * softplus(z)))


@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (3, 5)])
def test_gradient_by_finite_differences_with_soft_targets(rng, cpu_kernels, shape):
    z = 3 * rng.standard_normal(shape)
    t = rng.uniform(0, 1, shape)
    _, dz = bce_with_logits(z, t)
    numeric = numerical_gradient(lambda: bce_with_logits(z, t)[0], z)
    assert relative_error(dz, numeric) < 1e-7


@pytest.mark.parametrize("kind", ["nonsaturating", "minimax"])
def test_generator_loss_gradients(rng, cpu_kernels, kind):
    z = 3 * rng.standard_normal((6, 1))
    _, dz = generator_loss(z, kind)
    numeric = numerical_gradient(lambda: generator_loss(z, kind)[0], z)
    assert relative_error(dz, numeric) < 1e-7


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_equals_naive_formula_for_moderate_logits(rng, cpu_kernels, dtype, rtol):
    z = rng.uniform(-5, 5, (8, 3)).astype(dtype)
    t = rng.uniform(0, 1, (8, 3)).astype(dtype)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    naive = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    loss, dz = bce_with_logits(z, t)
    assert isinstance(loss, float)
    assert dz.dtype == dtype and dz.shape == z.shape
    np.testing.assert_allclose(loss, naive, rtol=rtol)
    np.testing.assert_allclose(dz, (p - t) / z.size, rtol=rtol * 10, atol=rtol * 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_and_accurate_for_extreme_logits(cpu_kernels, dtype):
    z = np.array([[-1000.0], [-100.0], [-30.0], [0.0], [30.0], [100.0], [1000.0]], dtype=dtype)
    for t in (np.zeros_like(z), np.ones_like(z), np.full_like(z, 0.3)):
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            loss, dz = bce_with_logits(z, t)
        np.testing.assert_allclose(loss, bce_exact(z.astype(np.float64), t.astype(np.float64)), rtol=1e-6)
        assert np.isfinite(dz).all()
    # Where the naive form is lost: sigmoid(100) rounds to 1, log(1 - 1) = -inf; here loss = 100/7.
    loss, dz = bce_with_logits(z[5:6], 0.0)
    np.testing.assert_allclose(loss, 100.0, rtol=1e-6)
    np.testing.assert_allclose(dz, [[1.0]], rtol=1e-6)
    # And the gradient at the confidently wrong end is the full -1 (no vanishing), per element.
    _, dz = bce_with_logits(z, 1.0)
    np.testing.assert_allclose(dz[:3, 0], -1 / 7, rtol=1e-6)
    np.testing.assert_allclose(dz[-2:, 0], 0.0, atol=1e-30)


def test_generator_losses_match_their_definitions_and_saturation(rng, cpu_kernels):
    z = np.array([[-100.0], [-10.0], [-1.0], [0.5], [4.0], [100.0]])
    d = 1 / (1 + np.exp(-z))  # D(G(z)), fine in float64 at these values
    ns_loss, ns_grad = generator_loss(z, "nonsaturating")
    mm_loss, mm_grad = generator_loss(z, "minimax")
    np.testing.assert_allclose(ns_loss, np.mean(softplus(-z)), rtol=1e-12)  # -log D
    np.testing.assert_allclose(mm_loss, -np.mean(softplus(z)), rtol=1e-12)  # log(1 - D)
    # Naively from D(G(z)) where that is still possible (D rounds to 1 at z = 100):
    moderate, d_mod = z[1:-1], d[1:-1]
    np.testing.assert_allclose(generator_loss(moderate, "nonsaturating")[0], -np.mean(np.log(d_mod)), rtol=1e-12)
    np.testing.assert_allclose(generator_loss(moderate, "minimax")[0], np.mean(np.log1p(-d_mod)), rtol=1e-12)
    assert np.isfinite([ns_loss, mm_loss]).all()
    # When D rejects the fakes (z = -10) the minimax gradient has vanished, the non-saturating one has not.
    assert abs(mm_grad[1, 0]) < 1e-3 * abs(ns_grad[1, 0])
    np.testing.assert_allclose(ns_grad[:, 0], (d[:, 0] - 1) / 6, rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(mm_grad[:, 0], -d[:, 0] / 6, rtol=1e-12)
    with pytest.raises(ValueError, match="kind must be"):
        generator_loss(z, "wasserstein")


def test_scalar_targets_broadcast_and_input_checks(rng, cpu_kernels):
    z = rng.standard_normal((5, 1)).astype(np.float32)
    for target in (1.0, 0, np.float32(0.9), [[0.9]] * 5):
        full = np.broadcast_to(np.asarray(target, np.float32), z.shape).copy()
        a, b = bce_with_logits(z, target), bce_with_logits(z, full)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match=r"targets of shape \(5,\) do not match logits of shape \(5, 1\)"):
        bce_with_logits(z, np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        bce_with_logits(z, 1.5)
    with pytest.raises(ValueError, match="float32 or float64 logits.*int64"):
        bce_with_logits(np.ones((5, 1), np.int64), 1.0)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-13)])
def test_numba_matches_reference(rng, numba_threads, dtype, rtol):
    z = (4 * rng.standard_normal((33, 7))).astype(dtype)
    t = rng.uniform(0, 1, z.shape).astype(dtype)
    ref_loss, ref_dz = reference_kernels.bce_with_logits(z, t)
    loss, dz = numba_kernels.bce_with_logits(z, t)
    assert loss.shape == () and ref_loss.shape == () and loss.dtype == dtype and dz.dtype == dtype
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    np.testing.assert_allclose(dz, ref_dz, rtol=rtol, atol=rtol / z.size)


def test_nan_targets_fail_the_range_check(cpu_kernels):
    """NaN compares false with everything: a check written as "below 0 or above 1" would let it through."""
    z = np.zeros((4, 1), np.float32)
    t = np.array([[1.0], [np.nan], [0.0], [np.nan]], np.float32)
    with pytest.raises(ValueError, match=r"^bce_with_logits: targets must lie in \[0, 1\], received 2 NaN$"):
        bce_with_logits(z, t)
    with pytest.raises(ValueError, match=r"^bce_with_logits: targets must lie in \[0, 1\], received 1 NaN$"):
        bce_with_logits(z, float("nan"))
    with pytest.raises(
        ValueError, match=r"^bce_with_logits: targets must lie in \[0, 1\], received values in \[0.0, inf\]"
    ):
        bce_with_logits(z, np.array([[0.0], [np.inf], [0.5], [1.0]]))


@pytest.mark.gpu
def test_gpu_nan_host_targets_fail_the_range_check():
    import cupy

    z = cupy.zeros((2, 1), dtype=cupy.float32)
    with pytest.raises(ValueError, match=r"received 1 NaN"):
        bce_with_logits(z, float("nan"))
    with pytest.raises(ValueError, match=r"received 1 NaN"):
        bce_with_logits(z, np.array([[np.nan], [1.0]], np.float32))
