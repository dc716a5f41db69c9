"""Quality while training (--score-every): the scores in metrics.csv, quality.png, best.npz by the lowest
Fréchet distance, the real MNIST metric end to end, and a clear refusal where a classifier cannot be had."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygan import metrics
from tinygan.checkpoint import load_checkpoint
from tinygan.quality import QualityUnavailable, Scorer, cifar_scorer, mnist_scorer
from tinygan.train import GANConfig, GANTrainer

ROOT = Path(__file__).resolve().parents[1]


def small_config(**overrides):
    settings = dict(epochs=3, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1}, score_every=1)
    settings.update(score_samples=50)
    settings.update(overrides)
    return GANConfig(**settings)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """No test here may read or write the user's data cache (a classifier trained on first use lands there)."""
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))


@pytest.fixture
def data():
    return np.random.default_rng(0).random((50, 784)).astype(np.float32)


class ScriptedScorer:
    """Returns the given Fréchet distances in turn and records what it was asked to score."""

    def __init__(self, fids):
        self.fids, self.seen = list(fids), []

    def __call__(self, images):
        self.seen.append(images)
        fid = self.fids[len(self.seen) - 1]
        return {"fid": fid, "classifier_score": 10 - fid, "classes_covered": 10.0, "rarest_class_fraction": 0.08}


def test_scores_go_to_metrics_csv_and_the_best_epoch_is_kept(tmp_path, data):
    scorer = ScriptedScorer([3.0, 1.5, 2.0])
    trainer = GANTrainer(small_config(), data, tmp_path / "run", progress=False, scorer=scorer)
    trainer.run()
    assert len(scorer.seen) == 3
    images = scorer.seen[0]
    assert images.shape == (50, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [float(r["fid"]) for r in rows] == [3.0, 1.5, 2.0]
    assert [float(r["classifier_score"]) for r in rows] == [7.0, 8.5, 8.0]
    _, meta = load_checkpoint(tmp_path / "run" / "best.npz")
    assert meta["epoch"] == 2 and meta["best_fid"] == 1.5
    assert (tmp_path / "run" / "quality.png").is_file()
    # The same fixed noise each time: the images differ only because G trained.
    assert not np.array_equal(scorer.seen[0], scorer.seen[1])
    again = ScriptedScorer([9.0])
    GANTrainer(small_config(epochs=1), data, tmp_path / "again", progress=False, scorer=again).run()
    np.testing.assert_array_equal(again.seen[0], images)


def test_score_every_n_epochs_and_the_last_and_resume_keeps_the_best(tmp_path, data):
    scorer = ScriptedScorer([2.0, 4.0])
    trainer = GANTrainer(small_config(score_every=2), data, tmp_path / "run", progress=False, scorer=scorer)
    trainer.run()
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["fid"] for r in rows] == ["", "2.0", "4.0"]  # epochs 2 and 3 (the last)
    later = ScriptedScorer([3.0])
    resumed = GANTrainer.resume(tmp_path / "run", data, {"epochs": 4, "score_every": 1}, progress=False, scorer=later)
    resumed.run()
    _, meta = load_checkpoint(tmp_path / "run" / "best.npz")
    assert meta["epoch"] == 2 and resumed.best_fid == 2.0  # 3.0 at epoch 4 does not beat epoch 2's 2.0


def test_scoring_uses_the_ema_generator(tmp_path, data):
    scorer = ScriptedScorer([1.0])
    trainer = GANTrainer(small_config(epochs=1, ema_decay=0.9), data, tmp_path / "run", progress=False, scorer=scorer)
    trainer.run()
    noise = np.random.default_rng([0, 3]).standard_normal((50, 100)).astype(np.float32)
    expected = trainer.ema.model.forward(noise, training=False).reshape(50, 28, 28)
    np.testing.assert_allclose(scorer.seen[0], expected, rtol=1e-6)


def _tiny_classifier(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))  # only the embedded test set: no download
    data = metrics.load_data(None, download=False, verbose=None)
    return metrics.train_classifier(data, epochs=1, hidden=(32, 16), verbose=None)


def test_mnist_metric_end_to_end(tmp_path, monkeypatch, data):
    classifier = _tiny_classifier(monkeypatch, tmp_path)
    scorer = mnist_scorer(None, "cpu", classifier=classifier)
    real = metrics.load_data(None, download=False, verbose=None).test[0][:200]
    good, noise = scorer(real.astype(np.float32) / 255), scorer(np.random.default_rng(1).random((200, 28, 28)))
    assert good["fid"] < noise["fid"] and good["classifier_score"] > noise["classifier_score"]
    direct = metrics.evaluate(real.astype(np.float32) / 255, classifier=classifier, verbose=None, download=False)
    assert good["fid"] == direct["samples"]["frechet_distance"]
    assert good["classes_covered"] == direct["samples"]["coverage"]["classes_covered"]
    assert good["rarest_class_fraction"] == direct["samples"]["coverage"]["rarest_fraction"]
    trainer = GANTrainer(small_config(epochs=1), data, tmp_path / "run", progress=False, scorer=scorer)
    trainer.run()
    assert np.isfinite(trainer.history[0]["fid"]) and (tmp_path / "run" / "best.npz").is_file()


def test_a_missing_mnist_classifier_is_trained_on_first_use_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    calls = []
    tiny = _tiny_classifier(monkeypatch, tmp_path)

    def fake_train(data, **options):  # the real training takes a minute: the tiny one stands in
        calls.append((data.mode, options.get("device")))
        return tiny

    monkeypatch.setattr(metrics, "train_classifier", fake_train)
    said = []
    scorer = mnist_scorer(None, "cpu", verbose=said.append)
    assert calls == [("embedded-test-split", "cpu")] and "training it once now" in said[0]
    assert metrics.default_cache_path().is_file() and isinstance(scorer, Scorer)
    mnist_scorer(None, "cpu", verbose=said.append)  # cached now: not trained again
    assert len(calls) == 1


def test_cifar_without_a_cached_classifier_is_refused_on_the_cpu(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    with pytest.raises(
        QualityUnavailable, match=r"--score-every: no CIFAR-10 classifier .* python -c .*load_classifier"
    ):
        cifar_scorer(str(shared_data / "cifar10-partial"), "cat", "cpu")
    out = tmp_path / "run"
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache")}
    args = ["--class", "cat", "--score-every", "1", "--epochs", "1", "--no-progress", "--out", str(out)]
    args += ["--data-dir", str(shared_data / "cifar10-partial")]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cifar_dcgan.py"), *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "python -c" in errors[0] and "Traceback" not in result.stderr
    assert not (out / "checkpoint.npz").exists()


def test_an_epoch_whose_scoring_fails_is_kept_before_the_error_ends_the_run(tmp_path, data):
    """The scoring runs at an epoch's end; when it raises, the epoch's training is in the checkpoint (and its
    row in metrics.csv), so a resume starts at the next epoch instead of training it again."""

    class FailingScorer(ScriptedScorer):
        def __call__(self, images):
            if len(self.seen) == 1:
                raise MemoryError("scoring: no room for the samples")
            return super().__call__(images)

    trainer = GANTrainer(small_config(), data, tmp_path / "run", progress=False, scorer=FailingScorer([3.0, 2.0]))
    with pytest.raises(MemoryError, match="no room"):
        trainer.run()
    resumed = GANTrainer.resume(tmp_path / "run", data, progress=False, scorer=ScriptedScorer([2.0, 1.0]))
    assert resumed.epoch == 2 and len(resumed.history) == 2
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3  # the header and two epochs
