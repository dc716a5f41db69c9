"""The per-epoch diagnostics (tinygan.diagnostics): names by layer, the relative update, what G receives
from D (against finite differences, float64), dead units, and their place in a run's metrics and plots."""

import csv

import numpy as np
import pytest

from tinygan import layers as nn
from tinygan.diagnostics import EpochFigures, gradient_norms, layer_names, params_snapshot, probe, update_ratios
from tinygan.losses import generator_loss
from tinygan.models import build
from tinygan.train import GANConfig, GANTrainer


def tiny_nets(seed=0, activation=nn.ReLU):
    """G: 3 -> 5 -> 4 with ``activation``; D: 4 -> 6 -> 1 with a sigmoid; float64 throughout."""
    G = nn.Sequential(
        nn.Dense(3, 5, rng=seed, dtype=np.float64),
        activation(),
        nn.Dense(5, 4, rng=seed + 1, dtype=np.float64),
        nn.Tanh(),
        name="G",
    )
    D = nn.Sequential(
        nn.Dense(4, 6, rng=seed + 2, dtype=np.float64),
        activation(),
        nn.Dense(6, 1, rng=seed + 3, dtype=np.float64),
        nn.Sigmoid(),
        name="D",
    )
    return G, D


def test_layers_are_named_by_kind_and_order():
    assert list(layer_names(build("mnist_dense", "G"), "G").values()) == [f"G.dense{i}" for i in range(1, 5)]
    d_names = list(layer_names(build("dcgan", "D"), "D").values())
    assert d_names == ["D.conv1", "D.conv2", "D.conv3", "D.conv4", "D.dense1"]
    g_names = list(layer_names(build("dcgan", "G"), "G").values())
    assert g_names[0] == "G.dense1" and "G.bn1" in g_names and "G.deconv3" in g_names


def test_gradient_norms_per_layer():
    G, _ = tiny_nets()
    rng = np.random.default_rng(1)
    for _, layer in G.named_layers():
        for key in layer.grads:
            layer.grads[key] = rng.standard_normal(layer.grads[key].shape)
    norms = gradient_norms(G, "G")
    assert list(norms) == ["grad.G.dense1", "grad.G.dense2"]
    assert norms["grad.G.dense2"] == pytest.approx(np.linalg.norm(G[2].grads["W"]), rel=1e-12)


def test_update_ratio_is_the_change_of_all_a_layers_parameters_over_their_size():
    G, _ = tiny_nets()
    before = params_snapshot(G)
    W0, b0 = G[0].params["W"].copy(), G[0].params["b"].copy()
    rng = np.random.default_rng(2)
    dW, db = rng.standard_normal(W0.shape) * 1e-3, rng.standard_normal(b0.shape) * 1e-3
    G[0].params["W"] += dW
    G[0].params["b"] += db
    ratios = update_ratios(G, "G", before)
    expected = np.sqrt((dW**2).sum() + (db**2).sum()) / np.sqrt((W0**2).sum() + (b0**2).sum())
    assert ratios["update.G.dense1"] == pytest.approx(expected, rel=1e-10)
    assert ratios["update.G.dense2"] == 0.0  # untouched layer


@pytest.mark.parametrize("kind", ["nonsaturating", "minimax"])
def test_what_g_receives_matches_finite_differences_of_each_samples_loss(kind):
    G, D = tiny_nets(seed=3, activation=nn.LeakyReLU)
    rng = np.random.default_rng(4)
    n = 5
    z, real = rng.standard_normal((n, 3)), rng.standard_normal((n, 4))
    figures, fake = probe(G, D, z, real, kind)
    np.testing.assert_array_equal(fake, G.forward(z, training=False))

    def sample_loss(x):  # one sample's generator loss, as generator_loss defines it for a batch of one
        loss, _ = generator_loss(D.forward(x[None], training=False, logits=True), kind=kind)
        return float(loss)

    eps, squares = 1e-6, []
    for i in range(n):
        grad = np.zeros(4)
        for j in range(4):
            up, down = fake[i].copy(), fake[i].copy()
            up[j] += eps
            down[j] -= eps
            grad[j] = (sample_loss(up) - sample_loss(down)) / (2 * eps)
        squares.append((grad**2).sum())
    assert figures["g_input_grad_probe"] == pytest.approx(np.sqrt(np.mean(squares)), rel=1e-6)


def test_dead_units_are_those_below_zero_for_every_probe_sample():
    G, D = tiny_nets(seed=5)
    G[0].params["b"][:] = 100.0  # every unit fires for these inputs ...
    G[0].params["b"][:2] = -100.0  # ... but two of G's five, which never do
    D[0].params["b"][:] = 100.0
    D[0].params["b"][:3] = -100.0  # three of D's six
    rng = np.random.default_rng(6)
    figures, _ = probe(G, D, rng.standard_normal((8, 3)), rng.standard_normal((8, 4)))
    assert figures["dead.G"] == pytest.approx(2 / 5)
    assert figures["dead.D"] == pytest.approx(3 / 6)


