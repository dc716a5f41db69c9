"""Every kernel of both seed models at its real shape, each in every implementation.

A :class:`Case` is one kernel call (one pass of one layer) with seeded inputs, a FLOP and byte count,
and two setups: ``tiny(K, a)`` for tinygan's kernel namespaces (reference, numba, gpu) and
``torch(a)`` for the PyTorch equivalent. A setup returns a :class:`Runner`: ``fn`` is what is timed,
``outputs()`` what is validated (in a fixed order, shared by both setups).

PyTorch's kernels are reached the way eager training reaches them: the forward through
``torch.nn.functional`` with inputs that require grad (so the autograd node is built, as in training),
a backward through ``torch.autograd.grad`` on that node for exactly the gradients tinygan's backward
kernel returns. Both sides therefore pay their framework's per-call overhead.

Shapes: the dense MNIST GAN at batch 125, the CIFAR-10 DCGAN at batch 128, layer by layer. The
discriminator sees 2N images in its own step (real and fake together); its layers are listed at N,
the BCE at 2N as the discriminator step computes it.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from tinygan.models import build

MNIST_BATCH = 125
DCGAN_BATCH = 128
LR, BETAS, EPS = 2e-4, (0.5, 0.999), 1e-8
BN_EPS, SLOPE, DROPOUT_P = 1e-5, 0.2, 0.25

IMPLS_CPU = ("reference", "numba", "torch")
IMPLS_GPU = ("gpu", "torch")


@dataclasses.dataclass
class Runner:
    fn: Callable[[], Any]
    outputs: Callable[[], tuple]


@dataclasses.dataclass
class Case:
    id: str
    model: str  # "mnist" or "dcgan"
    family: str  # dense, conv2d, conv_transpose2d, batchnorm, activation, dropout, bce, adam
    layer: str
    pass_: str
    make: Callable[[np.random.Generator], dict[str, Any]]
    tiny: Callable[[Any, dict[str, Any]], Runner] | None
    torch: Callable[[dict[str, Any]], Runner] | None
    flops: float = 0.0
    bytes: float = 0.0
    bound: str = "compute"  # which of GFLOP/s or GB/s is the figure of merit
    tolerance: float | tuple[float, ...] = 1e-4
    devices: tuple[str, ...] = ("cpu", "gpu")
    # A custom check (inputs as float64 NumPy, outputs) -> (ok, error, text), for random results.
    check: Callable[[dict[str, Any], tuple], tuple[bool, float, str]] | None = None

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    def inputs(self) -> dict[str, Any]:
        return self.make(np.random.default_rng(self.seed))


# -- array conversion ---------------------------------------------------------------------------------------


def convert(a: Any, to: Any) -> Any:
    """Map every array in a (nested) input dict through ``to``."""
    if isinstance(a, dict):
        return {k: convert(v, to) for k, v in a.items()}
    if isinstance(a, list):
        return [convert(v, to) for v in a]
    if isinstance(a, np.ndarray):
        return to(a)
    return a


def as_float64(a: dict[str, Any]) -> dict[str, Any]:
    return convert(a, lambda x: x.astype(np.float64) if x.dtype.kind == "f" else x.copy())


def for_impl(a: dict[str, Any], impl: str, device: str) -> dict[str, Any]:
    """Fresh copies of the inputs where ``impl`` computes: NumPy, CuPy or torch."""
    if impl == "torch":
        import torch

        dev = "cuda" if device == "gpu" else "cpu"
        return convert(a, lambda x: torch.from_numpy(x.copy()).to(dev))
    if device == "gpu":
        import cupy

        return convert(a, cupy.asarray)
    return convert(a, np.copy)


def _outs(result: Any) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


# -- input makers --------------------------------------------------------------------------------------------


def _normal(rng: np.random.Generator, shape: tuple, scale: float = 1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _maker(**shapes: tuple) -> Callable[[np.random.Generator], dict[str, Any]]:
    def make(rng: np.random.Generator) -> dict[str, Any]:
        return {name: _normal(rng, shape) for name, shape in shapes.items()}

    return make


# -- torch plumbing -----------------------------------------------------------------------------------------


def _leaf(t: Any) -> Any:
    return t.detach().requires_grad_(True)


def _torch_forward(f: Callable[[dict[str, Any]], Any], leaves: tuple[str, ...]) -> Callable[[dict], Runner]:
    def setup(a: dict[str, Any]) -> Runner:
        for k in leaves:
            a[k] = _leaf(a[k])

        def fn() -> Any:
            return f(a)

        return Runner(fn, lambda: _outs(fn()))

    return setup


def _torch_backward(
    f: Callable[[dict[str, Any]], Any], leaves: tuple[str, ...], wrt: tuple[str, ...], grad: str = "dy"
) -> Callable[[dict], Runner]:
    """Build the autograd node once with ``f``; time the gradient with respect to ``wrt`` only."""

    def setup(a: dict[str, Any]) -> Runner:
        import torch

        for k in leaves:
            a[k] = _leaf(a[k])
        y = f(a)
        inputs = [a[k] for k in wrt]
        dy = a[grad]

        def fn() -> Any:
            return torch.autograd.grad(y, inputs, dy, retain_graph=True)

        return Runner(fn, lambda: _outs(fn()))

    return setup


def _tiny(
    call: Callable[[Any, dict[str, Any]], Any],
    pick: Callable[[Any], tuple] = _outs,
    prep: Callable[[Any, dict[str, Any]], None] | None = None,
) -> Callable[[Any, dict], Runner]:
    def setup(K: Any, a: dict[str, Any]) -> Runner:
        if prep is not None:
            prep(K, a)

        def fn() -> Any:
            return call(K, a)

        return Runner(fn, lambda: pick(fn()))

    return setup


# -- families ------------------------------------------------------------------------------------------------


def dense_cases(model: str, net: str, index: int, n: int, fan_in: int, fan_out: int) -> list[Case]:
    make = _maker(x=(n, fan_in), W=(fan_in, fan_out), b=(fan_out,), dy=(n, fan_out))
    layer = f"Dense {fan_in}->{fan_out}, batch {n}"
    gemm = 2.0 * n * fan_in * fan_out
    base = f"{model}.{net}.dense{index}"

    def torch_fwd(a: dict) -> Any:
        import torch

        return torch.addmm(a["b"], a["x"], a["W"])

    common = dict(model=model, family="dense", layer=f"{net}: {layer}", make=make, bound="compute")
    return [
        Case(
            id=f"{base}.fwd",
            pass_="forward",
            tiny=_tiny(lambda K, a: K.dense_forward(a["x"], a["W"], a["b"])),
            torch=_torch_forward(torch_fwd, ("x", "W", "b")),
            flops=gemm + n * fan_out,
            bytes=4.0 * (n * fan_in + fan_in * fan_out + n * fan_out),
            **common,
        ),
        Case(
            id=f"{base}.bwd_data",
            pass_="backward data",
            tiny=_tiny(lambda K, a: K.dense_backward_data(a["dy"], a["W"])),
            torch=_torch_backward(torch_fwd, ("x", "W", "b"), ("x",)),
            flops=gemm,
            bytes=4.0 * (n * fan_out + fan_in * fan_out + n * fan_in),
            **common,
        ),
        Case(
            id=f"{base}.bwd_weight",
            pass_="backward weight",
            tiny=_tiny(lambda K, a: K.dense_backward_weight(a["dy"], a["x"])),
            torch=_torch_backward(torch_fwd, ("x", "W", "b"), ("W", "b")),
            flops=gemm + n * fan_out,
            bytes=4.0 * (n * fan_out + n * fan_in + fan_in * fan_out),
            **common,
        ),
    ]


def _out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def conv2d_cases(
    model: str, index: int, n: int, cin: int, cout: int, size: int, k: int, stride: int, pad: int
) -> list[Case]:
    out = _out(size, k, stride, pad)
    make = _maker(x=(n, cin, size, size), W=(cout, cin, k, k), b=(cout,), dy=(n, cout, out, out))
    s, p = (stride, stride), (pad, pad)
    layer = f"D: Conv2d({cin},{cout},{k},s{stride},p{pad}) {size}x{size}->{out}x{out}"
    flops = 2.0 * n * cout * out * out * cin * k * k
    io = 4.0 * (n * cin * size * size + cout * cin * k * k + n * cout * out * out)
    base = f"{model}.D.conv{index}"

    def torch_fwd(a: dict) -> Any:
        import torch.nn.functional as F

        return F.conv2d(a["x"], a["W"], a["b"], s, p)

    def prep_cols(K: Any, a: dict) -> None:
        a["cols"] = K.conv2d_forward(a["x"], a["W"], a["b"], s, p)[1]

    common = dict(model=model, family="conv2d", layer=layer, make=make, flops=flops, bytes=io)
    return [
        Case(
            id=f"{base}.fwd",
            pass_="forward",
            tiny=_tiny(lambda K, a: K.conv2d_forward(a["x"], a["W"], a["b"], s, p), pick=lambda r: (r[0],)),
            torch=_torch_forward(torch_fwd, ("x", "W", "b")),
            **common,
        ),
        Case(
            id=f"{base}.bwd_data",
            pass_="backward data",
            tiny=_tiny(lambda K, a: K.conv2d_backward_data(a["dy"], a["W"], a["x"].shape, s, p)),
            torch=_torch_backward(torch_fwd, ("x", "W", "b"), ("x",)),
            **common,
        ),
        Case(
            id=f"{base}.bwd_weight",
            pass_="backward weight",
            tiny=_tiny(lambda K, a: K.conv2d_backward_weight(a["dy"], a["cols"], a["W"].shape), prep=prep_cols),
            torch=_torch_backward(torch_fwd, ("x", "W", "b"), ("W", "b")),
            **common,
        ),
    ]


def conv_transpose2d_cases(model: str, index: int, n: int, cin: int, cout: int, size: int) -> list[Case]:
    k, s, p, op = 5, (2, 2), (2, 2), (1, 1)
    out = (size - 1) * 2 - 4 + k + 1
    make = _maker(x=(n, cin, size, size), W=(cin, cout, k, k), b=(cout,), dy=(n, cout, out, out))
    layer = f"G: ConvTranspose2d({cin},{cout},5,s2,p2,op1) {size}x{size}->{out}x{out}"
    flops = 2.0 * n * cin * size * size * cout * k * k
    io = 4.0 * (n * cin * size * size + cin * cout * k * k + n * cout * out * out)
    base = f"{model}.G.convT{index}"

    def torch_fwd(a: dict) -> Any:
        import torch.nn.functional as F

        return F.conv_transpose2d(a["x"], a["W"], a["b"], s, p, op)

    def prep_dy_cols(K: Any, a: dict) -> None:
        # The layer reuses im2col(dy) from its data gradient (dy_cols), so the weight gradient is timed with it.
        a["dy_cols"] = K.conv_transpose2d_backward_data(a["dy"], a["W"], s, p)[1]

    common = dict(model=model, family="conv_transpose2d", layer=layer, make=make, flops=flops, bytes=io)
    return [
        Case(
            id=f"{base}.fwd",
            pass_="forward",
            tiny=_tiny(lambda K, a: K.conv_transpose2d_forward(a["x"], a["W"], a["b"], s, p, op)),
            torch=_torch_forward(torch_fwd, ("x", "W", "b")),
            **common,
        ),
        Case(
            id=f"{base}.bwd_data",
            pass_="backward data",
            tiny=_tiny(lambda K, a: K.conv_transpose2d_backward_data(a["dy"], a["W"], s, p), pick=lambda r: (r[0],)),
            torch=_torch_backward(torch_fwd, ("x", "W", "b"), ("x",)),
            **common,
        ),
        Case(
            id=f"{base}.bwd_weight",
            pass_="backward weight",
            tiny=_tiny(
                lambda K, a: K.conv_transpose2d_backward_weight(
                    a["dy"], a["x"], a["W"].shape, s, p, dy_cols=a["dy_cols"]
                ),
                prep=prep_dy_cols,
            ),
            torch=_torch_backward(torch_fwd, ("x", "W", "b"), ("W", "b")),
            **common,
        ),
    ]


def batchnorm_cases(model: str, index: int, shape: tuple[int, int, int, int]) -> list[Case]:
    c = shape[1]
    size = float(np.prod(shape))

    def make(rng: np.random.Generator) -> dict[str, Any]:
        return {
            "x": _normal(rng, shape, 2.0) + np.float32(0.5),
            "gamma": (1 + 0.1 * rng.standard_normal(c)).astype(np.float32),
            "beta": _normal(rng, (c,), 0.1),
            "dy": _normal(rng, shape),
        }

    def torch_fwd(a: dict) -> Any:
        import torch
        import torch.nn.functional as F

        # nn.BatchNorm2d passes its running statistics, which the same kernel updates.
        if "running_mean" not in a:
            a["running_mean"] = torch.zeros(c, device=a["x"].device)
            a["running_var"] = torch.ones(c, device=a["x"].device)
        return F.batch_norm(a["x"], a["running_mean"], a["running_var"], a["gamma"], a["beta"], True, 0.1, BN_EPS)

    def prep(K: Any, a: dict) -> None:
        _, _, _, a["xhat"], a["inv_std"] = K.batchnorm_forward(a["x"], a["gamma"], a["beta"], BN_EPS)

    layer = "G: BatchNorm2d " + "x".join(map(str, shape))
    common = dict(model=model, family="batchnorm", layer=layer, make=make, bound="memory", flops=8 * size)
    return [
        Case(
            id=f"{model}.G.bn{index}.fwd",
            pass_="forward",
            tiny=_tiny(lambda K, a: K.batchnorm_forward(a["x"], a["gamma"], a["beta"], BN_EPS), pick=lambda r: (r[0],)),
            torch=_torch_forward(torch_fwd, ("x", "gamma", "beta")),
            bytes=4 * 3 * size,  # x in; y and xhat (the cache) out
            **common,
        ),
        Case(
            id=f"{model}.G.bn{index}.bwd",
            pass_="backward",
            tiny=_tiny(lambda K, a: K.batchnorm_backward(a["dy"], a["xhat"], a["inv_std"], a["gamma"]), prep=prep),
            torch=_torch_backward(torch_fwd, ("x", "gamma", "beta"), ("x", "gamma", "beta")),
            bytes=4 * 3 * size,  # dy and xhat in, dx out
            **common,
        ),
    ]


def _torch_activation(name: str) -> Callable[[dict[str, Any]], Any]:
    def f(a: dict[str, Any]) -> Any:
        import torch
        import torch.nn.functional as F

        x = a["x"]
        if name == "ReLU":
            return F.relu(x)
        if name == "LeakyReLU":
            return F.leaky_relu(x, SLOPE)
        return torch.sigmoid(x) if name == "Sigmoid" else torch.tanh(x)

    return f


# Each backward takes what tinygan's layer caches: y for ReLU, Sigmoid and Tanh, x for LeakyReLU.
_ACTIVATIONS = {
    "ReLU": (lambda K, a: K.relu_forward(a["x"]), lambda K, a: K.relu_backward(a["dy"], a["y"])),
    "LeakyReLU": (
        lambda K, a: K.leaky_relu_forward(a["x"], SLOPE),
        lambda K, a: K.leaky_relu_backward(a["dy"], a["x"], SLOPE),
    ),
    "Sigmoid": (lambda K, a: K.sigmoid_forward(a["x"]), lambda K, a: K.sigmoid_backward(a["dy"], a["y"])),
    "Tanh": (lambda K, a: K.tanh_forward(a["x"]), lambda K, a: K.tanh_backward(a["dy"], a["y"])),
}


def activation_cases(model: str, net: str, index: int, name: str, shape: tuple[int, ...]) -> list[Case]:
    fwd, bwd = _ACTIVATIONS[name]
    torch_fwd = _torch_activation(name)
    size = float(np.prod(shape))
    make = _maker(x=shape, dy=shape)
    layer = f"{net}: {name} " + "x".join(map(str, shape))

    def prep(K: Any, a: dict) -> None:
        a["y"] = fwd(K, a)

    base = f"{model}.{net}.{name.lower()}{index}"
    common = dict(model=model, family="activation", layer=layer, make=make, bound="memory", flops=size)
    return [
        Case(
            id=f"{base}.fwd",
            pass_="forward",
            tiny=_tiny(fwd),
            torch=_torch_forward(torch_fwd, ("x",)),
            bytes=8 * size,
            **common,
        ),
        Case(
            id=f"{base}.bwd",
            pass_="backward",
            tiny=_tiny(bwd, prep=prep),
            torch=_torch_backward(torch_fwd, ("x",), ("x",)),
            bytes=12 * size,
            **common,
        ),
    ]


def dropout_cases(model: str, index: int, shape: tuple[int, int]) -> list[Case]:
    size = float(np.prod(shape))
    p = DROPOUT_P
    scale = 1.0 / (1.0 - p)

    def make(rng: np.random.Generator) -> dict[str, Any]:
        return {"x": _normal(rng, shape), "dy": _normal(rng, shape), "mask": rng.random(shape) >= p}

    def torch_apply(src: str) -> Callable[[dict], Runner]:
        # native_dropout_backward(t, mask, scale) = t * mask * scale: eager dropout's backward kernel, and with
        # a given mask exactly tinygan's forward too.
        def setup(a: dict) -> Runner:
            import torch

            def fn() -> Any:
                return torch.ops.aten.native_dropout_backward(a[src], a["mask"], scale)

            return Runner(fn, lambda: (fn(),))

        return setup

    layer = "D: Dropout(0.25) " + "x".join(map(str, shape))
    base = f"{model}.D.dropout{index}"
    common = dict(model=model, family="dropout", layer=layer, make=make, bound="memory", bytes=9 * size, flops=size)
    cases = [
        Case(
            id=f"{base}.fwd",
            pass_="forward (given mask)",
            tiny=_tiny(lambda K, a: K.dropout_forward(a["x"], a["mask"], p)),
            torch=torch_apply("x"),
            **common,
        ),
        Case(
            id=f"{base}.bwd",
            pass_="backward",
            tiny=_tiny(lambda K, a: K.dropout_backward(a["dy"], a["mask"], p)),
            torch=torch_apply("dy"),
            **common,
        ),
    ]
    if index == 1:
        cases.append(dropout_layer_case(model, shape))
    return cases


def dropout_layer_case(model: str, shape: tuple[int, int]) -> Case:
    """The Dropout layer's forward with its mask draw (tinygan: NumPy on the host for the CPU, the layer's
    device generator on the GPU; PyTorch: inside its kernel). Random, so checked by its statistics."""
    p = DROPOUT_P

    def tiny(K: Any, a: dict) -> Runner:
        from tinygan.backend import device_of
        from tinygan.layers import Dropout

        # Moved like a model's layer: on the GPU it may then draw its masks there.
        layer = Dropout(p, rng=0).to(device_of(a["x"]))

        def fn() -> Any:
            return layer.forward(a["x"], training=True)

        return Runner(fn, lambda: (fn(),))

    def torch_setup(a: dict) -> Runner:
        import torch.nn.functional as F

        x = _leaf(a["x"])

        def fn() -> Any:
            return F.dropout(x, p, True)

        return Runner(fn, lambda: (fn(),))

    def check(a: dict, outputs: tuple) -> tuple[bool, float, str]:
        from bench.harness import to_numpy

        x, y = a["x"], to_numpy(outputs[0]).astype(np.float64)
        kept = y != 0
        scaled_err = float(np.max(np.abs(y[kept] - x[kept] / (1 - p)) / (np.abs(x[kept]) + 1e-30)))
        fraction = float(kept.mean())
        ok = abs(fraction - (1 - p)) < 0.01 and scaled_err < 1e-5
        return ok, scaled_err, f"kept {fraction:.4f} (expected {1 - p}), kept values off by {scaled_err:.1e}"

    size = float(np.prod(shape))
    return Case(
        id=f"{model}.D.dropout1.layer_fwd",
        model=model,
        family="dropout",
        layer="D: Dropout(0.25) layer " + "x".join(map(str, shape)),
        pass_="forward with mask draw",
        make=_maker(x=shape),
        tiny=tiny,
        torch=torch_setup,
        bound="memory",
        bytes=9 * size,
        flops=size,
        check=check,
    )


def bce_case(model: str, n: int) -> Case:
    def make(rng: np.random.Generator) -> dict[str, Any]:
        return {"z": _normal(rng, (n, 1), 2.0), "t": rng.uniform(0, 1, (n, 1)).astype(np.float32)}

    def torch_setup(a: dict) -> Runner:
        import torch
        import torch.nn.functional as F

        z = _leaf(a["z"])

        def fn() -> Any:
            loss = F.binary_cross_entropy_with_logits(z, a["t"])
            return loss, torch.autograd.grad(loss, z)[0]

        return Runner(fn, lambda: _outs(fn()))

    return Case(
        id=f"{model}.D.bce",
        model=model,
        family="bce",
        layer=f"sigmoid + BCE on {n}x1 logits (D step: real and fake)",
        pass_="loss and gradient",
        make=make,
        tiny=_tiny(lambda K, a: K.bce_with_logits(a["z"], a["t"])),
        torch=torch_setup,
        bound="memory",
        bytes=12.0 * n,
        flops=20.0 * n,
    )


def _param_shapes(model: str, net: str) -> list[tuple[int, ...]]:
    name = "mnist_dense" if model == "mnist" else "dcgan"
    seq = build(name, net)
    return [tuple(p.shape) for _, layer in seq.named_layers() for p in layer.params.values()]


def adam_case(model: str, net: str, multi: bool = False) -> Case:
    shapes = _param_shapes(model, net)
    count = sum(int(np.prod(s)) for s in shapes)

    def make(rng: np.random.Generator) -> dict[str, Any]:
        return {
            "params": [_normal(rng, s, 0.05) for s in shapes],
            "grads": [_normal(rng, s, 0.01) for s in shapes],
            "ms": [np.zeros(s, np.float32) for s in shapes],
            "vs": [np.zeros(s, np.float32) for s in shapes],
        }

    def tiny(K: Any, a: dict) -> Runner:
        ps, gs, ms, vs = a["params"], a["grads"], a["ms"], a["vs"]
        # The reference has no multi-tensor kernel; its per-tensor update defines the expected values.
        if multi and getattr(K, "IMPLEMENTATION", "") != "reference":
            if not hasattr(K, "adam_update_multi"):
                raise NotImplementedError(f"{K.__name__} has no adam_update_multi")

            def fn() -> None:
                K.adam_update_multi(ps, gs, ms, vs, LR, *BETAS, EPS, 1)

        else:

            def fn() -> None:
                for p, g, m, v in zip(ps, gs, ms, vs):
                    K.adam_update(p, g, m, v, LR, *BETAS, EPS, 1)

        def outputs() -> tuple:
            fn()
            return (*ps, *ms, *vs)

        return Runner(fn, outputs)

    def torch_setup(a: dict) -> Runner:
        import torch

        ps = [torch.nn.Parameter(p) for p in a["params"]]
        for p, g in zip(ps, a["grads"]):
            p.grad = g
        opt = torch.optim.Adam(ps, lr=LR, betas=BETAS, eps=EPS, **({"fused": True} if multi else {}))

        def outputs() -> tuple:
            opt.step()
            state = [opt.state[p] for p in ps]
            return (*ps, *(s["exp_avg"] for s in state), *(s["exp_avg_sq"] for s in state))

        return Runner(opt.step, outputs)

    k = len(shapes)
    # tinygan's per-tensor adam_update against torch's default Adam; adam_update_multi (one launch for the model)
    # against Adam(fused=True).
    return Case(
        id=f"{model}.{net}.adam{'_multi' if multi else ''}",
        model=model,
        family="adam",
        layer=f"{net}: Adam, {k} tensors, {count:,} params" + (", one launch / fused" if multi else ""),
        pass_="update",
        make=make,
        tiny=tiny,
        torch=torch_setup,
        bound="memory",
        bytes=28.0 * count,  # p, g, m, v in; p, m, v out
        flops=12.0 * count,
        # Parameters rounded to float32 are off by up to 1 ulp of the largest; a missing or wrong update is
        # lr / max|p| ~ 1e-3 away.
        tolerance=(1e-5,) * k + (1e-4,) * (2 * k),
        devices=("gpu",) if multi else ("cpu", "gpu"),
    )


# -- the two models -----------------------------------------------------------------------------------------


def mnist_cases() -> list[Case]:
    n = MNIST_BATCH
    cases: list[Case] = []
    widths_g = [100, 256, 512, 1024, 784]
    for i in range(4):
        cases += dense_cases("mnist", "G", i + 1, n, widths_g[i], widths_g[i + 1])
    for i, w in enumerate(widths_g[1:4], 1):
        cases += activation_cases("mnist", "G", i, "ReLU", (n, w))
    cases += activation_cases("mnist", "G", 1, "Sigmoid", (n, 784))
    widths_d = [784, 1024, 512, 256, 1]
    for i in range(4):
        cases += dense_cases("mnist", "D", i + 1, n, widths_d[i], widths_d[i + 1])
    for i, w in enumerate(widths_d[1:4], 1):
        cases += activation_cases("mnist", "D", i, "ReLU", (n, w))
        cases += dropout_cases("mnist", i, (n, w))
    cases.append(bce_case("mnist", 2 * n))
    cases += [adam_case("mnist", "G"), adam_case("mnist", "D"), adam_case("mnist", "G", True)]
    cases.append(adam_case("mnist", "D", True))
    return cases


def dcgan_cases() -> list[Case]:
    n = DCGAN_BATCH
    cases: list[Case] = dense_cases("dcgan", "G", 1, n, 100, 2048)
    for i, (cin, cout, size) in enumerate(((128, 128, 4), (128, 64, 8), (64, 3, 16)), 1):
        cases += batchnorm_cases("dcgan", i, (n, cin, size, size))
        cases += activation_cases("dcgan", "G", i, "LeakyReLU", (n, cin, size, size))
        cases += conv_transpose2d_cases("dcgan", i, n, cin, cout, size)
    cases += activation_cases("dcgan", "G", 1, "Tanh", (n, 3, 32, 32))
    d_layers = ((3, 64, 32, 1), (64, 128, 32, 2), (128, 128, 16, 2), (128, 32, 8, 2))
    for i, (cin, cout, size, stride) in enumerate(d_layers, 1):
        cases += conv2d_cases("dcgan", i, n, cin, cout, size, 3, stride, 1)
        out = _out(size, 3, stride, 1)
        cases += activation_cases("dcgan", "D", i, "LeakyReLU", (n, cout, out, out))
    cases += dense_cases("dcgan", "D", 1, n, 512, 1)
    cases.append(bce_case("dcgan", 2 * n))
    cases += [adam_case("dcgan", "G"), adam_case("dcgan", "D"), adam_case("dcgan", "G", True)]
    cases.append(adam_case("dcgan", "D", True))
    return cases


def all_cases() -> list[Case]:
    return mnist_cases() + dcgan_cases()


def cases_for(device: str) -> list[Case]:
    return [c for c in all_cases() if device in c.devices]


def setup_runner(case: Case, impl: str, device: str, inputs: dict[str, Any] | None = None) -> Runner:
    """The case's runner for ``impl`` ("reference", "numba", "gpu" or "torch") on ``device``."""
    a = for_impl(case.inputs() if inputs is None else inputs, impl, device)
    if impl == "torch":
        if case.torch is None:
            raise NotImplementedError("no PyTorch equivalent")
        return case.torch(a)
    from tinygan import backend

    if device == "cpu":
        backend.set_cpu_kernels(impl)  # layer-level cases dispatch through the backend, not through K
    K = backend.kernels(device, None if device == "gpu" else impl)
    return case.tiny(K, a)


