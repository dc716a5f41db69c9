"""A run's configuration: every setting that defines it, recorded in ``config.json`` and every checkpoint.

:meth:`GANConfig.from_dict` is also the schema of that record: a checkpoint's configuration is read
through it, and a field of the wrong type or out of range is refused with a ``ValueError`` naming it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tinygan.augment import parse_policy
from tinygan.models import BUILDERS, DOWNSAMPLES, LATENT_DIM, UPSAMPLES

DEVICES = ("cpu", "gpu")
G_LOSSES = ("nonsaturating", "minimax")
IMAGE_RANGES = ("01", "tanh")
# How the GPU multiplies float32 arrays (tinygan.backend.PRECISIONS), on the command line and in the API alike.
CONFIG_PRECISIONS = ("fp32", "tf32", "bf16")
RUN_PRECISIONS = CONFIG_PRECISIONS
# Settings a resumed run may change: they decide how long it runs and what it writes, not what it computes.
RESUME_SAFE = ("epochs", "sample_every", "checkpoint_every", "log_every", "cuda_graph", "score_every")


@dataclasses.dataclass
class GANConfig:
    """Everything that defines a run; saved as ``config.json`` and inside every checkpoint."""

    model: str = "mnist_dense"
    recipe: str = ""  # the named recipe the run started from (tinygan.recipes), for the record
    data_options: dict = dataclasses.field(default_factory=dict)  # how the examples reload the same data
    g_options: dict = dataclasses.field(default_factory=dict)
    d_options: dict = dataclasses.field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 125
    lr_d: float = 2e-4
    lr_g: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = "cpu"
    real_label: tuple[float, float] = (1.0, 1.0)  # targets for real images drawn from U(low, high)
    fake_label: tuple[float, float] = (0.0, 0.0)
    g_loss: str = "nonsaturating"
    d_steps: int = 1  # discriminator updates per generator update
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs, annealed linearly to 0
    # ... over this many epochs: the run's epochs when it started (0 until then), so that a resume with more
    # epochs continues the schedule it began instead of restarting the annealing.
    noise_epochs: int = 0
    sample_every: int = 1
    checkpoint_every: int = 0  # also keep checkpoints/epoch_NNNN.npz every N epochs (0: only the latest)
    auto_stop: bool = False
    auto_stop_threshold: float = 0.95  # D's accuracy on generated images that counts as dominating
    auto_stop_patience: int = 10  # consecutive dominated epochs before stopping
    log_every: int = 20  # steps between host synchronizations for the progress bar and NaN guard
    image_range: str = "01"  # "01" for a sigmoid generator, "tanh" for [-1, 1]
    cuda_graph: bool = True  # on the GPU: capture the training step as one CUDA graph and replay it
    precision: str = "fp32"  # float32 products on the GPU: "fp32", "tf32" or "bf16" (tensor cores); CPU: fp32
    ema_decay: float = 0.0  # generator EMA (tinygan.ema) with this decay, updated after every G step; 0: none
    augment: str = ""  # DiffAugment policy (tinygan.augment) on D's inputs, e.g. "translation,cutout"; "": none
    score_every: int = 0  # score samples with the project's metric every N epochs (tinygan.quality); 0: never
    score_samples: int = 2000  # ... how many samples each time

    def __post_init__(self) -> None:
        for name in ("real_label", "fake_label"):  # anything but a list or tuple is left for validate() to name
            if isinstance(getattr(self, name), (list, tuple)):
                setattr(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_dict(cls, data: Any) -> GANConfig:
        """A configuration from its record; ValueError naming the field on anything unknown, of the wrong
        type or out of range."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, received {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        config = cls(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()})
        config.validate()
        return config

    def validate(self) -> None:
        """ValueError naming the first field of the wrong type or out of range."""
        models = sorted({name for name, _ in BUILDERS})
        _choice("model", self.model, models)
        _check("recipe", self.recipe, isinstance(self.recipe, str), "a string")
        for name in ("data_options", "g_options", "d_options"):
            value = getattr(self, name)
            _check(name, value, isinstance(value, dict) and all(isinstance(k, str) for k in value), "an object")
        # The DCGAN's choice of layers: G's upsampling (tinygan.models.UPSAMPLES), D's downsampling (DOWNSAMPLES).
        for field, option, choices in (("g_options", "upsample", UPSAMPLES), ("d_options", "downsample", DOWNSAMPLES)):
            if option in getattr(self, field):
                name, value = f"{field}.{option}", getattr(self, field)[option]
                _check(name, value, self.model == "dcgan", f"no {option} (not a DCGAN)")
                _choice(name, value, choices)
        _integer("g_options.latent_dim", self.g_options.get("latent_dim", LATENT_DIM), 1)
        for name, low in (("epochs", 1), ("batch_size", 1), ("d_steps", 1), ("sample_every", 1), ("log_every", 1)):
            _integer(name, getattr(self, name), low)
        for name in ("seed", "checkpoint_every", "noise_epochs"):
            _integer(name, getattr(self, name), 0)
        _integer("auto_stop_patience", self.auto_stop_patience, 1)
        _integer("score_every", self.score_every, 0)
        _integer("score_samples", self.score_samples, 2)
        _number("ema_decay", self.ema_decay, 0.0, 1.0)
        _check("ema_decay", self.ema_decay, self.ema_decay < 1.0, "a number in [0, 1) (0: no EMA)")
        _check("augment", self.augment, isinstance(self.augment, str), "a string")
        try:
            parse_policy(self.augment, "augment")
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        for name in ("lr_d", "lr_g"):
            _number(name, getattr(self, name), 0.0, 1.0)
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            _number(name, value, 0.0, 1.0)
            _check(name, value, value < 1.0, "a number in [0, 1)")
        _number("instance_noise", self.instance_noise, 0.0, 10.0)
        _number("auto_stop_threshold", self.auto_stop_threshold, 0.0, 1.0)
        for name in ("real_label", "fake_label"):
            value = getattr(self, name)
            ok = isinstance(value, tuple) and len(value) == 2
            ok = ok and all(_is_number(v) and math.isfinite(v) for v in value) and 0.0 <= value[0] <= value[1] <= 1.0
            shown = list(value) if isinstance(value, tuple) else value
            _check(name, shown, ok, "[LOW, HIGH] with 0 <= LOW <= HIGH <= 1")
        _choice("device", self.device, DEVICES)
        _choice("g_loss", self.g_loss, G_LOSSES)
        _choice("image_range", self.image_range, IMAGE_RANGES)
        _choice("precision", self.precision, CONFIG_PRECISIONS)
        if self.device == "cpu" and self.precision != "fp32":
            raise ValueError(f"precision: {self.precision} exists on the GPU only; the CPU computes in fp32")
        for name in ("auto_stop", "cuda_graph"):
            _check(name, getattr(self, name), isinstance(getattr(self, name), bool), "true or false")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}: expected {expected}, received {value!r}")


def _integer(name: str, value: Any, low: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    _check(name, value, ok, f"an integer >= {low}")


def _number(name: str, value: Any, low: float, high: float) -> None:
    ok = _is_number(value) and math.isfinite(value) and low <= value <= high
    _check(name, value, ok, f"a number in [{low:g}, {high:g}]")


def _choice(name: str, value: Any, choices: Any) -> None:
    _check(name, value, value in choices, f"one of {list(choices)}")
