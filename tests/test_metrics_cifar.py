"""tinygan.metrics_cifar on a tiny fake CIFAR-10 written in the real format (tests/formats.py): the
classifier's training, cache and retraining rules, the figures (real test images scored as samples
sit at distance 0 from themselves), the sample checks and the CLI's exit codes. The genuine partial
data are used only by the CLI, never here."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from formats import write_cifar_folder

from tinygan import metrics_cifar
from tinygan.cli import EXIT_ERROR
from tinygan.metrics_cifar import (
    SamplesError,
    build_classifier,
    check_samples,
    evaluate,
    load_classifier,
    load_data,
    main,
)

QUICK = {"epochs": 1, "batch_size": 8}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_folder(root, per_batch=12, rng=np.random.default_rng(0))
    return root


@pytest.fixture(scope="module")
def data(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fake batches differ from the official md5s, and say so
        return load_data(data_dir, download=False, verbose=None)


@pytest.fixture(scope="module")
def classifier(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "clf.npz"
    return load_classifier(data, path=path, verbose=None, **QUICK)


def as_samples(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255


def test_split_holds_out_a_fixed_sixth(data):
    (train, train_labels), (held, _), (test, _) = data.train, data.holdout, data.test
    assert len(train) + len(held) == 60 and len(held) == 10 and len(test) == 12
    assert train.shape[1:] == (32, 32, 3) and train.dtype == np.uint8 and train_labels.dtype == np.uint8
    assert not (set(map(bytes, train)) & set(map(bytes, held)))  # no image on both sides


def test_classifier_architecture_shapes():
    model = build_classifier(metrics_cifar.architecture(), seed=0)
    assert model.output_shape((2, 3, 32, 32)) == (2, 10)
    assert model.layers[-1].in_features == metrics_cifar.FEATURES
    with pytest.raises(ValueError, match="unknown classifier architecture 'mlp'"):
        build_classifier({"type": "mlp"})


def test_training_caches_and_reloads(data, tmp_path):
    path = tmp_path / "clf.npz"
    messages = []
    first = load_classifier(data, path=path, verbose=messages.append, **QUICK)
    assert first.trained and path.exists()
    assert first.meta["training"]["n_train"] == 50 and 0.0 <= first.meta["test_accuracy"] <= 1.0
    assert any("training the CIFAR-10 classifier on 50 images" in m for m in messages)
    again = load_classifier(data, path=path, verbose=None, **QUICK)
    assert not again.trained
    x = as_samples(data.test[0])
    np.testing.assert_allclose(again.features_and_probs(x)[1], first.features_and_probs(x)[1], rtol=1e-5, atol=1e-6)
    # Other data (another number of training images): retrained, with a message saying why.
    fewer = type(data)(data.mode, (data.train[0][:40], data.train[1][:40]), data.holdout, data.test, data.source)
    messages.clear()
    assert load_classifier(fewer, path=path, verbose=messages.append, **QUICK).trained
    assert any("trained on 50 images, 40 are available" in m for m in messages)
    # A damaged cache is replaced, with a message.
    path.write_bytes(b"not a checkpoint")
    messages.clear()
    assert load_classifier(data, path=path, verbose=messages.append, **QUICK).trained
    assert any("cached classifier unusable" in m for m in messages)
    # A cache that cannot be written (its folder is a file): the trained classifier is used uncached.
    blocked = tmp_path / "a-file" / "clf.npz"
    blocked.parent.write_text("not a folder")
    messages.clear()
    uncached = load_classifier(data, path=blocked, verbose=messages.append, **QUICK)
    assert uncached.trained and uncached.path is None
    assert any(m.startswith(f"could not cache the classifier in {blocked}") for m in messages)


def test_real_test_images_sit_at_distance_zero_from_the_reference(data, classifier):
    test_images, test_labels = data.test
    result = evaluate(as_samples(test_images), data, classifier)
    assert result["samples"]["frechet_distance"] < 1e-3
    assert result["reference"]["n"] == len(test_images)
    accuracy = result["classifier"]["test_accuracy"]
    assert np.isclose(
        result["samples"]["coverage"]["fractions"],
        np.bincount(classifier.predict(test_images), minlength=10) / len(test_images),
    ).all()
    # Per class: the test images of one class against that class's statistics; "recognized" is the
    # classifier's accuracy on that class.
    result = evaluate(as_samples(test_images[test_labels == 0]), data, classifier, class_name="airplane")
    assert result["samples"]["frechet_distance"] < 1e-3
    assert result["samples"]["recognized"] == pytest.approx(result["classifier"]["test_accuracy_per_class"]["airplane"])
    assert "of class airplane" in result["reference"]["what"]
    assert 0.0 <= accuracy <= 1.0
    with pytest.raises(ValueError, match="the test batch holds 1 images of cat: too few to compare"):
        evaluate(as_samples(test_images), data, classifier, class_name="cat")


def test_noise_is_far_and_real_line_is_present(data, classifier):
    noise = np.random.default_rng(1).random((20, 32, 32, 3)).astype(np.float32)
    flat = np.full((20, 32, 32, 3), 0.5, np.float32) + np.random.default_rng(2).normal(0, 0.01, (20, 32, 32, 3)).astype(
        np.float32
    )
    near = evaluate(noise, data, classifier)["samples"]["frechet_distance"]  # the fake data are noise too
    far = evaluate(np.clip(flat, 0, 1), data, classifier)
    assert far["samples"]["frechet_distance"] > near
    assert far["real"] is not None and far["real"]["n"] == 10  # all held-out images (fewer than 20)
    json.dumps(far)  # JSON-ready


def test_sample_checks():
    good = np.zeros((3, 32, 32, 3), np.float32)
    assert check_samples(good) is not None
    cases = [
        (np.zeros((3, 3, 32, 32), np.float32), r"expected shape \(n, 32, 32, 3\).*channels first"),
        (np.zeros((3, 32, 32, 3), np.uint8), "dtype uint8 .*divide by 255"),
        (np.zeros((1, 32, 32, 3), np.float32), "at least 2 images"),
        (np.full((3, 32, 32, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((3, 32, 32, 3), -1.0, np.float32), r"\(x \+ 1\) / 2"),
        ([1, 2], "expected a numpy array"),
    ]
    for samples, message in cases:
        with pytest.raises(SamplesError, match=message):
            check_samples(samples, "s.npy")


def test_cli_scores_a_file_and_refuses_bad_input(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test_images, _ = load_data(data_dir, download=False, verbose=None).test
    samples = tmp_path / "s.npy"
    np.save(samples, as_samples(test_images))
    report = tmp_path / "r.json"
    argv = [str(samples), "--data-dir", str(data_dir), "--epochs", "1", "--json", str(report), "--class", "airplane"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "recognized as the class" in out and "wrote" in out
    assert json.loads(report.read_text())["reference"]["what"].endswith("of class airplane")
    assert main([str(tmp_path / "missing.npy"), "--data-dir", str(data_dir)]) == EXIT_ERROR
    assert "no such file" in capsys.readouterr().err
    np.save(samples, np.zeros((4, 28, 28), np.float32))
    assert main([str(samples), "--data-dir", str(data_dir)]) == EXIT_ERROR
    assert "expected shape (n, 32, 32, 3)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(samples), "--epochs", "0"])


SMALL = {
    "type": "cifar-convnet",
    "convs": [[3, 8, 3, 1, 1], [8, 16, 4, 2, 1]],
    "features": 16,
    "classes": 10,
    "dropout": 0.0,
    "description": "penultimate layer: the 16 ReLU activations that feed the last Dense",
    "input_scaling": "uint8 pixels / 127.5 - 1 (samples in [0, 1]: 2 x - 1), NCHW",
}


def test_another_architecture_is_retrained_and_the_record_is_kept(data, tmp_path):
    path = tmp_path / "clf.npz"
    small = load_classifier(data, path=path, verbose=None, record=SMALL, **QUICK)
    assert small.trained and small.meta["architecture"] == SMALL
    assert small.model.layers[-1].in_features == 16
    training = small.meta["training"]
    assert training["augmentation"].startswith("random horizontal flips, then DiffAugment translation,cutout")
    assert training["device"] == "cpu" and training["n_holdout"] == 10
    assert small.meta["test_accuracy"] == small.accuracy(*data.test)
    per_class = small.meta["test_accuracy_per_class"]
    labels = data.test[1]
    assert set(per_class) == {metrics_cifar.CLASS_NAMES[k] for k in np.unique(labels)}
    predicted = small.predict(data.test[0])
    assert per_class["airplane"] == np.mean(predicted[labels == 0] == 0)
    assert not load_classifier(data, path=path, verbose=None, record=SMALL, **QUICK).trained
    # The cache holds another architecture than this version's default: retrained, with a message.
    messages = []
    default = load_classifier(data, path=path, verbose=messages.append, **QUICK)
    assert default.trained and default.meta["architecture"] == metrics_cifar.architecture()
    assert any("another architecture than this version's; retraining" in m for m in messages)


def test_default_architecture_is_the_wider_network():
    record = metrics_cifar.architecture()
    assert [c[1] for c in record["convs"]] == [64, 128, 128, 256, 256]
    model = build_classifier(record)
    assert model.output_shape((2, 3, 32, 32)) == (2, 10)
    assert metrics_cifar.EPOCHS == 60 and metrics_cifar.AUGMENTATION == "translation,cutout"
