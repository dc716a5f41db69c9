"""Adam (Kingma & Ba, 2015) over a model's parameters; the update itself is the kernel
``adam_update`` (equations, and how they match torch.optim.Adam, in tinygan.kernels.reference.adam).

On the GPU a step is ONE launch for all tensors (``adam_update_multi``), and the step count with
its bias corrections lives in device memory, advanced by that launch: a captured CUDA graph that
contains the step then replays steps t, t+1, ... rather than step t again. ``zero_grad`` zeroes every
gradient in place in one launch there, so the gradients keep their addresses from step to step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygan.backend import array_module, device_of, host_copies, is_gpu_array, kernels_for, to_device
from tinygan.layers.base import Layer

__all__ = ["Adam"]


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _named_layers(model_or_layers: Any) -> list[tuple[str, Layer]]:
    if hasattr(model_or_layers, "named_layers"):
        found = list(model_or_layers.named_layers())
    elif isinstance(model_or_layers, Layer):
        found = [("0", model_or_layers)]
    else:
        found = []
        for i, layer in enumerate(model_or_layers):
            if hasattr(layer, "named_layers"):
                found += [(f"{i}.{sub}", inner) for sub, inner in layer.named_layers()]
            else:
                found.append((str(i), layer))
    # A layer listed twice must still be stepped once per step.
    seen, unique = set(), []
    for name, layer in found:
        if id(layer) not in seen:
            seen.add(id(layer))
            unique.append((name, layer))
    return unique


def _reusable(grad: Any, param: Any) -> bool:
    """Whether ``grad`` can be zeroed in place for ``param`` (same device, shape, dtype, contiguous)."""
    return (
        grad is not None
        and is_gpu_array(grad)
        and grad.shape == param.shape
        and grad.dtype == param.dtype
        and grad.flags.c_contiguous
    )


class Adam:
    """Adam with PyTorch's defaults and update rule.

    ``model_or_layers`` is a Sequential (its ``named_layers()``), a single layer, or a list of
    layers. The moment estimates m and v live beside each parameter, same device and dtype, keyed
    ``"<layer name>.<param>"`` (the keys of ``Sequential.state_dict``).

    Typical step::

        opt.zero_grad(); model.forward(x); model.backward(dy); opt.step()
    """

    def __init__(
        self,
        model_or_layers: Layer | Iterable[Layer],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not _is_real(lr) or not 0 < lr < math.inf:
            raise ValueError(f"Adam: lr must be positive and finite, received {lr!r}")
        if not (
            isinstance(betas, (tuple, list)) and len(betas) == 2 and all(_is_real(b) and 0 <= b < 1 for b in betas)
        ):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), received {betas!r}")
        beta1, beta2 = betas
        # eps = 0 divides 0 by 0 wherever a gradient has been zero since the start (v = 0): NaN weights.
        if not _is_real(eps) or not 0 < eps < math.inf:
            raise ValueError(f"Adam: eps must be positive and finite, received {eps!r}")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(beta1), float(beta2), float(eps)
        self.layers = [(name, layer) for name, layer in _named_layers(model_or_layers) if layer.params]
        self._host_step = 0
        # On the GPU: tinygan.kernels.gpu.adam.device_step, (completed steps, ticket) in device memory.
        self._device_step: Any = None
        self.m: dict[str, Any] = {}
        self.v: dict[str, Any] = {}
        for key, param in self._params():
            self.m[key] = array_module(param).zeros_like(param)
            self.v[key] = array_module(param).zeros_like(param)
        self._place_step()

    def _params(self) -> list[tuple[str, Any]]:
        # Looked up afresh each time: layer.to()/astype() replace the arrays in params.
        return [(f"{name}.{key}", p) for name, layer in self.layers for key, p in layer.params.items()]

    @property
    def step_count(self) -> int:
        """Steps taken so far (on the GPU read back from the device, which waits for it)."""
        if self._device_step is not None:
            return int(self._device_step[:1].get()[0])
        return self._host_step

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._host_step = int(value)
        if self._device_step is not None:
            self._device_step.set(np.array([self._host_step, 0], dtype=np.uint64))

    def _on_gpu(self) -> bool:
        params = self._params()
        return bool(params) and is_gpu_array(params[0][1])

    def _place_step(self) -> None:
        """Keep the step count where the parameters are."""
        if self._on_gpu() and self._device_step is None:
            from tinygan.kernels.gpu.adam import device_step

            self._device_step = device_step(self._host_step)
        elif not self._on_gpu() and self._device_step is not None:
            self._host_step = self.step_count
            self._device_step = None

    def _check_state(self, full: str, layer: Layer, param: Any) -> None:
        m = self.m[full]
        if device_of(m) != device_of(param) or m.dtype != param.dtype:
            raise ValueError(
                f"Adam: state for {full} ({layer.name}) is {m.dtype} on the {device_of(m)} but the parameter "
                f"is {param.dtype} on the {device_of(param)}; call opt.to(device) after model.to(device), "
                "or create the optimizer after moving the model"
            )

    def step(self) -> None:
        """Apply one Adam update to every parameter from its layer's accumulated gradient."""
        if self._on_gpu():
            self._step_gpu()
            return
        self._host_step += 1
        for name, layer in self.layers:
            for key, param in layer.params.items():
                full = f"{name}.{key}"
                self._check_state(full, layer, param)
                kernels_for(param).adam_update(
                    param,
                    layer.grads[key],
                    self.m[full],
                    self.v[full],
                    self.lr,
                    self.beta1,
                    self.beta2,
                    self.eps,
                    self._host_step,
                )

    def _step_gpu(self) -> None:
        from tinygan.kernels.gpu.adam import adam_update_multi

        if self._device_step is None:
            self._place_step()
        groups: dict[Any, list[tuple]] = {}
        for name, layer in self.layers:
            for key, param in layer.params.items():
                full = f"{name}.{key}"
                self._check_state(full, layer, param)
                groups.setdefault(param.dtype, []).append((param, layer.grads[key], self.m[full], self.v[full]))
        # One launch per dtype (one in practice); only the last advances the count, so all use the same step.
        for i, tensors in enumerate(groups.values()):
            params, grads, ms, vs = zip(*tensors)
            adam_update_multi(
                params,
                grads,
                ms,
                vs,
                self.lr,
                self.beta1,
                self.beta2,
                self.eps,
                self._device_step,
                advance=i == len(groups) - 1,
            )

    def zero_grad(self) -> None:
        if self._on_gpu():
            from tinygan.kernels.gpu.adam import zero_multi

            groups: dict[Any, list] = {}
            for _, layer in self.layers:
                grads = [layer.grads.get(key) for key in layer.params]
                if all(_reusable(g, p) for g, p in zip(grads, layer.params.values())):
                    for grad in grads:
                        groups.setdefault(grad.dtype, []).append(grad)
                else:
                    layer.zero_grad()  # moved or converted since: fresh arrays, as on the CPU
            for grads in groups.values():
                zero_multi(grads)
            return
        for _, layer in self.layers:
            layer.zero_grad()

    def device_arrays(self) -> list[Any]:
        """The optimizer's state arrays (m, v and, on the GPU, the step count in device memory), which every
        step reads and writes in place: what a captured CUDA graph holds by address."""
        arrays = [*self.m.values(), *self.v.values()]
        return arrays if self._device_step is None else [*arrays, self._device_step]

    def to(self, device: str) -> Adam:
        """Move m and v to ``device`` ("cpu" or "gpu")."""
        for store in (self.m, self.v):
            for key in store:
                store[key] = to_device(store[key], device)
        self._place_step()
        return self

    def state_dict(self) -> dict[str, Any]:
        """``{"step": int, "m.<key>": array, "v.<key>": array, ...}``, arrays copied to the host."""
        arrays = {
            f"{prefix}.{key}": value for prefix, store in (("m", self.m), ("v", self.v)) for key, value in store.items()
        }
        return {"step": int(self.step_count), **host_copies(arrays)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`'s output; every key and shape must match (ValueError naming
        the key otherwise), and nothing changes unless all do. Arrays go to each parameter's device
        and dtype."""
        params = dict(self._params())
        expected = {"step"} | {f"{p}.{k}" for p in ("m", "v") for k in params}
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or extra:
            raise ValueError(
                f"Adam.load_state_dict: missing keys {missing or 'none'}, unexpected keys {extra or 'none'}"
            )
        step = np.asarray(state["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"Adam.load_state_dict: 'step' must be a non-negative int, received {state['step']!r}")
        for key, param in params.items():
            for prefix in ("m", "v"):
                got = state[f"{prefix}.{key}"]
                if tuple(np.shape(got)) != tuple(param.shape):
                    raise ValueError(
                        f"Adam.load_state_dict: {prefix}.{key} expected shape {tuple(param.shape)}, "
                        f"received {tuple(np.shape(got))}"
                    )
        for key, param in params.items():
            for prefix, store in (("m", self.m), ("v", self.v)):
                host = to_device(state[f"{prefix}.{key}"], "cpu").astype(param.dtype)  # astype copies
                store[key] = to_device(host, device_of(param))
        self._place_step()
        self.step_count = int(step)
