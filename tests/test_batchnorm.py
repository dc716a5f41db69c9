import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels

from tinygan.gradcheck import check_layer
from tinygan.layers import BatchNorm1d, BatchNorm2d, Sequential


def make_bn(rng, cls, c, **kwargs):
    layer = cls(c, dtype=np.float64, **kwargs)
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c)
    layer.params["beta"][:] = rng.standard_normal(c)
    return layer


def stats(x):
    axes = (0, *range(2, x.ndim))
    return x.mean(axis=axes), x.var(axis=axes), x.var(axis=axes, ddof=1)


def per_channel(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# BatchNorm1d batches start at 3: with 2 samples xhat = +-d / sqrt(d^2 + eps) ~ +-1 whatever x is,
# dx is ~0 and central differences measure only rounding.
CASES = [(BatchNorm1d, (3, 3)), (BatchNorm1d, (5, 4)), (BatchNorm2d, (2, 3, 3, 5)), (BatchNorm2d, (1, 2, 3, 2))]


@pytest.mark.parametrize("cls,shape", CASES)
def test_training_gradients(rng, cpu_kernels, cls, shape):
    layer = make_bn(rng, cls, shape[1])
    x = 2 * rng.standard_normal(shape) + 1
    errors = check_layer(layer, x, rng)
    assert set(errors) == {"x", "gamma", "beta"}
    assert max(errors.values()) < 1e-6, errors
    # The check is only meaningful if dx is not ~0 (see the all-ones test below).
    dy = rng.standard_normal(shape)
    layer.forward(x)
    dx = layer.backward(dy)
    assert np.linalg.norm(dx) > 0.1 * np.linalg.norm(dy)


@pytest.mark.parametrize("cls,shape", [*CASES, (BatchNorm1d, (1, 3)), (BatchNorm2d, (1, 2, 1, 1))])
def test_eval_gradients_including_batch_one(rng, cpu_kernels, cls, shape):
    layer = make_bn(rng, cls, shape[1])
    layer.buffers["running_mean"][:] = rng.standard_normal(shape[1])
    layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, shape[1])
    errors = check_layer(layer, rng.standard_normal(shape), rng, training=False)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cls,shape", [(BatchNorm1d, (6, 3)), (BatchNorm2d, (3, 2, 4, 4))])
def test_all_ones_upstream_gives_zero_input_gradient(rng, cpu_kernels, cls, shape):
    """Why gradient checks use a random upstream gradient: for L = y.sum(), dL/dx vanishes
    identically (the normalized output's per-channel sum is beta * M whatever x is), so a check
    against it would pass for a backward that returned zeros."""
    layer = make_bn(rng, cls, shape[1])
    layer.forward(rng.standard_normal(shape))
    dx = layer.backward(np.ones(shape))
    assert np.abs(dx).max() < 1e-12
    layer.forward(rng.standard_normal(shape))
    assert np.abs(layer.backward(rng.standard_normal(shape))).max() > 1e-2


