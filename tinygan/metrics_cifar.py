"""Score generated CIFAR-10 images with a classifier trained by tinygan itself: the CIFAR-10 twin of
:mod:`tinygan.metrics` (whose figures, Fréchet distance and split rule it imports).

    python -m tinygan.metrics_cifar samples.npy [--class cat] [--json scores.json] [--data-dir DIR]
                                    [--retrain] [--epochs N] [--device gpu]

``samples.npy`` holds float32 images in [0, 1] of shape (n, 32, 32, 3), as written by
``python -m tinygan.sample RUN/checkpoint.npz --n 10000 --out samples.npy``.

The classifier
--------------
A small convolutional network built from tinygan's own layers (:func:`architecture`): Conv 3x3 64, then
Conv 4x4/2 128, Conv 3x3 128, Conv 4x4/2 256, Conv 4x4/2 256 (BatchNorm, ReLU), Dropout 0.4, Dense
4096-128, ReLU, Dense 128-10, on pixels scaled to [-1, 1]. Trained with tinygan's Adam and softmax
cross-entropy through :func:`tinygan.metrics.fit_classifier` (the loop the MNIST classifier uses: cosine
learning rate), 60 epochs, with random horizontal flips, translations of up to 4 pixels and a 16x16
cutout (DiffAugment's kernels), because the data are few: it trains on the CIFAR-10 training batches it
is given, less a fixed sixth held out (:func:`tinygan.metrics.split_order`), and is cached in
``cache_dir("metrics") / "cifar10_classifier.npz"`` with its test accuracy (``meta["test_accuracy"]``,
on the whole test batch). A cached classifier trained on other data (another number of images) or with
another architecture is retrained. Training it takes well under a minute on a GPU (``--device gpu``) and
more than an hour on the CPU.

The first version (Conv 3x3 32, then Conv 4x4/2 64, 128, 128; 20 epochs, flips and translations only)
reached 60.4% test accuracy on the partial data (/work/shared/data/cifar10-partial: 3171 training
images, 761 test images). Held-out real images scored with it: Fréchet distance 3.49 against the whole
test batch (n = 634) and 14.7 (frog) to 23.2 (automobile) against a class's test images (n = 54 to 80
each side): the per-class distance is dominated by the small-n bias, so compare sample sets of the
same size with each other, not with that line.

The figures (as :mod:`tinygan.metrics` defines them)
---------------------------------------------------
* **Fréchet distance** between Gaussians fitted to the 128-d penultimate features of the samples and
  of the test images; with ``class_name`` the test images of that class only (about 77 in the
  partial test batch, fewer than feature dimensions: the estimate is biased upward and noisy, so
  compare runs at the same n, against the real reference line).
* **recognized** (with ``class_name``): the fraction of samples the classifier assigns to that class.
* **classifier score**, **confidence**, **class coverage** of the predicted labels.
* **real reference**: the same figures for held-out real training images (the same class with
  ``class_name``), never seen by the classifier.

Training happens only in :func:`load_classifier` / :func:`train_classifier` (the CLI calls them when
no cached classifier fits), never at import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.augment import DiffAugment
from tinygan.checkpoint import CheckpointError
from tinygan.cli import EXIT_ERROR, EXIT_NO_GPU
from tinygan.data.cifar10 import CLASS_NAMES, class_indices, load_cifar10
from tinygan.data.download import DownloadError, cache_dir
from tinygan.kernels.reference.softmax import softmax
from tinygan.layers import BatchNorm2d, Conv2d, Dense, Dropout, Flatten, ReLU, Sequential
from tinygan.metrics import (
    Classifier,
    EvalData,
    SamplesError,
    Verbose,
    cache_classifier,
    check_values,
    class_coverage,
    classifier_record,
    classifier_score,
    feature_statistics,
    fit_classifier,
    frechet_distance,
    load_cached_classifier,
    split_order,
)

__all__ = [
    "CLASSIFIER_KIND",
    "CifarClassifier",
    "architecture",
    "build_classifier",
    "check_samples",
    "default_cache_path",
    "evaluate",
    "load_classifier",
    "load_data",
    "load_samples",
    "main",
    "train_classifier",
]

CLASSIFIER_KIND = "tinygan-cifar10-classifier"
NUM_CLASSES = 10
# The network (see the module docstring): wider and one layer deeper than the first version (Conv 3x3 32, then
# Conv 4x4/2 64, 128, 128: 60.4% test accuracy on the partial data after 20 epochs with flips and translations).
CONVS = ((3, 64, 3, 1, 1), (64, 128, 4, 2, 1), (128, 128, 3, 1, 1), (128, 256, 4, 2, 1), (256, 256, 4, 2, 1))
EPOCHS = 60
BATCH_SIZE = 64
LR = 2e-3
DROPOUT = 0.4
FEATURES = 128
AUGMENTATION = "translation,cutout"  # DiffAugment's kernels, with random horizontal flips on the host
VALUE_TOLERANCE = 1e-3
MODE = "cifar10-train"
SHAPE = (32, 32, 3)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- data


def load_data(data_dir: str | os.PathLike | None = None, download: bool = True, verbose: Verbose = _stderr) -> EvalData:
    """CIFAR-10 through :func:`tinygan.data.load_cifar10`: the training batches less a fixed sixth
    (held out for the real reference line), and the test batch; uint8 (n, 32, 32, 3) images."""
    quiet = verbose or (lambda _: None)
    train = load_cifar10(data_dir, "train", download=download, verbose=quiet)
    test = load_cifar10(data_dir, "test", download=download, verbose=quiet)
    images, labels = train
    held = np.zeros(len(images), dtype=bool)
    held[split_order(len(images), salt="tinygan-metrics-cifar10")[: len(images) // 6]] = True
    source = f"train: {train.source}; test: {test.source}"
    return EvalData(MODE, (images[~held], labels[~held]), (images[held], labels[held]), tuple(test), source)


def _to_input(images: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """uint8 pixels or floats in [0, 1], (n, 32, 32, 3) -> the network's NCHW input in [-1, 1]."""
    x = images.transpose(0, 3, 1, 2).astype(dtype)
    x = x / x.dtype.type(127.5) if images.dtype == np.uint8 else x * x.dtype.type(2)
    return np.ascontiguousarray(x - x.dtype.type(1))


