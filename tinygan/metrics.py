"""Score generated MNIST digits with a classifier trained by tinygan itself.

    python -m tinygan.metrics samples.npy [--json scores.json] [--data-dir DIR] [--n-real N] [--retrain]

Bad input (a missing, damaged, wrong-shape, wrong-dtype or non-finite samples file, a ``--data-dir``
without the MNIST files, nonsense options) is refused with one ``error:`` line and the exit codes of
:mod:`tinygan.cli`.

``samples.npy`` holds float32 images in [0, 1] of shape (n, 28, 28), as written by
``python -m tinygan.sample RUN/checkpoint.npz --n 10000 --out samples.npy``.

The classifier
--------------
An MLP 784-512-256-10 (ReLU, dropout 0.2) built from tinygan's own layers and trained with tinygan's
Adam and the softmax cross-entropy of ``tinygan.kernels.reference.softmax``, on pixels scaled to
[0, 1]. It is trained once, on 50000 of the 60000 MNIST training images, and cached in
``cache_dir("metrics") / "mnist_classifier.npz"`` (a tinygan checkpoint whose metadata records the
architecture, the data it was trained on and its test accuracy). The other 10000 training images (a
fixed pseudo-random sixth, see :func:`split_order`) are held out: those real images were never seen
by the classifier and are not part of the test set, so they give an honest real-data reference line
(see below).

Offline, when only the embedded MNIST test set is available, the classifier trains on 6000 of those
10000 images, holds out 2000 for the real reference line and evaluates on the remaining 2000
(again by :func:`split_order`); the report says so. Such a classifier is replaced, with a message,
as soon as the genuine training set is found.

The figures
-----------
* **test accuracy**: the classifier's accuracy on the MNIST test set (10000 images).
* **classifier score** (the Inception score of Salimans et al., 2016, "Improved techniques for
  training GANs", with this classifier in place of Inception): ``exp(mean_x KL(p(y|x) || p(y)))``
  with ``p(y)`` the mean of ``p(y|x)`` over the samples. It is 1 when every sample gets the same
  prediction and at most 10 (the number of classes), reached by confident predictions spread
  evenly over the classes. Computed over all samples at once (no splits).
* **Fréchet distance** (the FID of Heusel et al., 2017, "GANs trained by a two time-scale update
  rule converge to a local Nash equilibrium", with this classifier's 256-d penultimate-layer
  activations in place of Inception's pool features) between a Gaussian fitted to the samples'
  features and one fitted to the features of the MNIST test set; see :func:`frechet_distance`.
  Like FID it is biased upward for small n: compare runs at the same number of samples.
* **class coverage** of the predicted labels (arg max of p(y|x)): the histogram, its entropy
  divided by log 10 (1 = uniform, 0 = one class), the number of classes *covered*, and the rarest
  class and its fraction. Rule: a class is covered when at least 5% of the samples are predicted
  as it, half the 10% it would get if the classes were balanced (MNIST's own test classes range
  from 8.9% to 11.4%), so a generator that drops or starves a mode loses that class.
* **confidence**: the mean over the images of max_y p(y|x); digits the classifier hesitates on
  (blurry or ambiguous strokes) lower it before they change the predicted labels.
* **real reference**: the same figures for ``n_real`` held-out real images (default: as many as
  there are samples, at most 10000), so the Fréchet distance of the samples can be read against
  the distance of real data at the same n. Real *test* images would not do: they are the
  Fréchet reference set itself (at n = 10000 the distance would be exactly 0). Held-out training
  images come from the training set's writers, the test set's writers are others, so even real
  data sits at a small non-zero distance: the line shows what real digits score at that n.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinygan.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NO_GPU
from tinygan.data.download import DataIntegrityWarning, DownloadError, cache_dir
from tinygan.data.mnist import load_mnist
from tinygan.kernels.reference.softmax import softmax, softmax_cross_entropy
from tinygan.layers import Dense, Sequential
from tinygan.layers.activation import ReLU
from tinygan.layers.dropout import Dropout
from tinygan.optim import Adam
from tinygan.sample import OneLineArgumentParser, output_problem, write_atomically

__all__ = [
    "CLASSIFIER_KIND",
    "Classifier",
    "SamplesError",
    "check_samples",
    "class_coverage",
    "classifier_score",
    "default_cache_path",
    "evaluate",
    "feature_statistics",
    "frechet_distance",
    "load_classifier",
    "load_samples",
    "main",
    "train_classifier",
]

Verbose = Callable[[str], Any] | None

CLASSIFIER_KIND = "tinygan-mnist-classifier"
HIDDEN = (512, 256)
DROPOUT = 0.2
EPOCHS = 10
BATCH_SIZE = 128
LR = 1e-3
NUM_CLASSES = 10
COVERAGE_THRESHOLD = 0.05
VALUE_TOLERANCE = 1e-3
INPUT_SCALING = "uint8 pixels / 255, flattened row-major to 784 floats in [0, 1]"

# Data modes, recorded in the classifier's metadata.
MODE_TRAIN = "mnist-train"  # trained on the training set, held-out part of it, full test set
MODE_EMBEDDED = "embedded-test-split"  # offline: only the 10000 test images, split three ways


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SamplesError(ValueError):
    """A samples file or array is missing, unreadable, or not (n, 28, 28) floats in [0, 1]."""


# ---------------------------------------------------------------------------------------------- the data


@dataclass
class EvalData:
    """The real images the metrics need, uint8 (n, 28, 28), and how they were split.

    ``train``: what the classifier is trained on; ``holdout``: real images neither trained on nor
    in ``test``, for the reference line (None when unavailable); ``test``: accuracy and the Fréchet
    reference set.
    """

    mode: str
    train: tuple[np.ndarray, np.ndarray] | None
    holdout: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    source: str
    notes: list[str] = field(default_factory=list)


def split_order(n: int, salt: str = "tinygan-metrics") -> np.ndarray:
    """A fixed pseudo-random permutation of ``range(n)``: the indices sorted by ``md5(f"{salt}:{i}")``.

    Why not ``i % 6`` or a seeded NumPy permutation: the MNIST training set is not evenly mixed.
    Even and odd indices differ systematically (mean pixel 31.3 vs 35.3, likely its two NIST source
    sets), so a rule on ``i`` modulo an even number picks one population (a held-out set of
    ``i % 6 == 5`` sits at Fréchet distance 3.3 from the test set, a pseudo-random one at 0.6). And
    NumPy does not promise that a seed gives the same permutation in every version. A hash of the
    index depends on neither.
    """
    digests = [hashlib.md5(f"{salt}:{i}".encode(), usedforsecurity=False).digest()[:8] for i in range(n)]
    keys = np.frombuffer(b"".join(digests), dtype=">u8")
    return np.argsort(keys, kind="stable")


def load_data(data_dir: str | os.PathLike | None = None, download: bool = True, verbose: Verbose = _stderr) -> EvalData:
    """Load MNIST through :func:`tinygan.data.load_mnist` and split it as the module docstring says."""
    train = load_mnist(data_dir, "train", download=download, verbose=verbose)
    if train.source.kind == "embedded":
        images, labels = train
        order = split_order(len(images))
        cut1, cut2 = (len(images) * 6) // 10, (len(images) * 8) // 10
        part = {
            name: (images[np.sort(idx)], labels[np.sort(idx)])
            for name, idx in (("train", order[:cut1]), ("holdout", order[cut1:cut2]), ("test", order[cut2:]))
        }
        note = (
            "only the embedded MNIST test set is available: the classifier trains on 60% of its images, "
            "the real reference line uses 20% others, and test accuracy and Fréchet statistics the last 20%"
        )
        return EvalData(MODE_EMBEDDED, part["train"], part["holdout"], part["test"], str(train.source), [note])
    test = load_mnist(data_dir, "test", download=download, verbose=verbose)
    images, labels = train
    held = np.zeros(len(images), dtype=bool)
    held[split_order(len(images))[: len(images) // 6]] = True
    source = f"train: {train.source}; test: {test.source}"
    return EvalData(MODE_TRAIN, (images[~held], labels[~held]), (images[held], labels[held]), tuple(test), source)


def _scale(images: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    if flat.dtype == np.uint8:
        return flat.astype(dtype) / np.asarray(255, dtype=dtype)
    return flat.astype(dtype, copy=False)


# ---------------------------------------------------------------------------------------------- the classifier


def build_classifier(architecture: dict[str, Any], seed: int = 0) -> Sequential:
    """The Sequential an ``architecture`` record describes (input, hidden widths, classes, dropout)."""
    if architecture.get("type") != "mlp":
        raise ValueError(f"unknown classifier architecture {architecture.get('type')!r}: expected 'mlp'")
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    width = int(architecture["input"])
    for units in architecture["hidden"]:
        layers += [Dense(width, int(units), rng=rng), ReLU(), Dropout(float(architecture["dropout"]), rng=rng)]
        width = int(units)
    layers.append(Dense(width, int(architecture["classes"]), rng=rng))
    return Sequential(*layers, name="mnist_classifier")


def _architecture(hidden: tuple[int, ...] = HIDDEN, dropout: float = DROPOUT) -> dict[str, Any]:
    return {
        "type": "mlp",
        "input": 784,
        "hidden": [int(h) for h in hidden],
        "classes": NUM_CLASSES,
        "dropout": float(dropout),
        "activation": "relu",
        "features": f"penultimate layer: the {int(hidden[-1])} ReLU activations that feed the last Dense",
        "input_scaling": INPUT_SCALING,
    }


@dataclass
class Classifier:
    """A trained MNIST classifier: the model, its checkpoint metadata and where it is cached.

    ``trained`` tells whether this call trained it (True) or loaded it from the cache (False).
    """

    model: Sequential
    meta: dict[str, Any]
    path: Path | None = None
    trained: bool = False
    batch_size: int = 2000

    @property
    def device(self) -> str:
        return self.model.device

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate-layer features (n, 256) and class probabilities p(y|x) (n, 10), float64 on the host.

        ``images``: uint8 (n, 28, 28) pixels or floats in [0, 1] of shape (n, 28, 28) or (n, 784).
        """
        x = _scale(images, self.model.dtype)
        body, head = self.model.layers[:-1], self.model.layers[-1]
        features, probs = [], []
        for start in range(0, len(x), self.batch_size):
            h = backend.to_device(np.ascontiguousarray(x[start : start + self.batch_size]), self.device)
            for layer in body:
                h = layer.forward(h, training=False)
            logits = head.forward(h, training=False)
            features.append(backend.to_numpy(h).astype(np.float64))
            probs.append(softmax(backend.to_numpy(logits).astype(np.float64)))
        if not features:
            return np.zeros((0, self.model.layers[-1].in_features)), np.zeros((0, NUM_CLASSES))
        return np.concatenate(features), np.concatenate(probs)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.features_and_probs(images)[1].argmax(axis=1)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(images) == labels))


