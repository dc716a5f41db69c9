"""A whole training step of each GAN: tinygan's ``GANStep`` (``GANTrainer.step``) and the same step in PyTorch.

The PyTorch step is written to do tinygan's work and no more: the same layers, the same recipe (Adam
betas (0.5, 0.999), the examples' learning rates and label targets), the fake batch detached in the
discriminator step, the discriminator's weights frozen (no weight gradients) in the generator step,
no host synchronization. On the GPU it runs eager, and as one CUDA graph per step captured with
``torch.cuda.graph`` and ``Adam(capturable=True)``. Both sides compute in FP32 (TF32 off).

Validation, before anything is timed: every implementation takes one step from the same weights with
the same noise, labels and dropout masks (:class:`Draws`, injected in place of the random draws), and
its weight gradients of G and D must match tinygan's reference kernels run in float64 (tinygan's step takes
them through its public seam, ``GANStep.draws`` and each Dropout's ``rng``). The discriminator's
learning rate is 0 in that step: Adam's first update is lr * sign(gradient), so gradient entries near 0
whose sign differs in float32 would move G's gradients by far more than any kernel error. The Adam
kernels are validated on their own (bench/cases.py).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.layers import Dropout
from tinygan.models import LATENT_DIM
from tinygan.recipes import CIFAR_RECIPES, MNIST_RECIPES
from tinygan.train import GANConfig, GANTrainer

MODELS = ("mnist", "dcgan")
MODEL_NAME = {"mnist": "mnist_dense", "dcgan": "dcgan"}
BATCH = {"mnist": 125, "dcgan": 128}
DATA_SHAPE = {"mnist": (784,), "dcgan": (3, 32, 32)}
# The training settings of the examples' default recipes (tinygan.recipes): what a training run executes.
# The step's architecture is the models' default (ReLU and a sigmoid output for the MNIST GAN), without
# instance noise, as PyTorch's side below is written.
_TRAINING = ("lr_d", "lr_g", "beta1", "real_label", "fake_label")
RECIPE = {
    model: {key: recipes["default"][key] for key in _TRAINING}
    for model, recipes in (("mnist", MNIST_RECIPES), ("dcgan", CIFAR_RECIPES))
}
IMAGE_RANGE = {"mnist": "01", "dcgan": "tanh"}
# At initialization a weight gradient is a sum of ~1e5 terms of random sign that mostly cancel, and float32
# rounding moves a few pre-activations across a LeakyReLU/ReLU kink: float32 implementations (tinygan's
# reference, Numba and PyTorch alike) land 1e-3 to 3e-3 (of the largest entry) from float64. A wrong kernel
# is off by 1e-1 or more.
STEP_TOLERANCE = 1e-2
# With TF32 GEMM inputs (10-bit mantissas) the same comparison measured, on an H200 on 2026-12-02
# (bench/results/gpu-tests-2026-12-02.md, run 8): PyTorch's own TF32 step 8.1e-2 (MNIST) and 1.26e-1 (DCGAN)
# from float64, tinygan's tf32 step 9.2e-2 and 1.35e-1, array by array within a few percent of PyTorch's.
# The GAN step chains two networks' GEMMs, so TF32's rounding of every input grows to ~1e-1 in the
# first layers' weight gradients. A wrong kernel (a missing term, a transposed index) is off by ~1.
STEP_TOLERANCE_TF32 = 3e-1


def step_tolerance() -> float:
    """The tolerance of one step's gradients against float64 at the precision tinygan's GPU kernels run
    (tinygan.backend.get_precision(): fp32, or tf32 with 10-bit GEMM inputs; bf16, whose convolutions multiply
    7-bit inputs, is held to the tf32 tolerance too, and the report shows its measured error beside it)."""
    return STEP_TOLERANCE if backend.get_precision() == "fp32" else STEP_TOLERANCE_TF32


def real_batch(model: str, n: int, seed: int = 0) -> np.ndarray:
    """A fixed batch of "real" images in the range of G's output."""
    x = np.random.default_rng(seed).random((n, *DATA_SHAPE[model]), dtype=np.float32)
    return x if model == "mnist" else 2 * x - 1


# -- tinygan -------------------------------------------------------------------------------------------------


