"""Sample quality while training: the project's metric on a fixed set of samples, every N epochs.

``--score-every N`` makes the run score ``--score-samples`` images of its sampling generator (the
EMA generator where the run keeps one) every N epochs and at its last epoch, with

- MNIST: :mod:`tinygan.metrics` (the classifier score, the Fréchet distance to the MNIST test set in
  the classifier's features, class coverage);
- CIFAR-10: :mod:`tinygan.metrics_cifar`, against the test images of the run's class (per class for
  ``--class all``), with the share of samples the classifier recognises as that class.

The figures go into ``metrics.csv`` (columns ``fid``, ``classifier_score``, ``classes_covered``,
``rarest_class_fraction``, and ``recognized`` per class on CIFAR-10), ``quality.png`` plots them, and
the run keeps the checkpoint of its lowest Fréchet distance as ``best.npz``.

The classifiers are tinygan's own, cached after their first training (their modules say where).
Nothing is downloaded here: MNIST's classifier trains on first use from the data on disk (the run's
``--data-dir``, the cache, else the embedded test set; about a minute on the CPU); CIFAR-10's trains
on first use only on the GPU (on the CPU it takes more than an hour, so a run there is refused with
the one command that trains and caches it). The noise is fixed per run (from its seed), so the
figures of two epochs differ only by the generator.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tinygan.checkpoint import CheckpointError, load_checkpoint
from tinygan.data.download import DataIntegrityWarning

__all__ = ["QualityUnavailable", "Scorer", "make_scorer", "plot_quality", "SCORE_COLUMNS"]

SCORE_COLUMNS = ("fid", "classifier_score", "classes_covered", "rarest_class_fraction", "recognized")


class QualityUnavailable(ValueError):
    """The metric's classifier is not available and cannot be trained here quickly (says how to make it)."""


class Scorer:
    """Scores images in [0, 1] as :mod:`tinygan.viz.to_images` returns them ((n, 28, 28) for MNIST,
    (n, 32, 32, 3) for CIFAR-10): ``scorer(images) -> {"fid": ..., ...}`` (host floats).

    ``evaluate(images)`` is the metric module's figure dict; ``class_name`` (CIFAR-10) scores against
    that class and adds ``recognized``."""

    def __init__(self, evaluate: Any, name: str) -> None:
        self._evaluate, self.name = evaluate, name

    def __call__(self, images: np.ndarray) -> dict[str, float]:
        entry = self._evaluate(images)["samples"]
        coverage = entry["coverage"]
        row = {
            "fid": float(entry["frechet_distance"]),
            "classifier_score": float(entry["classifier_score"]),
            "classes_covered": float(coverage["classes_covered"]),
            "rarest_class_fraction": float(coverage["rarest_fraction"]),
        }
        if "recognized" in entry:
            row["recognized"] = float(entry["recognized"])
        return row


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mnist_scorer(data_dir: str | None, device: str, classifier: Any = None, verbose: Any = _say) -> Scorer:
    """The MNIST scorer: :func:`tinygan.metrics.evaluate` against the test set, the data and the
    classifier loaded once (the classifier trained and cached first where none is; never downloaded)."""
    from tinygan import metrics

    try:
        with warnings.catch_warnings():  # the run has said what it thinks of this data when it loaded it
            warnings.simplefilter("ignore", DataIntegrityWarning)
            data = metrics.load_data(data_dir, download=False, verbose=None)
    except (OSError, ValueError) as exc:
        raise QualityUnavailable(f"--score-every: cannot load the MNIST data the metric needs: {exc}") from None
    if classifier is None:
        path = metrics.default_cache_path()
        if not path.exists():
            verbose(f"--score-every: no cached MNIST classifier in {path}: training it once now")
        classifier = metrics.load_classifier(data_dir, data=data, device=device, download=False, verbose=verbose)

    def evaluate(images: np.ndarray) -> dict[str, Any]:
        return metrics.evaluate(images, classifier=classifier, data=data, device=device, download=False, verbose=None)

    return Scorer(evaluate, "tinygan.metrics")


def _cached_cifar(path: Path, n_train: int) -> bool:
    """Whether ``path`` holds a CIFAR-10 classifier trained on ``n_train`` images (what load_classifier reuses)."""
    if not path.is_file():
        return False
    try:
        _, meta = load_checkpoint(path)
    except (CheckpointError, OSError):
        return False
    training = meta.get("training") if isinstance(meta, dict) else None
    return isinstance(training, dict) and training.get("n_train") == n_train


def cifar_scorer(
    data_dir: str | None, class_name: str | None, device: str, classifier: Any = None, verbose: Any = _say
) -> Scorer:
    """The CIFAR-10 scorer: :func:`tinygan.metrics_cifar.evaluate` against the test images of
    ``class_name`` (all classes for None). Trains the classifier only on the GPU; on the CPU an
    uncached one is refused (QualityUnavailable, saying how to make it)."""
    from tinygan import metrics_cifar

    try:
        with warnings.catch_warnings():  # the run has said what it thinks of this data when it loaded it
            warnings.simplefilter("ignore", DataIntegrityWarning)
            data = metrics_cifar.load_data(data_dir, download=False, verbose=None)
    except (OSError, ValueError) as exc:
        raise QualityUnavailable(f"--score-every: cannot load the CIFAR-10 data the metric needs: {exc}") from None
    if classifier is None:
        path = metrics_cifar.default_cache_path()
        if device != "gpu" and not _cached_cifar(path, len(data.train[0])):
            where = "" if data_dir is None else f"{data_dir!r}"
            raise QualityUnavailable(
                f"--score-every: no CIFAR-10 classifier for this data is cached in {path}, and training one takes "
                'more than an hour on the CPU; train and cache it once with: python -c "from tinygan import '
                f'metrics_cifar as m; m.load_classifier(m.load_data({where}))" (or run with --device gpu)'
            )
        classifier = metrics_cifar.load_classifier(data, device=device, verbose=verbose)

    def evaluate(images: np.ndarray) -> dict[str, Any]:
        return metrics_cifar.evaluate(images, data, classifier, class_name=class_name)

    return Scorer(evaluate, "tinygan.metrics_cifar")


def make_scorer(model: str, data_options: dict[str, Any], device: str) -> Scorer:
    """The scorer for a run of ``model`` on the data ``data_options`` describe (the run's record)."""
    data_dir = data_options.get("data_dir")
    if model == "mnist_dense":
        return mnist_scorer(data_dir, device)
    if model == "dcgan":
        return cifar_scorer(data_dir, data_options.get("class"), device)
    raise QualityUnavailable(f"--score-every: no metric for the model {model!r}")


def plot_quality(history: list[dict[str, float]], path: str | Path) -> Path | None:
    """The scored figures over the epochs (the Fréchet distance, log scale, and the classifier score or
    the recognised share); None when no epoch was scored yet."""
    rows = [row for row in history if "fid" in row and math.isfinite(row["fid"])]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [row["fid"] for row in rows], marker="o")
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("Fréchet distance (lower is better)")
    key = "recognized" if "recognized" in rows[0] else "classifier_score"
    right.plot(epochs, [row[key] for row in rows], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("share recognised as the class" if key == "recognized" else "classifier score (max 10)")
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
