"""Command-line plumbing shared by the examples: common options, run folders, errors as one line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinygan import backend
from tinygan.checkpoint import CheckpointError, read_meta
from tinygan.train import GANConfig, GANTrainer, TrainingDiverged

# Exit codes, so scripts driving the examples can tell failures apart.
EXIT_ERROR = 1  # bad data, bad checkpoint, bad option
EXIT_NO_GPU = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def add_common_options(parser: argparse.ArgumentParser, recipes: dict[str, dict[str, Any]]) -> None:
    parser.add_argument(
        "--device", choices=backend.DEVICES, help="cpu (NumPy/Numba, default) or gpu (CuPy); --resume keeps the run's"
    )
    parser.add_argument("--recipe", choices=sorted(recipes), default="default", help="settings to start from")
    parser.add_argument("--epochs", type=int, help="epochs to train (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default: the recipe's)")
    parser.add_argument("--lr", type=float, help="Adam learning rate for both networks (default: the recipe's)")
    parser.add_argument("--lr-d", type=float, help="discriminator learning rate (overrides --lr)")
    parser.add_argument("--lr-g", type=float, help="generator learning rate (overrides --lr)")
    bounds = ("LOW", "HIGH")
    parser.add_argument("--real-label", type=float, nargs=2, metavar=bounds, help="real targets ~ U(LOW, HIGH)")
    parser.add_argument("--fake-label", type=float, nargs=2, metavar=bounds, help="fake targets ~ U(LOW, HIGH)")
    parser.add_argument("--no-label-smoothing", action="store_true", help="hard targets: real 1, fake 0")
    parser.add_argument(
        "--instance-noise",
        type=float,
        metavar="SIGMA",
        help="Gaussian noise of std SIGMA on D's inputs, annealed linearly to 0 (default: the recipe's)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, noise, batches, dropout (default 0)")
    parser.add_argument(
        "--data-dir", help="folder holding the dataset files, an error if they are not there (else: cache, download)"
    )
    parser.add_argument("--out", help="run folder (default: runs/<name>-<date>-<time>)")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its checkpoint")
    parser.add_argument("--sample-every", type=int, help="save a sample grid every N epochs (default 1)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="N",
        help="also keep checkpoints/epoch_NNNN.npz every N epochs",
    )
    parser.add_argument("--limit", type=int, help="train on the first N images only (quick looks)")
    parser.add_argument(
        "--g-loss",
        choices=("nonsaturating", "minimax"),
        default="nonsaturating",
        help="generator loss: -log D(G(z)) (default) or the original minimax log(1 - D(G(z)))",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    parser.add_argument(
        "--no-cuda-graph",
        action="store_true",
        help="on the GPU, launch every kernel of a step one by one instead of replaying it as one CUDA graph",
    )


def _run_device(run: str) -> str | None:
    try:
        return read_meta(run)["config"]["device"]
    except (CheckpointError, KeyError, TypeError):
        return None  # the resume itself reports what is wrong with the checkpoint


def new_run_dir(name: str, root: str = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{name}-{stamp}-{suffix}"
    return path


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(
    args: argparse.Namespace,
    name: str,
    make_config: Callable[[argparse.Namespace], GANConfig],
    load_data: Callable[[dict[str, Any], str | None], np.ndarray],
) -> int:
    """Build or resume a run from ``args`` and train it. Returns the process exit code."""
    if args.device == "gpu" or (args.device is None and args.resume and _run_device(args.resume) == "gpu"):
        reason = backend.gpu_unavailable_reason()
        if reason:
            return fail(f"--device gpu needs a CUDA GPU: {reason}. Run with --device cpu instead.", EXIT_NO_GPU)
    try:
        if args.resume:
            meta = read_meta(args.resume)
            config = GANConfig.from_dict(meta["config"])
            data = load_data(config.data_options, args.data_dir)
            given = {
                "epochs": args.epochs,
                "sample_every": args.sample_every,
                "checkpoint_every": args.checkpoint_every,
            }
            if args.device is not None and args.device != config.device:
                return fail(
                    f"{args.resume} was trained on the {config.device}; resume it there (a {args.device} run draws "
                    "other random numbers, so it could not continue exactly)",
                    EXIT_ERROR,
                )
            overrides = {k: v for k, v in given.items() if v is not None}
            trainer = GANTrainer.resume(args.resume, data, overrides, progress=not args.no_progress)
            print(f"resuming {trainer.out_dir} at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}")
        else:
            config = make_config(args)
            data = load_data(config.data_options, args.data_dir)
            out = Path(args.out) if args.out else new_run_dir(name)
            if (out / "checkpoint.npz").exists():
                return fail(f"{out} already holds a run: use --resume {out}, or another --out", EXIT_ERROR)
            trainer = GANTrainer(config, data, out, progress=not args.no_progress)
            print(
                f"run folder: {out}  ({len(data)} images, {trainer.steps_per_epoch} steps per epoch, "
                f"device {config.device})"
            )
            trainer.G.summary((trainer.latent_dim,))
            trainer.D.summary(tuple(data.shape[1:]))
        trainer.resume_hint = f"resume with: {resume_command(trainer.out_dir)}"
        history = trainer.run()
    except TrainingDiverged as exc:
        return fail(str(exc), EXIT_DIVERGED)
    except backend.DeviceError as exc:
        return fail(str(exc), EXIT_NO_GPU)
    except (CheckpointError, ValueError, OSError) as exc:
        return fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    if trainer.stop_requested:
        return EXIT_INTERRUPTED
    if history:
        out = trainer.out_dir
        print(f"done: {out}/samples.gif, {out}/losses.png, {out}/metrics.csv, {out}/checkpoint.npz")
        print(
            f"more samples: python -m tinygan.sample {out}/checkpoint.npz --n 10000 --out samples.npy --grid grid.png"
        )
    return 0


def resume_command(out: Path) -> str:
    return f"python {sys.argv[0]} --resume {out}"


def apply_recipe(args: argparse.Namespace, recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's settings with the options the user gave on the command line on top."""
    settings = dict(recipe)
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.lr is not None:
        settings["lr_d"] = settings["lr_g"] = args.lr
    if args.lr_d is not None:
        settings["lr_d"] = args.lr_d
    if args.lr_g is not None:
        settings["lr_g"] = args.lr_g
    if args.real_label:
        settings["real_label"] = tuple(args.real_label)
    if args.fake_label:
        settings["fake_label"] = tuple(args.fake_label)
    if args.no_label_smoothing:
        settings["real_label"], settings["fake_label"] = (1.0, 1.0), (0.0, 0.0)
    if args.instance_noise is not None:
        settings["instance_noise"] = args.instance_noise
    for low, high in (settings["real_label"], settings["fake_label"]):
        if not 0.0 <= low <= high <= 1.0:
            raise SystemExit(f"error: label ranges need 0 <= LOW <= HIGH <= 1, received {low} {high}")
    return settings


def config_fields(settings: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(GANConfig)}
    return {k: v for k, v in settings.items() if k in names}
