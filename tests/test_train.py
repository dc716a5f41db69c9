"""The GAN loop: outputs, exact resume, checkpoint errors, the NaN guard, frozen D in the G step, the step's
injected draws."""

import csv
import json

import numpy as np
import pytest

from tinygan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinygan.sample import load_generator, sample
from tinygan.train import GANConfig, GANTrainer, TrainingDiverged


def small_config(**overrides):
    settings = dict(epochs=2, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1}, log_every=3)
    settings.update(overrides)
    return GANConfig(**settings)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((100, 784)).astype(np.float32)


def weights(trainer):
    return {**{"G" + k: v for k, v in trainer.G.state_dict().items()}, **trainer.D.state_dict()}


def test_short_run_writes_every_output(tmp_path, data):
    trainer = GANTrainer(small_config(), data, tmp_path / "run", progress=False)
    before = trainer.G.state_dict()
    history = trainer.run()
    run = tmp_path / "run"
    for name in ("checkpoint.npz", "config.json", "metrics.csv", "losses.png", "grad_norms.png", "samples.gif"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    assert not (run / "checkpoints").exists()
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(rows[-1][k])) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    assert any(k.startswith("grad.G.") for k in rows[0]) and any(k.startswith("grad.D.") for k in rows[0])
    assert history[0]["d_loss"] != history[1]["d_loss"]
    after = trainer.G.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert json.loads((run / "config.json").read_text())["batch_size"] == 25
    images = sample(run / "checkpoint.npz", 10)
    assert images.shape == (10, 28, 28) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_resume_continues_exactly(tmp_path, data):
    straight = GANTrainer(small_config(epochs=2), data, tmp_path / "a", progress=False)
    straight.run()
    first = GANTrainer(small_config(epochs=1), data, tmp_path / "b", progress=False)
    first.run()
    resumed = GANTrainer.resume(tmp_path / "b", data, {"epochs": 2}, progress=False)
    assert resumed.epoch == 1
    resumed.run()
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [r["d_loss"] for r in straight.history] == [r["d_loss"] for r in resumed.history]


def test_resume_mid_epoch_continues_exactly(tmp_path, data):
    straight = GANTrainer(small_config(epochs=1), data, tmp_path / "a", progress=False)
    straight.run()
    stopped = GANTrainer(small_config(epochs=1), data, tmp_path / "b", progress=False)
    stopped.run(on_step=lambda t: t.global_step == 2 and t.request_stop())  # as Ctrl-C after two steps
    assert stopped.step_in_epoch == 2 and stopped.epoch == 0
    resumed = GANTrainer.resume(tmp_path / "b", data, progress=False)
    assert resumed.step_in_epoch == 2
    resumed.run()
    a, b = weights(straight), weights(resumed)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_generator_step_leaves_discriminator_untouched(tmp_path, data):
    trainer = GANTrainer(small_config(), data, tmp_path / "run", progress=False)
    d_before = trainer.D.state_dict()
    g_before = trainer.G.state_dict()
    trainer.step.generator_step((25, 784))
    d_after = trainer.D.state_dict()
    for key in d_before:
        np.testing.assert_array_equal(d_before[key], d_after[key], err_msg=key)
    for _, layer in trainer.D.named_layers():
        assert all(not g.any() for g in layer.grads.values())
    assert any(not np.array_equal(g_before[k], v) for k, v in trainer.G.state_dict().items())


def _poison(trainer):
    trainer.D[9].params["b"][...] = float("nan")  # D's output bias: every logit becomes NaN


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, data):
    trainer = GANTrainer(small_config(epochs=3, log_every=1), data, tmp_path / "run", progress=False)

    def poison_after_step_5(t):
        if t.global_step == 5:  # epoch 2, step 1: step 6 computes with a NaN weight
            _poison(t)

    with pytest.raises(TrainingDiverged, match=r"d_loss became nan at step 6 \(epoch 2\).*last good checkpoint is"):
        trainer.run(on_step=poison_after_step_5)
    arrays, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")  # validated: every value finite
    assert meta["epoch"] == 1
    assert np.isfinite(arrays["D/9.b"]).all()


