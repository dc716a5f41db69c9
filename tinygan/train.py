"""The GAN training loop shared by both examples.

One training step, as a reader should be able to follow it (``GANTrainer.train_step``)::

    z -> G.forward -> fake
    D.forward([real, fake]) -> logits -> BCE(targets real=1, fake=0) -> dlogits
    D.backward(dlogits)            (weight gradients only: D's input gradient is not needed)
    Adam(D)
    fresh z -> G.forward -> D.forward -> generator loss -> dlogits
    D.backward(dlogits, param_grads=False)   (D is frozen: gradients flow through it, its weights stay)
    G.backward(...)                (weight gradients of G)
    Adam(G)

Around it: epochs of random batches, a progress bar, one summary line per epoch, sample grids from a
fixed noise, plots, ``metrics.csv``, an atomic checkpoint after every epoch, exact resume, a NaN guard,
Ctrl-C that saves before it stops, and optional auto-stop when the discriminator dominates.

On the GPU the same step runs without a single host round trip: the data is uploaded once and the
epoch's batch order once per epoch, the step picks its batch on the device, noise, labels and dropout
masks are drawn on the device (counter-based Philox generators whose counters live there), Adam's
step count lives there too, and the logged figures are summed there and read every ``log_every``
steps. That makes the whole step (D steps, G step, both Adam updates, the figures) capturable as one
CUDA graph, which ``run`` records on the second step and replays from then on (``cuda_graph``;
the mechanism is ``tinygan.cuda_graph.StepGraph``):
these models are small, so launching ~200 kernels one by one costs more than running them. The
eager and the replayed step launch the same kernels in the same order and draw the same numbers, so
a run gives the same weights with or without the graph.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    subtree,
    with_prefix,
)
from tinygan.losses import bce_with_logits, generator_loss
from tinygan.models import IMAGE_SHAPES, LATENT_DIM, build
from tinygan.optim import Adam
from tinygan.viz import plot_grad_norms, plot_losses, save_gif, save_grid, to_images


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class GANConfig:
    """Everything that defines a run; saved as ``config.json`` and inside every checkpoint."""

    model: str = "mnist_dense"
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
    sample_every: int = 1
    checkpoint_every: int = 0  # also keep checkpoints/epoch_NNNN.npz every N epochs (0: only the latest)
    auto_stop: bool = False
    auto_stop_threshold: float = 0.95  # D's accuracy on generated images that counts as dominating
    auto_stop_patience: int = 10  # consecutive dominated epochs before stopping
    log_every: int = 20  # steps between host synchronizations for the progress bar and NaN guard
    image_range: str = "01"  # "01" for a sigmoid generator, "tanh" for [-1, 1]
    cuda_graph: bool = True  # on the GPU: capture the training step as one CUDA graph and replay it

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GANConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        data = dict(data)
        for key in ("real_label", "fake_label"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _sync_and_float(x: Any) -> float:
    return float(x.item() if hasattr(x, "item") else x)


class GANTrainer:
    """Trains a generator ``G`` against a discriminator ``D`` on ``data`` (float32, (n, ...) in G's range)."""

    METRICS = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_fake")

    def __init__(self, config: GANConfig, data: np.ndarray, out_dir: str | os.PathLike, progress: bool = True):
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.device = config.device
        self.xp = backend.xp_for(self.device)
        if config.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, received {config.batch_size}")
        if len(data) < config.batch_size:
            raise ValueError(f"need at least one batch: {len(data)} images for batch size {config.batch_size}")
        self.G = build(config.model, "G", **config.g_options).to(self.device)
        self.D = build(config.model, "D", **config.d_options).to(self.device)
        self.image_shape = IMAGE_SHAPES[config.model]
        self.latent_dim = int(config.g_options.get("latent_dim", LATENT_DIM))
        self.data = backend.to_device(np.ascontiguousarray(data, dtype=self.G.dtype), self.device)
        self.opt_d = Adam(self.D, lr=config.lr_d, betas=(config.beta1, config.beta2))
        self.opt_g = Adam(self.G, lr=config.lr_g, betas=(config.beta1, config.beta2))
        self.rng = np.random.default_rng(config.seed)  # batch order, and on the CPU noise and label smoothing
        self.noise_rng = self._noise_generator(config.seed)
        self.fixed_noise = np.random.default_rng([config.seed, 1]).standard_normal((64, self.latent_dim))
        self.steps_per_epoch = len(data) // config.batch_size
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0
        self.global_step = 0
        self.perm: np.ndarray | None = None
        self.sums = dict.fromkeys(self.METRICS, 0.0)
        self.history: list[dict[str, float]] = []
        self.best_balance = math.inf
        self.dominated_epochs = 0
        self.stop_requested = False
        self.resume_hint = "resume with --resume " + str(self.out_dir)
        if self.device == "gpu":
            self._init_gpu()

    # -- randomness ---------------------------------------------------------------------------
    def _noise_generator(self, seed: int) -> Any:
        if self.device == "gpu":
            from tinygan.gpu_random import PhiloxGenerator

            return PhiloxGenerator(seed)
        return self.rng

    def _normal(self, shape: tuple[int, ...]) -> Any:
        if self.device == "gpu":
            return self.noise_rng.normal(shape, self.G.dtype)
        return self.rng.standard_normal(shape, dtype=self.G.dtype)

    def _uniform(self, low: float, high: float, n: int) -> Any:
        if low == high:
            return self.xp.full((n, 1), low, dtype=self.G.dtype)
        return self.rng.uniform(low, high, size=(n, 1)).astype(self.G.dtype)

    def _rng_owners(self) -> dict[str, Any]:
        owners = {"trainer": self.rng}
        if self.noise_rng is not self.rng:
            owners["noise"] = self.noise_rng
        for net_name, net in (("G", self.G), ("D", self.D)):
            for prefix, layer in net.named_layers():
                if getattr(layer, "rng", None) is not None:
                    owners[f"{net_name}.{prefix}"] = layer.rng
                if getattr(layer, "device_rng", None) is not None:  # Dropout on the GPU
                    owners[f"{net_name}.{prefix}.device"] = layer.device_rng
        return owners

    def noise_sigma(self) -> float:
        """Instance noise (Sonderby et al., 2016; Arjovsky & Bottou, 2017) annealed linearly to zero."""
        if self.config.instance_noise <= 0:
            return 0.0
        progress = (self.epoch * self.steps_per_epoch + self.step_in_epoch) / (
            self.config.epochs * self.steps_per_epoch
        )
        return self.config.instance_noise * max(0.0, 1.0 - progress)

    def _noisy(self, x: Any, sigma: float) -> Any:
        if self.device == "gpu":
            # sigma is read from device memory (see _set_sigma), never from the host value.
            return x if self._sigma is None else self._gpu.concat_noisy(x, None, self._normal(x.shape), self._sigma)
        return x if sigma == 0.0 else x + sigma * self._normal(x.shape)

    def _d_batch(self, real: Any, fake: Any, sigma: float) -> Any:
        """D's input: the real images, then the generated ones, each with instance noise."""
        if self.device == "gpu":
            noise = None if self._sigma is None else self._normal((2 * real.shape[0], *real.shape[1:]))
            return self._gpu.concat_noisy(real, fake, noise, self._sigma)
        return self.xp.concatenate([self._noisy(real, sigma), self._noisy(fake, sigma)])

    def _d_targets(self, n: int) -> Any:
        """D's targets, (2n, 1): n real labels, then n fake ones."""
        cfg = self.config
        if self.device == "gpu":
            return self._gpu_targets(n)
        return self.xp.concatenate([self._uniform(*cfg.real_label, n), self._uniform(*cfg.fake_label, n)])

    def _d_figures(self, logits: Any, n: int) -> dict[str, Any]:
        """D(x), D(G(z)) and the share of generated images D recognised, from D's logits."""
        if self.device == "gpu":
            figures = self._gpu.d_figures(logits, n)
            return {"d_real": figures[0], "d_fake": figures[1], "d_acc_fake": figures[2]}
        real_logits, fake_logits = logits[:n], logits[n:]
        return {
            "d_real": _sigmoid_mean(real_logits),
            "d_fake": _sigmoid_mean(fake_logits),
            "d_acc_fake": (fake_logits < 0).mean(),
        }

    # -- one step -------------------------------------------------------------------------------
    def discriminator_step(self, real: Any) -> dict[str, Any]:
        n = real.shape[0]
        sigma = self.noise_sigma()
        fake = self.G.forward(self._normal((n, self.latent_dim)), training=True)
        batch = self._d_batch(real, fake.reshape(real.shape), sigma)
        targets = self._d_targets(n)
        logits = self.D.forward(batch, training=True, logits=True)
        loss, dlogits = bce_with_logits(logits, targets)
        self.opt_d.zero_grad()
        self.D.backward(dlogits, input_grad=False)
        self.opt_d.step()
        return {"d_loss": loss, **self._d_figures(logits, n)}

    def generator_step(self, n: int) -> dict[str, Any]:
        fake = self.G.forward(self._normal((n, self.latent_dim)), training=True)
        fake = self._noisy(fake.reshape((n, *self._d_input_shape())), self.noise_sigma())
        logits = self.D.forward(fake, training=True, logits=True)
        loss, dlogits = generator_loss(logits, kind=self.config.g_loss)
        self.opt_g.zero_grad()
        dfake = self.D.backward(dlogits, param_grads=False)
        self.G.backward(dfake.reshape(self._g_output_shape(n)), input_grad=False)
        self.opt_g.step()
        return {"g_loss": loss}

    def train_step(self, real: Any) -> dict[str, Any]:
        """D steps and a G step on the batch ``real``. The figures are floats on the CPU and 0-d device
        arrays on the GPU (nothing here waits for the device)."""
        with self._step_context(real):
            figures: dict[str, Any] = {}
            for _ in range(self.config.d_steps):
                figures.update(self.discriminator_step(real))
            figures.update(self.generator_step(real.shape[0]))
        return figures

    def _step_context(self, real: Any) -> Any:
        if self.device != "gpu":
            return contextlib.nullcontext()
        if not backend.is_gpu_array(real):
            raise ValueError(
                f"GANTrainer.train_step: the batch is on the {backend.device_of(real)} but the models are on the gpu; "
                "move it with tinygan.backend.to_device(batch, 'gpu')"
            )
        if not self._step_graph.capturing:  # a fill would be recorded with this step's value
            self._set_sigma()
        return self._capture_gemm()

    def _d_input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def _g_output_shape(self, n: int) -> tuple[int, ...]:
        return self.G.output_shape((n, self.latent_dim))

    # -- epochs -----------------------------------------------------------------------------------
    def _batch(self, step: int) -> Any:
        b = self.config.batch_size
        idx = self.perm[step * b : (step + 1) * b]
        return self.data[backend.to_device(idx, self.device)]

    def run(self) -> list[dict[str, float]]:
        """Train until ``config.epochs`` (or auto-stop, Ctrl-C, divergence). Returns the metric history."""
        from tqdm import tqdm

        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._write_json(self.out_dir / "config.json", dataclasses.asdict(cfg))
        previous_handler = self._install_sigint()
        try:
            with self._on_device():
                self._epochs(tqdm)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            self._write_plots()
            self._write_gif()
        return self.history

    def _epochs(self, tqdm: Any) -> None:
        cfg = self.config
        while self.epoch < cfg.epochs and not self.stop_requested:
            if self.step_in_epoch == 0:
                self.perm = self.rng.permutation(len(self.data))
                self.sums = dict.fromkeys(self.METRICS, 0.0)
                self.epoch_start_time = time.perf_counter()
                self.epoch_seconds_before = 0.0
            start = time.perf_counter()
            bar = tqdm(
                total=self.steps_per_epoch,
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                unit="step",
                disable=not self.progress,
                leave=False,
                dynamic_ncols=True,
            )
            if self.device == "gpu":
                self._gpu_steps(bar, start)
            else:
                self._cpu_steps(bar, start)
            bar.close()
            self.epoch_seconds_before += time.perf_counter() - start
            if self.step_in_epoch == self.steps_per_epoch:
                self._end_epoch()
        if self.stop_requested:
            path = self.save()
            print(f"stopped at epoch {self.epoch + 1}, step {self.step_in_epoch}: saved {path}; {self.resume_hint}")

    def _cpu_steps(self, bar: Any, start: float) -> None:
        cfg = self.config
        pending: list[dict[str, Any]] = []
        while self.step_in_epoch < self.steps_per_epoch and not self.stop_requested:
            figures = self.train_step(self._batch(self.step_in_epoch))
            pending.append(figures)
            self.step_in_epoch += 1
            self.global_step += 1
            if len(pending) >= cfg.log_every or self.step_in_epoch == self.steps_per_epoch:
                self._absorb(pending)
                self._show_progress(bar, len(pending), start)
                pending = []
        if pending:
            self._absorb(pending)

    def _show_progress(self, bar: Any, count: int, start: float) -> None:
        bar.update(count)
        done = self.step_in_epoch
        elapsed = self.epoch_seconds_before + time.perf_counter() - start
        bar.set_postfix(
            d_loss=f"{self.sums['d_loss'] / done:.3f}",
            g_loss=f"{self.sums['g_loss'] / done:.3f}",
            img_s=f"{done * self.config.batch_size / max(elapsed, 1e-9):.0f}",
        )

    def _absorb(self, pending: list[dict[str, Any]]) -> None:
        """Bring a few steps' figures to the host (the only synchronization inside an epoch) and check them."""
        first_step = self.global_step - len(pending) + 1
        for offset, figures in enumerate(pending):
            for key, value in figures.items():
                value = _sync_and_float(value)
                if not math.isfinite(value):
                    step = first_step + offset
                    raise TrainingDiverged(
                        f"{key} became {value} at step {step} (epoch {self.epoch + 1}); training stopped. "
                        f"The last good checkpoint is {self.out_dir / 'checkpoint.npz'} "
                        "(try a lower learning rate, or label smoothing)"
                    )
                self.sums[key] += value

    # -- the GPU step, captured as one CUDA graph (tinygan.cuda_graph) -------------------------------
    def _init_gpu(self) -> None:
        cp = self.xp
        from tinygan.cuda_graph import StepGraph
        from tinygan.kernels.gpu import _common, gan

        self._gpu = gan  # the step's own kernels: batch gather, D's input, labels, figures
        self._capture_gemm = _common.capture_gemm
        dtype = self.G.dtype
        # Capture needs a stream of its own; everything of run() goes there, so its order is the stream's.
        self._stream = cp.cuda.Stream(non_blocking=True)
        self._real = cp.empty((self.config.batch_size, *self.data.shape[1:]), dtype=dtype)
        self._perm_dev = cp.zeros(len(self.data), dtype=cp.int64)
        self._pos = cp.zeros(1, dtype=cp.int64)  # steps taken in the epoch: which batch is next
        self._acc = cp.zeros(len(self.METRICS), dtype=cp.float64)  # figures summed since the last read
        self._sigma = cp.zeros((), dtype=dtype) if self.config.instance_noise > 0 else None
        self._targets: dict[int, Any] = {}
        self._step_graph = StepGraph(
            self._stream, self._device_step, self._device_arrays, self.config.cuda_graph, self._set_sigma
        )

    def _set_sigma(self) -> None:
        if self._sigma is not None:
            self._sigma.fill(self.noise_sigma())

    def _gpu_targets(self, n: int) -> Any:
        cfg = self.config
        t = self._targets.get(n)
        fixed = cfg.real_label[0] == cfg.real_label[1] and cfg.fake_label[0] == cfg.fake_label[1]
        if t is None:
            t = self._targets[n] = self.xp.empty((2 * n, 1), dtype=self.G.dtype)
            if fixed:  # written once: no launch at all in later steps
                t[:n].fill(cfg.real_label[0])
                t[n:].fill(cfg.fake_label[0])
        if not fixed:
            self.noise_rng.uniform_into(t)
            self._gpu.label_ranges_(t, n, cfg.real_label, cfg.fake_label)
        return t

    @contextlib.contextmanager
    def _on_device(self) -> Any:
        """On the GPU: run on the trainer's stream, after whatever other streams left pending (uploads
        of a resume), and wait for it before returning, so callers can read the results."""
        if self.device != "gpu":
            yield
            return
        self.xp.cuda.Device().synchronize()
        try:
            with self._stream:
                yield
        finally:
            self._stream.synchronize()

    def _gpu_steps(self, bar: Any, start: float) -> None:
        cfg = self.config
        self._gpu_begin_epoch()
        pending = 0
        while self.step_in_epoch < self.steps_per_epoch and not self.stop_requested:
            self._gpu_step()
            pending += 1
            self.step_in_epoch += 1
            self.global_step += 1
            if pending >= cfg.log_every or self.step_in_epoch == self.steps_per_epoch:
                self._absorb_device(pending)
                self._show_progress(bar, pending, start)
                pending = 0
        if pending:
            self._absorb_device(pending)

    def _gpu_begin_epoch(self) -> None:
        """Upload the epoch's batch order and position; drop a graph whose arrays were replaced."""
        self._step_graph.check_arrays()
        with self._stream:
            self._perm_dev.set(np.ascontiguousarray(self.perm, dtype=np.int64))
            self._pos.fill(self.step_in_epoch)
            self._acc.fill(0)

    def _gpu_step(self) -> None:
        """One training step on the GPU, with no host synchronization: the first eagerly (it compiles
        kernels and builds what capture may not allocate), the second captured, then replays."""
        self._step_graph()

    def _device_step(self) -> None:
        """What the graph holds: pick the batch, train on it, add its figures to the running sums."""
        self._gpu.gather_rows(self.data, self._perm_dev, self._pos, self._real)
        figures = self.train_step(self._real)
        self._gpu.step_end(self._acc, [figures[key] for key in self.METRICS], self._pos)

    def _device_arrays(self) -> list[Any]:
        """Every persistent array a captured step reads or writes (the graph holds their addresses)."""
        arrays = [self.data, self._perm_dev, self._pos, self._acc, self._real, self.noise_rng._state]
        arrays += [a for a in (self._sigma, *self._targets.values()) if a is not None]
        for net in (self.G, self.D):
            for _, layer in net.named_layers():
                for store in (layer.params, layer.grads, layer.buffers):
                    arrays += list(store.values())
                if getattr(layer, "device_rng", None) is not None:
                    arrays.append(layer.device_rng._state)
        for opt in (self.opt_d, self.opt_g):
            arrays += [*opt.m.values(), *opt.v.values(), opt._device_step]
        return arrays

    def _absorb_device(self, count: int) -> None:
        """Read the figures summed over the last ``count`` steps (the only synchronization inside an
        epoch on the GPU) and check them."""
        with self._stream:
            sums = self._acc.get()
            self._acc.fill(0)
        last = self.global_step
        window = f"step {last}" if count == 1 else f"steps {last - count + 1}-{last}"
        for key, value in zip(self.METRICS, sums):
            value = float(value)
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"{key} became {value} in {window} (epoch {self.epoch + 1}); training stopped. "
                    f"The last good checkpoint is {self.out_dir / 'checkpoint.npz'} "
                    "(try a lower learning rate, or label smoothing)"
                )
            self.sums[key] += value

    def gpu_memory(self) -> dict[str, int]:
        """GPU memory in bytes: CuPy's default pool (in use, held), the CUDA graph's private pool, and
        what the whole device has in use (every process and the CUDA context included)."""
        cp = self.xp
        pool = cp.get_default_memory_pool()
        free, total = cp.cuda.runtime.memGetInfo()
        return {
            "pool_used": int(pool.used_bytes()),
            "pool_held": int(pool.total_bytes()),
            "graph_pool": self._step_graph.pool_bytes(),
            "device_used": int(total - free),
        }

    def _end_epoch(self) -> None:
        cfg = self.config
        seconds = self.epoch_seconds_before
        row: dict[str, float] = {"epoch": self.epoch + 1, "steps": self.global_step}
        row.update({key: self.sums[key] / self.steps_per_epoch for key in self.METRICS})
        row["seconds"] = seconds
        row["images_per_s"] = self.steps_per_epoch * cfg.batch_size / max(seconds, 1e-9)
        row.update(self.gradient_norms())
        memory = ""
        if self.device == "gpu":
            used = self.gpu_memory()
            row["gpu_memory_mib"] = (used["pool_held"] + used["graph_pool"]) / 2**20
            memory = f"  GPU memory {row['gpu_memory_mib']:.0f} MiB"
        self.history.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        print(
            f"epoch {self.epoch}/{cfg.epochs}  d_loss {row['d_loss']:.3f}  g_loss {row['g_loss']:.3f}  "
            f"D(x) {row['d_real']:.2f}  D(G(z)) {row['d_fake']:.2f}  {seconds:.1f} s  "
            f"{row['images_per_s']:.0f} img/s{memory}",
            flush=True,
        )
        self._write_metrics()
        # Plots cost more than a short epoch (a per-class CIFAR-10 epoch is two steps): draw them with the
        # sample grids, and once more when the run ends for any reason.
        if self.epoch % cfg.sample_every == 0 or self.epoch == cfg.epochs:
            self.save_samples()
            self._write_plots()
        self.save()
        if cfg.checkpoint_every and self.epoch % cfg.checkpoint_every == 0:
            self.save(self.out_dir / "checkpoints" / f"epoch_{self.epoch:04d}.npz")
        if cfg.auto_stop:
            self._auto_stop(row)

    def _auto_stop(self, row: dict[str, float]) -> None:
        """Stop once D has recognised at least ``auto_stop_threshold`` of the generated images for
        ``auto_stop_patience`` epochs in a row; keep as ``best.npz`` the most balanced epoch so far
        (D's accuracy on generated images closest to 0.5)."""
        cfg = self.config
        balance = abs(row["d_acc_fake"] - 0.5)
        if balance < self.best_balance:
            self.best_balance = balance
            self.save(self.out_dir / "best.npz")
        self.dominated_epochs = self.dominated_epochs + 1 if row["d_acc_fake"] >= cfg.auto_stop_threshold else 0
        if self.dominated_epochs >= cfg.auto_stop_patience:
            print(
                f"auto-stop: D recognised >= {cfg.auto_stop_threshold:.0%} of generated images for "
                f"{self.dominated_epochs} epochs; the most balanced epoch is kept in {self.out_dir / 'best.npz'}"
            )
            self.config.epochs = self.epoch

    def gradient_norms(self) -> dict[str, float]:
        """The last step's weight-gradient norm of every layer of G and D (a diagnostic, logged per epoch)."""
        norms = {}
        for net_name, net in (("G", self.G), ("D", self.D)):
            for prefix, layer in net.named_layers():
                if "W" in layer.grads:
                    g = layer.grads["W"]
                    norms[f"grad_{net_name}_{prefix}"] = _sync_and_float(self.xp.sqrt((g * g).sum()))
        return norms

    # -- outputs -------------------------------------------------------------------------------------
    def generate(self, z: np.ndarray) -> np.ndarray:
        """G's images for noise ``z`` (host array) in [0, 1], (n, H, W) or (n, H, W, 3)."""
        out = self.G.forward(backend.to_device(z.astype(self.G.dtype), self.device), training=False)
        return to_images(backend.to_numpy(out), self.image_shape, self.config.image_range)

    def save_samples(self) -> Path:
        path = self.out_dir / "samples" / f"epoch_{self.epoch:04d}.png"
        return save_grid(self.generate(self.fixed_noise), path)

    def _write_plots(self) -> None:
        if self.history:
            plot_losses(self.history, self.out_dir / "losses.png")
            plot_grad_norms(self.history, self.out_dir / "grad_norms.png")

    def _write_gif(self) -> None:
        frames = sorted((self.out_dir / "samples").glob("epoch_*.png"))
        if frames:
            save_gif(frames, self.out_dir / "samples.gif")

    def _write_metrics(self) -> None:
        fields: list[str] = []
        for row in self.history:
            fields += [k for k in row if k not in fields]
        tmp = self.out_dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, self.out_dir / "metrics.csv")

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    # -- checkpoints ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write everything needed to continue exactly: both models, both optimizers, the position in the
        epoch (with its batch order), every random generator's state and the metric history."""
        path = Path(path) if path else self.out_dir / "checkpoint.npz"
        opt_g, opt_d = self.opt_g.state_dict(), self.opt_d.state_dict()
        steps = {"opt_G_step": opt_g.pop("step"), "opt_D_step": opt_d.pop("step")}
        arrays = {
            **with_prefix(self.G.state_dict(), "G"),
            **with_prefix(self.D.state_dict(), "D"),
            **with_prefix(opt_g, "opt_G"),
            **with_prefix(opt_d, "opt_D"),
            "fixed_noise": self.fixed_noise,
        }
        if self.perm is not None:
            arrays["perm"] = self.perm
        meta = {
            "config": dataclasses.asdict(self.config),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            **steps,
            "rng": {name: rng_state(gen) for name, gen in self._rng_owners().items()},
            "sums": self.sums,
            "epoch_seconds_before": getattr(self, "epoch_seconds_before", 0.0),
            "history": self.history,
            "best_balance": None if math.isinf(self.best_balance) else self.best_balance,
            "dominated_epochs": self.dominated_epochs,
        }
        return save_checkpoint(path, arrays, meta)

    @classmethod
    def resume(
        cls, run_dir: str | os.PathLike, data: np.ndarray, overrides: dict[str, Any] | None = None, **kwargs: Any
    ) -> GANTrainer:
        """Continue the run in ``run_dir`` from its checkpoint. ``overrides`` may change only settings that
        do not alter the trajectory (``epochs``, ``sample_every``, ``checkpoint_every``, ``log_every``,
        ``device``, ``cuda_graph``)."""
        run_dir = Path(run_dir)
        path = run_dir / "checkpoint.npz" if run_dir.is_dir() else run_dir
        arrays, meta = load_checkpoint(path)
        try:
            config = GANConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad configuration record: {exc}") from None
        allowed = {"epochs", "sample_every", "checkpoint_every", "log_every", "device", "cuda_graph"}
        for key, value in (overrides or {}).items():
            if key not in allowed:
                raise ValueError(f"--resume cannot change {key!r}: it would change the run")
            setattr(config, key, value)
        trainer = cls(config, data, path.parent, **kwargs)
        trainer.load_state(arrays, meta, source=str(path))
        return trainer

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], source: str) -> None:
        try:
            self.G.load_state_dict(subtree(arrays, "G"), source=source)
            self.D.load_state_dict(subtree(arrays, "D"), source=source)
            self.opt_g.load_state_dict({**subtree(arrays, "opt_G"), "step": meta["opt_G_step"]})
            self.opt_d.load_state_dict({**subtree(arrays, "opt_D"), "step": meta["opt_D_step"]})
            self.fixed_noise = arrays["fixed_noise"]
            self.perm = arrays.get("perm")
            self.epoch, self.step_in_epoch = int(meta["epoch"]), int(meta["step_in_epoch"])
            self.global_step = int(meta["global_step"])
            owners = self._rng_owners()
            if set(owners) != set(meta["rng"]):
                raise CheckpointError(f"random generators {sorted(meta['rng'])}, expected {sorted(owners)}")
            for name, gen in owners.items():
                set_rng_state(gen, meta["rng"][name])
            self.sums = {k: float(v) for k, v in meta["sums"].items()}
            self.epoch_seconds_before = float(meta.get("epoch_seconds_before", 0.0))
            self.history = list(meta["history"])
            best = meta.get("best_balance")
            self.best_balance = math.inf if best is None else float(best)
            self.dominated_epochs = int(meta.get("dominated_epochs", 0))
        except CheckpointError as exc:
            message = str(exc)
            raise CheckpointError(message if message.startswith(source) else f"{source}: {message}") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{source}: checkpoint does not match this run: {exc}") from None
        if self.step_in_epoch and (self.perm is None or len(self.perm) != len(self.data)):
            raise CheckpointError(
                f"{source}: saved mid-epoch over {0 if self.perm is None else len(self.perm)} images, "
                f"but {len(self.data)} were given: pass the same data (and --limit) as the original run"
            )

    # -- Ctrl-C ------------------------------------------------------------------------------------------
    def _install_sigint(self) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if self.stop_requested:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self.stop_requested = True
            print("\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

        try:
            return signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: Ctrl-C stays Python's
            return None


def _sigmoid_mean(logits: Any) -> Any:
    return backend.kernels_for(logits).sigmoid_forward(logits).mean()