@pytest.mark.parametrize("cls,shape", [(BatchNorm1d, (8, 3)), (BatchNorm2d, (4, 3, 5, 2))])
def test_training_forward_and_running_statistics(rng, cpu_kernels, cls, shape):
    layer = make_bn(rng, cls, shape[1], momentum=0.3)
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    expected_mean, expected_var = np.zeros(shape[1]), np.ones(shape[1])
    for _ in range(3):
        x = 3 * rng.standard_normal(shape) + rng.standard_normal(shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
        mean, var_biased, var_unbiased = stats(x)
        y = layer.forward(x)
        xhat = (x - per_channel(mean, x.ndim)) / np.sqrt(per_channel(var_biased, x.ndim) + 1e-5)
        np.testing.assert_allclose(y, per_channel(gamma, x.ndim) * xhat + per_channel(beta, x.ndim), rtol=1e-12)
        expected_mean = 0.7 * expected_mean + 0.3 * mean
        expected_var = 0.7 * expected_var + 0.3 * var_unbiased
        np.testing.assert_allclose(layer.buffers["running_mean"], expected_mean, rtol=1e-12)
        np.testing.assert_allclose(layer.buffers["running_var"], expected_var, rtol=1e-12)


@pytest.mark.parametrize("cls,shape", [(BatchNorm1d, (8, 3)), (BatchNorm2d, (4, 3, 5, 2))])
def test_eval_uses_running_statistics_and_leaves_them(rng, cpu_kernels, cls, shape):
    layer = make_bn(rng, cls, shape[1])
    rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2.0, shape[1])
    layer.buffers["running_mean"][:] = rm
    layer.buffers["running_var"][:] = rv
    x = rng.standard_normal(shape)
    y_eval = layer.forward(x, training=False)
    g, b = layer.params["gamma"], layer.params["beta"]
    nd = x.ndim
    expected = (x - per_channel(rm, nd)) / np.sqrt(per_channel(rv, nd) + 1e-5) * per_channel(g, nd) + per_channel(b, nd)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-12)
    np.testing.assert_array_equal(layer.buffers["running_mean"], rm)
    np.testing.assert_array_equal(layer.buffers["running_var"], rv)
    assert not np.allclose(layer.forward(x, training=True), y_eval)
    # Eval backward is the fixed per-channel scale gamma / sqrt(running_var + eps).
    rv = layer.buffers["running_var"].copy()  # changed by the training forward above
    layer.forward(x, training=False)
    dy = rng.standard_normal(shape)
    np.testing.assert_allclose(layer.backward(dy), dy * per_channel(g / np.sqrt(rv + 1e-5), nd), rtol=1e-12)


