"""The GPU training step as one CUDA graph: its kernels (device-side Adam step, gradient zeroing,
fused dropout, batch gather, D's input, labels and figures), and whole runs of both GANs captured
against the same runs launched kernel by kernel.

Every test needs a CUDA GPU (tests/conftest.py skips them otherwise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
from gpu_streams import capture_stream  # noqa: E402  (needs CuPy)

pytestmark = pytest.mark.gpu

DTYPES = [np.float32, np.float64]


def g(a):
    return cp.asarray(a)


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# -- Adam with its step in device memory -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_device_step_equals_host_steps_and_advances(K, rng, dtype):
    from tinygan.kernels.gpu.adam import device_step

    shapes = [(3, 5), (1,), (300, 7), (1025,)]
    host = [g(rand(rng, s, dtype)) for s in shapes]
    dev = [p.copy() for p in host]
    m1, v1 = [cp.zeros(s, dtype) for s in shapes], [cp.zeros(s, dtype) for s in shapes]
    m2, v2 = [cp.zeros(s, dtype) for s in shapes], [cp.zeros(s, dtype) for s in shapes]
    counter = device_step(0)
    for step in range(1, 5):
        grads = [g(rand(rng, s, dtype)) for s in shapes]
        K.adam_update_multi(host, grads, m1, v1, 2e-4, 0.5, 0.999, 1e-8, step)
        K.adam_update_multi(dev, grads, m2, v2, 2e-4, 0.5, 0.999, 1e-8, counter)
        assert cp.asnumpy(counter).tolist() == [step, 0]
    # The bias corrections come from the device's pow instead of the host's: at most an ulp apart.
    tol = {"rtol": 1e-6, "atol": 1e-7} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-14}
    for a, b in zip(host + m1 + v1, dev + m2 + v2):
        np.testing.assert_allclose(cp.asnumpy(b), cp.asnumpy(a), **tol)
    K.adam_update_multi(dev, grads, m2, v2, 2e-4, 0.5, 0.999, 1e-8, counter, advance=False)
    assert cp.asnumpy(counter).tolist() == [4, 0]


def test_adam_device_step_replays_successive_steps_from_a_graph(K, rng):
    from tinygan.kernels.gpu.adam import device_step

    shapes = [(64, 33), (33,)]
    grads = [g(rand(rng, s, np.float32)) for s in shapes]
    eager = [g(rand(rng, s, np.float32)) for s in shapes]
    graphed = [p.copy() for p in eager]
    state = {name: [[cp.zeros(s, np.float32) for s in shapes] for _ in range(2)] for name in ("eager", "graph")}
    c_eager, c_graph = device_step(0), device_step(0)
    stream = capture_stream()  # after the uploads above
    with stream:
        K.adam_update_multi(graphed, grads, *state["graph"], 1e-2, 0.9, 0.999, 1e-8, c_graph)  # builds the table
        stream.begin_capture()
        K.adam_update_multi(graphed, grads, *state["graph"], 1e-2, 0.9, 0.999, 1e-8, c_graph)
        graph = stream.end_capture()
        for _ in range(3):
            graph.launch(stream)
        stream.synchronize()
    for _ in range(4):
        K.adam_update_multi(eager, grads, *state["eager"], 1e-2, 0.9, 0.999, 1e-8, c_eager)
    assert cp.asnumpy(c_graph).tolist() == [4, 0] == cp.asnumpy(c_eager).tolist()
    for a, b in zip(eager, graphed):
        assert cp.array_equal(a, b)


def test_zero_multi(K, rng):
    arrays = [g(rand(rng, s, np.float32)) for s in [(5, 7), (1,), (4096,)]]
    K.adam.zero_multi(arrays)
    assert all(not a.any() for a in arrays)
    with pytest.raises(ValueError, match="C-contiguous"):
        K.adam.zero_multi([g(rand(rng, (4, 4), np.float32))[:, ::2]])


def test_adam_optimizer_on_gpu_keeps_its_step_on_the_device(rng):
    from tinygan.layers import Dense, Sequential
    from tinygan.optim import Adam

    cpu = Sequential(Dense(6, 4, rng=1, dtype=np.float64), Dense(4, 2, rng=2, dtype=np.float64))
    gpu = Sequential(Dense(6, 4, rng=1, dtype=np.float64), Dense(4, 2, rng=2, dtype=np.float64)).to("gpu")
    opt_cpu, opt_gpu = Adam(cpu, lr=0.01), Adam(gpu, lr=0.01)
    assert len(opt_gpu.device_arrays()) == 2 * 2 * 2 + 1  # m and v of 2 layers x (W, b), and the step count
    for _ in range(3):
        grads = {
            f"{n}.{k}": rng.standard_normal(p.shape) for n, layer in cpu.named_layers() for k, p in layer.params.items()
        }
        opt_cpu.zero_grad()
        opt_gpu.zero_grad()
        for (n, lc), (_, lg) in zip(cpu.named_layers(), gpu.named_layers()):
            for k in lc.params:
                lc.grads[k] += grads[f"{n}.{k}"]
                lg.grads[k] += g(grads[f"{n}.{k}"])
        opt_cpu.step()
        opt_gpu.step()
    assert opt_gpu.step_count == 3
    state = opt_gpu.state_dict()
    assert state["step"] == 3 and isinstance(state["step"], int)
    for key, value in cpu.state_dict().items():
        np.testing.assert_allclose(gpu.state_dict()[key], value, rtol=1e-12, atol=1e-14)
    opt_gpu.load_state_dict(dict(state, step=7))
    assert opt_gpu.step_count == 7 and cp.asnumpy(opt_gpu.device_arrays()[-1]).tolist() == [7, 0]


# -- fused dropout -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_philox_dropout_equals_bernoulli_mask_then_dropout_forward(K, rng, dtype):
    from tinygan.gpu_random import PhiloxGenerator

    x = g(rand(rng, (33, 65), dtype))
    fused, split = PhiloxGenerator(11), PhiloxGenerator(11)
    for _ in range(2):
        y, mask = fused.dropout(x, 0.25)
        expected_mask = split.bernoulli(x.shape, 0.75)
        assert mask.dtype == np.bool_ and cp.array_equal(mask, expected_mask)
        assert cp.array_equal(y, K.dropout_forward(x, expected_mask, 0.25))
    assert fused.state_dict() == split.state_dict()


def test_dropout_layer_draws_on_the_device_and_resumes(rng):
    from tinygan.layers import Dropout

    layer = Dropout(0.3, rng=5).to("gpu")
    again = Dropout(0.3, rng=5).to("gpu")
    assert layer.device_rng.seed == again.device_rng.seed  # seeded from the layer's own generator
    x = g(rand(rng, (8, 50), np.float32))
    first = layer.forward(x)
    state = layer.device_rng.state_dict()
    second = layer.forward(x)
    assert not cp.array_equal(first, second)
    layer.device_rng.load_state_dict(state)
    assert cp.array_equal(layer.forward(x), second)
    assert cp.array_equal(again.forward(x), first)
    with pytest.raises(ValueError, match=r"Dropout.*on the cpu but the layer is on the gpu"):
        layer.forward(cp.asnumpy(x))


# -- the step's own kernels ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_gan_kernels_match_numpy(K, rng, dtype):
    gan = K.gan
    data = rand(rng, (37, 3, 2, 2), dtype)
    perm = rng.permutation(37)
    out = cp.empty((8, 3, 2, 2), dtype)
    for pos in (0, 3, 4):  # 4 * 8 + 7 wraps past the end of perm
        gan.gather_rows(g(data), g(perm), g(np.array([pos])), out)
        np.testing.assert_array_equal(cp.asnumpy(out), data[perm[(pos * 8 + np.arange(8)) % 37]])

    a, b = rand(rng, (5, 7), dtype), rand(rng, (5, 7), dtype)
    noise, sigma = rand(rng, (10, 7), dtype), np.asarray(0.3, dtype)
    np.testing.assert_array_equal(cp.asnumpy(gan.concat_noisy(g(a), g(b), None, None)), np.concatenate([a, b]))
    got = cp.asnumpy(gan.concat_noisy(g(a), g(b), g(noise), g(sigma)))
    np.testing.assert_allclose(got, np.concatenate([a, b]) + sigma * noise, rtol=1e-6)
    got = cp.asnumpy(gan.concat_noisy(g(a), None, g(noise[:5]), g(sigma)))
    np.testing.assert_allclose(got, a + sigma * noise[:5], rtol=1e-6)

    u = rng.random((10, 1)).astype(dtype)
    t = cp.asnumpy(gan.label_ranges_(g(u), 5, (0.8, 1.0), (0.0, 0.1)))
    np.testing.assert_allclose(t[:5], 0.8 + 0.2 * u[:5], rtol=1e-6)
    np.testing.assert_allclose(t[5:], 0.1 * u[5:], rtol=1e-6)

    z = rand(rng, (300, 1), dtype, scale=4.0)
    figures = cp.asnumpy(gan.d_figures(g(z), 100))
    sig = 1 / (1 + np.exp(-z.astype(np.float64)))
    np.testing.assert_allclose(figures, [sig[:100].mean(), sig[100:].mean(), (z[100:] < 0).mean()], rtol=1e-6)

    acc, pos = cp.zeros(7, np.float64), cp.zeros(1, np.int64)
    values = [g(np.asarray(v, dtype)) for v in (1.5, -2.0, 0.25, 0.5, 1.0, 0.75, 0.125)]
    gan.step_end(acc, values, pos)
    gan.step_end(acc, values, pos)
    np.testing.assert_array_equal(cp.asnumpy(acc), [3.0, -4.0, 0.5, 1.0, 2.0, 1.5, 0.25])
    assert int(pos[0]) == 2

    # What G receives: RMS over samples of n * dx_i; more entries than one block's threads, an odd count.
    from tinygan.step import HOST_OPS

    for shape in ((7, 5), (33, 1, 9, 11), (300, 3, 8, 8)):  # the last: more elements than 256 blocks of threads
        dx = rand(rng, shape, dtype, scale=1e-3)
        got = cp.asnumpy(gan.input_grad_rms(g(dx), shape[0]))
        expected = np.sqrt(shape[0] * (dx.astype(np.float64) ** 2).sum())
        np.testing.assert_allclose(got, [expected], rtol=1e-6 if dtype == np.float32 else 1e-13)
        assert float(HOST_OPS.input_grad_rms(dx, shape[0])) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="input_grad_rms: expected 4 rows"):
        gan.input_grad_rms(g(dx), 4)

    # How evenly the samples share G's step, against the host twin; all-zero weights give 1, not NaN.
    for n in (1, 7, 300):
        dlogits = -rng.random((n, 1)).astype(dtype) / n
        got = float(cp.asnumpy(gan.weight_share(g(dlogits)))[0])
        assert got == pytest.approx(float(HOST_OPS.weight_share(dlogits)), rel=1e-6 if dtype == np.float32 else 1e-13)
    assert float(cp.asnumpy(gan.weight_share(cp.zeros((5, 1), dtype)))[0]) == 1.0


def test_losses_on_gpu_return_device_scalars(rng):
    from tinygan.losses import bce_with_logits, generator_loss

    z = g(rand(rng, (6, 1), np.float32))
    for targets in (0.9, np.full((6, 1), 0.9, np.float32), g(np.full((6, 1), 0.9, np.float32))):
        loss, dz = bce_with_logits(z, targets)
        assert isinstance(loss, cp.ndarray) and loss.shape == () and isinstance(dz, cp.ndarray)
    loss, _ = generator_loss(z, "minimax")
    assert isinstance(loss, cp.ndarray) and loss.shape == ()
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        bce_with_logits(z, 1.5)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        bce_with_logits(z, np.full((6, 1), -0.5, np.float32))


# -- whole training runs -------------------------------------------------------------------------


def _data(family: str, n: int) -> np.ndarray:
    shape = (n, 784) if family == "mnist_dense" else (n, 3, 32, 32)
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    return data if family == "mnist_dense" else 2 * data - 1


def _config(family: str, **overrides):
    from tinygan.train import GANConfig

    settings = dict(
        model=family,
        epochs=1,
        batch_size=8,
        device="gpu",
        g_options={"seed": 0},
        d_options={"seed": 1},
        log_every=3,
        image_range="tanh" if family == "dcgan" else "01",
    )
    if family == "mnist_dense":
        settings.update(real_label=(0.9, 0.9))  # constant labels, dropout in D
    else:
        settings.update(real_label=(0.8, 1.0), fake_label=(0.0, 0.1), instance_noise=0.1, d_steps=2)
    settings.update(overrides)
    return GANConfig(**settings)


def _state(trainer) -> dict[str, np.ndarray]:
    state = {**{"G/" + k: v for k, v in trainer.G.state_dict().items()}}
    state.update({"D/" + k: v for k, v in trainer.D.state_dict().items()})
    if trainer.ema is not None:  # the averaged parameters (its BatchNorm buffers are refreshed, not trained)
        state.update({"G_ema/" + k: v for k, v in trainer.ema.model.state_dict().items()})
        state["ema_updates"] = np.asarray(trainer.ema.num_updates)
    for name, opt in (("opt_G", trainer.opt_g), ("opt_D", trainer.opt_d)):
        state.update({f"{name}/{k}": np.asarray(v) for k, v in opt.state_dict().items()})
    return state


def _assert_same(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        diff = np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)).max() if a[key].size else 0.0
        assert np.array_equal(a[key], b[key]), f"{key}: max difference {diff}"


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_the_step_on_two_streams_gives_the_bits_of_one(tmp_path, family):
    """GANStep runs D's last Adam step, its figures and the reset of G's gradients on a second stream beside the G
    step's G forward (tinygan/step.py): only when independent kernels run changes, so a run with the fork gives
    the bits of the same run on one stream (the dcgan case has two D steps a G step), captured and replayed."""
    from tinygan.kernels.gpu.streams import one_stream

    from tinygan.train import GANTrainer

    data = _data(family, 64)
    forked = GANTrainer(_config(family, epochs=2), data, tmp_path / "forked", progress=False)
    forked.run()
    assert forked.runner.graph.graph is not None and not forked.runner.graph.failed
    with one_stream():
        serial = GANTrainer(_config(family, epochs=2), data, tmp_path / "serial", progress=False)
        serial.run()
    _assert_same(_state(forked), _state(serial))
    for row_f, row_s in zip(forked.history, serial.history, strict=True):
        for key in GANTrainer.METRICS:
            assert row_f[key] == row_s[key], key


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_graph_replay_equals_kernel_by_kernel_launches(tmp_path, family):
    from tinygan.train import GANTrainer

    data = _data(family, 64)  # 12 steps: one eager, one captured, ten replays
    # Three epochs: the epoch-end diagnostics (tinygan.diagnostics.EpochFigures) run eagerly at the first,
    # are captured at the second and replayed at the third.
    graphed = GANTrainer(_config(family, epochs=3), data, tmp_path / "graph", progress=False)
    graphed.run()
    assert graphed.runner.graph.graph is not None and not graphed.runner.graph.failed
    figures = graphed._epoch_figures().graph
    assert figures.graph is not None and not figures.failed
    eager = GANTrainer(_config(family, epochs=3, cuda_graph=False), data, tmp_path / "eager", progress=False)
    eager.run()
    assert eager.runner.graph.graph is None and eager._epoch_figures().graph.graph is None
    _assert_same(_state(graphed), _state(eager))
    timing = {"seconds", "images_per_s", "gpu_memory_mib"}
    for row_g, row_e in zip(graphed.history, eager.history, strict=True):
        assert row_g.keys() == row_e.keys()
        assert any(key.startswith("update.") for key in row_g) and "dead.D" in row_g
        for key in row_g.keys() - timing:
            assert row_g[key] == row_e[key], key
    assert all(math.isfinite(row[key]) for row in graphed.history for key in GANTrainer.METRICS)
    assert graphed.history[-1]["gpu_memory_mib"] > 0


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_what_g_receives_is_summed_over_the_epochs_steps_on_the_device(tmp_path, family):
    """g_input_grad, a step figure summed in the captured graph: the epoch's mean equals the mean of each
    step's sqrt(n * sum(dfake**2)), computed on the host from the gradient G.backward was given (recorded
    in an eager run: a replayed graph calls no Python)."""
    from tinygan.train import GANTrainer

    data = _data(family, 64)
    trainer = GANTrainer(_config(family, epochs=1, cuda_graph=False), data, tmp_path / "eager", progress=False)
    received = []
    backward = trainer.G.backward

    def recording_backward(dy, *args, **kwargs):
        dx = cp.asnumpy(dy).astype(np.float64)
        received.append(np.sqrt(len(dx) * (dx**2).sum()))
        return backward(dy, *args, **kwargs)

    trainer.G.backward = recording_backward
    trainer.run()
    assert len(received) == trainer.steps_per_epoch
    assert trainer.history[0]["g_input_grad"] == pytest.approx(np.mean(received), rel=1e-5)
    graphed = GANTrainer(_config(family, epochs=1), data, tmp_path / "graph", progress=False)
    graphed.run()
    assert graphed.history[0]["g_input_grad"] == trainer.history[0]["g_input_grad"]
    assert graphed.history[0]["g_input_grad_probe"] > 0
    assert 1 / 8 <= graphed.history[0]["g_weight_share"] <= 1


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_two_trainers_stepping_in_turn_do_not_disturb_each_other(tmp_path, family):
    """One trainer replays its graph while another launches its step eagerly, each on its own stream, as the
    benchmark does: both must end where either ends alone. They once shared one cuBLAS handle and workspace,
    which the replayed graph and the eager GEMMs then used at the same time (bench/results, 2026-11-25)."""
    from tinygan.train import GANTrainer

    data = _data(family, 64)

    def fresh(name, graph):
        trainer = GANTrainer(_config(family, cuda_graph=graph), data, tmp_path / name, progress=False)
        cp.cuda.Device().synchronize()  # the data and weights were uploaded on the default stream
        trainer.runner.begin_epoch(trainer.rng.permutation(len(trainer.data)), 0)
        return trainer

    graphed, eager = fresh("graph", True), fresh("eager", False)
    for _ in range(4):
        graphed.runner.step(graphed.noise_sigma())
        eager.runner.step(eager.noise_sigma())
    cp.cuda.Device().synchronize()
    assert graphed.runner.graph.graph is not None
    _assert_same(_state(graphed), _state(eager))


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_same_seed_same_run_and_exact_mid_epoch_resume_with_the_graph(tmp_path, family):
    from tinygan.train import GANTrainer

    data = _data(family, 48)  # 6 steps per epoch
    straight = GANTrainer(_config(family, epochs=2), data, tmp_path / "a", progress=False)
    straight.run()
    twice = GANTrainer(_config(family, epochs=2), data, tmp_path / "b", progress=False)
    twice.run()
    _assert_same(_state(straight), _state(twice))

    stopped = GANTrainer(_config(family, epochs=2), data, tmp_path / "c", progress=False)
    stopped.run(on_step=lambda t: t.global_step == 9 and t.request_stop())  # mid epoch 2
    assert (stopped.epoch, stopped.step_in_epoch) == (1, 3)
    resumed = GANTrainer.resume(tmp_path / "c", data, progress=False)
    resumed.run()
    assert resumed.runner.graph.graph is not None
    _assert_same(_state(straight), _state(resumed))
    assert [r["d_loss"] for r in straight.history] == [r["d_loss"] for r in resumed.history]


def test_nan_guard_names_the_window_on_gpu(tmp_path):
    from tinygan.train import GANTrainer, TrainingDiverged

    trainer = GANTrainer(_config("mnist_dense", log_every=4), _data("mnist_dense", 64), tmp_path, progress=False)
    # D's output bias, in place (the graph keeps the array's address); a NaN inside G could be zeroed by a ReLU.
    trainer.D[9].params["b"][0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"d_loss became nan in steps 1-4 \(epoch 1\).*no checkpoint was saved"):
        trainer.run()
    assert not (tmp_path / "checkpoint.npz").exists()


def test_host_batch_into_gpu_trainer_is_a_clear_error(tmp_path):
    from tinygan.train import GANTrainer

    data = _data("mnist_dense", 16)
    trainer = GANTrainer(_config("mnist_dense"), data, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"batch is on the cpu but the models are on the gpu"):
        trainer.step(data[:8])
    figures = trainer.step(g(data[:8]))
    assert all(isinstance(v, cp.ndarray) and v.size == 1 for v in figures.values())
    with pytest.raises(ValueError, match=r"Dense.*cpu.*gpu"):
        trainer.D.forward(data[:8])


def test_failed_capture_falls_back_to_plain_launches(tmp_path, capsys):
    from tinygan.train import GANTrainer

    data = _data("mnist_dense", 32)
    trainer = GANTrainer(_config("mnist_dense"), data, tmp_path / "a", progress=False)

    class RefuseCapture:
        """Draws as the trainer's own, but a cupy.random call while capturing, which CUDA graphs refuse."""

        def __init__(self, draws):
            self.draws = draws

        def normal(self, shape):
            if trainer.runner.graph.capturing:
                cp.random.standard_normal(3)
            return self.draws.normal(shape)

        def d_targets(self, n):
            return self.draws.d_targets(n)

        def device_arrays(self):
            return self.draws.device_arrays()

    trainer.step.draws = RefuseCapture(trainer.step.draws)
    trainer.run()
    assert trainer.runner.graph.graph is None and trainer.runner.graph.failed
    assert "could not be captured as a CUDA graph" in capsys.readouterr().err
    eager = GANTrainer(_config("mnist_dense", cuda_graph=False), data, tmp_path / "b", progress=False)
    eager.run()
    _assert_same(_state(trainer), _state(eager))


