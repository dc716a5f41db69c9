"""One GAN training step: D steps, then a G step through the frozen D, with its random draws injected.

The step, as a reader should be able to follow it (:meth:`GANStep.__call__`)::

    z -> G.forward -> fake
    [augment real and fake with one draw of parameters]
    D.forward([real, fake] + instance noise) -> logits -> BCE(targets real ~ U(real_label), fake ~ U(fake_label))
    D.backward(dlogits)            (weight gradients only: D's input gradient is not needed)
    Adam(D)                        (on the GPU on a second stream, beside the G step's G.forward: independent)
    fresh z -> G.forward -> [augment, a fresh draw] -> (+ instance noise) -> D.forward -> generator loss -> dlogits
    D.backward(dlogits, param_grads=False)   (D is frozen: gradients flow through it, its weights stay)
    [augment.backward]             (G's gradient through the same transform)
    -> what G receives, RMS_i ||dl_i/dG(z_i)||, and how evenly the samples share it  (step figures, like D's)
    G.backward(...)                (weight gradients of G)
    Adam(G)
    [EMA update of G's weights]

The bracketed parts are optional: ``augment`` (a :class:`tinygan.augment.DiffAugment`, Zhao et al.,
2020) and ``ema`` (a :class:`tinygan.ema.EMA` of G). Without them the step draws and computes exactly
what it did before they existed (``--recipe original`` reproduces its runs bit for bit).

The same code is the CPU step, the GPU step and the benchmark's step. What differs is handed in:

- ``draws`` gives the random numbers, noise ``normal(shape)``, D's targets ``d_targets(n)`` and, with
  augmentation, its parameters ``augment_params(augment, images)``:
  :class:`HostDraws` (a NumPy generator, the CPU run), :class:`DeviceDraws` (a Philox generator whose
  counter lives in device memory, so a captured CUDA graph draws fresh numbers on every replay), or
  anything with those two methods (``bench/steps.py`` injects fixed draws to compare implementations).
- the step's own few array operations (D's input with instance noise, D's figures, what G receives) come from
  :data:`HOST_OPS` on the CPU and from ``kernels/gpu/gan.py`` on the GPU, picked once by device.

Nothing in a step waits for the device: on the GPU its figures are 0-d device arrays.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import numpy as np

from tinygan import backend
from tinygan.losses import bce_with_logits, generator_loss

# Summed over an epoch's steps (on the GPU, on the device) and logged as their means. ``g_input_grad``: what G
# receives from D in the step, the RMS over the batch of each sample's ||dl_i/dG(z_i)||; ``g_weight_share``:
# how evenly the samples share G's step, (sum w_i)^2 / (n sum w_i^2) for w_i = |dl_i/ds_i| (tinygan.diagnostics).
FIGURES = ("d_loss", "g_loss", "d_real", "d_fake", "d_acc_fake", "g_input_grad", "g_weight_share")


class Draws(Protocol):
    """Where a step's random numbers come from (arrays on the models' device, in the models' dtype)."""

    def normal(self, shape: tuple[int, ...]) -> Any: ...

    def d_targets(self, n: int) -> Any: ...

    # Only called with augmentation on (draws without it need not have it).
    def augment_params(self, augment: Any, images: Any) -> Any: ...


class HostDraws:
    """Draws from a ``numpy.random.Generator``: noise, and D's targets with real ~ U(real_label) and
    fake ~ U(fake_label) (a constant where LOW == HIGH, which draws nothing)."""

    def __init__(
        self,
        rng: np.random.Generator,
        dtype: Any,
        real_label: tuple[float, float],
        fake_label: tuple[float, float],
        device: str = "cpu",
    ) -> None:
        self.rng, self.dtype, self.device = rng, np.dtype(dtype), device
        self.real_label, self.fake_label = tuple(real_label), tuple(fake_label)

    def normal(self, shape: tuple[int, ...]) -> Any:
        return backend.to_device(self.rng.standard_normal(shape, dtype=self.dtype), self.device)

    def _uniform(self, low: float, high: float, n: int) -> np.ndarray:
        if low == high:
            return np.full((n, 1), low, dtype=self.dtype)
        return self.rng.uniform(low, high, size=(n, 1)).astype(self.dtype)

    def d_targets(self, n: int) -> Any:
        """D's targets, (2n, 1): n real labels, then n fake ones."""
        targets = np.concatenate([self._uniform(*self.real_label, n), self._uniform(*self.fake_label, n)])
        return backend.to_device(targets, self.device)

    def augment_params(self, augment: Any, images: Any) -> Any:
        """A draw of ``augment``'s parameters for the (N, C, H, W) batch ``images``, from the same generator."""
        return augment.sample_params(images, self.rng)

    def device_arrays(self) -> list[Any]:
        return []