def test_a_run_logs_and_plots_the_diagnostics(tmp_path):
    data = np.random.default_rng(0).random((100, 784)).astype(np.float32)
    config = GANConfig(epochs=2, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1}, log_every=4)
    trainer = GANTrainer(config, data, tmp_path / "run", progress=False)
    trainer.run()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    keys = (
        "update.G.dense1",
        "update.D.dense4",
        "grad.G.dense4",
        "g_input_grad",
        "g_input_grad_probe",
        "g_weight_share",
    )
    for key in (*keys, "dead.G", "dead.D"):
        values = [float(row[key]) for row in rows]
        assert all(np.isfinite(values)), key
    assert 0 < float(rows[0]["update.G.dense1"]) < 1
    assert 0 <= float(rows[0]["dead.D"]) <= 1 and float(rows[0]["g_input_grad"]) > 0
    assert float(rows[0]["g_input_grad_probe"]) > 0
    assert (tmp_path / "run" / "diagnostics.png").is_file()


def test_an_epoch_resumed_midway_has_no_update_but_the_run_stays_exact(tmp_path):
    data = np.random.default_rng(0).random((100, 784)).astype(np.float32)
    config = dict(epochs=1, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1}, log_every=4)
    straight = GANTrainer(GANConfig(**config), data, tmp_path / "a", progress=False)
    straight.run()
    stopped = GANTrainer(GANConfig(**config), data, tmp_path / "b", progress=False)
    stopped.run(on_step=lambda t: t.global_step == 2 and t.request_stop())
    resumed = GANTrainer.resume(tmp_path / "b", data, progress=False)
    resumed.run()
    assert "update.G.dense1" in straight.history[0] and "update.G.dense1" not in resumed.history[0]
    for key in ("d_loss", "g_input_grad", "g_input_grad_probe", "dead.G", "dead.D"):
        assert resumed.history[0][key] == straight.history[0][key], key


def test_weight_share_is_one_for_equal_weights_and_one_over_n_for_a_single_sample():
    from tinygan.step import HOST_OPS

    assert float(HOST_OPS.weight_share(np.full((5, 1), -0.2, np.float32))) == pytest.approx(1.0)
    assert float(HOST_OPS.weight_share(np.array([[0.0], [0.0], [0.0], [-0.3]]))) == pytest.approx(0.25)
    assert float(HOST_OPS.weight_share(np.zeros((4, 1)))) == 1.0  # no step to share: not NaN, which stops a run


@pytest.mark.parametrize("kind", ["nonsaturating", "minimax"])
def test_what_g_receives_in_a_step_matches_finite_differences_of_each_samples_loss(kind):
    """The step's figure g_input_grad: the RMS over its batch of ||dl_i/dG(z_i)||, l_i sample i's generator
    loss through the D of that moment (after its own step), by central differences in float64."""
    from tinygan.optim import Adam
    from tinygan.step import GANStep, HostDraws

    G, D = tiny_nets(seed=7, activation=nn.LeakyReLU)
    draws = HostDraws(np.random.default_rng(8), np.float64, (1.0, 1.0), (0.0, 0.0))
    step = GANStep(G, D, Adam(G, lr=1e-2), Adam(D, lr=1e-2), draws, latent_dim=3, g_loss=kind)
    seen = []  # D's inputs: the D step's [real; fake], then the G step's fakes
    forward = D.forward
    D.forward = lambda x, *a, **k: seen.append(np.array(x)) or forward(x, *a, **k)
    real = np.random.default_rng(9).standard_normal((6, 4))
    figures = step(real)
    fake = seen[-1]
    assert fake.shape == (6, 4)

    def sample_loss(x):
        loss, _ = generator_loss(forward(x[None], training=False, logits=True), kind=kind)
        return float(loss)

    eps, squares = 1e-6, []
    for x in fake:
        grad = np.array([(sample_loss(x + e) - sample_loss(x - e)) / (2 * eps) for e in np.eye(4) * eps])
        squares.append((grad**2).sum())
    assert float(figures["g_input_grad"]) == pytest.approx(np.sqrt(np.mean(squares)), rel=1e-6)

    # How evenly the samples share the step: each one's factor on its own direction is D(G(z_i)) for the
    # minimax loss and 1 - D(G(z_i)) for the non-saturating one (section 11 of the guide).
    p = 1 / (1 + np.exp(-forward(fake, training=False, logits=True).ravel()))
    w = p if kind == "minimax" else 1 - p
    assert float(figures["g_weight_share"]) == pytest.approx(w.sum() ** 2 / (len(w) * (w**2).sum()), rel=1e-9)
    assert 1 / len(w) <= float(figures["g_weight_share"]) <= 1