def test_every_object_declares_its_device_state(tmp_path):
    """What the graph holds by address comes from each object's public device_arrays(): the Philox counters
    of the noise and of every Dropout, Adam's moments and step count, the step's sigma and targets."""
    from tinygan.train import GANTrainer

    trainer = GANTrainer(_config("mnist_dense", instance_noise=0.1), _data("mnist_dense", 16), tmp_path, progress=False)
    held = {id(a) for a in trainer.runner.device_arrays()}
    expected = [*trainer.noise_rng.device_arrays(), trainer.step.sigma, trainer.data]
    expected += trainer.opt_d.device_arrays() + trainer.opt_g.device_arrays()
    for _, layer in trainer.D.named_layers():
        expected += layer.device_arrays() if hasattr(layer, "device_arrays") else []
    assert len(expected) > 20 and all(id(a) in held for a in expected)


# -- generator EMA and differentiable augmentation inside the captured step --------------------------------

EMA_AUGMENT = {"ema_decay": 0.99, "augment": "translation,cutout,color"}


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_graph_with_ema_and_augmentation_equals_kernel_by_kernel_launches(tmp_path, family):
    """The EMA update and the augmentation (its parameters drawn from the device Philox generator) are part
    of the one captured graph: replays give the launches' bits, and every replay draws fresh parameters."""
    from tinygan.train import GANTrainer

    data = _data(family, 64)
    graphed = GANTrainer(_config(family, epochs=2, **EMA_AUGMENT), data, tmp_path / "graph", progress=False)
    graphed.run()
    assert graphed.runner.graph.graph is not None and not graphed.runner.graph.failed
    eager = GANTrainer(
        _config(family, epochs=2, cuda_graph=False, **EMA_AUGMENT), data, tmp_path / "eager", progress=False
    )
    eager.run()
    _assert_same(_state(graphed), _state(eager))
    assert graphed.ema.num_updates == 16
    for row_g, row_e in zip(graphed.history, eager.history, strict=True):
        for key in GANTrainer.METRICS:
            assert row_g[key] == row_e[key], key
    plain = GANTrainer(_config(family, epochs=2, ema_decay=0.99), data, tmp_path / "plain", progress=False)
    plain.run()
    assert not np.array_equal(_state(plain)["G/0.W"], _state(graphed)["G/0.W"])  # the augmentation acted
    # Replays drew fresh parameters: a graph that replayed the first draw would have trained otherwise than
    # the eager run, which draws anew at every launch (checked above); and the last draw is not the first.
    params = graphed.augment.last_params
    assert params is not None and cp.asnumpy(params.shift_h).std() > 0