def tiny_config(model: str, n: int, device: str, dtype: Any = np.float32) -> GANConfig:
    options = {} if dtype == np.float32 else {"dtype": dtype}
    return GANConfig(
        model=MODEL_NAME[model],
        batch_size=n,
        device=device,
        image_range=IMAGE_RANGE[model],
        g_options=dict(options),
        d_options=dict(options),
        **RECIPE[model],
    )


def tiny_trainer(
    model: str, n: int, device: str, impl: str, dtype: Any = np.float32, config: dict | None = None, batches: int = 1
) -> GANTrainer:
    if device == "cpu":
        backend.set_cpu_kernels(impl)
    cfg = tiny_config(model, n, device, dtype)
    for key, value in (config or {}).items():
        setattr(cfg, key, value)
    out_dir = tempfile.mkdtemp(prefix="tinygan-bench-")  # never written: a step saves nothing
    return GANTrainer(cfg, real_batch(model, n * batches).astype(dtype), out_dir, progress=False)


@dataclasses.dataclass
class Built:
    """A ready training step: ``fn()`` runs one; ``stream`` is the CuPy stream it runs on, where the timing
    events must be recorded (None: the current stream); ``keep`` holds the trainer or models."""

    fn: Callable[[], Any]
    keep: Any
    how: str
    stream: Any = None


def tiny_step(trainer: GANTrainer) -> Callable[[], Any]:
    real = trainer.data[: trainer.config.batch_size]
    return lambda: trainer.step(real)


# Several batches of data, so that the device loop's batch gather reads different rows from step to step.
_DEVICE_LOOP_BATCHES = 4


def _device_loop_trainer(model: str, n: int, graph: bool) -> GANTrainer:
    import cupy

    trainer = tiny_trainer(model, n, "gpu", "gpu", config={"cuda_graph": graph}, batches=_DEVICE_LOOP_BATCHES)
    # The runner's stream does not wait for the default stream, where the data and weights were uploaded.
    cupy.cuda.Device().synchronize()
    trainer.runner.begin_epoch(trainer.rng.permutation(len(trainer.data)), 0)
    return trainer


def tiny_gpu_step(model: str, n: int, graph: bool) -> Built:
    """tinygan's GPU step as ``GANTrainer.run`` takes it (``trainer.runner.step``: batch gather, step and
    figures on the device): eager launches, or one CUDA graph recorded on the second call and replayed."""
    trainer = _device_loop_trainer(model, n, graph)
    how = "DeviceRunner.step, " + ("captured as one CUDA graph" if graph else "cuda_graph=False")
    return Built(trainer.runner.step, trainer, how, trainer.runner.stream)


def validate_tiny_graph(model: str, n: int, built: Built, steps: int = 4) -> tuple[bool, float, str]:
    """The captured step against the same trainer run eagerly: same seed, same batches, so after a few steps
    every weight must agree (tinygan launches the same kernels and draws the same numbers in both)."""
    import cupy

    trainer = built.keep
    eager = _device_loop_trainer(model, n, graph=False)
    for _ in range(steps):
        built.fn()
        eager.runner.step()
    cupy.cuda.Device().synchronize()
    if trainer.runner.graph.graph is None:
        return False, float("inf"), "the step was not captured (the trainer fell back to eager launches)"
    from bench.harness import compare

    got, want = tiny_parameters(trainer), [backend.to_numpy(p) for p in tiny_parameters(eager)]
    ok, err, text = compare(got, want, 1e-5)
    return ok, err, f"weights after {steps} steps against the same steps eager: {text}"


def tiny_gradients(trainer: GANTrainer) -> list[Any]:
    """Every weight gradient of G, then of D, in layer order (W, b / gamma, beta)."""
    return [layer.grads[k] for net in (trainer.G, trainer.D) for _, layer in net.named_layers() for k in layer.params]


def tiny_parameters(trainer: GANTrainer) -> list[Any]:
    return [layer.params[k] for net in (trainer.G, trainer.D) for _, layer in net.named_layers() for k in layer.params]


# -- the same random draws for everyone ----------------------------------------------------------------------


