"""DiffAugment: differentiable augmentation for data-efficient GAN training (Zhao, Liu, Lin, Zhu &
Han, 2020, "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS).

D only ever sees augmented images, real and generated alike, and G's gradient flows back through
the same transform, so the augmentation regularizes D without leaking into G's samples. The
transforms and their backward passes are kernels (equations in tinygan.kernels.reference.augment);
this module parses a policy, draws the per-sample parameters and applies them like a layer::

    aug = DiffAugment("translation,cutout,color")
    y = aug.forward(x, generator=rng)     # draws parameters, keeps them for backward
    dx = aug.backward(dy)                 # same parameters
    p = aug.sample_params(real, rng)      # or draw once and apply to two batches
    real_a, fake_a = aug.forward(real, params=p), aug.forward(fake, params=p)

In a GAN step (what the paper prescribes; ``rng`` is the step's generator, a PhiloxGenerator on the
GPU, and images go in as (N, C, H, W), a flat MNIST batch reshaped to (N, 1, 28, 28) first)::

    # D step: one draw, the same transform for the real and the generated half of D's batch
    p = aug.sample_params(real, rng)
    d_in = concat(aug.forward(real, params=p), aug.forward(fake, params=p))   # then instance noise
    # (D.backward(..., input_grad=False): no augmentation backward in D's step)
    # G step: a fresh draw, and G's gradient through the transform
    fake_a = aug.forward(G.forward(z), generator=rng)
    d_fake = aug.backward(D.backward(dlogits, param_grads=False))
    G.backward(d_fake)

Policies (applied in the order given, as DiffAugment does): ``translation`` (integer shifts of up
to ``translation_ratio`` = 1/8 of the height and width, zero fill), ``cutout`` (a square of
``cutout_ratio`` = 1/2 of the image zeroed at a random position, partly outside allowed),
``color`` (brightness, then saturation, then contrast).

Randomness: each draw takes one (rows, N) block of float64 uniforms from ``generator``, a
``numpy.random.Generator`` for host batches or a :class:`tinygan.gpu_random.PhiloxGenerator` for
device batches (drawn on the device, no host round trip: a captured CUDA graph draws fresh
parameters on every replay), and the kernel ``augment_parameters`` maps them to the parameters
(:meth:`DiffAugment.plan` says how; one launch on the GPU). The same uniforms give the same
parameters on either device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygan.backend import array_module, device_of, is_gpu_array, kernels_for

__all__ = ["POLICIES", "AugmentParams", "DiffAugment", "parse_policy"]

# Policy name -> the transforms it stands for, in the order DiffAugment applies them.
POLICIES: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "translation": ("translation",),
    "cutout": ("cutout",),
}


def _policy_names(policy: str | Sequence[str]) -> list[str]:
    if isinstance(policy, str):
        return [] if policy.strip().lower() in ("", "none") else [p.strip() for p in policy.split(",")]
    return [str(p).strip() for p in policy]


def parse_policy(policy: str | Sequence[str], option: str = "--augment") -> tuple[str, ...]:
    """The transforms of a policy such as ``"translation,cutout,color"``, in order.

    An empty policy (``""``, ``"none"``) means no augmentation. Unknown or repeated names raise a
    one-line ValueError naming ``option`` and the allowed values.
    """
    transforms: list[str] = []
    seen: set[str] = set()
    for name in _policy_names(policy):
        if name not in POLICIES:
            raise ValueError(
                f"{option}: unknown augmentation {name!r} in {policy!r}; expected a comma-separated list of "
                f"{', '.join(POLICIES)} (or none)"
            )
        if name in seen:
            raise ValueError(f"{option}: {name!r} is listed twice in {policy!r}")
        seen.add(name)
        transforms.extend(POLICIES[name])
    return tuple(transforms)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """The per-sample parameters of one draw: arrays of shape (N,) on the batch's device, None for
    a transform the policy leaves out. Kernel arguments as they are (see
    tinygan.kernels.reference.augment)."""

    image_size: tuple[int, int]  # (H, W) the integer parameters were drawn for
    shift_h: Any = None  # translation, int32
    shift_w: Any = None
    cutout_top: Any = None  # cutout, int32 (may be negative: the square then pokes out)
    cutout_left: Any = None
    cutout_size: tuple[int, int] | None = None
    brightness: Any = None  # added, the batch's dtype
    saturation: Any = None  # factors, the batch's dtype
    contrast: Any = None

    def arrays(self) -> dict[str, Any]:
        """The parameter arrays present, by field name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("image_size", "cutout_size") and getattr(self, f.name) is not None
        }

    @property
    def batch_size(self) -> int:
        arrays = list(self.arrays().values())
        return int(arrays[0].shape[0]) if arrays else 0

    def repeat(self, times: int) -> AugmentParams:
        """The parameters for ``times`` batches laid end to end (sample i + k*N gets sample i's):
        one draw for D's concatenated [real; fake] batch."""
        repeated = {k: array_module(v).concatenate([v] * int(times)) for k, v in self.arrays().items()}
        return dataclasses.replace(self, **repeated)