def test_nan_in_the_first_epoch_says_no_checkpoint_yet(tmp_path, data):
    trainer = GANTrainer(small_config(log_every=2), data, tmp_path / "run", progress=False)
    with pytest.raises(TrainingDiverged, match=r"at step 2 \(epoch 1\).*no checkpoint was saved yet"):
        trainer.run(on_step=_poison)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_ctrl_c_with_broken_weights_saves_nothing(tmp_path, data):
    trainer = GANTrainer(small_config(epochs=3, log_every=100), data, tmp_path / "run", progress=False)

    def poison_and_stop(t):
        if t.global_step == 5:
            _poison(t)
            t.request_stop()

    # Step 5's figures were computed before the poison: only the weights are broken, and the save refuses them.
    with pytest.raises(TrainingDiverged, match=r"not saving a checkpoint with broken weights .*'D/9.b'.*last good"):
        trainer.run(on_step=poison_and_stop)
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] == 1
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"not saving a checkpoint with broken weights.*D/9.b"):
        trainer.save()
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".checkpoint")) == []


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tmp_path, data):
    trainer = GANTrainer(small_config(epochs=1), data, tmp_path / "run", progress=False)
    trainer.run()
    good = tmp_path / "run" / "checkpoint.npz"

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.npz: not a readable tinygan checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.npz")

    arrays, meta = load_checkpoint(good)
    arrays["G/0.W"] = arrays["G/0.W"][:, :10]
    bad_shape = save_checkpoint(tmp_path / "bad_shape.npz", arrays, meta)
    with pytest.raises(ValueError, match=r"bad_shape.npz.*0.W.*expected shape \(100, 256\), received \(100, 10\)"):
        load_generator(bad_shape)
    with pytest.raises(CheckpointError, match=r"bad_shape.npz: key 'G/0.W': expected shape \(100, 256\)"):
        GANTrainer.resume(bad_shape, data, progress=False)

    arrays, meta = load_checkpoint(good)
    meta["config"]["model"] = "dcgan"  # a checkpoint of one architecture loaded as another
    other = save_checkpoint(tmp_path / "other.npz", arrays, meta)
    with pytest.raises(ValueError, match="other.npz does not match G"):
        load_generator(other)
    with pytest.raises(CheckpointError, match=r"other.npz: key 'config.model': .* the CIFAR-10 DCGAN .*not the dense"):
        GANTrainer.resume(other, data, progress=False, model="mnist_dense")

    not_ours = tmp_path / "plain.npz"
    np.savez(not_ours, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a tinygan checkpoint"):
        load_checkpoint(not_ours)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", {"a": np.arange(3.0)}, {"x": 1})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"a": np.arange(5.0)}, {"x": 2})
    arrays, meta = load_checkpoint(path)
    np.testing.assert_array_equal(arrays["a"], np.arange(3.0))
    assert meta["x"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_step_takes_its_random_draws_from_what_it_is_given(tmp_path, data):
    """The step draws nothing itself: two trainers of different seeds given the same draws (and the same
    dropout generator) take the same step from the same weights."""

    class FixedDraws:
        def __init__(self):
            self.rng = np.random.default_rng(7)

        def normal(self, shape):
            return self.rng.standard_normal(shape).astype(np.float32)

        def d_targets(self, n):
            return self.rng.uniform(0.8, 1.0, (2 * n, 1)).astype(np.float32)

    steps = []
    for seed in (3, 4):
        trainer = GANTrainer(small_config(seed=seed, instance_noise=0.1), data, tmp_path / str(seed), progress=False)
        draws = FixedDraws()
        trainer.step.draws = draws
        trainer.step.set_sigma(0.05)
        for _, layer in trainer.D.named_layers():
            if hasattr(layer, "p"):
                layer.rng = draws.rng  # Dropout's masks from the same stream
        figures = trainer.step(data[:25])
        steps.append((weights(trainer), figures))
    (a, fa), (b, fb) = steps
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert fa == fb
    other = GANTrainer(small_config(seed=3), data, tmp_path / "own", progress=False)
    other.step(data[:25])
    assert any(not np.array_equal(a[k], v) for k, v in weights(other).items())


def test_resume_refuses_trajectory_changes(tmp_path, data):
    GANTrainer(small_config(epochs=1), data, tmp_path / "run", progress=False).run()
    with pytest.raises(ValueError, match="cannot change 'lr_g'"):
        GANTrainer.resume(tmp_path / "run", data, {"lr_g": 1.0}, progress=False)


def test_bad_batch_size_and_too_little_data(tmp_path, data):
    with pytest.raises(ValueError, match="need at least one batch: 100 images for batch size 125"):
        GANTrainer(small_config(batch_size=125), data, tmp_path / "run")


def test_periodic_checkpoints_are_kept(tmp_path, data):
    trainer = GANTrainer(small_config(epochs=3, checkpoint_every=2), data, tmp_path / "run", progress=False)
    trainer.run()
    kept = tmp_path / "run" / "checkpoints"
    assert [p.name for p in sorted(kept.iterdir())] == ["epoch_0002.npz"]
    _, meta = load_checkpoint(kept / "epoch_0002.npz")
    assert meta["epoch"] == 2


def test_auto_stop_keeps_the_most_balanced_epoch_and_stops_after_patience(tmp_path, data):
    config = small_config(epochs=50, auto_stop=True, auto_stop_threshold=0.9, auto_stop_patience=3)
    trainer = GANTrainer(config, data, tmp_path / "run", progress=False)
    (tmp_path / "run").mkdir()
    trainer.history = [{}] * 7  # the metadata's schema asks for one history row per epoch
    for epoch, accuracy in enumerate([0.8, 0.55, 0.95, 0.6, 0.97, 0.99], start=1):
        trainer.epoch = epoch
        trainer._auto_stop({"epoch": epoch, "d_acc_fake": accuracy})
    _, meta = load_checkpoint(tmp_path / "run" / "best.npz")
    assert meta["epoch"] == 2  # |0.55 - 0.5| is the smallest imbalance seen
    assert trainer.config.epochs == 50  # 0.95, then 0.6 broke the run of dominated epochs
    trainer.epoch = 7
    trainer._auto_stop({"epoch": 7, "d_acc_fake": 0.995})
    assert trainer.config.epochs == 7  # 0.97, 0.99, 0.995: three dominated epochs in a row


def test_instance_noise_anneals_over_the_epochs_the_run_started_with(tmp_path, data):
    GANTrainer(small_config(epochs=1, instance_noise=0.1), data, tmp_path / "run", progress=False).run()
    resumed = GANTrainer.resume(tmp_path / "run", data, {"epochs": 2}, progress=False)
    assert resumed.config.noise_epochs == 1 and resumed.noise_sigma() == 0.0  # annealed to 0 at epoch 1
    fresh = GANTrainer(small_config(epochs=2, instance_noise=0.1), data, tmp_path / "fresh", progress=False)
    fresh.epoch = 1
    assert fresh.config.noise_epochs == 2 and fresh.noise_sigma() == pytest.approx(0.05)


# -- generator EMA and differentiable augmentation in the step ----------------------------------------


def test_resume_mid_epoch_with_ema_and_augmentation_continues_exactly(tmp_path, data):
    """Ctrl-C mid-epoch and resume: G, D, the EMA generator and its update count end bit for bit where an
    uninterrupted run ends; the augmentation's draws come from the saved generator state."""
    config = dict(epochs=2, ema_decay=0.99, augment="translation,cutout,color", instance_noise=0.1)
    straight = GANTrainer(small_config(**config), data, tmp_path / "a", progress=False)
    straight.run()
    stopped = GANTrainer(small_config(**config), data, tmp_path / "b", progress=False)
    stopped.run(on_step=lambda t: t.global_step == 6 and t.request_stop())  # epoch 2, step 2
    resumed = GANTrainer.resume(tmp_path / "b", data, progress=False)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 2) and resumed.ema.num_updates == 6
    resumed.run()
    a, meta_a = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b, meta_b = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert any(key.startswith("G_ema/") for key in a) and a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert meta_a["ema_updates"] == meta_b["ema_updates"] == 8
    assert not np.array_equal(a["G_ema/6.W"], a["G/6.W"])
    other = GANTrainer(small_config(**{**config, "augment": "translation"}), data, tmp_path / "c", progress=False)
    other.run()
    assert not np.array_equal(weights(other)["G6.W"], weights(straight)["G6.W"])  # the policy matters


def _plain_original_step(G, D, opt_g, opt_d, rng, real):
    """The step of the original recipe as docs/DESIGN's data flow has it, before EMA and augmentation
    existed: hard labels, no instance noise; every random number from ``rng`` in this order."""
    from tinygan.losses import bce_with_logits, generator_loss

    n = len(real)
    fake = G.forward(rng.standard_normal((n, 100), dtype=np.float32), training=True)
    targets = np.concatenate([np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)])
    logits = D.forward(np.concatenate([real, fake]), training=True, logits=True)
    _, dlogits = bce_with_logits(logits, targets)
    opt_d.zero_grad()
    D.backward(dlogits, input_grad=False)
    opt_d.step()
    fake = G.forward(rng.standard_normal((n, 100), dtype=np.float32), training=True)
    _, dlogits = generator_loss(D.forward(fake, training=True, logits=True), kind="nonsaturating")
    opt_g.zero_grad()
    G.backward(D.backward(dlogits, param_grads=False), input_grad=False)
    opt_g.step()