def default_cache_path() -> Path:
    """``cache_dir("metrics") / "mnist_classifier.npz"`` ($TINYGAN_DATA, else ~/.cache/tinygan)."""
    return cache_dir("metrics") / "mnist_classifier.npz"


def fit_classifier(
    model: Sequential,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    device: str,
    batch_hook: Callable[[np.ndarray], Any] | None = None,
    whole_batches: bool = False,
    holdout_accuracy: Callable[[], float] | None = None,
    say: Callable[[str], Any] = lambda _: None,
) -> float:
    """Train ``model`` (already on ``device``) on host inputs ``x`` and integer ``labels`` with Adam and the
    softmax cross-entropy; the loss of the last epoch. Shared by the MNIST and CIFAR-10 classifiers.

    Each epoch shuffles with ``rng`` and sets the learning rate on a cosine from ``lr`` down to ``lr / 20``
    (the last epochs at a small rate settle the weights, worth a few tenths of a percent of accuracy).
    ``batch_hook(x_batch)`` turns a host batch into the model's device input (augmentation goes there;
    default: copy it to the device); ``whole_batches`` drops the last partial batch (BatchNorm: a batch of
    one image has no statistics); ``holdout_accuracy()`` is printed after every epoch. RuntimeError when the
    loss stops being finite.
    """
    opt = Adam(model, lr=lr)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    hook = batch_hook or (lambda xb: backend.to_device(xb, device))
    stop = len(x) - batch_size + 1 if whole_batches and len(x) >= batch_size else len(x)
    total = 0.0
    for epoch in range(epochs):
        opt.lr = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))
        order = rng.permutation(len(x))
        losses, t0 = [], time.perf_counter()
        for begin in range(0, max(stop, 1), batch_size):
            idx = order[begin : begin + batch_size]
            xb = hook(x[idx])
            tb = backend.to_device(onehot[idx], device)
            opt.zero_grad()
            logits = model.forward(xb, training=True)
            loss, dlogits = softmax_cross_entropy(logits, tb)
            model.backward(dlogits, input_grad=False)
            opt.step()
            losses.append((loss, len(idx)))  # read at the epoch's end: no wait for the device in the loop
        total = sum(float(loss) * n for loss, n in losses) / sum(n for _, n in losses)
        line = f"  epoch {epoch + 1}/{epochs}: loss {total:.4f}"
        if holdout_accuracy is not None:
            line += f", held-out accuracy {100 * holdout_accuracy():.2f}%"
        say(f"{line} ({time.perf_counter() - t0:.1f} s)")
        if not math.isfinite(total):
            raise RuntimeError("classifier training diverged (non-finite loss)")
    return total