def test_a_runs_g_input_grad_is_the_mean_of_its_steps(tmp_path):
    """metrics.csv's g_input_grad is the mean over the epoch's steps of sqrt(n * sum(dfake**2)), computed here
    from the gradient each G.backward was given; the probe's figure is another measurement."""
    data = np.random.default_rng(0).random((100, 784)).astype(np.float32)
    config = GANConfig(epochs=2, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1}, log_every=3)
    trainer = GANTrainer(config, data, tmp_path / "run", progress=False)
    received = []
    backward = trainer.G.backward

    def recording_backward(dy, *args, **kwargs):
        dx = np.asarray(dy, dtype=np.float64)
        received.append(np.sqrt(len(dx) * (dx**2).sum()))
        return backward(dy, *args, **kwargs)

    trainer.G.backward = recording_backward
    trainer.run()
    assert len(received) == 8
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    for epoch, row in enumerate(rows):
        assert float(row["g_input_grad"]) == pytest.approx(np.mean(received[4 * epoch : 4 * epoch + 4]), rel=1e-12)
        assert float(row["g_input_grad_probe"]) != float(row["g_input_grad"])


def test_epoch_figures_are_the_update_ratios_and_the_probe_together():
    """EpochFigures (the trainer's, one transfer per epoch; a CUDA graph on the GPU) gives exactly what
    update_ratios and probe give; update ratios only for an epoch whose start it saw, from its own copies."""
    G, D = tiny_nets(seed=5, activation=nn.LeakyReLU)
    rng = np.random.default_rng(6)
    z, real = rng.standard_normal((4, 3)), rng.standard_normal((4, 4))
    figures = EpochFigures(G, D, z, real, "minimax")
    row, fake = figures()
    assert not any(key.startswith("update.") for key in row)  # no begin_epoch: a start it never saw
    figures.begin_epoch()
    before = {"G": params_snapshot(G), "D": params_snapshot(D)}
    for net in (G, D):
        for _, layer in net.named_layers():
            for p in layer.params.values():
                p += rng.standard_normal(p.shape) * 1e-2
    row, fake = figures()
    expected = {**update_ratios(G, "G", before["G"]), **update_ratios(D, "D", before["D"])}
    probe_figures, probe_fake = probe(G, D, z, real, "minimax")
    assert row == {**expected, **probe_figures} and len(expected) == 4
    np.testing.assert_array_equal(fake, probe_fake)
    assert not any(key.startswith("update.") for key in figures()[0])  # once per begin_epoch


def test_trainer_rebuilds_its_epoch_figures_when_a_checkpoint_replaces_the_fixed_noise(tmp_path):
    from tinygan.train import GANConfig, GANTrainer

    data = np.random.default_rng(0).random((50, 784)).astype(np.float32)
    config = GANConfig(epochs=1, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1})
    other = GANTrainer(GANConfig(**{**config.__dict__, "seed": 5}), data, tmp_path / "other", progress=False)
    other.run()
    trainer = GANTrainer(config, data, tmp_path / "run", progress=False)
    trainer.run()
    built = trainer._epoch_figures()
    trainer.load_state(tmp_path / "other" / "checkpoint.npz")
    assert not np.array_equal(trainer.fixed_noise, GANTrainer(config, data, tmp_path / "x", progress=False).fixed_noise)
    assert trainer._epoch_figures() is not built
    _, fake = trainer._epoch_figures()()
    np.testing.assert_array_equal(fake, trainer.G.forward(trainer.fixed_noise.astype(np.float32), training=False))


def test_a_step_without_d_steps_is_refused_in_one_line():
    from tinygan.optim import Adam
    from tinygan.step import GANStep, HostDraws

    G, D = tiny_nets(seed=7, activation=nn.LeakyReLU)
    draws = HostDraws(np.random.default_rng(8), np.float64, (1.0, 1.0), (0.0, 0.0))
    with pytest.raises(ValueError, match=r"^GANStep: d_steps must be at least 1, received 0$"):
        GANStep(G, D, Adam(G), Adam(D), draws, latent_dim=3, d_steps=0)


@pytest.mark.parametrize("d_steps", [1, 3])
def test_the_step_runs_its_parts_in_the_order_the_recipe_gives(d_steps):
    """GANStep.__call__ runs D's last update beside G's forward on the GPU; on the CPU that is program order, and
    the parts compose to exactly d_steps discriminator_step calls and one generator_step."""
    from tinygan.optim import Adam
    from tinygan.step import GANStep, HostDraws

    def run(by_parts: bool) -> list[np.ndarray]:
        G, D = tiny_nets(seed=7, activation=nn.LeakyReLU)
        draws = HostDraws(np.random.default_rng(8), np.float64, (1.0, 1.0), (0.0, 0.0))
        step = GANStep(G, D, Adam(G, lr=1e-2), Adam(D, lr=1e-2), draws, latent_dim=3, d_steps=d_steps)
        real = np.random.default_rng(9).standard_normal((6, 4))
        if by_parts:
            for _ in range(d_steps):
                step.discriminator_step(real)
            step.generator_step(real.shape)
        else:
            step(real)
        return [p.copy() for net in (G, D) for _, layer in net.named_layers() for p in layer.params.values()]

    for a, b in zip(run(True), run(False), strict=True):
        np.testing.assert_array_equal(a, b)
