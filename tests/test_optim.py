import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels

from tinygan.layers import BatchNorm1d, Dense, Sequential
from tinygan.optim import Adam


def make_model(dtype=np.float64, seed=0):
    return Sequential(Dense(3, 2, rng=seed, dtype=dtype), BatchNorm1d(2, dtype=dtype))


def draw_grads(rng, model, steps, scale=1e-3):
    """Per step, per parameter gradients, small enough that eps matters in the update."""
    return [
        {
            f"{n}.{k}": scale * rng.standard_normal(p.shape)
            for n, layer in model.named_layers()
            for k, p in layer.params.items()
        }
        for _ in range(steps)
    ]


def set_grads(model, grads):
    for n, layer in model.named_layers():
        for k in layer.params:
            layer.grads[k][...] = grads[f"{n}.{k}"]


def adam_closed_form(p0, gs, lr, b1, b2, eps, paper_eps_hat=False):
    """Adam written as sums instead of the recurrence:
    m_t = (1-b1) sum_k b1^(t-k) g_k, v_t = (1-b2) sum_k b2^(t-k) g_k^2,
    p_T = p_0 - sum_t lr/(1-b1^t) m_t / (sqrt(v_t)/sqrt(1-b2^t) + eps)."""
    p = p0.astype(np.float64).copy()
    for t in range(1, len(gs) + 1):
        m = (1 - b1) * sum(b1 ** (t - k) * gs[k - 1] for k in range(1, t + 1))
        v = (1 - b2) * sum(b2 ** (t - k) * gs[k - 1] ** 2 for k in range(1, t + 1))
        if paper_eps_hat:  # section 2's reformulation: eps added before the bias correction
            p -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        else:
            p -= lr / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)
    return p


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_matches_closed_form_over_several_steps(rng, cpu_kernels, dtype, tol):
    model = make_model(dtype)
    lr, betas, eps = 0.01, (0.8, 0.95), 1e-3
    opt = Adam(model, lr=lr, betas=betas, eps=eps)
    start = {f"{n}.{k}": p.astype(np.float64) for n, layer in model.named_layers() for k, p in layer.params.items()}
    grads = draw_grads(rng, model, 5)
    for g in grads:
        set_grads(model, {k: v.astype(dtype) for k, v in g.items()})
        opt.step()
    assert opt.step_count == 5
    for n, layer in model.named_layers():
        for k, p in layer.params.items():
            gs = [g[f"{n}.{k}"].astype(dtype).astype(np.float64) for g in grads]
            expected = adam_closed_form(start[f"{n}.{k}"], gs, lr, *betas, eps)
            assert p.dtype == dtype and opt.m[f"{n}.{k}"].dtype == dtype
            np.testing.assert_allclose(p, expected, rtol=tol, atol=tol)
            # Where eps sits matters at this gradient scale: the test tells the two forms apart.
            other = adam_closed_form(start[f"{n}.{k}"], gs, lr, *betas, eps, paper_eps_hat=True)
            assert np.abs(other - expected).max() > 100 * tol


def test_state_dict_round_trip_continues_identically(rng, cpu_kernels):
    a = make_model(seed=1)
    opt_a = Adam(a, lr=0.05)
    grads = draw_grads(rng, a, 6, scale=1.0)
    for g in grads[:3]:
        set_grads(a, g)
        opt_a.step()
    model_state, opt_state = a.state_dict(), opt_a.state_dict()
    assert opt_state["step"] == 3 and isinstance(opt_state["step"], int)
    assert set(opt_state) == {"step"} | {f"{s}.{k}" for s in "mv" for k in ("0.W", "0.b", "1.gamma", "1.beta")}

    b = make_model(seed=2)
    opt_b = Adam(b, lr=0.05)
    b.load_state_dict(model_state)
    opt_b.load_state_dict(opt_state)
    opt_state["m.0.W"][...] = 123.0  # the state dict holds copies, not the live arrays
    for g in grads[3:]:
        for model, opt in ((a, opt_a), (b, opt_b)):
            set_grads(model, g)
            opt.step()
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value, err_msg=key)


def test_load_state_dict_errors_name_the_key_and_change_nothing():
    opt = Adam(make_model())
    good = opt.state_dict()
    bad = dict(good, **{"m.0.W": np.zeros((5, 5))})
    with pytest.raises(ValueError, match=r"m\.0\.W expected shape \(3, 2\), received \(5, 5\)"):
        opt.load_state_dict(bad)
    missing = {k: v for k, v in good.items() if k != "v.1.beta"}
    with pytest.raises(ValueError, match=r"missing keys \['v\.1\.beta'\]"):
        opt.load_state_dict(missing)
    with pytest.raises(ValueError, match="unexpected keys.*'extra'"):
        opt.load_state_dict(dict(good, extra=np.zeros(1)))
    for step in (-1, 2.5):
        with pytest.raises(ValueError, match="'step' must be a non-negative int"):
            opt.load_state_dict(dict(good, step=step))
    assert opt.step_count == 0 and not opt.m["0.W"].any()
    opt.load_state_dict(dict(good, step=np.array(7)))  # as read back from an .npz
    assert opt.step_count == 7