def test_original_recipe_step_is_unchanged_and_draws_nothing_more(tmp_path, data):
    """--recipe original (no EMA, no augmentation) takes the plain step bit for bit, and leaves the
    generator where the plain step leaves it: nothing is drawn for the features that are off."""
    from tinygan.recipes import MNIST_RECIPES

    recipe = MNIST_RECIPES["original"]
    options = {"activation": recipe["activation"], "output": recipe["output"]}
    config = dict(
        batch_size=25,
        real_label=recipe["real_label"],
        fake_label=recipe["fake_label"],
        g_options={**options, "seed": 0},
        d_options={"activation": options["activation"], "seed": 1},
    )
    ours = GANTrainer(small_config(**config), data, tmp_path / "a", progress=False)
    plain = GANTrainer(small_config(**config), data, tmp_path / "b", progress=False)
    assert ours.ema is None and ours.step.augment is None and ours.config.augment == ""
    for k in range(3):
        batch = data[25 * k : 25 * (k + 1)]
        ours.step(batch)
        _plain_original_step(plain.G, plain.D, plain.opt_g, plain.opt_d, plain.rng, batch)
    a, b = weights(ours), weights(plain)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert ours.rng.bit_generator.state == plain.rng.bit_generator.state


def test_ema_is_updated_after_gs_adam_step_once_per_step(tmp_path, data):
    trainer = GANTrainer(small_config(ema_decay=0.999, d_steps=2), data, tmp_path / "run", progress=False)
    before = trainer.G.state_dict()
    trainer.step(data[:25])
    after, averaged = trainer.G.state_dict(), trainer.ema.model.state_dict()
    assert trainer.ema.num_updates == 1  # one G step, whatever d_steps is
    # First update: decay_0 = min(0.999, 1/10); the average moves towards the weights *after* Adam's step.
    for key in before:
        np.testing.assert_allclose(averaged[key], 0.1 * before[key] + 0.9 * after[key], rtol=1e-6, atol=1e-7)
    assert trainer.ema in [trainer.step.ema] and trainer.G is trainer.ema.source