def classifier_record(
    kind: str,
    architecture: dict[str, Any],
    data: EvalData,
    test_accuracy: float,
    training: dict[str, Any],
) -> dict[str, Any]:
    """The metadata a cached classifier carries (both datasets): ``training`` holds the fields particular
    to the run (n_train, split rule, epochs, optimizer, ...); the data's mode, source and held-out count
    are added here."""
    holdout = 0 if data.holdout is None else int(len(data.holdout[0]))
    return {
        "kind": kind,
        "architecture": architecture,
        "training": {
            "mode": data.mode,
            "data_source": data.source,
            "n_train": training["n_train"],
            "n_holdout": holdout,
            **training,
        },
        "test_accuracy": float(test_accuracy),
        "n_test": int(len(data.test[0])),
        "notes": list(data.notes),
    }


def load_cached_classifier(
    path: Path,
    kind: str,
    build: Callable[[dict[str, Any]], Sequential],
    classifier_class: type[Classifier],
    device: str,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Classifier:
    """The classifier cached in ``path``: its metadata's ``kind`` must be ``kind``, ``build(architecture)``
    rebuilds the model whose weights are then loaded, ``check(meta)`` raises ValueError on metadata this
    kind needs and lacks. CheckpointError naming the file on anything wrong."""
    arrays, meta = load_checkpoint(path)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{path}: expected a {kind} checkpoint, received kind {meta.get('kind')!r}")
    try:
        model = build(meta["architecture"])
        model.load_state_dict(arrays, source=str(path))
        if not isinstance(meta["test_accuracy"], float) or not isinstance(meta["training"]["n_train"], int):
            raise ValueError("metadata lacks the test accuracy or the number of training images")
        if check is not None:
            check(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the classifier from its record: {exc}") from None
    return classifier_class(model.to(device), meta, path, False)


def train_classifier(
    data: EvalData,
    *,
    epochs: int = EPOCHS,
    hidden: tuple[int, ...] = HIDDEN,
    dropout: float = DROPOUT,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    seed: int = 0,
    device: str = "cpu",
    verbose: Verbose = _stderr,
) -> Classifier:
    """Train the classifier on ``data.train`` (:func:`fit_classifier`: Adam, cosine learning rate, softmax
    cross-entropy); not cached here."""
    if data.train is None:
        raise ValueError("no training images available for the classifier")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, received {epochs}")
    architecture = _architecture(hidden, dropout)
    seeds = np.random.SeedSequence(seed).spawn(2)
    model = build_classifier(architecture, seed=int(seeds[0].generate_state(1)[0])).to(device)
    images, labels = data.train
    x = _scale(images)
    classifier = Classifier(model, {}, None, True)
    say = verbose or (lambda _: None)
    say(
        f"training the MNIST classifier ({'-'.join(map(str, [784, *hidden, NUM_CLASSES]))} MLP) on "
        f"{len(x)} images, {epochs} epochs, on the {device}"
    )
    start = time.perf_counter()
    holdout = None if data.holdout is None else (lambda: classifier.accuracy(*data.holdout))
    fit_classifier(
        model,
        x,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        rng=np.random.default_rng(seeds[1]),
        device=device,
        holdout_accuracy=holdout,
        say=say,
    )
    test_accuracy = classifier.accuracy(*data.test)
    split_rule = (
        "MNIST training set in split_order(): the first sixth held out, the rest trained on"
        if data.mode == MODE_TRAIN
        else "embedded test set in split_order(): train the first 60%, hold out the next 20%, test the last 20%"
    )
    classifier.meta = classifier_record(
        CLASSIFIER_KIND,
        architecture,
        data,
        test_accuracy,
        {
            "n_train": int(len(x)),
            "split_rule": split_rule,
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "optimizer": f"Adam lr {lr} cosine to {lr / 20}, betas (0.9, 0.999)",
            "loss": "softmax cross-entropy",
            "seed": int(seed),
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    say(f"classifier test accuracy {100 * test_accuracy:.2f}% on {len(data.test[0])} images")
    return classifier


def _check_mode(meta: dict[str, Any]) -> None:
    if meta["training"]["mode"] not in (MODE_TRAIN, MODE_EMBEDDED):
        raise ValueError("metadata lacks the training data mode")


def _load_cached(path: Path, device: str) -> Classifier:
    return load_cached_classifier(path, CLASSIFIER_KIND, build_classifier, Classifier, device, check=_check_mode)


def load_classifier(
    data_dir: str | os.PathLike | None = None,
    *,
    retrain: bool = False,
    path: str | os.PathLike | None = None,
    data: EvalData | None = None,
    device: str = "cpu",
    download: bool = True,
    verbose: Verbose = _stderr,
    **train_options: Any,
) -> Classifier:
    """The cached MNIST classifier, trained (and cached) first when needed.

    Trains when the cache file (``path``, default :func:`default_cache_path`) is missing, when
    ``retrain`` is set, when the file is unreadable or not a classifier (with a message saying so:
    the cache only ever holds derived data), and when it was trained offline on the embedded test
    set but the genuine training set is now available. ``data`` (from :func:`load_data`) spares a
    second load of MNIST; ``train_options`` go to :func:`train_classifier` (``epochs``, ``hidden``,
    ``seed``, ...) and apply only when training happens.
    """
    backend.check_device(device)
    path = Path(path) if path is not None else default_cache_path()
    say = verbose or (lambda _: None)
    if not retrain and path.exists():
        try:
            classifier = _load_cached(path, device)
        except CheckpointError as exc:
            say(f"cached classifier unusable, retraining it: {exc}")
        else:
            if classifier.meta["training"]["mode"] != MODE_EMBEDDED:
                return classifier
            if data is None:
                # download=False: only a check whether better data is already on disk
                probe = load_mnist(data_dir, "train", download=False, verbose=None)
                genuine = probe.source.kind != "embedded"
            else:
                genuine = data.mode == MODE_TRAIN
            if not genuine:
                return classifier
            say(f"{path}: cached classifier was trained on the embedded test set; retraining on the training set")
    if data is None:
        data = load_data(data_dir, download=download, verbose=verbose)
    classifier = train_classifier(data, device=device, verbose=verbose, **train_options)
    cache_classifier(classifier, path, say)
    return classifier


def cache_classifier(classifier: Any, path: Path, say: Callable[[str], Any]) -> None:
    """Save a freshly trained classifier to its cache file ``path`` (``classifier.path`` then names it). The
    cache only ever holds derived data: where it cannot be written (a read-only data folder, a full disk), the
    classifier is used uncached and ``say`` tells why, instead of the run failing after the training."""
    try:
        save_checkpoint(path, classifier.model.state_dict(), classifier.meta)
    except OSError as exc:
        say(f"could not cache the classifier in {path} ({exc.strerror or exc}); using it uncached")
        return
    classifier.path = path
    say(f"cached the classifier in {path}")


# ---------------------------------------------------------------------------------------------- the figures


def classifier_score(probs: np.ndarray) -> float:
    """``exp(mean_x KL(p(y|x) || p(y)))`` for rows ``probs`` = p(y|x) (Salimans et al., 2016).

    1 when all rows are equal; at most the number of classes, reached by one-hot rows spread evenly.
    Terms with p(y|x) = 0 contribute 0 (the limit of p log p).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"classifier_score: expected probabilities of shape (n, classes), received {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("classifier_score: rows must be probability vectors (non-negative, summing to 1)")
    marginal = p.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of rows ``features`` (n, d), in float64; unbiased (n - 1),
    as in the reference FID code (Heusel et al., 2017)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature_statistics: expected at least 2 rows of features (n, d), received {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix by eigendecomposition; eigenvalues that
    rounding pushed below 0 count as 0."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr(sqrt(sigma1 sigma2))`` for symmetric PSD matrices, without a general matrix square root.

    ``sigma1 sigma2 = R (R sigma2)`` with ``R = sigma1^(1/2)``, and AB has the eigenvalues of BA, so
    ``sigma1 sigma2`` has the eigenvalues of ``M = R sigma2 R``, which is symmetric PSD. The trace
    of the square root is the sum of the square roots of those eigenvalues: two symmetric
    eigendecompositions (``numpy.linalg.eigh``), no complex arithmetic, no scipy.
    """
    root = _sqrt_psd(np.asarray(sigma1, dtype=np.float64))
    m = root @ np.asarray(sigma2, dtype=np.float64) @ root
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)
    (the FID formula of Heusel et al., 2017)::

        d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2))

    with the last trace from :func:`trace_sqrt_product`. Rounding can leave a result of about
    -1e-12 for identical inputs; it is returned as 0.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: shapes do not match: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}"
        )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def class_coverage(
    labels: np.ndarray, num_classes: int = NUM_CLASSES, threshold: float = COVERAGE_THRESHOLD
) -> dict[str, Any]:
    """Coverage of the predicted ``labels``: histogram, normalized entropy, covered classes, rarest class.

    A class is *covered* when its fraction of the labels is at least ``threshold`` (default 5%, half
    of the uniform 10%). ``normalized_entropy`` is H(fractions) / log(num_classes): 1 for a uniform
    histogram, 0 when one class takes everything. The rarest class is the lowest label among those
    with the smallest count.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"class_coverage: expected a non-empty 1-d array of labels, received shape {labels.shape}")
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)[:num_classes]
    fractions = counts / len(labels)
    nonzero = fractions[fractions > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / math.log(num_classes))
    rarest = int(np.argmin(counts))
    return {
        "histogram": [int(c) for c in counts],
        "fractions": [float(f) for f in fractions],
        "normalized_entropy": max(entropy, 0.0),
        "classes_covered": int(np.sum(fractions >= threshold)),
        "uncovered_classes": [int(k) for k in np.flatnonzero(fractions < threshold)],
        "rarest_class": rarest,
        "rarest_fraction": float(fractions[rarest]),
        "threshold": float(threshold),
    }


def _score_set(classifier: Classifier, images: np.ndarray, reference: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    features, probs = classifier.features_and_probs(images)
    mu, sigma = feature_statistics(features)
    return {
        "n": int(len(images)),
        "classifier_score": classifier_score(probs),
        "frechet_distance": frechet_distance(mu, sigma, *reference),
        "mean_confidence": float(probs.max(axis=1).mean()),
        "coverage": class_coverage(probs.argmax(axis=1)),
    }


# ---------------------------------------------------------------------------------------------- samples


def check_values(samples: np.ndarray, name: str, tolerance: float = VALUE_TOLERANCE) -> np.ndarray:
    """The checks every metric's samples share once their layout is right (MNIST's and CIFAR-10's): at least
    2 images, finite, in [0, 1] up to ``tolerance`` (rounding, then clipped); float32 out. Anything else is
    a one-line SamplesError naming ``name``."""
    if len(samples) < 2:
        raise SamplesError(f"{name}: expected at least 2 images (for a covariance), received {len(samples)}")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise SamplesError(f"{name}: expected finite values in [0, 1], received {bad} NaN or infinite values")
    low, high = float(samples.min()), float(samples.max())
    if low < -tolerance or high > 1 + tolerance:
        hint = " (tanh outputs in [-1, 1]? map them with (x + 1) / 2)" if low < -0.5 else ""
        raise SamplesError(f"{name}: expected values in [0, 1], received values in [{low:.4g}, {high:.4g}]{hint}")
    return np.clip(samples, 0.0, 1.0).astype(np.float32, copy=False)


def check_samples(samples: Any, name: str = "samples") -> np.ndarray:
    """Validate ``samples`` as float (n, 28, 28) images in [0, 1], n >= 2, and return them as float32.

    Values up to ``VALUE_TOLERANCE`` outside [0, 1] (rounding) are clipped; anything else raises
    :class:`SamplesError` with a one-line message naming ``name``, what was expected and received.
    """
    if not isinstance(samples, np.ndarray):
        raise SamplesError(f"{name}: expected a numpy array of images, received {type(samples).__name__}")
    _check_layout(samples.dtype, samples.shape, name)
    return check_values(samples, name)


def _check_layout(dtype: np.dtype, shape: tuple[int, ...], name: str) -> None:
    """The dtype and shape part of :func:`check_samples`, also applied to a file's header before reading it."""
    if dtype.kind != "f" or dtype.itemsize < 4:
        hint = " (for 0-255 pixels, divide by 255 first)" if dtype.kind in "iu" else ""
        raise SamplesError(f"{name}: expected float32 images in [0, 1], received dtype {dtype}{hint}")
    if len(shape) != 3 or tuple(shape[1:]) != (28, 28):
        raise SamplesError(f"{name}: expected shape (n, 28, 28), received {tuple(shape)}")