def test_zero_grad_and_layer_lists(rng):
    d1, d2 = Dense(3, 2, rng=1), Dense(2, 2, rng=2)
    opt = Adam([d1, d2])
    assert sorted(opt.m) == ["0.W", "0.b", "1.W", "1.b"]
    for layer in (d1, d2):
        layer.grads["W"][...] = 1.0
    opt.zero_grad()
    assert not any(g.any() for layer in (d1, d2) for g in layer.grads.values())

    # A layer listed twice is still stepped once per step.
    once, twice = Dense(3, 2, rng=1), Dense(3, 2, rng=1)
    for layer in (once, twice):
        layer.grads["W"][...] = 0.5
    Adam([once]).step()
    Adam([twice, twice]).step()
    np.testing.assert_array_equal(once.params["W"], twice.params["W"])


def test_dtype_mismatch_after_astype_is_a_clear_error():
    model = make_model(np.float32)
    opt = Adam(model)
    model.astype(np.float64)
    with pytest.raises(ValueError, match=r"0\.W .*float32.*float64.*opt\.to"):
        opt.step()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"lr": -1.0}, r"lr must be positive and finite, received -1.0"),
        ({"lr": 0.0}, r"lr must be positive and finite, received 0.0"),
        ({"lr": float("nan")}, r"lr must be positive and finite, received nan"),
        ({"lr": float("inf")}, r"lr must be positive and finite, received inf"),
        ({"lr": "1e-3"}, r"lr must be positive and finite, received '1e-3'"),
        ({"betas": (1.0, 0.999)}, r"betas must be two numbers in \[0, 1\), received \(1.0, 0.999\)"),
        ({"betas": (0.9, -0.1)}, r"betas must be two numbers in \[0, 1\), received \(0.9, -0.1\)"),
        ({"betas": (0.9, float("nan"))}, r"betas must be two numbers in \[0, 1\), received \(0.9, nan\)"),
        ({"betas": 0.9}, r"betas must be two numbers in \[0, 1\), received 0.9"),
        ({"betas": (0.9,)}, r"betas must be two numbers in \[0, 1\), received \(0.9,\)"),
        ({"eps": 0.0}, r"eps must be positive and finite, received 0.0"),
        ({"eps": -1e-8}, r"eps must be positive and finite, received -1e-08"),
        ({"eps": float("nan")}, r"eps must be positive and finite, received nan"),
    ],
)
def test_hyperparameters_are_refused_at_construction_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=rf"^Adam: {message}$"):
        Adam(make_model(), **kwargs)


def test_why_eps_zero_is_refused(cpu_kernels):
    """With eps = 0 a parameter whose gradient has always been 0 gets m / sqrt(v) = 0 / 0: NaN weights."""
    p, g, m, v = np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3)
    from tinygan.backend import kernels

    with np.errstate(invalid="ignore"):
        kernels("cpu").adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 0.0, 1)
    assert np.isnan(p).all()


@pytest.mark.parametrize("kernels", [reference_kernels, numba_kernels], ids=["reference", "numba"])
@pytest.mark.parametrize("g_size", [1e20, 3e19, 1.0])
def test_float32_second_moment_does_not_overflow(kernels, g_size):
    """g^2 overflows float32 for |g| > 1.8e19, yet (1 - beta2) g^2 still fits: v must stay finite and the
    weights move as a float64 computation says (g ~ 1 is the control)."""
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(64).astype(np.float32)
    gs = [(g_size * rng.standard_normal(64)).astype(np.float32) for _ in range(3)]
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    p64, m64, v64 = (a.astype(np.float64) for a in (p0, m, v))
    for t, g in enumerate(gs, start=1):
        kernels.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, t)
        reference_kernels.adam_update(p64, g.astype(np.float64), m64, v64, 1e-2, 0.9, 0.999, 1e-8, t)
    assert np.isfinite(v).all() and np.isfinite(p).all()
    np.testing.assert_allclose(v, v64, rtol=1e-6)
    np.testing.assert_allclose(p, p64, rtol=1e-6, atol=1e-6)
    assert np.abs(p - p0).min() > 1e-4  # every weight moved (lr 1e-2 per step, |m| / sqrt(v) ~ 1)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_numba_matches_reference(rng, numba_threads, dtype, rtol):
    shape = (37, 5)
    init = [rng.standard_normal(shape).astype(dtype) for _ in range(2)] + [rng.uniform(0, 1, shape).astype(dtype)]
    states = [[a.copy() for a in init] for _ in range(2)]
    for step in range(1, 4):
        g = rng.standard_normal(shape).astype(dtype)
        for K, (p, m, v) in zip((reference_kernels, numba_kernels), states):
            assert K.adam_update(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, step) is None
    for a, b in zip(*states):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)
    # Non-contiguous parameters are still updated in place.
    p = np.zeros((4, 6), dtype)[:, ::2]
    numba_kernels.adam_update(p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p), 0.1, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_allclose(p, -0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="grad of shape"):
        numba_kernels.adam_update(p, np.ones((2, 2), dtype), p.copy(), p.copy(), 0.1, 0.9, 0.999, 1e-8, 1)