@dataclasses.dataclass
class _Cache:
    params: AugmentParams
    shape: tuple[int, ...]
    dtype: np.dtype
    device: str


class DiffAugment:
    """Differentiable augmentation with a ``policy`` such as ``"translation,cutout,color"``.

    ``forward(x, generator=... | params=...)`` keeps the parameters; ``backward(dy)`` applies the
    transposed transforms with them, in reverse order. No parameters, nothing to train; the object
    holds only the last forward's parameters (``last_params``).
    """

    def __init__(
        self,
        policy: str | Sequence[str] = "translation,cutout,color",
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
        option: str = "--augment",
    ) -> None:
        self.transforms = parse_policy(policy, option)
        self.policy = ",".join(_policy_names(policy)) or "none"
        for name, value in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"DiffAugment: {name} must lie in [0, 1], received {value}")
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)
        self.cache: _Cache | None = None
        self._plans: dict[tuple[int, int, int], Any] = {}  # device copies of plan(), by (H, W, device)

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})"

    @property
    def enabled(self) -> bool:
        return bool(self.transforms)

    def device_arrays(self) -> list[Any]:
        """The persistent device arrays a captured step reads: the uploaded plans (one per image size,
        made by the first, eager, draw). Everything else a forward allocates is scratch."""
        return list(self._plans.values())

    @property
    def last_params(self) -> AugmentParams | None:
        return None if self.cache is None else self.cache.params

    # -- parameters ---------------------------------------------------------------------------
    def _check_batch(self, x: Any, what: str = "input") -> None:
        dtype = getattr(x, "dtype", None)
        if getattr(x, "ndim", None) != 4 or dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{self!r}: expected the {what} as an (N, C, H, W) float32 or float64 array, received "
                f"{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))} and dtype {dtype}"
            )

    def sizes(self, height: int, width: int) -> dict[str, tuple[int, int]]:
        """DiffAugment's integer ranges for an H x W image: the largest shift r (shifts in [-r, r])
        and the cutout square, each as (along H, along W); rounded as ``int(size * ratio + 0.5)``."""
        return {
            "translation": (int(height * self.translation_ratio + 0.5), int(width * self.translation_ratio + 0.5)),
            "cutout": (int(height * self.cutout_ratio + 0.5), int(width * self.cutout_ratio + 0.5)),
        }

    def sample_params(self, x: Any, generator: Any) -> AugmentParams:
        """Draw parameters for the batch ``x`` (its size, image size, dtype and device) from
        ``generator``: a numpy Generator (host draws, uploaded for a device batch) or a
        PhiloxGenerator (device batches only)."""
        self._check_batch(x)
        n, _, h, w = (int(d) for d in x.shape)
        u = self._uniforms(generator, len(self.plan(h, w)[2]), n, x)
        return self.params_from_uniforms(u, x.shape, x.dtype)

    def _uniforms(self, generator: Any, rows: int, n: int, x: Any) -> Any:
        if isinstance(generator, np.random.Generator):
            u = generator.random((rows, n))
            return array_module(x).asarray(u) if is_gpu_array(x) else u
        if hasattr(generator, "uniform_into"):
            if not is_gpu_array(x):
                raise ValueError(
                    f"{self!r}: {type(generator).__name__} draws on the GPU but the batch is on the cpu; "
                    "pass a numpy.random.Generator for host batches"
                )
            return generator.uniform_into(array_module(x).empty((rows, n), dtype=np.float64))
        raise TypeError(
            f"{self!r}: generator must be a numpy.random.Generator or a tinygan.gpu_random.PhiloxGenerator, "
            f"received {type(generator).__name__}"
        )

    def plan(self, height: int, width: int) -> tuple[np.ndarray, int, list[str]]:
        """How a draw's uniform rows become parameters for H x W images (DiffAugment's distributions):
        ``(plan, n_int, fields)`` for the kernel ``augment_parameters``. Integer rows first, in policy
        order, then float rows::

            shift_h, shift_w         count 2r + 1, low -r        (shifts in [-r, r])
            cutout_top, cutout_left  count H + 1 - s % 2, low -(s // 2)   (centres 0 .. H - s % 2, an s-row square)
            brightness  u - 0.5;   saturation  2 u;   contrast  u + 0.5
        """
        sizes = self.sizes(height, width)
        ints: list[tuple[str, float, float]] = []
        floats: list[tuple[str, float, float]] = []
        for name in self.transforms:
            if name == "translation":
                (rh, rw) = sizes["translation"]
                ints += [("shift_h", 2 * rh + 1, -rh), ("shift_w", 2 * rw + 1, -rw)]
            elif name == "cutout":
                sh, sw = sizes["cutout"]
                ints += [
                    ("cutout_top", height + 1 - sh % 2, -(sh // 2)),
                    ("cutout_left", width + 1 - sw % 2, -(sw // 2)),
                ]
            else:
                scale, offset = {"brightness": (1.0, -0.5), "saturation": (2.0, 0.0), "contrast": (1.0, 0.5)}[name]
                floats.append((name, scale, offset))
        rows = ints + floats
        table = np.array([[a, b] for _, a, b in rows], dtype=np.float64).reshape(-1, 2)
        return table, len(ints), [field for field, _, _ in rows]

    def _device_plan(self, table: np.ndarray, height: int, width: int, u: Any) -> Any:
        """The plan where ``u`` is; on the GPU uploaded once per image size (a captured step may not copy
        from the host, and the warm-up step has uploaded it by then)."""
        if not is_gpu_array(u):
            return table
        key = (height, width, int(u.device.id))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = array_module(u).asarray(table)
        return plan

    def params_from_uniforms(self, u: Any, shape: Sequence[int], dtype: Any) -> AugmentParams:
        """The parameters for a batch of ``shape`` from a (rows, N) float64 block of uniforms in [0, 1)
        (rows as :meth:`plan` lists them), on u's device: one ``augment_parameters`` launch there."""
        n, _, h, w = (int(d) for d in shape)
        table, n_int, fields = self.plan(h, w)
        if tuple(u.shape) != (len(fields), n):
            raise ValueError(f"{self!r}: expected ({len(fields)}, {n}) uniforms, received shape {tuple(u.shape)}")
        ints, floats = kernels_for(u).augment_parameters(u, self._device_plan(table, h, w, u), n_int, dtype)
        values = [ints[i] for i in range(n_int)] + [floats[i] for i in range(len(fields) - n_int)]
        extra = {"cutout_size": self.sizes(h, w)["cutout"]} if "cutout" in self.transforms else {}
        return AugmentParams(image_size=(h, w), **dict(zip(fields, values)), **extra)

    def _check_params(self, params: AugmentParams, x: Any) -> None:
        if not isinstance(params, AugmentParams):
            raise TypeError(f"{self!r}: params must be AugmentParams, received {type(params).__name__}")
        n, _, h, w = (int(d) for d in x.shape)
        missing = [t for t in self.transforms if not self._has(params, t)]
        if missing:
            raise ValueError(f"{self!r}: params hold no {', '.join(missing)} parameters (drawn for another policy?)")
        if params.batch_size != n or params.image_size != (h, w):
            raise ValueError(
                f"{self!r}: params were drawn for {params.batch_size} images of {params.image_size}, "
                f"the batch has {n} of {(h, w)} (use params.repeat(k) for k batches laid end to end)"
            )
        for key, value in params.arrays().items():
            if device_of(value) != device_of(x):
                raise ValueError(
                    f"{self!r}: params.{key} is on the {device_of(value)} but the batch is on the {device_of(x)}"
                )

    @staticmethod
    def _has(params: AugmentParams, transform: str) -> bool:
        key = {"translation": "shift_h", "cutout": "cutout_top"}.get(transform, transform)
        return getattr(params, key) is not None

    # -- the two passes -------------------------------------------------------------------------
    def forward(self, x: Any, generator: Any = None, params: AugmentParams | None = None) -> Any:
        """Augment ``x`` with fresh parameters from ``generator``, or with ``params`` (exactly one of
        the two); the parameters are kept for :meth:`backward`."""
        self._check_batch(x)
        if (generator is None) == (params is None):
            raise ValueError(f"{self!r}: forward takes exactly one of generator= and params=")
        if params is None:
            params = self.sample_params(x, generator)
        else:
            self._check_params(params, x)
        self.cache = _Cache(params, tuple(x.shape), x.dtype, device_of(x))
        K = kernels_for(x)
        p = params
        for name in self.transforms:
            if name == "translation":
                x = K.translation_forward(x, p.shift_h, p.shift_w)
            elif name == "cutout":
                x = K.cutout_forward(x, p.cutout_top, p.cutout_left, p.cutout_size)
            elif name == "brightness":
                x = K.brightness_forward(x, p.brightness)
            elif name == "saturation":
                x = K.saturation_forward(x, p.saturation)
            else:
                x = K.contrast_forward(x, p.contrast)
        return x

    def backward(self, dy: Any) -> Any:
        """dL/dx from dL/dy through the last forward's transforms (the transposes, in reverse order)."""
        if self.cache is None:
            raise RuntimeError(f"{self!r}: backward() called before forward()")
        self._check_batch(dy, "upstream gradient")
        c = self.cache
        if tuple(dy.shape) != c.shape or dy.dtype != c.dtype or device_of(dy) != c.device:
            raise ValueError(
                f"{self!r}: upstream gradient of shape {tuple(dy.shape)} ({dy.dtype}, {device_of(dy)}) does not "
                f"match the forward's output {c.shape} ({c.dtype}, {c.device})"
            )
        K = kernels_for(dy)
        p = c.params
        for name in reversed(self.transforms):
            if name == "translation":
                dy = K.translation_backward(dy, p.shift_h, p.shift_w)
            elif name == "cutout":
                dy = K.cutout_backward(dy, p.cutout_top, p.cutout_left, p.cutout_size)
            elif name == "brightness":
                dy = K.brightness_backward(dy, p.brightness)
            elif name == "saturation":
                dy = K.saturation_backward(dy, p.saturation)
            else:
                dy = K.contrast_backward(dy, p.contrast)
        return dy
