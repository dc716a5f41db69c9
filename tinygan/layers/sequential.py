"""Sequential: a chain of layers, run forward in order and backward in reverse (the chain rule)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tinygan.backend import device_of, to_device
from tinygan.layers.base import Layer


class Sequential(Layer):
    """A model made of layers applied one after another.

    ``backward`` is the chain rule written out: the gradient flows through the layers in
    reverse order, each turning dL/d(output) into dL/d(input)::

        for layer in reversed(layers):
            dy = layer.backward(dy)

    ``forward(x, logits=True)`` stops before a final ``Sigmoid``, so that a loss on logits
    (``bce_with_logits``) trains a model that ends in a sigmoid without losing precision;
    the following ``backward`` then starts below that sigmoid.
    """

    def __init__(self, *layers: Layer, name: str = "Sequential") -> None:
        super().__init__()
        self.layers = list(layers)
        self.name = name
        for i, layer in enumerate(self.layers):
            layer.name = f"{name}[{i}] {layer!r}"
        self._stop = len(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def extra_repr(self) -> str:
        return ", ".join(repr(layer) for layer in self.layers)

    def ends_in_sigmoid(self) -> bool:
        return bool(self.layers) and type(self.layers[-1]).__name__ == "Sigmoid"

    # -- passes -------------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = True, logits: bool = False) -> Any:
        self._stop = len(self.layers) - 1 if (logits and self.ends_in_sigmoid()) else len(self.layers)
        for layer in self.layers[: self._stop]:
            x = layer.forward(x, training=training)
        self.cache = True
        return x

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True) -> Any:
        if self.cache is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        active = self.layers[: self._stop]
        for i in range(len(active) - 1, -1, -1):
            dy = active[i].backward(dy, param_grads=param_grads, input_grad=input_grad or i > 0)
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
                    state[f"{prefix}.{key}"] = to_device(value, "cpu").copy()
        return state

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
