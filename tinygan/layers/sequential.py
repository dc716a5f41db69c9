"""Sequential: a chain of layers, run forward in order and backward in reverse (the chain rule), by an
explicit fusion plan.

The plan (``Sequential.plan``, printed by ``Sequential.describe()``) is a list of :class:`Step`, built from
the layers by :func:`build_plan`: a weight layer (Dense, Conv2d, ConvTranspose2d) or a BatchNorm directly
followed by an activation with a ``fusion_slope`` (ReLU, LeakyReLU with a slope >= 0) is one fused step, run
as that layer's ``forward(x, slope=...)``, whose kernel applies the activation in the epilogue that writes
the output (after the bias, or the normalization), and its ``backward``, whose kernel forms the activation's
gradient in the pass that first reads dy. Every
other layer is a step of its own. ``Sequential(..., fuse=False)`` (or ``set_fusion(False)``) runs every layer
as its own step, as the chain rule is written in the textbook; both give the same outputs and gradients up to
rounding (tests/test_fusion.py). docs/ARCHITECTURE.md ("The fusion plan") says why and what it saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygan.backend import deferred_joins, device_of, host_copies, to_device
from tinygan.layers.base import Layer
from tinygan.layers.batchnorm import BatchNorm1d, BatchNorm2d
from tinygan.layers.conv2d import Conv2d
from tinygan.layers.conv_transpose2d import ConvTranspose2d
from tinygan.layers.dense import Dense

# The layers whose kernels take a fused activation (their forward's ``slope``).
FUSABLE = (Dense, Conv2d, ConvTranspose2d, BatchNorm1d, BatchNorm2d)


@dataclass(frozen=True)
class Step:
    """One step of a plan: ``layers[start:stop]`` of the Sequential, run as one unit.

    A single layer runs its own forward and backward. A fused pair (weight layer, activation) runs the weight
    layer with the activation in its epilogue: the activation layer keeps its place in ``layers`` (names,
    checkpoints and diagnostics see the same structure) but does not run; its cache is cleared, so a stray
    ``backward`` on it alone fails loudly instead of using a stale input.
    """

    start: int
    stop: int
    layers: tuple[Layer, ...]
    slope: float | None = None  # the fused activation's, for a pair

    @property
    def fused(self) -> bool:
        return len(self.layers) == 2

    def forward(self, x: Any, training: bool) -> Any:
        if not self.fused:
            return self.layers[0].forward(x, training=training)
        weight, activation = self.layers
        y = weight.forward(x, training=training, slope=self.slope)
        activation.cache = None
        return y

    def backward(self, dy: Any, param_grads: bool, input_grad: bool) -> Any:
        # A fused weight layer's backward starts from dL/d(activated output): its kernel applies act'(y).
        return self.layers[0].backward(dy, param_grads=param_grads, input_grad=input_grad)

    def describe(self) -> str:
        where = f"{self.start}" if not self.fused else f"{self.start}-{self.stop - 1}"
        if not self.fused:
            return f"{where}: {self.layers[0]!r}"
        act = "ReLU" if self.slope == 0 else f"LeakyReLU({self.slope})"
        return f"{where}: {self.layers[0]!r} + {self.layers[1]!r}  [fused: {act} in the epilogue]"


def build_plan(layers: list[Layer], fuse: bool = True) -> list[Step]:
    """The steps that run ``layers``: each weight layer or BatchNorm (FUSABLE) followed by an activation whose
    ``fusion_slope`` is not None as one fused step (when ``fuse``), every other layer alone."""
    steps: list[Step] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        slope = getattr(nxt, "fusion_slope", None) if nxt is not None else None
        if fuse and isinstance(layer, FUSABLE) and slope is not None:
            steps.append(Step(i, i + 2, (layer, nxt), slope))
            i += 2
        else:
            steps.append(Step(i, i + 1, (layer,)))
            i += 1
    return steps


class Sequential(Layer):
    """A model made of layers applied one after another.

    ``backward`` is the chain rule written out: the gradient flows through the layers in
    reverse order, each turning dL/d(output) into dL/d(input)::

        for layer in reversed(layers):
            dy = layer.backward(dy)

    ``forward(x, logits=True)`` stops before a final ``Sigmoid``, so that a loss on logits
    (``bce_with_logits``) trains a model that ends in a sigmoid without losing precision;
    the following ``backward`` then starts below that sigmoid.

    The layers run by a fusion plan (module docstring): with ``fuse=True`` (the default) a weight layer or a
    BatchNorm and the ReLU / LeakyReLU after it run as one fused step. ``fuse=False`` or ``set_fusion(False)``
    runs every layer on its own; ``describe()`` prints the plan.
    """

    def __init__(self, *layers: Layer, name: str = "Sequential", fuse: bool = True) -> None:
        super().__init__()
        self.layers = list(layers)
        self.name = name
        for i, layer in enumerate(self.layers):
            layer.name = f"{name}[{i}] {layer!r}"
        self._stop = len(self.layers)
        self.set_fusion(fuse)
        self._plan_key: tuple = ()
        self._plan: list[Step] = []
        self._ran: list[Step] = []  # the steps of the last forward, which its backward runs in reverse

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def extra_repr(self) -> str:
        return ", ".join(repr(layer) for layer in self.layers)

    def ends_in_sigmoid(self) -> bool:
        return bool(self.layers) and type(self.layers[-1]).__name__ == "Sigmoid"

    # -- the fusion plan ------------------------------------------------------------------------
    @property
    def fuse(self) -> bool:
        """Whether the plan fuses weight layers with the activations after them (``set_fusion``)."""
        return self._fuse

    def set_fusion(self, fuse: bool) -> Sequential:
        """Turn the fusion plan on or off (off: every layer runs its own forward and backward); returns self.
        Takes effect at the next forward: a backward always runs the steps its forward ran."""
        if not isinstance(fuse, bool):
            raise ValueError(f"{self.name}: fuse must be True or False, got {fuse!r}")
        self._fuse = fuse
        return self

    @property
    def plan(self) -> list[Step]:
        """The steps a forward runs now, rebuilt whenever the layers, their activations' slopes or the
        ``fuse`` setting changed since the last one."""
        key = (self._fuse, tuple((id(layer), getattr(layer, "fusion_slope", None)) for layer in self.layers))
        if key != self._plan_key:
            self._plan, self._plan_key = build_plan(self.layers, self._fuse), key
        return self._plan

    def describe(self) -> str:
        """The plan, one step a line: which layers run fused and which alone."""
        fused = sum(step.fused for step in self.plan)
        head = f"{self.name}: {len(self.plan)} steps for {len(self.layers)} layers, {fused} fused"
        return "\n".join([head + ("" if self._fuse else " (fusion off)")] + ["  " + s.describe() for s in self.plan])

    # -- passes -------------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = True, logits: bool = False) -> Any:
        self._stop = len(self.layers) - 1 if (logits and self.ends_in_sigmoid()) else len(self.layers)
        # No step straddles the stop: only a final Sigmoid is left out, and a Sigmoid is never fused.
        self._ran = [step for step in self.plan if step.stop <= self._stop]
        for step in self._ran:
            x = step.forward(x, training)
        self.cache = True
        return x

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        if self.cache is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        # On the GPU each layer's weight gradient runs on a second stream, joined once at the end of the whole
        # backward rather than at every layer (kernels/gpu/streams.py); nothing here reads a weight gradient.
        with deferred_joins(dy):
            for step in reversed(self._ran):
                dy = step.backward(dy, param_grads=param_grads, input_grad=input_grad or step.start > 0)
        return dy

    def output_shape(self, input_shape: tuple) -> tuple:
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    # -- parameters ------------------------------------------------------------------------------
    def named_layers(self) -> Iterator[tuple[str, Layer]]:
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Sequential):
                for sub, inner in layer.named_layers():
                    yield f"{i}.{sub}", inner
            else:
                yield str(i), layer

    def zero_grad(self) -> None:
        for _, layer in self.named_layers():
            layer.zero_grad()

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for _, layer in self.named_layers())

    @property
    def device(self) -> str:
        for _, layer in self.named_layers():
            if layer.params:
                return layer.device
        return getattr(self, "_device", "cpu")

    @property
    def dtype(self) -> np.dtype | None:
        for _, layer in self.named_layers():
            if layer.params:
                return layer.dtype
        return None

    def to(self, device: str) -> Sequential:
        for _, layer in self.named_layers():
            layer.to(device)
        self._device = device
        return self

    def astype(self, dtype: Any) -> Sequential:
        for _, layer in self.named_layers():
            layer.astype(dtype)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a host array, keyed ``"<layer index>.<name>"``."""
        state = {}
        for prefix, layer in self.named_layers():
            for store in (layer.params, layer.buffers):
                for key, value in store.items():
                    state[f"{prefix}.{key}"] = value
        return host_copies(state)

    def load_state_dict(self, state: dict[str, Any], source: str = "state") -> None:
        """Copy arrays into this model, checking that every key, shape and dtype matches.

        Raises ValueError naming ``source``, the key, and what was expected and received;
        the model is left untouched when anything is off.
        """
        expected = {}
        for prefix, layer in self.named_layers():
            for store in (layer.params, layer.buffers):
                for key, value in store.items():
                    expected[f"{prefix}.{key}"] = (layer, store, key, value)
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{source} does not match {self.name}: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}"
            )
        for full_key, (layer, _, _, value) in expected.items():
            got = state[full_key]
            if tuple(got.shape) != tuple(value.shape):
                raise ValueError(
                    f"{source} does not match {self.name}: {full_key} ({layer.name}) expected shape "
                    f"{tuple(value.shape)}, received {tuple(got.shape)}"
                )
        for full_key, (_, store, key, value) in expected.items():
            store[key] = to_device(np.asarray(state[full_key]).astype(value.dtype), device_of(value))

    # -- a Keras-style table -------------------------------------------------------------------------
    def summary(self, input_shape: tuple, print_fn: Any = print) -> str:
        """Print (and return) each layer's output shape and parameter count, and the total.

        ``input_shape`` excludes the batch dimension, e.g. ``(100,)`` or ``(3, 32, 32)``.
        """
        rows = [("Layer (type)", "Output Shape", "Param #")]
        shape = (None, *input_shape)
        for i, layer in enumerate(self.layers):
            shape = layer.output_shape(shape)
            rows.append((f"{i}: {layer!r}", str(shape).replace("None", "N"), f"{layer.num_parameters():,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(widths) + 6)
        out = [f"{self.name}", line]
        for j, r in enumerate(rows):
            out.append(f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:>{widths[2]}}")
            if j == 0:
                out.append(line)
        out += [line, f"Total params: {self.num_parameters():,}"]
        text = "\n".join(out)
        print_fn(text)
        return text