class Draws:
    """Noise, label targets and dropout masks in the order a step asks for them, from one seeded stream:
    z, real targets, fake targets, D's masks (layer order), z, D's masks."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.standard_normal(shape)

    def uniform(self, low: float, high: float, n: int) -> np.ndarray:
        return self.rng.uniform(low, high, (n, 1))

    def mask(self, shape: tuple[int, ...], p: float) -> np.ndarray:
        return self.rng.random(shape) >= p


class InjectedDraws:
    """:class:`Draws` in the form tinygan's step takes them (``tinygan.step.Draws``): arrays on the step's
    device, in its dtype; D's targets always drawn (also where a label range is constant), as PyTorch's
    side draws them."""

    def __init__(self, draws: Draws, trainer: GANTrainer) -> None:
        self.draws, self.dtype, self.device, self.config = draws, trainer.G.dtype, trainer.device, trainer.config

    def normal(self, shape: tuple[int, ...]) -> Any:
        return backend.to_device(self.draws.normal(shape).astype(self.dtype), self.device)

    def d_targets(self, n: int) -> Any:
        real, fake = self.draws.uniform(*self.config.real_label, n), self.draws.uniform(*self.config.fake_label, n)
        return backend.to_device(np.concatenate([real, fake]).astype(self.dtype), self.device)


def inject(trainer: GANTrainer, draws: Draws) -> None:
    """Give the trainer's step the random draws of ``draws``, through its public seam: the step's ``draws``,
    and each Dropout's mask generator (``rng``, with ``device_rng = None`` so a GPU Dropout draws its masks
    on the host from it, as on the CPU). ``Draws.mask`` is ``rng.random(shape) >= p``, what Dropout draws."""
    trainer.step.draws = InjectedDraws(draws, trainer)
    for _, layer in trainer.D.named_layers():
        if isinstance(layer, Dropout):
            layer.rng = draws.rng
            layer.device_rng = None


def reference_gradients(model: str, n: int) -> list[np.ndarray]:
    """The float64 reference kernels' gradients after one injected step: what every implementation must match."""
    saved = backend.get_cpu_kernels()
    try:
        trainer = tiny_trainer(model, n, "cpu", "reference", dtype=np.float64)
        inject(trainer, Draws())
        trainer.opt_d.lr = 0.0
        tiny_step(trainer)()
        return [np.array(g) for g in tiny_gradients(trainer)]
    finally:
        backend.set_cpu_kernels(saved)


def compare_gradients(
    got: list[Any], want: list[np.ndarray], tolerance: float | None = None
) -> tuple[bool, float, str]:
    """``got`` against ``want`` at ``tolerance`` (default: :func:`step_tolerance`, tinygan's precision)."""
    from bench.harness import compare

    # A bias followed by BatchNorm has an exactly zero gradient (the normalization removes any per-channel
    # shift); its float32 value is rounding noise, so errors are measured against 1e-3 of the largest gradient.
    floor = 1e-3 * max(float(np.max(np.abs(w))) for w in want)
    return compare(got, want, step_tolerance() if tolerance is None else tolerance, floor)


def validate_tiny(model: str, n: int, device: str, impl: str, want: list[np.ndarray]) -> tuple[bool, float, str]:
    trainer = tiny_trainer(model, n, device, impl)
    inject(trainer, Draws())
    trainer.opt_d.lr = 0.0
    tiny_step(trainer)()
    return compare_gradients(tiny_gradients(trainer), want)


# -- PyTorch -------------------------------------------------------------------------------------------------


def torch_models(model: str) -> tuple[Any, Any]:
    """G and D as torch.nn.Sequential, layer for layer as tinygan.models builds them."""
    from torch import nn

    if model == "mnist":
        g_layers: list[Any] = []
        width = LATENT_DIM
        for units in (256, 512, 1024):
            g_layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        G = nn.Sequential(*g_layers, nn.Linear(1024, 784), nn.Sigmoid())
        d_layers: list[Any] = []
        width = 784
        for units in (1024, 512, 256):
            d_layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(0.25)]
            width = units
        D = nn.Sequential(*d_layers, nn.Linear(256, 1))  # tinygan's final Sigmoid is skipped in training
        return G, D

    def up(cin: int, cout: int) -> Any:
        return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)

    G = nn.Sequential(
        nn.Linear(LATENT_DIM, 2048),
        nn.Unflatten(1, (128, 4, 4)),
        *(nn.BatchNorm2d(128), nn.LeakyReLU(0.2), up(128, 128)),
        *(nn.BatchNorm2d(128), nn.LeakyReLU(0.2), up(128, 64)),
        *(nn.BatchNorm2d(64), nn.LeakyReLU(0.2), up(64, 3)),
        nn.Tanh(),
    )
    d_layers = []
    for cin, cout, stride in ((3, 64, 1), (64, 128, 2), (128, 128, 2), (128, 32, 2)):
        d_layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
    D = nn.Sequential(*d_layers, nn.Flatten(), nn.Linear(512, 1))
    return G, D