class _FixedCutout:
    """The trainer's draws, except that every augmentation draw cuts out the top-left 14 x 14 square of
    every image (counted)."""

    def __init__(self, draws):
        self.draws, self.calls = draws, 0

    def normal(self, shape):
        return self.draws.normal(shape)

    def d_targets(self, n):
        return self.draws.d_targets(n)

    def augment_params(self, augment, images):
        from tinygan.augment import AugmentParams

        self.calls += 1
        n = len(images)
        zero = np.zeros(n, np.int32)
        return AugmentParams(image_size=(28, 28), cutout_top=zero, cutout_left=zero, cutout_size=(14, 14))


def test_augmentation_in_d_step_same_draw_for_real_and_fake(tmp_path, data):
    trainer = GANTrainer(small_config(augment="cutout"), data, tmp_path / "run", progress=False)
    draws = trainer.step.draws = _FixedCutout(trainer.step.draws)
    seen = []
    forward = trainer.D.forward
    trainer.D.forward = lambda x, **kw: (seen.append(np.array(x)), forward(x, **kw))[1]
    real = data[:25]
    trainer.step.discriminator_step(real)
    assert draws.calls == 1
    batch = seen[0].reshape(50, 28, 28)
    assert not batch[:, :14, :14].any()  # both halves cut at the same place
    np.testing.assert_array_equal(batch[:25, 14:], real.reshape(25, 28, 28)[:, 14:])
    assert batch[25:, 14:].any()