class DeviceDraws:
    """Draws on the GPU from a :class:`tinygan.gpu_random.PhiloxGenerator`, into arrays that keep their
    addresses from step to step (a captured graph holds them): D's targets are allocated once per batch
    size and refilled on the device (written once and never again where both label ranges are constant)."""

    def __init__(
        self, generator: Any, dtype: Any, real_label: tuple[float, float], fake_label: tuple[float, float]
    ) -> None:
        self.generator, self.dtype = generator, np.dtype(dtype)
        self.real_label, self.fake_label = tuple(real_label), tuple(fake_label)
        self._targets: dict[int, Any] = {}

    def normal(self, shape: tuple[int, ...]) -> Any:
        return self.generator.normal(shape, self.dtype)

    def d_targets(self, n: int) -> Any:
        from tinygan.kernels.gpu import gan

        fixed = self.real_label[0] == self.real_label[1] and self.fake_label[0] == self.fake_label[1]
        targets = self._targets.get(n)
        if targets is None:
            targets = self._targets[n] = backend.xp_for("gpu").empty((2 * n, 1), dtype=self.dtype)
            if fixed:  # written once: no launch at all in later steps
                targets[:n].fill(self.real_label[0])
                targets[n:].fill(self.fake_label[0])
        if not fixed:
            self.generator.uniform_into(targets)
            gan.label_ranges_(targets, n, self.real_label, self.fake_label)
        return targets

    def augment_params(self, augment: Any, images: Any) -> Any:
        """A draw of ``augment``'s parameters for the (N, C, H, W) batch ``images``, on the device from
        the same Philox generator (no host round trip: a captured graph draws afresh on every replay)."""
        return augment.sample_params(images, self.generator)

    def device_arrays(self) -> list[Any]:
        """The arrays a captured step reads or writes: the generator's counter and the targets."""
        return [*self.generator.device_arrays(), *self._targets.values()]


class _HostOps:
    """The CPU twins of ``kernels/gpu/gan.py``'s ``concat_noisy``, ``d_figures``, ``input_grad_rms`` and
    ``weight_share``, and of ``kernels/gpu/streams.py``'s ``fork_join``."""

    @staticmethod
    def concat_noisy(a: Any, b: Any | None, noise: Any | None, sigma: Any | None) -> Any:
        x = a if b is None else np.concatenate([a, b])
        return x if noise is None else x + sigma * noise

    @staticmethod
    def d_figures(logits: Any, n: int) -> tuple[Any, Any, Any]:
        real, fake = logits[:n], logits[n:]
        sigmoid = backend.kernels_for(logits).sigmoid_forward
        return sigmoid(real).mean(), sigmoid(fake).mean(), (fake < 0).mean()

    @staticmethod
    def input_grad_rms(dx: Any, n: int) -> Any:
        """What G receives from D: ``dx`` is d(mean loss)/d(fake), so row i times n is sample i's own
        gradient dl_i/dx_i; their RMS over the n samples is sqrt(n * sum(dx**2)) (summed in float64)."""
        return np.sqrt(n * np.square(dx, dtype=np.float64).sum())

    @staticmethod
    def weight_share(dlogits: Any) -> Any:
        """How evenly the n samples share G's step: with w_i = |dlogits_i| (each sample's factor on its own
        direction), (sum w)^2 / (n sum w^2) in float64: 1 when all weigh the same, 1/n when one carries
        the step; 1 where every w_i is 0 (no step to share)."""
        w = np.abs(np.asarray(dlogits, dtype=np.float64)).ravel()
        squares = (w * w).sum()
        return np.float64(1.0) if squares == 0 else w.sum() ** 2 / (w.size * squares)

    @staticmethod
    def step_context(real: Any) -> Any:
        return contextlib.nullcontext()

    @staticmethod
    @contextlib.contextmanager
    def fork_join() -> Any:
        """One stream on the CPU: the side branch runs where it stands, in program order."""
        yield contextlib.nullcontext()