def _param_modules(net: Any) -> list[Any]:
    return [m for m in net if any(True for _ in m.parameters(recurse=False))]


def copy_tiny_weights(trainer: GANTrainer, G: Any, D: Any) -> None:
    """Give the torch models tinygan's initial weights (Linear weights transposed: tinygan's are (in, out))."""
    import torch

    for tiny_net, torch_net in ((trainer.G, G), (trainer.D, D)):
        tiny_layers = [layer for _, layer in tiny_net.named_layers() if layer.params]
        for layer, module in zip(tiny_layers, _param_modules(torch_net), strict=True):
            values = [backend.to_numpy(v) for v in layer.params.values()]
            if isinstance(module, torch.nn.Linear):
                values[0] = values[0].T
            with torch.no_grad():
                for param, value in zip(module.parameters(recurse=False), values, strict=True):
                    param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def torch_gradients(G: Any, D: Any) -> list[Any]:
    """The torch models' gradients in tiny_gradients' order and layouts."""
    import torch

    out = []
    for net in (G, D):
        for module in _param_modules(net):
            for i, param in enumerate(module.parameters(recurse=False)):
                grad = param.grad.detach().cpu()
                out.append(grad.T if i == 0 and isinstance(module, torch.nn.Linear) else grad)
    return [g.numpy() for g in out]


class TorchGAN:
    """One GANStep call in PyTorch; ``step(real)`` returns the two losses as device tensors."""

    def __init__(self, model: str, device: str, capturable: bool = False) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.G, self.D = (net.to(self.device) for net in torch_models(model))
        recipe = RECIPE[model]
        betas = (recipe["beta1"], 0.999)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=recipe["lr_d"], betas=betas, capturable=capturable)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=recipe["lr_g"], betas=betas, capturable=capturable)
        self.real_label, self.fake_label = recipe["real_label"], recipe["fake_label"]

    # The three random draws; validation swaps them for Draws.
    def normal(self, shape: tuple[int, ...]) -> Any:
        return self.torch.randn(shape, device=self.device)

    def uniform(self, low: float, high: float, n: int) -> Any:
        if low == high:
            return self.torch.full((n, 1), low, device=self.device)
        return low + (high - low) * self.torch.rand((n, 1), device=self.device)

    def step(self, real: Any) -> tuple[Any, Any]:
        F = self.torch.nn.functional
        n = real.shape[0]
        fake = self.G(self.normal((n, LATENT_DIM)))
        batch = self.torch.cat([real, fake.detach().reshape(real.shape)])
        targets = self.torch.cat([self.uniform(*self.real_label, n), self.uniform(*self.fake_label, n)])
        d_loss = F.binary_cross_entropy_with_logits(self.D(batch), targets)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        fake = self.G(self.normal((n, LATENT_DIM))).reshape(real.shape)
        self.D.requires_grad_(False)  # gradients flow through D to G; D's own weight gradients are not needed
        logits = self.D(fake)
        g_loss = F.binary_cross_entropy_with_logits(logits, self.torch.ones_like(logits))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return d_loss, g_loss