# ---------------------------------------------------------------------------------------------- the classifier


def architecture(features: int = FEATURES, dropout: float = DROPOUT) -> dict[str, Any]:
    """The record of the classifier's architecture, stored in its checkpoint. ``convs``: one
    ``[in, out, kernel, stride, padding]`` per convolution."""
    return {
        "type": "cifar-convnet",
        "convs": [list(conv) for conv in CONVS],
        "features": int(features),
        "classes": NUM_CLASSES,
        "dropout": float(dropout),
        "description": f"penultimate layer: the {int(features)} ReLU activations that feed the last Dense",
        "input_scaling": "uint8 pixels / 127.5 - 1 (samples in [0, 1]: 2 x - 1), NCHW",
    }


def build_classifier(record: dict[str, Any], seed: int = 0) -> Sequential:
    """The Sequential an :func:`architecture` record describes."""
    if record.get("type") != "cifar-convnet":
        raise ValueError(f"unknown classifier architecture {record.get('type')!r}: expected 'cifar-convnet'")
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    size = 32
    for i, (cin, cout, kernel, stride, padding) in enumerate(record["convs"]):
        layers.append(Conv2d(cin, cout, kernel, stride=stride, padding=padding, rng=rng))
        if i > 0:  # the first layer sees the raw pixels; normalize the rest
            layers.append(BatchNorm2d(cout))
        layers.append(ReLU())
        size = (size + 2 * padding - kernel) // stride + 1
    width = record["convs"][-1][1] * size * size
    layers += [Flatten(), Dropout(float(record["dropout"]), rng=rng), Dense(width, int(record["features"]), rng=rng)]
    layers += [ReLU(), Dense(int(record["features"]), int(record["classes"]), rng=rng)]
    return Sequential(*layers, name="cifar10_classifier")