def test_g_step_gradient_flows_back_through_the_augmentation(tmp_path, data):
    """With the top-left square cut out of every generated image, D never sees those pixels: G's output
    layer gets exactly zero gradient for them, and a non-zero one elsewhere (without the augmentation's
    backward it would get D's gradient at the cut-out pixels)."""
    trainer = GANTrainer(small_config(augment="cutout"), data, tmp_path / "run", progress=False)
    draws = trainer.step.draws = _FixedCutout(trainer.step.draws)
    trainer.step.generator_step((25, 784))
    assert draws.calls == 1
    last = trainer.G[6]
    cut = np.zeros((28, 28), bool)
    cut[:14, :14] = True
    cut = cut.ravel()
    assert not last.grads["W"][:, cut].any() and not last.grads["b"][cut].any()
    assert last.grads["W"][:, ~cut].any() and last.grads["b"][~cut].all()


def test_checkpoints_without_ema_still_load_and_missing_ema_arrays_are_refused(tmp_path, data):
    plain = GANTrainer(small_config(epochs=1), data, tmp_path / "plain", progress=False)
    plain.run()
    arrays, meta = load_checkpoint(tmp_path / "plain" / "checkpoint.npz")
    assert not any(k.startswith("G_ema") for k in arrays) and "ema_updates" not in meta
    np.testing.assert_array_equal(sample(tmp_path / "plain", 5), sample(tmp_path / "plain", 5, ema=False))
    meta["config"].pop("ema_decay"), meta["config"].pop("augment")  # as written before the options existed
    old = save_checkpoint(tmp_path / "old" / "checkpoint.npz", arrays, meta)
    resumed = GANTrainer.resume(old, data, {"epochs": 2}, progress=False)
    assert resumed.ema is None and resumed.config.augment == ""

    GANTrainer(small_config(epochs=1, ema_decay=0.9), data, tmp_path / "ema", progress=False).run()
    arrays, meta = load_checkpoint(tmp_path / "ema" / "checkpoint.npz")
    G_ema, _ = load_generator(tmp_path / "ema")
    G_raw, _ = load_generator(tmp_path / "ema", ema=False)
    np.testing.assert_array_equal(G_ema.state_dict()["0.W"], arrays["G_ema/0.W"])
    np.testing.assert_array_equal(G_raw.state_dict()["0.W"], arrays["G/0.W"])
    no_count = dict(meta)
    no_count.pop("ema_updates")
    save_checkpoint(tmp_path / "no_count" / "checkpoint.npz", arrays, no_count)
    with pytest.raises(CheckpointError, match=r"no_count/checkpoint.npz: key 'ema_updates': expected a non-negative"):
        GANTrainer.resume(tmp_path / "no_count", data, {"epochs": 2}, progress=False)
    missing = {k: v for k, v in arrays.items() if not k.startswith("G_ema/")}
    save_checkpoint(tmp_path / "missing" / "checkpoint.npz", missing, meta)
    with pytest.raises(CheckpointError, match=r"missing/checkpoint.npz.*G_ema/0.W"):
        GANTrainer.resume(tmp_path / "missing", data, {"epochs": 2}, progress=False)


