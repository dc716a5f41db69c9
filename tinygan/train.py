"""The GAN run loop shared by both examples: epochs, outputs, the NaN guard, Ctrl-C, checkpoints.

Training is in four pieces a reader can tell apart:

- the step (:mod:`tinygan.step`): D steps and a G step through the frozen D, its random draws injected
  (:class:`~tinygan.step.HostDraws` on the CPU, :class:`~tinygan.step.DeviceDraws` on the GPU);
- the runner (:mod:`tinygan.runner`): feeds an epoch's batches to the step and brings its figures back,
  on the GPU as one captured CUDA graph replayed (:mod:`tinygan.cuda_graph`);
- the run loop (:class:`GANTrainer`, here): epochs of random batches, a progress bar, one summary line
  per epoch, sample grids from a fixed noise, plots, ``metrics.csv``, an atomic checkpoint after every
  epoch, a NaN guard, Ctrl-C that saves before it stops, and optional auto-stop when D dominates;
- the outputs' writer (:mod:`tinygan.writer`): the training thread takes host copies (the checkpoint's
  arrays, the sample grid's images, the history) and one background thread writes the files, so
  the next epoch's steps start at once;
- the run contract (:mod:`tinygan.run_contract`, :mod:`tinygan.checkpoint`): the folder's lock, the
  checkpoint's schema, exact resume on the same data with the same options, or a clear refusal.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.augment import DiffAugment
from tinygan.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    read_meta,
    rng_state,
    save_checkpoint,
    set_rng_state,
    subtree,
    with_prefix,
)
from tinygan.config import RESUME_SAFE, GANConfig
from tinygan.diagnostics import EpochFigures, gradient_norms
from tinygan.ema import EMA
from tinygan.models import IMAGE_SHAPES, LATENT_DIM, build
from tinygan.optim import Adam
from tinygan.run_contract import (
    RunLock,
    check_data,
    check_model,
    data_identity,
    remove_stale_temporaries,
    validate_meta,
)
from tinygan.runner import make_runner
from tinygan.step import FIGURES, DeviceDraws, GANStep, HostDraws
from tinygan.viz import plot_diagnostics, plot_grad_norms, plot_losses, save_gif, save_grid, to_images
from tinygan.writer import OutputWriter

__all__ = ["GANConfig", "GANTrainer", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN or infinite; the last good checkpoint is kept."""