def _fixed_mask_dropout(p: float, draws: Draws) -> Any:
    """Stands in for nn.Dropout during validation: the mask comes from ``draws``."""
    import torch

    class FixedMaskDropout(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            mask = torch.from_numpy(draws.mask(tuple(x.shape), p)).to(x.device)
            return x * mask / (1 - p)

    return FixedMaskDropout()


def torch_real(model: str, n: int, device: str) -> Any:
    import torch

    return torch.from_numpy(real_batch(model, n)).to("cuda" if device == "gpu" else "cpu")


# PyTorch's precision modes on the GPU: (cuBLAS TF32, cuDNN TF32). "default" is what PyTorch does unless
# told otherwise (TF32 convolutions through cuDNN, FP32 matrix products), the comparison a user meets.
TORCH_PRECISIONS = {"fp32": (False, False), "tf32": (True, True), "default": (False, True)}


def configure_torch(device: str, precision: str = "fp32") -> None:
    """On the GPU, PyTorch's precision: ``"fp32"`` (no TF32 anywhere, tinygan's default), ``"tf32"`` (TF32
    matrix products and convolutions, tinygan's ``--precision tf32``) or ``"default"`` (PyTorch's own
    defaults: TF32 convolutions only). On the CPU as many threads as the machine has cores."""
    import torch

    from bench.harness import usable_cores

    if device == "gpu":
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = TORCH_PRECISIONS[precision]
    else:
        torch.set_num_threads(usable_cores())


def validate_torch(
    model: str, n: int, device: str, want: list[np.ndarray], precision: str = "fp32"
) -> tuple[bool, float, str]:
    """PyTorch's step at ``precision`` (:data:`TORCH_PRECISIONS`) against ``want``, at that precision's
    tolerance: FP32's only where no TF32 is on."""
    import torch

    configure_torch(device, precision)
    saved = backend.get_cpu_kernels()
    reference = tiny_trainer(model, n, "cpu", "reference")
    backend.set_cpu_kernels(saved)
    gan = TorchGAN(model, device)
    copy_tiny_weights(reference, gan.G, gan.D)
    draws = Draws()
    gan.normal = lambda shape: torch.from_numpy(draws.normal(shape).astype(np.float32)).to(gan.device)
    gan.uniform = lambda low, high, k: torch.from_numpy(draws.uniform(low, high, k).astype(np.float32)).to(gan.device)
    for i, module in enumerate(gan.D):
        if isinstance(module, torch.nn.Dropout):
            gan.D[i] = _fixed_mask_dropout(module.p, draws)
    for group in gan.opt_d.param_groups:
        group["lr"] = 0.0
    gan.step(torch_real(model, n, device))
    tolerance = STEP_TOLERANCE if precision == "fp32" else STEP_TOLERANCE_TF32
    return compare_gradients(torch_gradients(gan.G, gan.D), want, tolerance)


def torch_step(model: str, n: int, device: str) -> Built:
    configure_torch(device)
    gan = TorchGAN(model, device)
    real = torch_real(model, n, device)
    return Built(lambda: gan.step(real), gan, "torch eager")


def torch_graph_step(model: str, n: int, warmup: int = 3, precision: str = "fp32") -> Built:
    """The whole step captured as one CUDA graph (the recipe of PyTorch's CUDA-graphs notes: warm up on a
    side stream so that Adam's capturable state exists, then capture; every replay draws fresh noise)."""
    import torch

    configure_torch("gpu", precision)
    gan = TorchGAN(model, "gpu", capturable=True)
    real = torch_real(model, n, "gpu")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            gan.step(real)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    gan.opt_d.zero_grad(set_to_none=True)
    gan.opt_g.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        gan.static_losses = gan.step(real)
    # The graph reads the batch at the address it was captured with, and nothing else holds it: freed, its block
    # went back to PyTorch's cache, and the next torch.cuda.graph capture (which empties the cache) returned it
    # to the driver, so this graph's next replay read unmapped memory (the illegal address of the eighth and
    # thirteenth sessions, in the first DCGAN graph once the others were captured). Kept with the model.
    gan.static_real = real
    return Built(graph.replay, gan, "torch.cuda.graph, Adam(capturable=True)")


def check_graph_step(built: Built) -> tuple[bool, float, str]:
    """A replayed graph is the eager step it captured (validated above); check that replays train:
    finite losses and weights that move."""
    import torch

    gan = built.keep
    before = [p.detach().clone() for p in gan.G.parameters()]
    built.fn()
    torch.cuda.synchronize()
    losses = [float(v.detach()) for v in gan.static_losses]
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(gan.G.parameters(), before))
    ok = all(np.isfinite(losses)) and moved > 0
    return ok, 0.0, f"replay: losses {losses[0]:.3f} {losses[1]:.3f}, largest G weight change {moved:.1e}"