class CifarClassifier(Classifier):
    """:class:`tinygan.metrics.Classifier` for (n, 32, 32, 3) images: features are the input of the
    last Dense layer."""

    def features_and_probs(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features (n, 128) and p(y|x) (n, 10), float64 on the host."""
        body, head = self.model.layers[:-1], self.model.layers[-1]
        features, probs = [], []
        for start in range(0, len(images), self.batch_size):
            x = _to_input(images[start : start + self.batch_size], self.model.dtype)
            h = backend.to_device(x, self.device)
            for layer in body:
                h = layer.forward(h, training=False)
            logits = head.forward(h, training=False)
            features.append(backend.to_numpy(h).astype(np.float64))
            probs.append(softmax(backend.to_numpy(logits).astype(np.float64)))
        if not features:
            return np.zeros((0, head.in_features)), np.zeros((0, NUM_CLASSES))
        return np.concatenate(features), np.concatenate(probs)


def default_cache_path() -> Path:
    """``cache_dir("metrics") / "cifar10_classifier.npz"`` ($TINYGAN_DATA, else ~/.cache/tinygan)."""
    return cache_dir("metrics") / "cifar10_classifier.npz"


def _augment(x: np.ndarray, augment: DiffAugment, rng: np.random.Generator, device: str) -> Any:
    """Random horizontal flips (on the host), then ``augment`` (DiffAugment's kernels, on ``device``)."""
    flip = rng.random(len(x)) < 0.5
    x = np.where(flip[:, None, None, None], x[..., ::-1], x)
    return augment.forward(backend.to_device(np.ascontiguousarray(x), device), generator=rng)


def train_classifier(
    data: EvalData,
    *,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    seed: int = 0,
    device: str = "cpu",
    record: dict[str, Any] | None = None,
    augmentation: str = AUGMENTATION,
    verbose: Verbose = _stderr,
) -> CifarClassifier:
    """Train on ``data.train`` (:func:`tinygan.metrics.fit_classifier`: Adam, cosine learning rate from
    ``lr`` to ``lr / 20``, softmax cross-entropy; flips and ``augmentation``); not cached here.
    ``record``: another :func:`architecture` record (tests train a small one)."""
    if data.train is None or len(data.train[0]) == 0:
        raise ValueError("no training images available for the classifier")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, received {epochs}")
    if batch_size < 2:
        raise ValueError(f"batch size must be at least 2 (BatchNorm), received {batch_size}")
    record = architecture() if record is None else record
    seeds = np.random.SeedSequence(seed).spawn(2)
    model = build_classifier(record, seed=int(seeds[0].generate_state(1)[0])).to(device)
    rng = np.random.default_rng(seeds[1])
    augment = DiffAugment(augmentation, option="classifier augmentation")
    images, labels = data.train
    x = _to_input(images)
    classifier = CifarClassifier(model, {}, None, True, batch_size=500)
    say = verbose or (lambda _: None)
    say(f"training the CIFAR-10 classifier on {len(x)} images, {epochs} epochs, on the {device}")
    start = time.perf_counter()
    holdout = data.holdout if data.holdout is not None and len(data.holdout[0]) else None
    fit_classifier(
        model,
        x,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        rng=rng,
        device=device,
        batch_hook=lambda xb: _augment(xb, augment, rng, device),
        whole_batches=True,
        holdout_accuracy=None if holdout is None else (lambda: classifier.accuracy(*holdout)),
        say=say,
    )
    test_images, test_labels = data.test
    predicted = classifier.predict(test_images)
    test_accuracy = float(np.mean(predicted == test_labels))
    per_class = {CLASS_NAMES[k]: float(np.mean(predicted[test_labels == k] == k)) for k in np.unique(test_labels)}
    classifier.meta = classifier_record(
        CLASSIFIER_KIND,
        record,
        data,
        test_accuracy,
        {
            "n_train": int(len(x)),
            "split_rule": "training batches in split_order(salt 'tinygan-metrics-cifar10'): the first sixth held out",
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "optimizer": f"Adam lr {lr} cosine to {lr / 20}, betas (0.9, 0.999)",
            "augmentation": f"random horizontal flips, then DiffAugment {augment.policy} "
            "(translations of up to 1/8 of the size, zero fill; a zeroed square of half the size)",
            "loss": "softmax cross-entropy",
            "seed": int(seed),
            "device": device,
            "seconds": round(time.perf_counter() - start, 1),
        },
    )
    classifier.meta["test_accuracy_per_class"] = per_class
    shown = ", ".join(f"{name} {100 * value:.0f}%" for name, value in per_class.items())
    say(f"classifier test accuracy {100 * test_accuracy:.2f}% on {len(test_images)} images ({shown})")
    return classifier


def _load_cached(path: Path, device: str) -> CifarClassifier:
    classifier = load_cached_classifier(path, CLASSIFIER_KIND, build_classifier, CifarClassifier, device)
    classifier.batch_size = 500
    return classifier


def load_classifier(
    data: EvalData,
    *,
    retrain: bool = False,
    path: str | os.PathLike | None = None,
    device: str = "cpu",
    verbose: Verbose = _stderr,
    **train_options: Any,
) -> CifarClassifier:
    """The cached classifier, trained (and cached) first when the cache is missing, unreadable, was
    trained on another number of images than ``data.train`` holds, or ``retrain`` is set.
    ``train_options`` go to :func:`train_classifier`."""
    backend.check_device(device)
    path = Path(path) if path is not None else default_cache_path()
    say = verbose or (lambda _: None)
    if not retrain and path.exists():
        try:
            classifier = _load_cached(path, device)
        except CheckpointError as exc:
            say(f"cached classifier unusable, retraining it: {exc}")
        else:
            n_cached, n_now = classifier.meta["training"]["n_train"], len(data.train[0])
            wanted = train_options.get("record") or architecture()
            if classifier.meta["architecture"] != wanted:
                say(f"{path}: cached classifier has another architecture than this version's; retraining")
            elif n_cached != n_now:
                say(f"{path}: cached classifier was trained on {n_cached} images, {n_now} are available; retraining")
            else:
                return classifier
    classifier = train_classifier(data, device=device, verbose=verbose, **train_options)
    cache_classifier(classifier, path, say)
    return classifier


# ---------------------------------------------------------------------------------------------- samples


def check_samples(samples: Any, name: str = "samples") -> np.ndarray:
    """Validate ``samples`` as float (n, 32, 32, 3) images in [0, 1], n >= 2; float32 out. Values up
    to ``VALUE_TOLERANCE`` outside [0, 1] are clipped; anything else raises a one-line SamplesError."""
    if not isinstance(samples, np.ndarray):
        raise SamplesError(f"{name}: expected a numpy array of images, received {type(samples).__name__}")
    if samples.dtype.kind != "f" or samples.dtype.itemsize < 4:
        hint = " (for 0-255 pixels, divide by 255 first)" if samples.dtype.kind in "iu" else ""
        raise SamplesError(f"{name}: expected float32 images in [0, 1], received dtype {samples.dtype}{hint}")
    if samples.ndim != 4 or samples.shape[1:] != SHAPE:
        hint = " (channels first? transpose to (n, 32, 32, 3))" if samples.shape[1:] == (3, 32, 32) else ""
        raise SamplesError(f"{name}: expected shape (n, 32, 32, 3), received {samples.shape}{hint}")
    return check_values(samples, name, VALUE_TOLERANCE)


def load_samples(path: str | os.PathLike) -> np.ndarray:
    """Read and validate a ``.npy`` file of samples (see :func:`check_samples`); SamplesError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SamplesError(f"{path}: no such file (expected a .npy of float32 images (n, 32, 32, 3) in [0, 1])")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SamplesError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, np.ndarray):
        raise SamplesError(f"{path}: expected a .npy array, received an .npz archive")
    return check_samples(loaded, str(path))


# ---------------------------------------------------------------------------------------------- evaluate


def _score_set(
    classifier: CifarClassifier, images: np.ndarray, reference: tuple[np.ndarray, np.ndarray], label: int | None
) -> dict[str, Any]:
    features, probs = classifier.features_and_probs(images)
    predicted = probs.argmax(axis=1)
    entry = {
        "n": int(len(images)),
        "frechet_distance": frechet_distance(*feature_statistics(features), *reference),
        "classifier_score": classifier_score(probs),
        "mean_confidence": float(probs.max(axis=1).mean()),
        "coverage": class_coverage(predicted, NUM_CLASSES),
    }
    if label is not None:
        entry["recognized"] = float(np.mean(predicted == label))
    return entry


def evaluate(
    samples: np.ndarray,
    data: EvalData,
    classifier: CifarClassifier,
    *,
    class_name: str | int | None = None,
    n_real: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``samples`` (float (n, 32, 32, 3) in [0, 1]) against CIFAR-10's test batch, or against its
    images of ``class_name`` (then also the share recognized as that class); a JSON-ready dict with
    ``samples``, ``real`` (held-out real images, as many as samples unless ``n_real``), ``classifier``,
    ``reference`` and ``notes``."""
    samples = check_samples(samples)
    label = None if class_name is None else class_indices(class_name)[0]
    test_images, test_labels = data.test
    _, test_probs = classifier.features_and_probs(test_images)
    predicted = test_probs.argmax(axis=1)
    per_class = {CLASS_NAMES[k]: float(np.mean(predicted[test_labels == k] == k)) for k in np.unique(test_labels)}
    ref_images = test_images if label is None else test_images[test_labels == label]
    if len(ref_images) < 2:
        raise ValueError(f"the test batch holds {len(ref_images)} images of {CLASS_NAMES[label]}: too few to compare")
    reference = feature_statistics(classifier.features_and_probs(ref_images)[0])
    what = "CIFAR-10 test images" + ("" if label is None else f" of class {CLASS_NAMES[label]}")
    result: dict[str, Any] = {
        "samples": _score_set(classifier, samples, reference, label),
        "real": None,
        "classifier": {
            "test_accuracy": float(np.mean(predicted == test_labels)),
            "test_accuracy_per_class": per_class,
            "n_test": int(len(test_images)),
            "architecture": classifier.meta["architecture"],
            "training": classifier.meta["training"],
            "path": None if classifier.path is None else str(classifier.path),
            "trained_now": bool(classifier.trained),
        },
        "reference": {"n": int(len(ref_images)), "what": what, "data_source": data.source},
        "notes": list(data.notes),
    }
    if data.holdout is not None:
        held_images, held_labels = data.holdout
        if label is not None:
            held_images = held_images[held_labels == label]
        n = min(len(samples) if n_real is None else int(n_real), len(held_images))
        if n >= 2:
            pick = np.sort(np.random.default_rng(seed).choice(len(held_images), size=n, replace=False))
            result["real"] = _score_set(classifier, held_images[pick], reference, label)
            result["real"]["what"] = "held-out real training images (unseen by the classifier)"
    return result


def format_report(result: dict[str, Any], name: str = "samples") -> str:
    """The readable table :func:`main` prints."""
    clf = result["classifier"]
    per_class = ", ".join(f"{k} {100 * v:.0f}%" for k, v in clf["test_accuracy_per_class"].items())
    lines = [
        f"classifier: test accuracy {100 * clf['test_accuracy']:.2f}% on {clf['n_test']} CIFAR-10 test images "
        f"({per_class})",
        f"  trained on {clf['training']['n_train']} images ({clf['training']['data_source']}); cache: {clf['path']}",
        f"Fréchet distance against {result['reference']['n']} {result['reference']['what']}, "
        f"features: {clf['architecture']['description']}",
    ]
    for label, entry in ((name, result["samples"]), ("real (held-out)", result["real"])):
        if entry is None:
            continue
        line = (
            f"  {label}: n {entry['n']}, Fréchet distance {entry['frechet_distance']:.3f}, classifier score "
            f"{entry['classifier_score']:.3f}, confidence {entry['mean_confidence']:.3f}"
        )
        if "recognized" in entry:
            line += f", recognized as the class {100 * entry['recognized']:.1f}%"
        lines.append(line)
        hist = " ".join(f"{CLASS_NAMES[k][:4]} {100 * f:.0f}%" for k, f in enumerate(entry["coverage"]["fractions"]))
        lines.append(f"    predicted classes: {hist}")
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygan.metrics_cifar",
        description="Score generated CIFAR-10 images with a tinygan-trained classifier.",
    )
    parser.add_argument("samples", help=".npy file of float32 images (n, 32, 32, 3) in [0, 1]")
    parser.add_argument("--class", dest="class_name", choices=CLASS_NAMES, help="compare with this class only")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to this JSON file")
    parser.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (else the cache, else download)")
    parser.add_argument("--retrain", action="store_true", help="train the classifier again and replace the cache")
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help=f"classifier epochs when it trains (default {EPOCHS})"
    )
    parser.add_argument(
        "--n-real", type=int, help="held-out real images for the reference line (default: as many as samples)"
    )
    parser.add_argument("--device", choices=backend.DEVICES, default="cpu", help="where the classifier runs")
    parser.add_argument("--seed", type=int, default=0, help="seed for the real subset and any training (default 0)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.n_real is not None and args.n_real < 2:
        parser.error("--n-real must be at least 2")
    try:
        if args.device == "gpu":
            backend.require_gpu()
        samples = load_samples(args.samples)
        data = load_data(args.data_dir)
        classifier = load_classifier(data, retrain=args.retrain, device=args.device, epochs=args.epochs, seed=args.seed)
        result = evaluate(samples, data, classifier, class_name=args.class_name, n_real=args.n_real, seed=args.seed)
    except backend.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_GPU
    except (SamplesError, CheckpointError, DownloadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(format_report(result, Path(args.samples).name))
    if args.json:
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            print(f"error: {args.json}: cannot write the JSON report: {exc}", file=sys.stderr)
            return EXIT_ERROR
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