def test_ema_and_augment_are_part_of_the_run(tmp_path, data):
    GANTrainer(small_config(epochs=1, ema_decay=0.9), data, tmp_path / "run", progress=False).run()
    for key, value in (("ema_decay", 0.5), ("augment", "cutout"), ("score_samples", 100)):
        with pytest.raises(ValueError, match=f"cannot change '{key}'"):
            GANTrainer.resume(tmp_path / "run", data, {key: value}, progress=False)
    with pytest.raises(ValueError, match=r"ema_decay: expected a number in \[0, 1\) \(0: no EMA\), received 1.0"):
        GANTrainer(small_config(ema_decay=1.0), data, tmp_path / "x")
    with pytest.raises(ValueError, match=r"augment: unknown augmentation 'flip'"):
        GANTrainer(small_config(augment="translation,flip"), data, tmp_path / "x")


def test_ema_does_not_feed_back_into_training(tmp_path, data):
    """G and D train exactly as without the average (it draws nothing and is only read for sampling)."""
    with_ema = GANTrainer(small_config(epochs=1, ema_decay=0.999), data, tmp_path / "a", progress=False)
    with_ema.run()
    without = GANTrainer(small_config(epochs=1), data, tmp_path / "b", progress=False)
    without.run()
    a, b = weights(with_ema), weights(without)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert with_ema.ema.num_updates == 4


def test_ema_batchnorm_statistics_are_estimated_once_per_step_count(tmp_path, monkeypatch):
    """The EMA generator's BatchNorm statistics cost four forward passes of G: the grid, the checkpoint
    and the score of one epoch's end share one estimate; a step or a loaded checkpoint makes a new one, and
    the shared one equals a fresh estimate bit for bit."""
    from tinygan.ema import EMA

    calls = []
    original = EMA.refresh_batchnorm
    monkeypatch.setattr(EMA, "refresh_batchnorm", lambda self, noise: calls.append(1) or original(self, noise))
    data = np.random.default_rng(0).uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32)
    config = small_config(model="dcgan", epochs=2, batch_size=4, ema_decay=0.9, log_every=1)
    trainer = GANTrainer(config, data, tmp_path / "run", progress=False)
    trainer.run()
    assert len(calls) == 2  # one per epoch end (grid and checkpoint), not one per use
    shared = trainer.sampling_generator().state_dict()
    assert len(calls) == 2
    fresh = original(trainer.ema, trainer.ema_noise).state_dict()
    for key in shared:
        np.testing.assert_array_equal(shared[key], fresh[key], err_msg=key)
    trainer.step(data[:4])
    trainer.global_step += 1  # what the run loop counts after a step
    trainer.sampling_generator()
    assert len(calls) == 3
    resumed = GANTrainer.resume(tmp_path / "run", data, progress=False)
    before = len(calls)
    resumed.sampling_generator()
    resumed.sampling_generator()
    assert len(calls) == before + 1
