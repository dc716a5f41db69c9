"""tinygan.metrics: softmax cross-entropy gradients, the Fréchet distance against closed forms, the
classifier score's bounds, the coverage rule, the CLI's error paths, and the classifier's training
and cache on a tiny synthetic MNIST written here (the genuine set only in the slow test)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from formats import idx_bytes
from tinygan.kernels.reference.softmax import log_softmax, softmax, softmax_cross_entropy

from tinygan import backend, metrics
from tinygan.checkpoint import load_checkpoint
from tinygan.cli import EXIT_ERROR, EXIT_NO_GPU
from tinygan.gradcheck import numerical_gradient, relative_error
from tinygan.metrics import (
    Classifier,
    check_samples,
    class_coverage,
    classifier_score,
    evaluate,
    feature_statistics,
    frechet_distance,
    load_classifier,
    load_data,
    main,
    trace_sqrt_product,
)

TINY = {"epochs": 6, "hidden": (32, 16), "batch_size": 32, "lr": 3e-3}

# ---------------------------------------------------------------------------------------------- softmax


def random_targets(rng, n, k, kind):
    if kind == "onehot":
        return np.eye(k)[rng.integers(0, k, n)]
    if kind == "soft":
        return rng.dirichlet(np.ones(k), n)
    # rows that do not sum to 1: the general gradient p * sum(t) - t must still be exact
    return rng.uniform(0, 2, (n, k))


@pytest.mark.parametrize("kind", ["onehot", "soft", "unnormalized"])
@pytest.mark.parametrize("shape", [(1, 2), (5, 10), (3, 4)])
def test_softmax_cross_entropy_gradient_by_finite_differences(rng, kind, shape):
    z = 3 * rng.standard_normal(shape)
    t = random_targets(rng, *shape, kind)
    upstream = rng.standard_normal()  # a random scale, so a gradient off by a constant factor fails
    _, dz = softmax_cross_entropy(z, t)
    numeric = numerical_gradient(lambda: upstream * float(softmax_cross_entropy(z, t)[0]), z)
    assert relative_error(upstream * dz, numeric) < 1e-8


def test_softmax_jacobian_by_finite_differences(rng):
    # The classifier only backpropagates through the loss, but the docstring's
    # d log_softmax_k / dz_j = [k == j] - softmax_j is checked too, with a random upstream G.
    z, g = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    p = softmax(z)
    analytic = g - p * g.sum(axis=1, keepdims=True)
    numeric = numerical_gradient(lambda: float((log_softmax(z) * g).sum()), z)
    assert relative_error(analytic, numeric) < 1e-8


def test_softmax_cross_entropy_value_and_stability():
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0], [-5.0, 3.0, 1.0]])
    t = np.eye(3)[[1, 2, 1]]
    loss, dz = softmax_cross_entropy(z, t)
    expected = np.array([1000.0, np.log(3.0), -3.0 + np.log(np.exp(-5.0) + np.exp(3.0) + np.exp(1.0))])
    assert loss.shape == () and np.isclose(float(loss), expected.mean())
    assert np.all(np.isfinite(dz))
    np.testing.assert_allclose(dz[0], np.array([1.0, -1.0, 0.0]) / 3, atol=1e-15)
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0)
    assert float(softmax_cross_entropy(z.astype(np.float32), t.astype(np.float32))[0]) == pytest.approx(
        expected.mean(), rel=1e-6
    )
    assert softmax_cross_entropy(z.astype(np.float32), t.astype(np.float32))[1].dtype == np.float32


# ---------------------------------------------------------------------------------------------- Fréchet


def random_rotation(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_frechet_identical_is_zero(rng):
    features = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    mu, sigma = feature_statistics(features)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(*feature_statistics(features), *feature_statistics(features[::-1])) == pytest.approx(
        0.0, abs=1e-9
    )


def test_frechet_shifted_mean_is_squared_distance(rng):
    a = rng.standard_normal((6, 6))
    sigma = a @ a.T
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9)


def test_frechet_diagonal_and_commuting_covariances(rng):
    a, b = rng.uniform(0.1, 4, 7), rng.uniform(0.1, 4, 7)
    mu1, mu2 = rng.standard_normal(7), rng.standard_normal(7)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(closed, rel=1e-10)
    # the same in a rotated basis: the distance is rotation invariant
    q = random_rotation(rng, 7)
    rotated = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(closed, rel=1e-9)


def test_trace_sqrt_product_against_eigenvalues_of_the_product(rng):
    # Non-commuting covariances: tr sqrt(S1 S2) from the (real, positive) eigenvalues of the
    # non-symmetric product itself, a route independent of the symmetric one in the code.
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T
    expected = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).real))
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-9)
    assert trace_sqrt_product(s2, s1) == pytest.approx(expected, rel=1e-9)


def test_frechet_singular_covariances_stay_finite(rng):
    # fewer samples than dimensions: rank-deficient covariances, as a tiny sample set gives
    f1, f2 = rng.standard_normal((4, 16)), rng.standard_normal((4, 16)) + 1
    value = frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    assert np.isfinite(value) and value > 0
    zero = np.zeros((3, 3))
    assert frechet_distance(np.zeros(3), zero, np.ones(3), zero) == pytest.approx(3.0)


def test_frechet_of_samples_approaches_the_gaussian_closed_form(rng):
    a, b = np.array([1.0, 2.0, 0.5]), np.array([0.25, 2.0, 3.0])
    mu2 = np.array([1.0, 0.0, -1.0])
    f1 = rng.standard_normal((200_000, 3)) * np.sqrt(a)
    f2 = rng.standard_normal((200_000, 3)) * np.sqrt(b) + mu2
    closed = np.sum(mu2**2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(*feature_statistics(f1), *feature_statistics(f2)) == pytest.approx(closed, abs=0.03)


# ---------------------------------------------------------------------------------------------- classifier score


def test_classifier_score_is_one_for_identical_predictions(rng):
    row = rng.dirichlet(np.ones(10))
    assert classifier_score(np.tile(row, (50, 1))) == pytest.approx(1.0)
    assert classifier_score(np.tile(np.eye(10)[3], (50, 1))) == pytest.approx(1.0)


def test_classifier_score_is_ten_for_confident_uniform_predictions():
    probs = np.eye(10)[np.arange(1000) % 10]
    assert classifier_score(probs) == pytest.approx(10.0)
    # slightly unsure predictions: close to, and below, 10
    smoothed = 0.99 * probs + 0.01 / 10
    assert 9.0 < classifier_score(smoothed) < 10.0


def test_classifier_score_bounds_and_errors(rng):
    for _ in range(5):
        probs = rng.dirichlet(rng.uniform(0.05, 2, 10), 200)
        assert 1.0 <= classifier_score(probs) <= 10.0
    # half the classes, confident and balanced: exactly 5
    assert classifier_score(np.eye(10)[np.arange(100) % 5]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="probability vectors"):
        classifier_score(np.full((3, 10), 0.5))
    with pytest.raises(ValueError, match="shape"):
        classifier_score(np.ones(10) / 10)


# ---------------------------------------------------------------------------------------------- coverage


def test_coverage_rule():
    # 100 labels: class 0 takes 41, classes 1-8 between 4 and 8, class 9 none
    counts = [41, 5, 4, 8, 8, 8, 8, 9, 9, 0]
    labels = np.repeat(np.arange(10), counts)
    cov = class_coverage(labels)
    assert cov["histogram"] == counts
    assert cov["classes_covered"] == 8  # 5 of 100 is exactly 5%: covered; 4 and 0 are not
    assert cov["uncovered_classes"] == [2, 9]
    assert cov["rarest_class"] == 9 and cov["rarest_fraction"] == 0.0
    fractions = np.array(counts) / 100
    nz = fractions[fractions > 0]
    assert cov["normalized_entropy"] == pytest.approx(-(nz * np.log(nz)).sum() / np.log(10))


def test_coverage_extremes():
    uniform = class_coverage(np.arange(1000) % 10)
    assert uniform["normalized_entropy"] == pytest.approx(1.0) and uniform["classes_covered"] == 10
    assert uniform["rarest_class"] == 0 and uniform["rarest_fraction"] == pytest.approx(0.1)  # ties: lowest label
    single = class_coverage(np.full(30, 7))
    assert single["normalized_entropy"] == 0.0 and single["classes_covered"] == 1
    assert single["rarest_fraction"] == 0.0


# ---------------------------------------------------------------------------------------------- samples and CLI


def run_main(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "name, array, expected",
    [
        ("flat.npy", np.zeros((4, 784), np.float32), "expected shape (n, 28, 28), received (4, 784)"),
        ("rgb.npy", np.zeros((4, 28, 28, 3), np.float32), "expected shape (n, 28, 28)"),
        ("pixels.npy", np.zeros((4, 28, 28), np.uint8), "received dtype uint8"),
        ("half.npy", np.zeros((4, 28, 28), np.float16), "received dtype float16"),
        ("nan.npy", np.where(np.eye(28) > 0, np.nan, 0).astype(np.float32)[None].repeat(3, 0), "NaN or infinite"),
        ("tanh.npy", np.full((4, 28, 28), -1.0, np.float32), "expected values in [0, 1]"),
        ("one.npy", np.zeros((1, 28, 28), np.float32), "at least 2 images"),
        ("none.npy", np.zeros((0, 28, 28), np.float32), "at least 2 images (for a covariance), received 0"),
        ("scalar.npy", np.float32(0.5), "expected shape (n, 28, 28), received ()"),
        ("bool.npy", np.zeros((4, 28, 28), bool), "received dtype bool"),
        ("complex.npy", np.zeros((4, 28, 28), np.complex64), "received dtype complex64"),
        ("ints.npy", np.zeros((4, 28, 28), np.int64), "received dtype int64 (for 0-255 pixels, divide by 255 first)"),
        ("inf.npy", np.full((4, 28, 28), np.inf, np.float32), "received 3136 NaN or infinite values"),
        ("big.npy", np.full((4, 28, 28), 255.0, np.float32), "received values in [255, 255]"),
    ],
)
def test_cli_rejects_bad_samples(tmp_path, capsys, name, array, expected):
    path = tmp_path / name
    np.save(path, array)
    code, out, err = run_main(capsys, [str(path)])
    assert code == EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and expected in err


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("missing.npy", None, "no such file"),
        ("text.npy", b"hello", "not a .npy file"),
        ("empty.npy", b"", "not a .npy file"),
        ("archive.npy", "npz", "received an .npz"),
        ("objects.npy", "object", "not a readable .npy"),
        ("folder.npy", "folder", "is a folder; expected a .npy of float32 images (n, 28, 28)"),
        ("truncated.npy", "truncated", "truncated: its header calls for 12544 bytes of float32 (4, 28, 28), the file"),
        ("long.npy", "trailing", "trailing bytes after the array: its header calls for 12544 bytes"),
        ("huge.npy", "huge", "truncated: its header calls for 3136000000000000 bytes of float32 (1000000000000, 28,"),
        ("header.npy", "header", "not a readable .npy array (damaged header"),
        ("version.npy", "version", ".npy format version 9.0; expected 1.0 or 2.0"),
    ],
)
def test_cli_rejects_unreadable_files(tmp_path, capsys, name, content, expected):
    path = tmp_path / name
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((4, 28, 28), np.float32))
    header_end = good.read_bytes().index(b"\n") + 1
    if content == "folder":
        path.mkdir()
    elif content == "truncated":
        path.write_bytes(good.read_bytes()[:-100])
    elif content == "trailing":
        path.write_bytes(good.read_bytes() + b"\0")
    elif content == "huge":  # a header that calls for 3 PB over 12 kB of data: refused without allocating
        header = good.read_bytes()[:header_end].replace(b"(4, 28, 28)", b"(1000000000000, 28, 28)")
        path.write_bytes(header + good.read_bytes()[header_end:])
    elif content == "header":
        path.write_bytes(good.read_bytes()[:header_end].replace(b"'shape'", b"'shapes'") + bytes(12544))
    elif content == "version":
        path.write_bytes(b"\x93NUMPY\x09\x00" + good.read_bytes()[8:])
    elif content == "npz":
        with open(path, "wb") as f:
            np.savez(f, a=np.zeros(3))
    elif content == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content is not None:
        path.write_bytes(content)
    code, out, err = run_main(capsys, [str(path)])
    assert code == EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and err.count(str(path)) == 1, err
    assert expected in err


def test_cli_as_a_module_exits_1_without_traceback(tmp_path):
    path = tmp_path / "flat.npy"
    np.save(path, np.zeros((3, 784), np.float32))
    proc = subprocess.run([sys.executable, "-m", "tinygan.metrics", str(path)], capture_output=True, text=True)
    assert proc.returncode == EXIT_ERROR
    assert proc.stderr.strip().splitlines() == [f"error: {path}: expected shape (n, 28, 28), received (3, 784)"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-real", "1"], "--n-real must be at least 2, received 1"),
        (["--n-real", "many"], "argument --n-real: invalid int value: 'many'"),
        (["--seed", "-1"], "--seed must be at least 0, received -1"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--json", "DIR"], "--json DIR is a folder; expected a file name"),
        (["--json", "FILE/scores.json"], "FILE is a file, so no folder can be made there"),
        (["--json", "SAMPLES"], "is the samples file itself"),
        (["--json", ""], "--json: expected a file name, received ''"),
        (["--data-dir", ""], "--data-dir: expected a folder name, received ''"),
    ],
)
def test_cli_rejects_nonsense_options_in_one_line(tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.setattr(metrics, "evaluate", lambda *a, **k: pytest.fail("options must be checked first"))
    samples = tmp_path / "s.npy"
    np.save(samples, np.zeros((4, 28, 28), np.float32))
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("x")
    names = {"DIR": tmp_path / "DIR", "FILE/scores.json": tmp_path / "FILE" / "scores.json", "SAMPLES": samples}
    argv = [str(names.get(a, a)) for a in argv]
    with pytest.raises(SystemExit) as info:
        main([str(samples), *argv])
    out, err = capsys.readouterr()
    assert info.value.code == EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message.replace("DIR", str(tmp_path / "DIR")) in err


@pytest.mark.parametrize("layout", ["missing", "empty", "train only"])
def test_cli_data_dir_without_mnist_is_refused_not_replaced(tmp_path, capsys, monkeypatch, layout):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    samples = tmp_path / "s.npy"
    np.save(samples, np.zeros((4, 28, 28), np.float32))
    data = tmp_path / "mnist-data"
    if layout != "missing":
        data.mkdir()
    if layout == "train only":
        for name, array in (("train-images-idx3-ubyte", np.zeros((3, 28, 28))), ("train-labels-idx1-ubyte", [1, 2, 3])):
            (data / name).write_bytes(idx_bytes(np.asarray(array)))
    code, out, err = run_main(capsys, [str(samples), "--data-dir", str(data)])
    assert code == EXIT_ERROR and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: MNIST: data dir {data} ")
    expected = {
        "missing": "does not exist",
        "empty": "found nothing (an empty folder)",
        "train only": "holds none of the files for the MNIST test split",
    }
    assert expected[layout] in err
    assert not (tmp_path / "cache").exists(), "no classifier trained, nothing downloaded"


@pytest.mark.skipif(backend.gpu_unavailable_reason() is None, reason="a GPU is present")
def test_cli_gpu_without_a_gpu_exits_with_the_no_gpu_code(tmp_path, capsys):
    samples = tmp_path / "s.npy"
    np.save(samples, np.zeros((4, 28, 28), np.float32))
    code, out, err = run_main(capsys, [str(samples), "--device", "gpu"])
    assert code == EXIT_NO_GPU and out == "" and err.count("\n") == 1 and "--device gpu needs a CUDA GPU" in err


def test_check_samples_clips_within_tolerance():
    x = np.full((2, 28, 28), 0.5, np.float32)
    x[0, 0, 0], x[1, 0, 0] = -5e-4, 1 + 5e-4
    got = check_samples(x)
    assert got.dtype == np.float32 and got.min() == 0.0 and got.max() == 1.0
    assert check_samples(x.astype(np.float64)).dtype == np.float32


# ---------------------------------------------------------------------------------------------- a tiny MNIST


def synthetic_digits(rng, n):
    """Class k: a bright 6x6 square at a position of its own, over faint noise; easy to learn."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 3 + 8 * (k // 4), 3 + 6 * (k % 4)
        images[i, r : r + 6, c : c + 6] = 255
    return images, labels


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch, rng):
    """A synthetic MNIST (600 train, 200 test images, uncompressed IDX) and a private cache folder."""
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 600), ("t10k", 200)):
        images, labels = synthetic_digits(rng, n)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_classifier_is_trained_cached_and_reused(tiny_mnist, monkeypatch):
    messages = []
    first = load_classifier(tiny_mnist, verbose=messages.append, **TINY)
    path = Path(tiny_mnist).parent / "cache" / "metrics" / "mnist_classifier.npz"
    assert first.trained and first.path == path and path.is_file()
    arrays, meta = load_checkpoint(path)
    assert meta["kind"] == metrics.CLASSIFIER_KIND
    assert meta["architecture"]["hidden"] == [32, 16] and meta["architecture"]["classes"] == 10
    assert meta["training"]["mode"] == metrics.MODE_TRAIN and meta["training"]["n_train"] == 500
    assert "local" in meta["training"]["data_source"] and str(tiny_mnist) in meta["training"]["data_source"]
    assert meta["test_accuracy"] > 0.9 and meta["n_test"] == 200
    assert any("cached the classifier" in m for m in messages)

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been reused")

    monkeypatch.setattr(metrics, "train_classifier", no_training)
    again = load_classifier(tiny_mnist, verbose=None, epochs=50)  # training options ignored when cached
    assert not again.trained
    for key, value in first.model.state_dict().items():
        np.testing.assert_array_equal(again.model.state_dict()[key], value)