def test_single_value_per_channel_is_an_error_in_training_only():
    with pytest.raises(ValueError, match=r"BatchNorm1d.*more than 1 value per channel.*\(1, 4\)"):
        BatchNorm1d(4).forward(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(2).forward(np.ones((1, 2, 1, 1), np.float32))
    BatchNorm1d(4).forward(np.ones((1, 4), np.float32), training=False)
    # One sample but several pixels per channel is fine, as in PyTorch.
    BatchNorm2d(2).forward(np.ones((1, 2, 2, 1), np.float32))


def test_bad_input_errors_name_layer():
    model = Sequential(BatchNorm2d(3), name="D")
    with pytest.raises(ValueError, match=r"D\[0\] BatchNorm2d\(3.*\(N, 3, N, N\).*\(4, 3\)"):
        model.forward(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*\(N, 3, N, N\).*\(4, 5, 2, 2\)"):
        model.forward(np.zeros((4, 5, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*\(N, 3\).*\(4, 3, 2, 2\)"):
        BatchNorm1d(3).forward(np.zeros((4, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d.*dtype float32.*float64"):
        BatchNorm1d(3).forward(np.zeros((4, 3), np.float64))
    with pytest.raises(RuntimeError, match="BatchNorm1d.*before forward"):
        BatchNorm1d(3).backward(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm1d(0)


def test_param_grads_false_and_accumulation(rng):
    layer = make_bn(rng, BatchNorm1d, 3)
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    layer.forward(x)
    layer.backward(dy)
    once = layer.grads["gamma"].copy()
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["gamma"], 2 * once, rtol=1e-12)
    layer.backward(dy, param_grads=False)
    np.testing.assert_allclose(layer.grads["gamma"], 2 * once, rtol=1e-12)
    assert layer.backward(dy, input_grad=False) is None


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(9, 5), (6, 37), (7, 3, 5, 3), (2, 37, 3, 3), (1, 4, 2, 3)])
def test_numba_matches_reference(rng, numba_threads, dtype, rtol, shape):
    c = shape[1]
    x = (2 * rng.standard_normal(shape) + 0.5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    ref = reference_kernels.batchnorm_forward(x, gamma, beta, 1e-5)
    got = numba_kernels.batchnorm_forward(x, gamma, beta, 1e-5)
    for name, a, b in zip(("y", "mean", "var", "xhat", "inv_std"), ref, got):
        assert b.dtype == dtype and b.shape == a.shape, name
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol, err_msg=name)
    ref_b = reference_kernels.batchnorm_backward(dy, ref[3], ref[4], gamma)
    got_b = numba_kernels.batchnorm_backward(dy, ref[3], ref[4], gamma)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), ref_b, got_b):
        assert b.dtype == dtype and b.shape == a.shape, name
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * 10, err_msg=name)
    ref_i = reference_kernels.batchnorm_inference(x, gamma, beta, rm, rv, 1e-5)
    got_i = numba_kernels.batchnorm_inference(x, gamma, beta, rm, rv, 1e-5)
    assert got_i.dtype == dtype
    np.testing.assert_allclose(got_i, ref_i, rtol=rtol, atol=rtol)


def test_numba_float32_statistics_survive_a_large_offset(rng):
    """float64 accumulation + two passes: a one-pass E[x^2] - E[x]^2 in float32 would lose the
    variance entirely here (mean^2 = 1e8 against a variance of 1)."""
    x64 = rng.standard_normal((64, 3, 4, 4)) + 1e4
    x = x64.astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    _, mean, var, xhat, _ = numba_kernels.batchnorm_forward(x, ones, zeros, 1e-5)
    mean64, var64, _ = stats(x.astype(np.float64))
    np.testing.assert_allclose(var, var64, rtol=1e-4)
    np.testing.assert_allclose(mean, mean64, rtol=1e-6)


@pytest.mark.parametrize("cls,shape", [(BatchNorm1d, (6, 3)), (BatchNorm2d, (3, 2, 4, 5))])
def test_momentum_none_is_the_cumulative_average_of_every_batch(rng, cpu_kernels, cls, shape):
    """PyTorch's momentum=None: after t batches the running statistics are the plain mean of the t batch
    means and unbiased variances (f = 1/t), whatever they started at; num_batches_tracked counts t."""
    layer = make_bn(rng, cls, shape[1], momentum=None)
    layer.buffers["running_mean"][:] = 7.0  # forgotten at the first batch (f = 1)
    batches = [rng.standard_normal(shape) * (1 + i) + i for i in range(5)]
    for t, x in enumerate(batches, start=1):
        layer.forward(x)
        assert float(layer.buffers["num_batches_tracked"]) == t
        means = np.mean([stats(b)[0] for b in batches[:t]], axis=0)
        unbiased = np.mean([stats(b)[2] for b in batches[:t]], axis=0)
        np.testing.assert_allclose(layer.buffers["running_mean"], means, rtol=1e-12)
        np.testing.assert_allclose(layer.buffers["running_var"], unbiased, rtol=1e-12)
    # Evaluation changes nothing; a momentum layer would have given a different (exponential) average.
    layer.forward(batches[0], training=False)
    assert float(layer.buffers["num_batches_tracked"]) == 5
    ema = make_bn(rng, cls, shape[1], momentum=0.1)
    for x in batches:
        ema.forward(x)
    assert not np.allclose(ema.buffers["running_mean"], layer.buffers["running_mean"])
    assert "num_batches_tracked" not in ema.buffers


def test_momentum_none_resumes_from_a_state_dict(rng, cpu_kernels):
    """The count is saved with the running statistics: a restored layer continues the same average."""
    batches = [rng.standard_normal((4, 3)) + i for i in range(4)]
    a = Sequential(make_bn(rng, BatchNorm1d, 3, momentum=None))
    for x in batches[:2]:
        a.forward(x)
    b = Sequential(make_bn(rng, BatchNorm1d, 3, momentum=None))
    b.load_state_dict(a.state_dict())
    for model in (a, b):
        for x in batches[2:]:
            model.forward(x)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value, err_msg=key)
    np.testing.assert_allclose(a.state_dict()["0.running_mean"], np.mean([stats(x)[0] for x in batches], axis=0))


@pytest.mark.gpu
def test_gpu_momentum_none_matches_the_cpu():
    rng = np.random.default_rng(5)
    cpu, gpu = BatchNorm2d(3, momentum=None), BatchNorm2d(3, momentum=None).to("gpu")
    import cupy

    for i in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) + i).astype(np.float32)
        cpu.forward(x)
        gpu.forward(cupy.asarray(x))
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(gpu.buffers[key].get(), cpu.buffers[key], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"momentum": 1.5}, r"momentum must lie in \[0, 1\] or be None, received 1.5"),
        ({"momentum": float("nan")}, r"momentum must lie in \[0, 1\] or be None, received nan"),
        ({"momentum": "0.1"}, r"momentum must lie in \[0, 1\] or be None, received '0.1'"),
        ({"eps": 0.0}, r"eps must be positive and finite, received 0.0"),
        ({"eps": float("inf")}, r"eps must be positive and finite, received inf"),
    ],
)
def test_hyperparameters_are_checked_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=rf"^BatchNorm2d: {message}$"):
        BatchNorm2d(3, **kwargs)