class GANTrainer:
    """Trains a generator ``G`` against a discriminator ``D`` on ``data`` (float32, (n, ...) in G's range).

    ``data_source`` says where the data came from, for the run's record of its data (with the image
    count and a digest: a resume on other data is refused).

    ``config.ema_decay`` > 0 keeps an EMA of G (:class:`tinygan.ema.EMA`, updated inside the step) that
    the sample grids, scores and ``python -m tinygan.sample`` use; ``config.augment`` applies DiffAugment
    to D's inputs (:mod:`tinygan.augment`); ``config.score_every`` scores samples with ``scorer``
    (default: :func:`tinygan.quality.make_scorer` for the run's model and data)."""

    METRICS = FIGURES
    # Plots take ~0.1-1 s each (matplotlib), longer than a whole epoch of a small run on the GPU: they are
    # redrawn when at least this many seconds have passed since the last ones, and when the run ends.
    PLOT_SECONDS = 30.0
    # Sample grids whose GIF frame is kept in memory for the run's end (~75 KB each for CIFAR-10's 8x8 grid);
    # the frames of a longer run, and of epochs before a resume, are read back from their PNGs.
    GIF_FRAMES_KEPT = 500

    def __init__(
        self,
        config: GANConfig,
        data: np.ndarray,
        out_dir: str | os.PathLike,
        progress: bool = True,
        data_source: str = "",
        scorer: Callable[[np.ndarray], dict[str, float]] | None = None,
    ):
        config.validate()
        if config.noise_epochs == 0:
            config.noise_epochs = config.epochs
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.device = config.device
        self.xp = backend.xp_for(self.device)
        if len(data) < config.batch_size:
            raise ValueError(f"need at least one batch: {len(data)} images for batch size {config.batch_size}")
        self.data_record = data_identity(np.asarray(data), data_source)
        self.G = build(config.model, "G", **config.g_options).to(self.device)
        self.D = build(config.model, "D", **config.d_options).to(self.device)
        self.image_shape = IMAGE_SHAPES[config.model]
        self.latent_dim = int(config.g_options.get("latent_dim", LATENT_DIM))
        self.data = backend.to_device(np.ascontiguousarray(data, dtype=self.G.dtype), self.device)
        self.opt_d = Adam(self.D, lr=config.lr_d, betas=(config.beta1, config.beta2))
        self.opt_g = Adam(self.G, lr=config.lr_g, betas=(config.beta1, config.beta2))
        self.rng = np.random.default_rng(config.seed)  # batch order, and on the CPU noise and label smoothing
        self.noise_rng = self._noise_generator(config.seed)
        if self.noise_rng is self.rng:
            draws: Any = HostDraws(self.rng, self.G.dtype, config.real_label, config.fake_label)
        else:
            draws = DeviceDraws(self.noise_rng, self.G.dtype, config.real_label, config.fake_label)
        self.ema = EMA(self.G, config.ema_decay) if config.ema_decay > 0 else None
        self.augment = DiffAugment(config.augment) if config.augment else None
        self.step = GANStep(
            self.G,
            self.D,
            self.opt_g,
            self.opt_d,
            draws,
            latent_dim=self.latent_dim,
            d_steps=config.d_steps,
            g_loss=config.g_loss,
            instance_noise=config.instance_noise > 0,
            augment=self.augment,
            image_shape=self.image_shape,
            ema=self.ema,
        )
        self.runner = make_runner(self.step, self.data, config.batch_size, config.cuda_graph)
        self.fixed_noise = np.random.default_rng([config.seed, 1]).standard_normal((64, self.latent_dim))
        # The EMA generator's BatchNorm statistics are its own, re-estimated from this fixed noise (tinygan.ema).
        self.ema_noise = np.random.default_rng([config.seed, 2]).standard_normal((4, 256, self.latent_dim))
        self.scorer = scorer
        if config.score_every and scorer is None:
            from tinygan.quality import make_scorer

            self.scorer = make_scorer(config.model, config.data_options, self.device)
        self.best_fid = math.inf
        self.steps_per_epoch = len(data) // config.batch_size
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0
        self.global_step = 0
        self.perm: np.ndarray | None = None
        self.sums = dict.fromkeys(self.METRICS, 0.0)
        self.epoch_seconds_before = 0.0
        self.history: list[dict[str, float]] = []
        self.best_balance = math.inf
        self.dominated_epochs = 0
        self.stop_requested = False
        self.data_note: str | None = None  # what a resume has to say about the data (tinygan.run_contract)
        self.resume_hint = "resume with --resume " + str(self.out_dir)
        self.writer: OutputWriter | None = None  # writes the outputs while run() runs
        self._last_plot = 0.0  # when the plots were last handed to the writer (time.perf_counter())
        self._probe_fake: Any = None  # G's output for the fixed noise at the last epoch's end (the probe's)
        self._figures: EpochFigures | None = None  # the epoch-end diagnostics (built at the first use)
        self._gif_frames: dict[str, Any] = {}  # GIF frames of the sample grids, by path (written by the writer)
        # The EMA generator's BatchNorm statistics cost four forward passes of G to re-estimate: done once per
        # trained step count (the grid, the checkpoint and the score of an epoch's end share it), not per use.
        self._sampling_refreshed_at: int | None = None
        self._ema_noise_device: Any = None  # ema_noise on the model's device, uploaded once
        # Wall-clock seconds of the last run(): the steps, the outputs' work on the training thread (device
        # to host copies, the sample grid's forward pass; by part in "outputs_by_part"), the waits for the
        # writer, and the writer's own.
        self.timings: dict[str, Any] = {}

    @property
    def finished(self) -> bool:
        """Whether the run has trained all its epochs (or auto-stop ended it)."""
        return self.epoch >= self.config.epochs

    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and return from :meth:`run` (what Ctrl-C does)."""
        self.stop_requested = True

    # -- randomness ---------------------------------------------------------------------------
    def _noise_generator(self, seed: int) -> Any:
        if self.device == "gpu":
            from tinygan.gpu_random import PhiloxGenerator

            return PhiloxGenerator(seed)
        return self.rng

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
            self.config.noise_epochs * self.steps_per_epoch
        )
        return self.config.instance_noise * max(0.0, 1.0 - progress)

    # -- epochs -----------------------------------------------------------------------------------
    def run(self, on_step: Callable[[GANTrainer], None] | None = None) -> list[dict[str, float]]:
        """Train until ``config.epochs`` (or auto-stop, Ctrl-C, divergence). Returns the metric history.

        Holds the run folder's lock throughout. ``on_step(trainer)`` runs on the host after every step
        (it must not wait for the device); :meth:`request_stop` from it stops as Ctrl-C does. The outputs
        are written by a background :class:`~tinygan.writer.OutputWriter`; every one of them is on disk
        when this returns or raises (a second Ctrl-C drops those not yet begun). A failed output raises
        its error at the end of the epoch that found it. :attr:`timings` says where the time went."""
        from tqdm import tqdm

        with RunLock(self.out_dir):
            remove_stale_temporaries(self.out_dir)
            self._write_json(self.out_dir / "config.json", dataclasses.asdict(self.config))
            self.timings = {"steps": 0.0, "outputs": 0.0, "final": 0.0}
            self.writer = OutputWriter()
            self._last_plot = time.perf_counter()  # a run shorter than PLOT_SECONDS plots once, at its end
            previous_handler = self._install_sigint()
            try:
                # The precision is the run's, set here for the run's length, not a global left behind.
                with self.runner.active(), backend.precision(self.config.precision):
                    self._epochs(tqdm, on_step)
            except KeyboardInterrupt:  # a second Ctrl-C: stop now, dropping outputs not yet begun
                self._close_writer(drain=False)
                raise
            except BaseException:  # the run's own error goes on; the outputs so far are still written
                self._close_writer(drain=True, quiet=True)
                raise
            else:
                self._close_writer(drain=True)
            finally:
                if previous_handler is not None:
                    signal.signal(signal.SIGINT, previous_handler)
        return self.history

    def _close_writer(self, drain: bool, quiet: bool = False) -> None:
        """End the writer: with ``drain``, after the final plots and GIF and every job still waiting. A
        job's error is raised, or with ``quiet`` (another error is already on its way) printed as one
        line, never dropped."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            if drain and self.history:
                writer.submit("plots", "plots", self._write_plots, list(self.history))
                writer.submit("samples.gif", "gif", self._write_gif)
        except Exception as exc:  # submit after a failed close: should not happen, but never lost
            error = exc
        finally:
            writer.close(drain=drain)
        error = error or writer.take_error()
        self.timings["final"] = time.perf_counter() - start
        self.timings["writer_wait"] = writer.wait_seconds
        self.timings["writer_busy"] = dict(writer.busy_seconds)
        self.timings["writer_replaced"] = writer.replaced
        if self.history:
            busy = writer.busy_seconds
            parts = ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in sorted(busy.items()))
            print(
                f"time: steps {self.timings['steps']:.1f} s, outputs on the training thread "
                f"{self.timings['outputs']:.1f} s, waiting for the writer {writer.wait_seconds:.1f} s; "
                f"the writer worked {sum(busy.values()):.1f} s beside the run ({parts})",
                flush=True,
            )
        if error is not None:
            if not quiet:
                raise error
            print(f"also: writing the outputs failed: {error}", file=sys.stderr)

    def _drain_writer(self, raise_errors: bool = True) -> None:
        """Wait for every output submitted so far (before a final save, or an error that names the last
        good checkpoint)."""
        if self.writer is not None:
            self.writer.flush(raise_errors)

    def _epochs(self, tqdm: Any, on_step: Callable[[GANTrainer], None] | None) -> None:
        cfg = self.config
        while self.epoch < cfg.epochs and not self.stop_requested:
            if self.step_in_epoch == 0:
                self.perm = self.rng.permutation(len(self.data))
                self.sums = dict.fromkeys(self.METRICS, 0.0)
                self.epoch_seconds_before = 0.0
                self._epoch_figures().begin_epoch()
            self.runner.begin_epoch(self.perm, self.step_in_epoch)
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
            pending = 0
            while self.step_in_epoch < self.steps_per_epoch and not self.stop_requested:
                self.runner.step(self.noise_sigma())
                self.step_in_epoch += 1
                self.global_step += 1
                pending += 1
                if on_step is not None:
                    on_step(self)
                if pending >= cfg.log_every or self.step_in_epoch == self.steps_per_epoch:
                    self._absorb()
                    self._show_progress(bar, pending, start)
                    pending = 0
            if pending:
                self._absorb()
            bar.close()
            self.epoch_seconds_before += time.perf_counter() - start
            self.timings["steps"] = self.timings.get("steps", 0.0) + time.perf_counter() - start
            if self.step_in_epoch == self.steps_per_epoch:
                self._end_epoch()
        if self.stop_requested:
            self._drain_writer()  # the epochs' checkpoints still waiting go first; this one is the newest
            path = self.save()
            print(f"stopped at epoch {self.epoch + 1}, step {self.step_in_epoch}: saved {path}; {self.resume_hint}")

    def _show_progress(self, bar: Any, count: int, start: float) -> None:
        bar.update(count)
        done = self.step_in_epoch
        elapsed = self.epoch_seconds_before + time.perf_counter() - start
        bar.set_postfix(
            d_loss=f"{self.sums['d_loss'] / done:.3f}",
            g_loss=f"{self.sums['g_loss'] / done:.3f}",
            img_s=f"{done * self.config.batch_size / max(elapsed, 1e-9):.0f}",
        )

    def _last_good(self) -> str:
        path = self.out_dir / "checkpoint.npz"
        return f"the last good checkpoint is {path}" if path.is_file() else "no checkpoint was saved yet"

    def _absorb(self) -> None:
        """Bring the figures of the steps since the last call to the host (the only wait for the device
        inside an epoch), check that they are finite, and add them to the epoch's sums."""
        rows = self.runner.collect()
        first = self.global_step - sum(count for count, _ in rows) + 1
        for count, figures in rows:
            window = f"at step {first}" if count == 1 else f"in steps {first}-{first + count - 1}"
            for key in self.METRICS:
                value = figures[key]
                if not math.isfinite(value):
                    self._drain_writer(raise_errors=False)  # the last good checkpoint may still be on its way
                    raise TrainingDiverged(
                        f"{key} became {value} {window} (epoch {self.epoch + 1}); training stopped, "
                        f"{self._last_good()} (try a lower learning rate, or label smoothing)"
                    )
                self.sums[key] += value
            first += count

    def _end_epoch(self) -> None:
        cfg = self.config
        outputs_start = time.perf_counter()
        parts = self.timings.setdefault("outputs_by_part", {})
        last = [outputs_start]

        def lap(part: str) -> None:  # the training thread's seconds since the last lap, added to ``part``
            now = time.perf_counter()
            parts[part] = parts.get(part, 0.0) + now - last[0]
            last[0] = now

        seconds = self.epoch_seconds_before
        row: dict[str, float] = {"epoch": self.epoch + 1, "steps": self.global_step}
        row.update({key: self.sums[key] / self.steps_per_epoch for key in self.METRICS})
        row["seconds"] = seconds
        row["images_per_s"] = self.steps_per_epoch * cfg.batch_size / max(seconds, 1e-9)
        row.update(self.gradient_norms())
        lap("gradient norms")
        row.update(self.diagnostics())
        lap("diagnostics probe")
        memory = self.runner.memory()
        note = ""
        if memory:
            row["gpu_memory_mib"] = (memory["pool_held"] + memory["graph_pool"]) / 2**20
            note = f"  GPU memory {row['gpu_memory_mib']:.0f} MiB"
        self.history.append(row)
        self.epoch += 1
        self.step_in_epoch = 0
        print(
            f"epoch {self.epoch}/{cfg.epochs}  d_loss {row['d_loss']:.3f}  g_loss {row['g_loss']:.3f}  "
            f"D(x) {row['d_real']:.2f}  D(G(z)) {row['d_fake']:.2f}  {seconds:.1f} s  "
            f"{row['images_per_s']:.0f} img/s{note}",
            flush=True,
        )
        lap("row, print, plots")
        try:
            scored = self._score(row)
        except Exception:
            # The epoch trained; its scoring failed (a classifier, memory): keep the epoch before the error ends
            # the run (the writer still writes what is queued), so a resume does not train it again.
            self._output("metrics.csv", "metrics", self._write_metrics, list(self.history))
            self.save(background=True)
            raise
        lap("score")
        # The training thread makes host copies; the writer writes them (tinygan.writer) while the next epoch
        # trains. metrics.csv and checkpoint.npz are rewritten whole: a newer one replaces one still waiting.
        self._output("metrics.csv", "metrics", self._write_metrics, list(self.history))
        if self.epoch % cfg.sample_every == 0 or self.epoch == cfg.epochs:
            path = self.out_dir / "samples" / f"epoch_{self.epoch:04d}.png"
            if self.ema is None:
                # The probe's G output for the fixed noise: generate(fixed_noise) without a second forward pass.
                images = to_images(backend.to_numpy(self._probe_fake), self.image_shape, self.config.image_range)
            else:  # the grids show the averaged generator, as samples do
                images = self.generate(self.fixed_noise)
            # The GIF's frame is made beside the PNG, on the writer, while training goes on; the GIF at the run's
            # end then only encodes (re-reading and quantizing 150 CIFAR-10 grids took ~1 s of each class's end).
            frames = self._gif_frames if len(self._gif_frames) < self.GIF_FRAMES_KEPT else None
            self._output(str(path), "samples", save_grid, images, path, 8, frames)
            lap("sample grid")
        # Plots cost more than a short epoch (a per-class CIFAR-10 epoch can be two steps): at most every
        # PLOT_SECONDS, and once more when the run ends for any reason.
        if time.perf_counter() - self._last_plot >= self.PLOT_SECONDS:
            self._last_plot = time.perf_counter()
            self._output("plots", "plots", self._write_plots, list(self.history))
        lap("row, print, plots")
        self.save(background=True)
        lap("checkpoint copies")
        if scored:
            self.save(self.out_dir / "best.npz", background=True)
        if cfg.checkpoint_every and self.epoch % cfg.checkpoint_every == 0:
            self.save(self.out_dir / "checkpoints" / f"epoch_{self.epoch:04d}.npz", background=True)
        if cfg.auto_stop:
            self._auto_stop(row)
        lap("checkpoint copies")
        self.timings["outputs"] = self.timings.get("outputs", 0.0) + time.perf_counter() - outputs_start
        if self.writer is not None:
            self.writer.raise_error()  # an output that failed stops the run; what is queued is still written

    def _output(self, key: str, kind: str, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the writer while a run runs, at once otherwise (host copies in ``args``)."""
        if self.writer is None:
            fn(*args)
        else:
            self.writer.submit(key, kind, fn, *args)

    def _score(self, row: dict[str, float]) -> bool:
        """Every ``score_every`` epochs and at the last: score ``score_samples`` images of the sampling
        generator into ``row`` and ``quality.png``; True when this is the lowest Fréchet distance so far
        (the caller keeps the epoch as ``best.npz``)."""
        cfg = self.config
        if not cfg.score_every or self.scorer is None:
            return False
        if self.epoch % cfg.score_every and self.epoch != cfg.epochs:
            return False
        from tinygan.quality import plot_quality

        start = time.perf_counter()
        noise = np.random.default_rng([cfg.seed, 3]).standard_normal((cfg.score_samples, self.latent_dim))
        images = np.concatenate([self.generate(noise[i : i + 1000]) for i in range(0, len(noise), 1000)])
        figures = self.scorer(images)
        row.update(figures)
        extra = f"  recognized {figures['recognized']:.1%}" if "recognized" in figures else ""
        print(
            f"  score ({cfg.score_samples} samples{', EMA' if self.ema is not None else ''}): Fréchet distance "
            f"{figures['fid']:.3f}  classifier score {figures['classifier_score']:.2f}  rarest class "
            f"{figures['rarest_class_fraction']:.1%}{extra}  ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        plot_quality(self.history, self.out_dir / "quality.png")
        if figures["fid"] < self.best_fid:
            self.best_fid = figures["fid"]
            return True
        return False

    def _auto_stop(self, row: dict[str, float]) -> None:
        """Stop once D has recognised at least ``auto_stop_threshold`` of the generated images for
        ``auto_stop_patience`` epochs in a row; keep as ``best.npz`` the most balanced epoch so far
        (D's accuracy on generated images closest to 0.5), unless the run scores its samples
        (``score_every``): then ``best.npz`` is the epoch of the lowest Fréchet distance."""
        cfg = self.config
        balance = abs(row["d_acc_fake"] - 0.5)
        if balance < self.best_balance:
            self.best_balance = balance
            if not cfg.score_every:
                self.save(self.out_dir / "best.npz", background=True)
        self.dominated_epochs = self.dominated_epochs + 1 if row["d_acc_fake"] >= cfg.auto_stop_threshold else 0
        if self.dominated_epochs >= cfg.auto_stop_patience:
            kept = "lowest Fréchet distance" if cfg.score_every else "most balanced"
            print(
                f"auto-stop: D recognised >= {cfg.auto_stop_threshold:.0%} of generated images for "
                f"{self.dominated_epochs} epochs; the epoch of the {kept} is kept in {self.out_dir / 'best.npz'}"
            )
            self.config.epochs = self.epoch

    def gradient_norms(self) -> dict[str, float]:
        """The last step's weight-gradient norm of every layer of G and D, ``grad.G.dense1`` ... (logged
        per epoch; :mod:`tinygan.diagnostics`)."""
        return {**gradient_norms(self.G, "G"), **gradient_norms(self.D, "D")}

    def diagnostics(self) -> dict[str, float]:
        """The epoch's diagnostics beside the gradient norms (:mod:`tinygan.diagnostics`): each layer's
        relative update over the epoch (``update.G.dense1``; absent for an epoch resumed midway, whose
        start this process never saw), and on a probe batch what G receives from D
        (``g_input_grad_probe``; ``g_input_grad``, its mean over the epoch's steps, is a step figure) and
        the share of dead units in each network (``dead.G``, ``dead.D``)."""
        row, self._probe_fake = self._epoch_figures()()
        return row

    def _epoch_figures(self) -> EpochFigures:
        """The run's :class:`~tinygan.diagnostics.EpochFigures`, built at the first use and again after
        :meth:`load_state` replaced the fixed noise: on the GPU its inputs must stay where its captured graph
        reads them."""
        if self._figures is None:
            z = backend.to_device(self.fixed_noise.astype(self.G.dtype), self.device)
            stream = getattr(self.runner, "stream", None)  # a GPU run's step stream
            self._figures = EpochFigures(
                self.G, self.D, z, self.data[: len(z)], self.config.g_loss, stream, self.config.cuda_graph
            )
        return self._figures

    # -- outputs -------------------------------------------------------------------------------------
    def sampling_generator(self) -> Any:
        """The generator samples come from: the EMA generator, its BatchNorm statistics re-estimated
        from the run's fixed noise, where the run keeps one; else G."""
        if self.ema is None:
            return self.G
        if self._sampling_refreshed_at != self.global_step:
            if self._ema_noise_device is None:
                self._ema_noise_device = backend.to_device(self.ema_noise.astype(self.G.dtype), self.device)
            self.ema.refresh_batchnorm(self._ema_noise_device)
            self._sampling_refreshed_at = self.global_step
        return self.ema.model

    def generate(self, z: np.ndarray) -> np.ndarray:
        """The sampling generator's images for noise ``z`` (host array) in [0, 1], (n, H, W) or (n, H, W, 3)."""
        G = self.sampling_generator()
        out = G.forward(backend.to_device(z.astype(G.dtype), self.device), training=False)
        return to_images(backend.to_numpy(out), self.image_shape, self.config.image_range)

    def _write_plots(self, history: list[dict[str, float]] | None = None) -> None:
        history = self.history if history is None else history
        if history:
            plot_losses(history, self.out_dir / "losses.png")
            plot_grad_norms(history, self.out_dir / "grad_norms.png")
            plot_diagnostics(history, self.out_dir / "diagnostics.png")

    def _write_gif(self) -> None:
        frames = sorted((self.out_dir / "samples").glob("epoch_*.png"))
        if frames:
            save_gif(frames, self.out_dir / "samples.gif", ready=self._gif_frames)

    def _write_metrics(self, history: list[dict[str, float]] | None = None) -> None:
        history = self.history if history is None else history
        fields: list[str] = []
        for row in history:
            fields += [k for k in row if k not in fields]
        tmp = self.out_dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(history)
        os.replace(tmp, self.out_dir / "metrics.csv")

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    # -- checkpoints ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None, background: bool = False) -> Path:
        """Write everything needed to continue exactly: both models, both optimizers, the position in the
        epoch (with its batch order), every random generator's state, the metric history and the data's
        identity. Weights with NaN or infinite values are never written (TrainingDiverged instead).

        ``background`` (while :meth:`run` runs): the host copies are taken now and the writer writes them
        (a newer save of the same path replaces one still waiting); its error is raised at the next output."""
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
        if self.ema is not None:
            arrays.update(with_prefix(self.sampling_generator().state_dict(), "G_ema"))
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
            "epoch_seconds_before": self.epoch_seconds_before,
            "history": self.history,
            "best_balance": None if math.isinf(self.best_balance) else self.best_balance,
            "dominated_epochs": self.dominated_epochs,
            "data": self.data_record,
        }
        if self.ema is not None:
            meta["ema_updates"] = self.ema.num_updates
        if not math.isinf(self.best_fid):
            meta["best_fid"] = self.best_fid
        if background and self.writer is not None:
            # The arrays are host copies already; the metadata's lists and dicts that training changes are copied.
            meta = {**meta, "sums": dict(meta["sums"]), "history": list(meta["history"])}
            self.writer.submit(str(path), "checkpoint", self._write_checkpoint, path, arrays, meta)
            return path
        return self._write_checkpoint(path, arrays, meta)

    def _write_checkpoint(self, path: Path, arrays: dict[str, Any], meta: dict[str, Any]) -> Path:
        try:
            return save_checkpoint(path, arrays, meta)
        except CheckpointError as exc:
            raise TrainingDiverged(
                f"not saving a checkpoint with broken weights ({exc}); {self._last_good()}"
            ) from None

    def expected_arrays(self) -> dict[str, tuple[int, ...] | None]:
        """Every array key of this run's checkpoints with its shape (``perm``: any length, checked on load)."""
        shapes: dict[str, tuple[int, ...] | None] = {}
        nets = [("G", self.G), ("D", self.D)] + ([("G_ema", self.ema.model)] if self.ema is not None else [])
        for prefix, net in nets:
            for key, value in net.state_dict().items():
                shapes[f"{prefix}/{key}"] = tuple(value.shape)
        for prefix, opt in (("opt_G", self.opt_g), ("opt_D", self.opt_d)):
            for key, value in opt.state_dict().items():
                if key != "step":
                    shapes[f"{prefix}/{key}"] = tuple(value.shape)
        shapes["fixed_noise"] = (64, self.latent_dim)
        shapes["perm"] = None
        return shapes

    @classmethod
    def resume(
        cls,
        run_dir: str | os.PathLike,
        data: np.ndarray,
        overrides: dict[str, Any] | None = None,
        progress: bool = True,
        data_source: str = "",
        allow_other_data: bool = False,
        model: str | None = None,
        scorer: Callable[[np.ndarray], dict[str, float]] | None = None,
    ) -> GANTrainer:
        """Continue the run in ``run_dir`` from its checkpoint, with its recorded configuration.
        ``overrides`` may change only settings that do not alter the trajectory
        (:data:`tinygan.config.RESUME_SAFE`). ``model``: refuse a checkpoint of another model. The data
        must be the run's (same image count and digest) unless ``allow_other_data``. ``scorer``: as for
        the constructor."""
        path = checkpoint_path(run_dir)
        meta = read_meta(path)
        config = validate_meta(path, meta, cls.METRICS)
        if model is not None:
            check_model(path, config, model)
        for key, value in (overrides or {}).items():
            if key not in RESUME_SAFE:
                raise ValueError(f"--resume cannot change {key!r}: it would change the run")
            setattr(config, key, value)
        trainer = cls(config, data, path.parent, progress=progress, data_source=data_source, scorer=scorer)
        trainer.data_note = check_data(path, meta.get("data"), trainer.data_record, allow_other_data)
        trainer.load_state(path)
        return trainer

    def load_state(self, path: str | os.PathLike) -> None:
        """Restore the checkpoint ``path`` (validated: keys, shapes, dtypes, finite values, the metadata's
        schema) into this trainer. Raises CheckpointError naming the file and the key."""
        path = checkpoint_path(path)
        arrays, meta = load_checkpoint(path, self.expected_arrays(), optional=("perm",))
        validate_meta(path, meta, self.METRICS)
        source = str(path)
        perm = arrays.get("perm")
        step_in_epoch = meta["step_in_epoch"]
        if step_in_epoch:
            if step_in_epoch >= self.steps_per_epoch:
                raise CheckpointError(
                    f"{path}: key 'step_in_epoch': expected fewer than the {self.steps_per_epoch} steps of an "
                    f"epoch, received {step_in_epoch}"
                )
            n = len(self.data)
            if perm is None or perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
                raise CheckpointError(
                    f"{path}: key 'perm': saved mid-epoch, expected an order of the {n} images given, received "
                    f"{'none' if perm is None else f'{perm.shape[0]} entries'}: pass the same data (and --limit) "
                    "as the original run"
                )
        owners = self._rng_owners()
        if set(owners) != set(meta["rng"]):
            raise CheckpointError(f"{path}: key 'rng': generators {sorted(meta['rng'])}, expected {sorted(owners)}")
        try:
            self.G.load_state_dict(subtree(arrays, "G"), source=source)
            self.D.load_state_dict(subtree(arrays, "D"), source=source)
            self.opt_g.load_state_dict({**subtree(arrays, "opt_G"), "step": meta["opt_G_step"]})
            self.opt_d.load_state_dict({**subtree(arrays, "opt_D"), "step": meta["opt_D_step"]})
            if self.ema is not None:
                updates = meta.get("ema_updates")
                if not isinstance(updates, int) or isinstance(updates, bool) or updates < 0:
                    raise CheckpointError(f"{source}: key 'ema_updates': expected a non-negative integer, "
                                          f"received {updates!r}")  # fmt: skip
                self.ema.load_state_dict({**subtree(arrays, "G_ema"), "num_updates": updates}, source=source)
                self._sampling_refreshed_at = None  # new averaged weights: their statistics are estimated afresh
        except ValueError as exc:
            message = str(exc)
            raise CheckpointError(message if message.startswith(source) else f"{source}: {message}") from None
        for name, gen in owners.items():
            try:
                set_rng_state(gen, meta["rng"][name])
            except CheckpointError as exc:
                raise CheckpointError(f"{path}: key 'rng.{name}': {exc}") from None
        self.fixed_noise = arrays["fixed_noise"]
        self._figures = None  # its probe batch was the old fixed noise
        self.perm = perm
        self.epoch, self.step_in_epoch = meta["epoch"], step_in_epoch
        self.global_step = meta["global_step"]
        # An older checkpoint lacks the sums of the later figures (run_contract.LATER_FIGURES): they restart at 0,
        # so the resumed epoch's row of those two diagnostics counts only the steps after the resume.
        self.sums = {**dict.fromkeys(self.METRICS, 0.0), **{k: float(v) for k, v in meta["sums"].items()}}
        self.epoch_seconds_before = float(meta.get("epoch_seconds_before", 0.0))
        self.history = list(meta["history"])
        best = meta.get("best_balance")
        self.best_balance = math.inf if best is None else float(best)
        self.dominated_epochs = int(meta.get("dominated_epochs", 0))
        best_fid = meta.get("best_fid")
        self.best_fid = (
            float(best_fid) if isinstance(best_fid, (int, float)) and not isinstance(best_fid, bool) else math.inf
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