@pytest.mark.parametrize("family", ["mnist_dense", "dcgan"])
def test_mid_epoch_resume_with_ema_and_augmentation_on_the_graph(tmp_path, family):
    from tinygan.train import GANTrainer

    data = _data(family, 48)
    straight = GANTrainer(_config(family, epochs=2, **EMA_AUGMENT), data, tmp_path / "a", progress=False)
    straight.run()
    stopped = GANTrainer(_config(family, epochs=2, **EMA_AUGMENT), data, tmp_path / "b", progress=False)
    stopped.run(on_step=lambda t: t.global_step == 9 and t.request_stop())
    resumed = GANTrainer.resume(tmp_path / "b", data, progress=False)
    assert resumed.ema.num_updates == 9
    resumed.run()
    assert resumed.runner.graph.graph is not None
    _assert_same(_state(straight), _state(resumed))


def test_ema_and_augmentation_declare_their_device_state(tmp_path):
    from tinygan.train import GANTrainer

    trainer = GANTrainer(_config("dcgan", **EMA_AUGMENT), _data("dcgan", 16), tmp_path, progress=False)
    trainer.run()  # the first (eager) draw uploads the augmentation's plan
    held = {id(a) for a in trainer.runner.device_arrays()}
    expected = trainer.ema.device_arrays() + trainer.augment.device_arrays()
    assert trainer.augment.device_arrays() and all(id(a) in held for a in expected)
    assert any(id(a) == id(trainer.ema.device_arrays()[-1]) for a in trainer.runner.device_arrays())  # the count
