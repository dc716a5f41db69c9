"""Generator EMA (tinygan.ema) and its kernel ``ema_update_multi``: the float64 formula over many
steps with the warm-up, the kernel sets against each other, checkpoints, and the BatchNorm statistics
of the averaged model. The GPU tests carry the ``gpu`` marker (skipped with the reason elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import tinygan.kernels.cpu as numba_kernels
import tinygan.kernels.reference as reference_kernels
from tinygan.kernels.reference.ema import ema_decay

from tinygan import layers as nn
from tinygan.ema import EMA

SHAPES = [(3, 5), (1,), (300, 7), (4, 3, 2, 2), (1025,)]


def _formula(ema, params_over_time, decay, warmup=True):
    """The float64 average, written out: e = d_t e + (1 - d_t) p_t, d_t = min(decay, (1+t)/(10+t))."""
    ema = [e.astype(np.float64).copy() for e in ema]
    for t, params in enumerate(params_over_time):
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        ema = [d * e + (1 - d) * p.astype(np.float64) for e, p in zip(ema, params)]
    return ema


def test_warm_up_decay():
    assert ema_decay(0.999, 0) == pytest.approx(0.1)
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 8989) < 0.999 and ema_decay(0.999, 8991) == 0.999
    assert ema_decay(0.5, 0) == pytest.approx(0.1) and ema_decay(0.5, 20) == 0.5
    assert ema_decay(0.9, None) == 0.9


@pytest.mark.parametrize("warmup", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_sets_follow_the_formula_over_steps(rng, numba_threads, dtype, warmup):
    ema0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    steps = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(6)]
    expected = _formula(ema0, steps, 0.7, warmup)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-14}
    results = {}
    for name, K in (("reference", reference_kernels), ("numba", numba_kernels)):
        ema = [e.copy() for e in ema0]
        for t, params in enumerate(steps):
            assert K.ema_update_multi(ema, params, 0.7, t if warmup else None) is None
        for got, want in zip(ema, expected):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **tol, err_msg=name)
        results[name] = ema
    for a, b in zip(results["reference"], results["numba"]):
        np.testing.assert_allclose(a, b, **tol)


def test_kernel_errors_and_non_contiguous_arrays(rng):
    e, p = np.zeros((3, 4)), np.ones((3, 4))
    for K in (reference_kernels, numba_kernels):
        with pytest.raises(ValueError, match="got 1 ema_params and 2 params"):
            K.ema_update_multi([e], [p, p], 0.9)
        with pytest.raises(ValueError, match=r"ema_params\[0\] has shape \(3, 4\).*parameter \(4, 3\)"):
            K.ema_update_multi([e], [p.T.copy()], 0.9)
    # A transposed (non-contiguous) average is still updated in place.
    e_t = np.zeros((4, 3)).T
    numba_kernels.ema_update_multi([e_t], [p], 0.25)
    np.testing.assert_allclose(e_t, 0.75)


def _tiny_generator(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Dense(4, 6, rng=rng, dtype=dtype),
        nn.BatchNorm1d(6, dtype=dtype),
        nn.ReLU(),
        nn.Dropout(0.5, rng=1),
        nn.Dense(6, 5, rng=rng, dtype=dtype),
        nn.Tanh(),
        name="G",
    )


def _perturb(model, rng, scale=0.1):
    """Stand in for an optimizer step: move every parameter in place."""
    for _, layer in model.named_layers():
        for p in layer.params.values():
            p += scale * rng.standard_normal(p.shape)


def _params(model):
    return [p for _, layer in model.named_layers() for p in layer.params.values()]


def test_ema_object_follows_the_formula_and_leaves_the_model_alone(rng):
    G = _tiny_generator()
    ema = EMA(G, decay=0.95)
    start = [p.copy() for p in _params(G)]
    history = []
    for _ in range(30):
        _perturb(G, rng)
        history.append([p.copy() for p in _params(G)])
        ema.update()
    assert ema.num_updates == 30
    for got, want in zip(_params(ema.model), _formula(start, history, 0.95)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    for got, want in zip(_params(G), history[-1]):
        np.testing.assert_array_equal(got, want)
    # The warm-up is what keeps the average near the recent weights: with a plain decay of 0.95 the
    # initialization would still weigh 0.95**30 = 21%.
    plain = _formula(start, history, 0.95, warmup=False)
    assert not np.allclose(_params(ema.model)[0], plain[0])


def test_state_round_trip_continues_identically(rng):
    G = _tiny_generator()
    ema = EMA(G, decay=0.9)
    for _ in range(4):
        _perturb(G, rng)
        ema.update()
    state = ema.state_dict()
    assert state["num_updates"] == 4 and isinstance(state["num_updates"], int)
    assert set(state) == {"num_updates", *G.state_dict()}  # parameters and buffers, the model's keys
    other = EMA(_tiny_generator(seed=5), decay=0.9)
    other.source = G  # the same trained model from here on
    other.load_state_dict(state)
    assert other.num_updates == 4
    for _ in range(3):
        _perturb(G, rng)
        ema.update()
        other.update()
    for a, b in zip(_params(ema.model), _params(other.model)):
        np.testing.assert_array_equal(a, b)
    # The saved arrays alone load into a fresh model for sampling.
    fresh = _tiny_generator(seed=9)
    fresh.load_state_dict({k: v for k, v in ema.state_dict().items() if k != "num_updates"})
    np.testing.assert_array_equal(_params(fresh)[0], _params(ema.model)[0])


def test_load_state_errors_leave_the_average_untouched():
    ema = EMA(_tiny_generator(), decay=0.9)
    before = [p.copy() for p in _params(ema.model)]
    good = ema.state_dict()
    with pytest.raises(ValueError, match="missing 'num_updates'"):
        ema.load_state_dict({k: v for k, v in good.items() if k != "num_updates"})
    with pytest.raises(ValueError, match=r"ckpt.npz: 'num_updates' must be a non-negative int, received -1"):
        ema.load_state_dict({**good, "num_updates": -1}, source="ckpt.npz")
    with pytest.raises(ValueError, match=r"ckpt.npz does not match G EMA: 0.W .*expected shape \(4, 6\)"):
        ema.load_state_dict({**good, "0.W": np.zeros((6, 4))}, source="ckpt.npz")
    with pytest.raises(ValueError, match=r"missing \['1.running_var'\]"):
        ema.load_state_dict({k: v for k, v in good.items() if k != "1.running_var"})
    for a, b in zip(before, _params(ema.model)):
        np.testing.assert_array_equal(a, b)
    assert ema.num_updates == 0


def test_decay_is_checked():
    for decay in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="EMA: decay must lie in"):
            EMA(_tiny_generator(), decay=decay)


def test_refresh_batchnorm_uses_the_averaged_models_own_statistics(rng):
    G = _tiny_generator()
    ema = EMA(G, decay=0.9)
    for _ in range(5):
        _perturb(G, rng, scale=0.5)
        ema.update()
    g_buffers = {k: v.copy() for k, v in G.state_dict().items() if "running" in k}
    noise = [rng.standard_normal((16, 4)) for _ in range(3)]
    model = ema.refresh_batchnorm(noise)
    assert model is ema.model
    # What the BatchNorm layer sees: the averaged Dense layer's output for each batch.
    dense = ema.model[0]
    pre = [z @ dense.params["W"] + dense.params["b"] for z in noise]
    bn = ema.model[1]
    np.testing.assert_allclose(bn.buffers["running_mean"], np.mean([h.mean(axis=0) for h in pre], axis=0))
    np.testing.assert_allclose(bn.buffers["running_var"], np.mean([h.var(axis=0, ddof=1) for h in pre], axis=0))
    assert bn.momentum == 0.1  # restored
    # The trained model's buffers are untouched, and the same noise gives the same statistics.
    for k, v in g_buffers.items():
        np.testing.assert_array_equal(G.state_dict()[k], v)
    first = bn.buffers["running_mean"].copy()
    ema.refresh_batchnorm(noise)
    np.testing.assert_array_equal(bn.buffers["running_mean"], first)
    # Sampling with the refreshed model is plain evaluation mode.
    y = model.forward(noise[0], training=False)
    assert y.shape == (16, 5) and np.isfinite(y).all()
    with pytest.raises(ValueError, match="at least one batch"):
        ema.refresh_batchnorm([])


def test_model_without_batchnorm_needs_no_refresh():
    G = nn.Sequential(nn.Dense(3, 2, rng=0), name="G")
    ema = EMA(G)
    assert ema.refresh_batchnorm([]) is ema.model


# -- GPU -----------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_kernel_matches_reference_with_host_and_device_counts(rng, dtype):
    cp = pytest.importorskip("cupy")
    import tinygan.kernels.gpu as gpu_kernels
    from tinygan.kernels.gpu.adam import device_step

    ema0 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    steps = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(5)]
    ref = [e.copy() for e in ema0]
    host_count = [cp.asarray(e) for e in ema0]
    dev_count = [cp.asarray(e) for e in ema0]
    count = device_step(0)
    for t, params in enumerate(steps):
        reference_kernels.ema_update_multi(ref, params, 0.8, t)
        gparams = [cp.asarray(p) for p in params]
        gpu_kernels.ema_update_multi(host_count, gparams, 0.8, t)
        gpu_kernels.ema_update_multi(dev_count, gparams, 0.8, count)
    assert int(count[0].get()) == 5 and int(count[1].get()) == 0
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-14}
    for a, b, want in zip(host_count, dev_count, ref):
        np.testing.assert_allclose(cp.asnumpy(a), want, **tol)
        cp.testing.assert_array_equal(a, b)  # the same decays, on the host or on the device


@pytest.mark.gpu
def test_gpu_ema_object_matches_the_cpu_one_and_replays_in_a_graph(rng):
    cp = pytest.importorskip("cupy")
    from gpu_streams import capture_stream

    G_cpu, G_gpu = _tiny_generator(dtype=np.float32), _tiny_generator(dtype=np.float32).to("gpu")
    ema_cpu, ema_gpu = EMA(G_cpu, decay=0.9), EMA(G_gpu, decay=0.9)
    deltas = [[0.1 * rng.standard_normal(p.shape).astype(np.float32) for p in _params(G_cpu)] for _ in range(6)]

    def step(model, ema, delta, xp):
        for p, d in zip(_params(model), delta):
            p += xp.asarray(d)
        ema.update()

    for delta in deltas[:2]:
        step(G_cpu, ema_cpu, delta, np)
        step(G_gpu, ema_gpu, delta, cp)
    # The next update captured once, replayed for the remaining steps (the parameter moves are
    # written into the model's arrays before each replay, as an optimizer inside the graph would).
    stream = capture_stream()
    with stream:
        stream.begin_capture()
        ema_gpu.update()
        graph = stream.end_capture()
        for delta in deltas[2:]:
            for p, d in zip(_params(G_gpu), delta):
                p += cp.asarray(d)
            graph.launch(stream)
            step(G_cpu, ema_cpu, delta, np)
        stream.synchronize()
    assert ema_gpu.num_updates == ema_cpu.num_updates == 6
    for a, b in zip(_params(ema_gpu.model), _params(ema_cpu.model)):
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=1e-5, atol=1e-6)
    state = ema_gpu.state_dict()
    assert state["num_updates"] == 6 and all(isinstance(v, (int, np.ndarray)) for v in state.values())