@pytest.mark.parametrize("kernels", [reference_kernels, numba_kernels], ids=["reference", "numba"])
def test_float32_statistics_keep_their_digits_at_a_large_offset(rng, kernels):
    """At a mean offset of 1e5 a float32 sum loses ~3 digits of the mean relative to the std (1); the kernels
    sum in float64, so the float32 results must match a float64 computation from the same float32 input to
    float32 resolution: xhat to ~1e-6, not 1e-3."""
    x = (rng.standard_normal((256, 3, 8, 8)) + 1e5).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = np.array([1.5, -0.5, 2.0], np.float32), np.array([0.1, 0.2, -0.3], np.float32)
    got = kernels.batchnorm_forward(x, gamma, beta, 1e-5)
    want = reference_kernels.batchnorm_forward(x.astype(np.float64), gamma.astype(np.float64), beta, 1e-5)
    for name, a, b in zip(("y", "mean", "var", "xhat", "inv_std"), got, want):
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6, err_msg=name)
    got_b = kernels.batchnorm_backward(dy, got[3], got[4], gamma)
    want_b = reference_kernels.batchnorm_backward(dy.astype(np.float64), got[3].astype(np.float64), got[4], gamma)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), got_b, want_b):
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max(), err_msg=name)


def test_the_offset_test_can_fail(rng):
    """What the float64 sums prevent: the same statistics computed with float32 sums are off by far more
    than the tolerance above."""
    x = (rng.standard_normal((256, 3, 8, 8)) + 1e5).astype(np.float32)
    mean32 = x.mean(axis=(0, 2, 3), dtype=np.float32)
    xhat32 = (x - mean32.reshape(1, -1, 1, 1)) / x.std(axis=(0, 2, 3), dtype=np.float32).reshape(1, -1, 1, 1)
    xhat = reference_kernels.batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), 0.0)[3]
    assert np.abs(xhat32 - xhat).max() > 1e-4


@pytest.mark.parametrize("kernels", [reference_kernels, numba_kernels], ids=["reference", "numba"])
def test_kernels_refuse_to_normalize_an_empty_batch(kernels):
    with pytest.raises(
        ValueError, match=r"^batchnorm_forward: cannot normalize over an empty batch \(shape \(0, 3\)\)$"
    ):
        kernels.batchnorm_forward(np.zeros((0, 3), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), 1e-5)


@pytest.mark.parametrize("momentum", [None, 0.3])
def test_running_statistics_match_pytorch_where_installed(rng, cpu_kernels, momentum):
    """Optional cross-check (PyTorch is never a dependency): the same batches, of different sizes, give the
    same running statistics and batch count, and an empty batch changes nothing, as in torch.nn.BatchNorm2d."""
    torch = pytest.importorskip("torch")
    ours = BatchNorm2d(3, momentum=momentum, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, momentum=momentum).double()
    for i in range(4):
        x = rng.standard_normal((2 + i, 3, 3, 4)) * (i + 1) + i
        np.testing.assert_allclose(ours.forward(x), theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.buffers["running_mean"], theirs.running_mean.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours.buffers["running_var"], theirs.running_var.numpy(), rtol=1e-12)
    if momentum is None:
        assert float(ours.buffers["num_batches_tracked"]) == int(theirs.num_batches_tracked) == 4
    # An empty batch leaves the statistics in both. (PyTorch still counts it in num_batches_tracked, which
    # then weighs the next batch by 1/6 instead of 1/5; tinygan counts only batches that have statistics.)
    before = ours.buffers["running_mean"].copy()
    ours.forward(np.zeros((0, 3, 3, 4)))
    assert tuple(theirs(torch.zeros((0, 3, 3, 4), dtype=torch.float64)).shape) == (0, 3, 3, 4)
    np.testing.assert_array_equal(ours.buffers["running_mean"], before)
    np.testing.assert_allclose(before, theirs.running_mean.numpy(), rtol=1e-12, atol=1e-15)