def load_samples(path: str | os.PathLike) -> np.ndarray:
    """Read and validate a ``.npy`` file of samples (see :func:`check_samples`); SamplesError otherwise.

    The header (dtype, shape) is checked against the file's size before any data is read, so a
    truncated file, or one whose header calls for terabytes, is refused by name without loading it.
    """
    path = Path(path)
    expected = "expected a .npy of float32 images (n, 28, 28) in [0, 1]"
    if path.is_dir():
        raise SamplesError(f"{path}: is a folder; {expected}")
    if not path.is_file():
        raise SamplesError(f"{path}: no such file ({expected})")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
            if magic[:4] == b"PK\x03\x04":
                raise SamplesError(f"{path}: expected a .npy array, received an .npz (zip) archive")
            if magic != b"\x93NUMPY":
                raise SamplesError(f"{path}: not a .npy file (no NumPy header); {expected}")
            f.seek(0)
            shape, dtype, data_bytes = _npy_header(f, path)
            available = path.stat().st_size - f.tell()
    except OSError as exc:
        raise SamplesError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if dtype.hasobject:
        raise SamplesError(f"{path}: not a readable .npy array (it holds Python objects); {expected}")
    # dtype and shape first: they say what is wrong more usefully than a byte count would
    _check_layout(dtype, shape, str(path))
    if available != data_bytes:
        what = "truncated" if available < data_bytes else "trailing bytes after the array"
        raise SamplesError(
            f"{path}: {what}: its header calls for {data_bytes} bytes of {dtype} {shape}, the file holds {available}"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise SamplesError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    return check_samples(loaded, str(path))


def _npy_header(f: Any, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, bytes of data)`` from a .npy header, leaving ``f`` at the first data byte."""
    version = np.lib.format.read_magic(f)  # the 6 magic bytes were checked: this reads the version
    if version not in ((1, 0), (2, 0)):  # 3.0 only differs for non-latin-1 field names, never float images
        raise SamplesError(f"{path}: .npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    try:
        shape, _, dtype = read_header(f)
    except (ValueError, SyntaxError, TypeError, OverflowError) as exc:
        raise SamplesError(f"{path}: not a readable .npy array (damaged header: {exc})") from None
    return tuple(shape), dtype, math.prod(shape) * dtype.itemsize


# ---------------------------------------------------------------------------------------------- evaluate


def evaluate(
    samples: np.ndarray,
    data_dir: str | os.PathLike | None = None,
    *,
    n_real: int | None = None,
    seed: int = 0,
    classifier: Classifier | None = None,
    data: EvalData | None = None,
    retrain: bool = False,
    device: str = "cpu",
    download: bool = True,
    verbose: Verbose = _stderr,
) -> dict[str, Any]:
    """Score ``samples`` (float (n, 28, 28) in [0, 1]) against MNIST; returns a JSON-ready dict.

    Keys: ``samples`` and ``real`` (each: n, classifier_score, frechet_distance, mean_confidence,
    coverage), ``classifier`` (test accuracy, architecture, training data, cache path),
    ``reference`` (the Fréchet reference set), ``notes``. ``real`` is None when no held-out real
    images are available. ``n_real`` real images (default: as many as samples, at most all held-out
    ones) are drawn with ``seed``, which also seeds the classifier's training if that has to
    happen. Pass ``classifier`` (from :func:`load_classifier`) and ``data`` (from
    :func:`load_data`) to score several sample sets without reloading either.
    """
    samples = check_samples(samples)
    if backend.check_device(device) == "gpu":
        backend.require_gpu()  # before minutes of data loading, not after
    if data is None:
        data = load_data(data_dir, download=download, verbose=verbose)
    if classifier is None:
        classifier = load_classifier(
            data_dir, retrain=retrain, data=data, device=device, download=download, verbose=verbose, seed=seed
        )
    notes = list(data.notes)
    trained_mode = classifier.meta["training"]["mode"]
    if trained_mode == data.mode:
        test, holdout = data.test, data.holdout
    elif trained_mode == MODE_TRAIN:
        # Trained on the training set but scored where only the embedded test set exists: all of that
        # set is unseen, so all of it is the test set, and nothing is left for the reference line.
        parts = [part for part in (data.train, data.holdout, data.test) if part is not None]
        test = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        holdout = None
        notes = [f"only the MNIST test set is available ({data.source}): no held-out real images for a reference line"]
    else:
        raise ValueError(
            "the classifier was trained on part of the MNIST test set (offline fallback) and cannot be scored on "
            "the full test set; retrain it (--retrain, or load_classifier(retrain=True))"
        )
    test_features, test_probs = classifier.features_and_probs(test[0])
    reference = feature_statistics(test_features)
    accuracy = float(np.mean(test_probs.argmax(axis=1) == test[1]))
    result: dict[str, Any] = {
        "samples": _score_set(classifier, samples, reference),
        "real": None,
        "classifier": {
            "test_accuracy": accuracy,
            "n_test": int(len(test[0])),
            "test_accuracy_at_training": float(classifier.meta["test_accuracy"]),
            "architecture": "-".join(map(str, [784, *classifier.meta["architecture"]["hidden"], NUM_CLASSES]))
            + f" MLP, ReLU, dropout {classifier.meta['architecture']['dropout']}",
            "features": classifier.meta["architecture"]["features"],
            "training": classifier.meta["training"],
            "path": None if classifier.path is None else str(classifier.path),
            "trained_now": bool(classifier.trained),
        },
        "reference": {"n": int(len(test[0])), "what": "MNIST test images", "data_source": data.source},
        "notes": notes,
    }
    if holdout is not None:
        n_available = len(holdout[0])
        n = min(len(samples) if n_real is None else int(n_real), n_available)
        if n_real is not None and n_real > n_available:
            notes.append(f"--n-real {n_real} exceeds the {n_available} held-out real images; using {n_available}")
        if n < 2:
            raise ValueError(f"n_real must be at least 2, received {n}")
        pick = np.sort(np.random.default_rng(seed).choice(n_available, size=n, replace=False))
        result["real"] = _score_set(classifier, holdout[0][pick], reference)
        result["real"]["what"] = "held-out real MNIST images (unseen by the classifier, not in the test set)"
    return result


# ---------------------------------------------------------------------------------------------- the CLI


def format_report(result: dict[str, Any], name: str = "samples") -> str:
    """The readable table :func:`main` prints."""
    clf = result["classifier"]
    lines = [
        f"classifier: {clf['architecture']}, test accuracy {100 * clf['test_accuracy']:.2f}% "
        f"on {clf['n_test']} MNIST test images",
        f"  trained on {clf['training']['n_train']} images ({clf['training']['data_source']}); cache: {clf['path']}",
        f"Fréchet distance against {result['reference']['n']} {result['reference']['what']}, "
        f"features: {clf['features']}",
        "",
    ]
    header = ("", "n", "class. score", "Fréchet dist.", "confidence", "covered", "norm. entropy", "rarest class")
    rows = [header]
    for label, entry in ((name, result["samples"]), ("real (held-out)", result["real"])):
        if entry is None:
            continue
        cov = entry["coverage"]
        rows.append(
            (
                label,
                str(entry["n"]),
                f"{entry['classifier_score']:.3f}",
                f"{entry['frechet_distance']:.3f}",
                f"{entry['mean_confidence']:.3f}",
                f"{cov['classes_covered']}/{len(cov['histogram'])}",
                f"{cov['normalized_entropy']:.4f}",
                f"{cov['rarest_class']}: {100 * cov['rarest_fraction']:.1f}%",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
        )
    lines.append("")
    lines.append("predicted-label histogram (% of images):")
    lines.append(" " * (widths[0] + 2) + " ".join(f"{k:>5}" for k in range(NUM_CLASSES)))
    for label, entry in ((name, result["samples"]), ("real (held-out)", result["real"])):
        if entry is not None:
            fractions = entry["coverage"]["fractions"]
            lines.append(label.ljust(widths[0] + 2) + " ".join(f"{100 * f:5.1f}" for f in fractions))
    lines.append(
        f"covered: classes predicted for at least {100 * COVERAGE_THRESHOLD:.0f}% of the images; "
        "normalized entropy: H(histogram) / log 10"
    )
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns an exit code of :mod:`tinygan.cli` (0 done, 1 bad input, 2 no GPU, 130 Ctrl-C)."""
    parser = OneLineArgumentParser(
        prog="python -m tinygan.metrics",
        description="Score generated MNIST digits with a tinygan-trained classifier.",
        epilog="Exit codes: 0 done, 1 bad samples, data, cache or option, 2 no GPU for --device gpu, 130 interrupted.",
    )
    parser.add_argument("samples", help=".npy file of float32 images (n, 28, 28) in [0, 1], n >= 2")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to this JSON file")
    parser.add_argument(
        "--data-dir",
        help="folder holding the MNIST files, used as given (an error if they are not there); "
        "without it: the cache, else download, else the embedded test set",
    )
    parser.add_argument("--retrain", action="store_true", help="train the classifier again and replace the cache")
    parser.add_argument(
        "--n-real",
        type=int,
        help="held-out real images for the reference line, at least 2 (default: as many as samples)",
    )
    parser.add_argument("--device", choices=backend.DEVICES, default="cpu", help="where the classifier runs")
    parser.add_argument("--seed", type=int, default=0, help="seed for the real subset and any training (default 0)")
    args = parser.parse_args(argv)
    if args.n_real is not None and args.n_real < 2:
        parser.error(f"--n-real must be at least 2, received {args.n_real}")
    if args.seed < 0:
        parser.error(f"--seed must be at least 0, received {args.seed}")
    for option, value in (("--json", args.json), ("--data-dir", args.data_dir)):
        if value is not None and not value.strip():  # '' would mean "no file" or "this folder", silently
            parser.error(f"{option}: expected a {'file' if option == '--json' else 'folder'} name, received {value!r}")
    if args.json:
        json_path = Path(args.json)
        problem = output_problem("--json", args.json, ".json", required_suffix=False)
        if problem:
            parser.error(problem)
        if json_path.exists() and json_path.resolve() == Path(args.samples).resolve():
            parser.error(f"--json {args.json} is the samples file itself; expected another file name")
    if args.device == "gpu" and (reason := backend.gpu_unavailable_reason()):
        print(f"error: --device gpu needs a CUDA GPU: {reason}. Run with --device cpu instead.", file=sys.stderr)
        return EXIT_NO_GPU
    try:
        samples = load_samples(args.samples)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataIntegrityWarning)
            result = evaluate(
                samples, args.data_dir, n_real=args.n_real, seed=args.seed, retrain=args.retrain, device=args.device
            )
        for warning in caught:  # one line each, not the warnings module's two with a source line
            print(f"warning: {warning.message}", file=sys.stderr)
    except backend.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_GPU
    except (SamplesError, CheckpointError, DownloadError, ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted (the classifier cache is written whole or not at all)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_report(result, Path(args.samples).name))
    if args.json:
        try:
            write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
        except OSError as exc:
            print(f"error: --json {args.json}: cannot write it: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
        print(f"wrote {args.json}")
    return 0


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (a DownloadError lists one mirror per line)."""
    if isinstance(exc, DownloadError):
        return f"{exc.args[0].splitlines()[0]} {exc.summary()}"
    return " ".join(str(exc).split("\n"))


if __name__ == "__main__":
    sys.exit(main())