def test_corrupt_cache_is_retrained_with_a_message(tiny_mnist):
    path = metrics.default_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint at all")
    messages = []
    clf = load_classifier(tiny_mnist, verbose=messages.append, **TINY)
    assert clf.trained and load_checkpoint(path)[1]["kind"] == metrics.CLASSIFIER_KIND
    assert "cached classifier unusable, retraining it" in messages[0] and str(path) in messages[0]


def test_an_unwritable_cache_leaves_the_classifier_uncached_with_a_message(tiny_mnist, tmp_path):
    """The cache holds derived data only: where it cannot be written (its folder is a file here, which even root
    cannot write through), the trained classifier is still returned and used, and the message says why."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    path = blocker / "mnist_classifier.npz"
    messages = []
    clf = load_classifier(tiny_mnist, path=path, verbose=messages.append, **TINY)
    assert clf.trained and clf.path is None and not path.exists()
    assert any(m.startswith(f"could not cache the classifier in {path}") and "uncached" in m for m in messages)
    assert not any("cached the classifier in" in m for m in messages)


def test_end_to_end_cli_on_the_tiny_set(tiny_mnist, tmp_path, capsys, rng):
    load_classifier(tiny_mnist, verbose=None, **TINY)  # so the CLI reuses a small model
    images, _ = synthetic_digits(rng, 300)
    samples = tmp_path / "samples.npy"
    np.save(samples, images.astype(np.float32) / 255)
    report = tmp_path / "out" / "scores.json"
    code, out, err = run_main(capsys, [str(samples), "--data-dir", str(tiny_mnist), "--json", str(report)])
    assert code == 0, err
    assert "samples.npy" in out and "real (held-out)" in out and "Fréchet" in out
    result = json.loads(report.read_text())
    assert result["samples"]["n"] == 300
    assert result["real"]["n"] == 100  # as many as samples, capped at the 100 held-out images
    assert result["classifier"]["n_test"] == 200 and not result["classifier"]["trained_now"]
    assert 1.0 <= result["samples"]["classifier_score"] <= 10.0
    assert result["samples"]["coverage"]["classes_covered"] == 10


def test_evaluate_mode_collapse_scores_worse(tiny_mnist, rng):
    data = load_data(tiny_mnist, verbose=None)
    clf = load_classifier(tiny_mnist, data=data, verbose=None, **TINY)
    images, labels = synthetic_digits(rng, 400)
    good = evaluate(images.astype(np.float32) / 255, classifier=clf, data=data, n_real=50)
    collapsed = evaluate(np.repeat(images[labels == 3][:1], 400, 0) / 255.0, classifier=clf, data=data)
    assert good["real"]["n"] == 50
    assert collapsed["samples"]["coverage"]["classes_covered"] == 1
    assert collapsed["samples"]["classifier_score"] == pytest.approx(1.0)
    assert collapsed["samples"]["frechet_distance"] > 10 * good["samples"]["frechet_distance"]
    assert good["samples"]["classifier_score"] > 5


def test_embedded_fallback_then_genuine_data_retrains(tmp_path, monkeypatch, rng, tiny_mnist):
    # no files anywhere and no download: the embedded test set, split three ways
    data = load_data(None, download=False, verbose=None)
    assert data.mode == metrics.MODE_EMBEDDED
    assert [len(part[0]) for part in (data.train, data.holdout, data.test)] == [6000, 2000, 2000]
    assert "embedded" in data.notes[0]
    clf = load_classifier(data=data, verbose=None, epochs=2, hidden=(32, 16), batch_size=64)
    assert clf.meta["training"]["mode"] == metrics.MODE_EMBEDDED and clf.meta["test_accuracy"] > 0.8
    # a classifier trained on the embedded set is kept while nothing better exists ...
    assert not load_classifier(None, download=False, verbose=None).trained
    # ... and replaced, saying so, once the training set is there
    messages = []
    clf = load_classifier(tiny_mnist, verbose=messages.append, **TINY)
    assert clf.trained and clf.meta["training"]["mode"] == metrics.MODE_TRAIN
    assert "trained on the embedded test set; retraining" in messages[0]


def test_genuine_classifier_scored_on_embedded_data_has_no_reference_line(tiny_mnist, tmp_path):
    clf = load_classifier(tiny_mnist, verbose=None, **TINY)
    embedded = load_data(None, download=False, verbose=None)
    samples = np.zeros((10, 28, 28), np.float32)
    result = evaluate(samples, classifier=clf, data=embedded)
    assert result["real"] is None and result["classifier"]["n_test"] == 10000
    assert "no held-out real images" in result["notes"][0]


def test_split_order_is_fixed_and_mixes_parities():
    order = metrics.split_order(60000)
    assert sorted(order.tolist()) == list(range(60000))
    np.testing.assert_array_equal(order[:5], [17113, 55841, 21877, 27368, 55306])  # the split never moves
    assert abs((order[:10000] % 2).mean() - 0.5) < 0.02


# ---------------------------------------------------------------------------------------------- genuine MNIST


@pytest.mark.slow
def test_genuine_mnist_quick_classifier(shared_data, tmp_path, monkeypatch):
    """Three epochs on the genuine training set (about 20 s unloaded): > 97% test accuracy, and real
    held-out digits score far better than a single repeated digit."""
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    data = load_data(shared_data, download=False, verbose=None)
    assert data.mode == metrics.MODE_TRAIN and len(data.train[0]) == 50000 and len(data.test[0]) == 10000
    clf = load_classifier(data=data, verbose=None, epochs=3)
    assert clf.meta["test_accuracy"] > 0.97
    real = evaluate(data.holdout[0][:2000] / 255.0, classifier=clf, data=data)
    ones = evaluate(np.repeat(data.test[0][data.test[1] == 1][:1], 2000, 0) / 255.0, classifier=clf, data=data)
    assert real["classifier"]["test_accuracy"] == pytest.approx(clf.meta["test_accuracy"])
    assert real["samples"]["classifier_score"] > 9 and real["samples"]["coverage"]["classes_covered"] == 10
    assert ones["samples"]["classifier_score"] < 1.1 and ones["samples"]["coverage"]["classes_covered"] == 1
    assert ones["samples"]["frechet_distance"] > 20 * real["samples"]["frechet_distance"]


# -- the classifier helpers both metrics share (tinygan.metrics.fit_classifier, load_cached_classifier) --------


def _loop_before_the_shared_helper(data, epochs, hidden, batch_size, lr, seed):
    """The MNIST training loop as tinygan.metrics wrote it before fit_classifier served both datasets
    (Adam, cosine learning rate, one shuffle generator, partial last batch kept): the refactor must give
    the same weights."""
    import math

    from tinygan.optim import Adam

    architecture = metrics._architecture(hidden, metrics.DROPOUT)
    seeds = np.random.SeedSequence(seed).spawn(2)
    model = metrics.build_classifier(architecture, seed=int(seeds[0].generate_state(1)[0]))
    opt = Adam(model, lr=lr)
    shuffle = np.random.default_rng(seeds[1])
    images, labels = data.train
    x = metrics._scale(images)
    onehot = np.eye(10, dtype=np.float32)[labels]
    for epoch in range(epochs):
        opt.lr = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))
        order = shuffle.permutation(len(x))
        for begin in range(0, len(x), batch_size):
            idx = order[begin : begin + batch_size]
            opt.zero_grad()
            logits = model.forward(x[idx], training=True)
            _, dlogits = softmax_cross_entropy(logits, onehot[idx])
            model.backward(dlogits, input_grad=False)
            opt.step()
    return model


def test_shared_training_loop_keeps_the_mnist_classifier_unchanged(tiny_mnist):
    data = metrics.load_data(tiny_mnist, download=False, verbose=None)
    options = {"epochs": 2, "hidden": (32, 16), "batch_size": 96, "lr": 3e-3, "seed": 4}  # 500 = 5 x 96 + 20
    got = metrics.train_classifier(data, verbose=None, **options)
    want = _loop_before_the_shared_helper(data, **options)
    for key, value in want.state_dict().items():
        np.testing.assert_array_equal(got.model.state_dict()[key], value, err_msg=key)
    # The cached file's metadata: the same keys and values as before the refactor.
    meta = got.meta
    assert list(meta) == ["kind", "architecture", "training", "test_accuracy", "n_test", "notes"]
    assert list(meta["training"]) == [
        "mode", "data_source", "n_train", "n_holdout", "split_rule", "epochs", "batch_size", "optimizer", "loss",
        "seed", "seconds",
    ]  # fmt: skip
    assert (meta["training"]["n_train"], meta["training"]["n_holdout"], meta["training"]["epochs"]) == (500, 100, 2)
    assert meta["training"]["optimizer"] == f"Adam lr 0.003 cosine to {0.003 / 20}, betas (0.9, 0.999)"
    assert meta["test_accuracy"] == got.accuracy(*data.test) and isinstance(meta["test_accuracy"], float)


def test_fit_classifier_whole_batches_and_the_batch_hook(rng):
    model = metrics.build_classifier(metrics._architecture((8,), 0.0), seed=0)
    x = rng.random((10, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 10)
    seen = []

    def hook(batch):
        seen.append(len(batch))
        return batch * 0.5

    lines = []
    loss = metrics.fit_classifier(
        model, x, labels, epochs=2, batch_size=4, lr=1e-3, rng=rng, device="cpu", batch_hook=hook,
        whole_batches=True, holdout_accuracy=lambda: 0.25, say=lines.append,
    )  # fmt: skip
    assert seen == [4, 4, 4, 4]  # the last 2 images of each epoch dropped, every batch through the hook
    assert np.isfinite(loss) and len(lines) == 2 and "held-out accuracy 25.00%" in lines[1]
    seen.clear()
    metrics.fit_classifier(model, x, labels, epochs=1, batch_size=4, lr=1e-3, rng=rng, device="cpu", batch_hook=hook)
    assert seen == [4, 4, 2]
    x[3, 5] = np.nan
    with pytest.raises(RuntimeError, match="classifier training diverged"):
        metrics.fit_classifier(model, x, labels, epochs=1, batch_size=4, lr=1e-3, rng=rng, device="cpu")


def test_load_cached_classifier_checks_kind_and_record(tiny_mnist, tmp_path):
    from tinygan.checkpoint import CheckpointError, save_checkpoint

    data = metrics.load_data(tiny_mnist, download=False, verbose=None)
    clf = metrics.train_classifier(data, verbose=None, epochs=1, hidden=(16,))
    path = tmp_path / "clf.npz"
    save_checkpoint(path, clf.model.state_dict(), clf.meta)
    loaded = metrics.load_cached_classifier(path, metrics.CLASSIFIER_KIND, metrics.build_classifier, Classifier, "cpu")
    assert isinstance(loaded, Classifier) and not loaded.trained and loaded.path == path
    with pytest.raises(CheckpointError, match="expected a tinygan-cifar10-classifier checkpoint, received kind"):
        metrics.load_cached_classifier(path, "tinygan-cifar10-classifier", metrics.build_classifier, Classifier, "cpu")

    def refuse(meta):
        raise ValueError("no mode")

    with pytest.raises(CheckpointError, match="cannot rebuild the classifier from its record: no mode"):
        metrics.load_cached_classifier(
            path, metrics.CLASSIFIER_KIND, metrics.build_classifier, Classifier, "cpu", refuse
        )
    save_checkpoint(path, clf.model.state_dict(), {**clf.meta, "test_accuracy": None})
    with pytest.raises(CheckpointError, match="lacks the test accuracy"):
        metrics.load_cached_classifier(path, metrics.CLASSIFIER_KIND, metrics.build_classifier, Classifier, "cpu")