class _DeviceOps:
    def __init__(self) -> None:
        from tinygan.kernels.gpu import _common, gan, streams

        self.concat_noisy, self.d_figures, self._capture_gemm = gan.concat_noisy, gan.d_figures, _common.capture_gemm
        self.fork_join = streams.fork_join
        self.input_grad_rms, self.weight_share = gan.input_grad_rms, gan.weight_share

    def step_context(self, real: Any) -> Any:
        if not backend.is_gpu_array(real):
            raise ValueError(
                f"GANStep: the batch is on the {backend.device_of(real)} but the models are on the gpu; "
                "move it with tinygan.backend.to_device(batch, 'gpu')"
            )
        # Every GEMM through the ctypes cuBLAS call, so that eager and captured steps give the same bits.
        return self._capture_gemm()


HOST_OPS = _HostOps()


class GANStep:
    """D steps and a G step on a batch of real images. ``G``, ``D`` and their optimizers are trained in
    place; ``draws`` gives every random number the step needs except dropout masks, which D's Dropout
    layers draw themselves. ``instance_noise``: whether D's inputs get Gaussian noise of std
    :attr:`sigma` (set with :meth:`set_sigma`; on the GPU it lives in device memory, so a captured
    graph reads the value of the moment).

    ``augment``: a DiffAugment applied to everything D sees (None or a policy of no transforms: off);
    ``image_shape`` (C, H, W) is how a batch is viewed for it (a flat MNIST batch of 784 is
    (1, 28, 28)). ``ema``: an EMA of G, updated right after G's Adam step."""

    def __init__(
        self,
        G: Any,
        D: Any,
        opt_g: Any,
        opt_d: Any,
        draws: Draws,
        latent_dim: int,
        d_steps: int = 1,
        g_loss: str = "nonsaturating",
        instance_noise: bool = False,
        augment: Any = None,
        image_shape: tuple[int, ...] | None = None,
        ema: Any = None,
    ) -> None:
        self.G, self.D, self.opt_g, self.opt_d, self.draws = G, D, opt_g, opt_d, draws
        self.augment = augment if augment is not None and augment.enabled else None
        if self.augment is not None and (image_shape is None or len(image_shape) != 3):
            raise ValueError(f"GANStep: augmentation needs image_shape (C, H, W), received {image_shape!r}")
        self.image_shape = None if image_shape is None else tuple(int(d) for d in image_shape)
        self.ema = ema
        self.latent_dim, self.d_steps, self.g_loss = int(latent_dim), int(d_steps), g_loss
        if self.d_steps < 1:
            raise ValueError(f"GANStep: d_steps must be at least 1, received {d_steps}")
        self.device = G.device
        self.ops = _DeviceOps() if self.device == "gpu" else HOST_OPS
        xp = backend.xp_for(self.device)
        self.sigma = xp.zeros((), dtype=G.dtype) if instance_noise else None

    def set_sigma(self, value: float) -> None:
        """The instance noise's std for the next steps (ignored without instance noise). On the GPU this
        is a launch on the current stream: call it on the stream the step runs on."""
        if self.sigma is not None:
            self.sigma.fill(value)

    def _images(self, x: Any) -> Any:
        """``x`` viewed as (N, C, H, W) images for the augmentation."""
        return x.reshape((x.shape[0], *self.image_shape))

    def discriminator_gradients(self, real: Any) -> tuple[Any, Any]:
        """D's forward on the real batch and a fresh fake one, its loss and its backward into D's gradient
        buffers: returns (loss, logits)."""
        n = real.shape[0]
        fake = self.G.forward(self.draws.normal((n, self.latent_dim)), training=True).reshape(real.shape)
        if self.augment is not None:
            # One draw for both halves: D must not tell real from fake by how they were transformed.
            params = self.draws.augment_params(self.augment, self._images(real))
            real = self.augment.forward(self._images(real), params=params).reshape(fake.shape)
            fake = self.augment.forward(self._images(fake), params=params).reshape(fake.shape)
        noise = None if self.sigma is None else self.draws.normal((2 * n, *real.shape[1:]))
        batch = self.ops.concat_noisy(real, fake, noise, self.sigma)
        targets = self.draws.d_targets(n)
        logits = self.D.forward(batch, training=True, logits=True)
        loss, dlogits = bce_with_logits(logits, targets)
        self.opt_d.zero_grad()
        self.D.backward(dlogits, input_grad=False)
        return loss, logits

    def discriminator_update(self, loss: Any, logits: Any, n: int) -> dict[str, Any]:
        """D's Adam step and the D step's figures (``n`` real logits first, then the fake ones)."""
        self.opt_d.step()
        d_real, d_fake, d_acc_fake = self.ops.d_figures(logits, n)
        return {"d_loss": loss, "d_real": d_real, "d_fake": d_fake, "d_acc_fake": d_acc_fake}

    def discriminator_step(self, real: Any) -> dict[str, Any]:
        loss, logits = self.discriminator_gradients(real)
        return self.discriminator_update(loss, logits, real.shape[0])

    def generate(self, real_shape: tuple[int, ...]) -> Any:
        """The G step's fake batch as D sees it: G's forward on fresh noise, then augmentation and instance
        noise where they are on."""
        n = real_shape[0]
        fake = self.G.forward(self.draws.normal((n, self.latent_dim)), training=True).reshape(real_shape)
        if self.augment is not None:
            images = self._images(fake)
            params = self.draws.augment_params(self.augment, images)
            fake = self.augment.forward(images, params=params).reshape(real_shape)
        noise = None if self.sigma is None else self.draws.normal(tuple(real_shape))
        return self.ops.concat_noisy(fake, None, noise, self.sigma)

    def generator_update(self, fake: Any) -> dict[str, Any]:
        """G's loss on ``fake`` (from :meth:`generate`) through the frozen D, G's backward into its gradient
        buffers (zeroed beforehand by the caller) and G's Adam step."""
        n = fake.shape[0]
        logits = self.D.forward(fake, training=True, logits=True)
        loss, dlogits = generator_loss(logits, kind=self.g_loss)
        share = self.ops.weight_share(dlogits)  # minimax: w_i = D(G(z_i)); non-saturating: 1 - D(G(z_i))
        dfake = self.D.backward(dlogits, param_grads=False)
        if self.augment is not None:  # instance noise is additive: its gradient is the identity
            dfake = self.augment.backward(self._images(dfake))
        received = self.ops.input_grad_rms(dfake, n)  # what G receives, before G's backward uses it
        self.G.backward(dfake.reshape(self.G.output_shape((n, self.latent_dim))), input_grad=False)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update()
        return {"g_loss": loss, "g_input_grad": received, "g_weight_share": share}

    def generator_step(self, real_shape: tuple[int, ...]) -> dict[str, Any]:
        """One G update through the frozen D; ``real_shape`` is the shape of a real batch (D's input)."""
        self.opt_g.zero_grad()
        return self.generator_update(self.generate(real_shape))

    def __call__(self, real: Any) -> dict[str, Any]:
        """Train on the batch ``real``; returns the step's figures (:data:`FIGURES`), floats' 0-d arrays
        on the models' device (nothing here waits for the device)."""
        with self.ops.step_context(real):
            figures: dict[str, Any] = {}
            for _ in range(self.d_steps - 1):
                figures.update(self.discriminator_step(real))
            loss, logits = self.discriminator_gradients(real)
            # D's last Adam step, its figures and the reset of G's gradients touch nothing that G's next forward
            # reads or writes, so on the GPU they run on a second stream beside it (kernels/gpu/streams.py); the
            # join comes before the G step's D forward reads D's new weights. The same kernels on the same
            # inputs as in program order, so the same bits. Measured on an H200 (bench/results/
            # step-precisions-2026-12-03-s14.md): the MNIST fp32 step about 10 us faster; capping Adam's grid so
            # that G's small products get more of the SMs made it slower (0.436 ms at 2 blocks an SM, 0.451 at 1,
            # against 0.430 at Adam's own 4).
            with self.ops.fork_join() as side:
                with side:
                    figures.update(self.discriminator_update(loss, logits, real.shape[0]))
                    self.opt_g.zero_grad()
                fake = self.generate(tuple(real.shape))
            figures.update(self.generator_update(fake))
        return figures

    def device_arrays(self) -> list[Any]:
        """Every persistent array one step reads or writes on the device: what a captured graph holds by
        address. Each object declares its own (``device_arrays()``); layers' params, grads and buffers
        are theirs to show."""
        arrays = [] if self.sigma is None else [self.sigma]
        arrays += getattr(self.draws, "device_arrays", list)()
        for net in (self.G, self.D):
            for _, layer in net.named_layers():
                for store in (layer.params, layer.grads, layer.buffers):
                    arrays += list(store.values())
                arrays += getattr(layer, "device_arrays", list)()
        for opt in (self.opt_d, self.opt_g):
            arrays += opt.device_arrays()
        for extra in (self.augment, self.ema):
            if extra is not None:
                arrays += extra.device_arrays()
        return arrays