def expected_outputs(case: Case) -> tuple[dict[str, Any], tuple]:
    """(float64 inputs, the reference kernels' outputs on them): what every implementation must match."""
    import tinygan.kernels.reference as R

    a64 = as_float64(case.inputs())
    if case.check is not None:
        return a64, ()
    runner = case.tiny(R, convert(a64, np.copy))
    return a64, tuple(np.asarray(o) for o in runner.outputs())


def validate(case: Case, runner: Runner, expected: tuple[dict[str, Any], tuple]) -> tuple[bool, float, str]:
    from bench.harness import compare

    got = runner.outputs()
    a64, want = expected
    if case.check is not None:
        return case.check(a64, got)
    return compare(got, want, case.tolerance)


# -- whole-step FLOPs ---------------------------------------------------------------------------------------


def _gemm_layers(model: str, n: int) -> dict[str, list[float]]:
    """FLOPs of one pass (forward = data gradient = weight gradient) of each GEMM layer at batch n."""
    if model == "mnist":
        g = [100, 256, 512, 1024, 784]
        d = [784, 1024, 512, 256, 1]
        return {
            "G": [2.0 * n * g[i] * g[i + 1] for i in range(4)],
            "D": [2.0 * n * d[i] * d[i + 1] for i in range(4)],
        }
    g_layers = [2.0 * n * 100 * 2048] + [
        2.0 * n * cin * s * s * cout * 25 for cin, cout, s in ((128, 128, 4), (128, 64, 8), (64, 3, 16))
    ]
    d_layers = [
        2.0 * n * cout * out * out * cin * 9
        for cin, cout, out in ((3, 64, 32), (64, 128, 16), (128, 128, 8), (128, 32, 4))
    ] + [2.0 * n * 512]
    return {"G": g_layers, "D": d_layers}


def step_flops(model: str, n: int) -> float:
    """GEMM FLOPs of one GANStep call at batch n (elementwise work left out)."""
    f1, f2 = _gemm_layers(model, n), _gemm_layers(model, 2 * n)
    g, d, d2 = sum(f1["G"]), sum(f1["D"]), sum(f2["D"])
    first_d2, first_g = f2["D"][0], f1["G"][0]
    d_step = g + d2 + d2 + (d2 - first_d2)  # G fwd, D fwd and weight grads on 2n, D data grads but the first
    g_step = g + d + d + g + (g - first_g)  # G fwd, D fwd, D data grads, G weight grads, G data grads but the first
    return d_step + g_step
