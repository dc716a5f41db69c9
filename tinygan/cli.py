"""Command-line plumbing shared by the examples: common options, run folders, resume, errors as one line.

Options are checked where they are parsed: a count that must be positive, a learning rate that is not a
finite number in (0, 1], ... is refused with one line naming the option, what it expects and what it
received (exit code :data:`EXIT_ERROR`).

``--resume RUN`` continues the run with its own recorded options. Options that only decide how long it
runs and what it writes (:data:`RESUME_OPTIONS`) may be given and apply; any other option given with
``--resume`` must equal the run's record, or the resume is refused with one line naming it. The data
must be the run's (same image count and digest) unless ``--allow-other-data`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from tinygan import backend
from tinygan.checkpoint import CheckpointError, checkpoint_path, read_meta
from tinygan.config import RUN_PRECISIONS, GANConfig
from tinygan.run_contract import RunLock, RunLocked, check_model, validate_meta
from tinygan.train import GANTrainer, TrainingDiverged

# Exit codes, so scripts driving the examples can tell failures apart.
EXIT_ERROR = 1  # bad data, bad checkpoint, bad option, a run folder in use
EXIT_NO_GPU = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130

# Options that may be given with --resume and apply: how long the run goes on, what it writes, how the
# GPU step is launched, where the data is read from (its identity is checked), and the data override.
RESUME_OPTIONS = (
    "epochs",
    "sample_every",
    "checkpoint_every",
    "score_every",
    "no_progress",
    "no_cuda_graph",
    "data_dir",
    "allow_other_data",
    "resume",
)

# load_data(data_options, data_dir) -> (images, source)
LoadData = Callable[[dict[str, Any], str | None], tuple[np.ndarray, str]]


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block) and the examples' exit code for bad options."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_ERROR)


# -- option types: each names what it expects and what it received -------------------------------------
def _integer(text: str, low: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "a non-negative integer")


def _number(text: str, low: float, high: float, low_open: bool, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}") from None
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
    return value


def learning_rate(text: str) -> float:
    return _number(text, 0.0, 1.0, True, "a number in (0, 1]")


def probability(text: str) -> float:
    return _number(text, 0.0, 1.0, False, "a number in [0, 1]")


def noise_std(text: str) -> float:
    return _number(text, 0.0, 1.0, False, "a number in [0, 1]")


def ema_decay(text: str) -> float:
    value = _number(text, 0.0, 1.0, False, "a number in [0, 1) (0: no EMA)")
    if value == 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) (0: no EMA), received {text!r}")
    return value


def augment_policy(text: str) -> str:
    """A DiffAugment policy, normalized (``""`` for none); the error lists the transforms."""
    from tinygan.augment import parse_policy

    try:
        parse_policy(text, "--augment")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--augment: ")) from None
    names = [p.strip() for p in text.split(",")]
    return "" if text.strip().lower() in ("", "none") else ",".join(names)


# More samples than this per scoring is a typo, not a study (tinygan.metrics' own study scores 10,000): refused
# before training rather than found out of memory at the first scoring, after an epoch of work.
MAX_SCORE_SAMPLES = 100_000


def sample_count(text: str) -> int:
    value = _integer(text, 2, f"an integer in [2, {MAX_SCORE_SAMPLES}]")
    if value > MAX_SCORE_SAMPLES:
        raise argparse.ArgumentTypeError(f"expected an integer in [2, {MAX_SCORE_SAMPLES}], received {text!r}")
    return value


def folder_name(text: str) -> str:
    """A folder name; an empty one (an unset shell variable, say) is refused rather than read as 'none
    given', which would quietly start a new run or use the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder, received {text!r}")
    return text


def add_common_options(parser: argparse.ArgumentParser, recipes: dict[str, dict[str, Any]]) -> None:
    parser.add_argument(
        "--device", choices=backend.DEVICES, help="cpu (NumPy/Numba, default) or gpu (CuPy); --resume keeps the run's"
    )
    parser.add_argument("--recipe", choices=sorted(recipes), help="settings to start from (default: default)")
    parser.add_argument("--epochs", type=positive_int, help="epochs to train (default: the recipe's)")
    parser.add_argument("--batch-size", type=positive_int, help="images per batch (default: the recipe's)")
    parser.add_argument(
        "--lr", type=learning_rate, help="Adam learning rate for both networks, in (0, 1] (default: the recipe's)"
    )
    parser.add_argument("--lr-d", type=learning_rate, help="discriminator learning rate (overrides --lr)")
    parser.add_argument("--lr-g", type=learning_rate, help="generator learning rate (overrides --lr)")
    bounds = ("LOW", "HIGH")
    parser.add_argument(
        "--real-label", type=probability, nargs=2, metavar=bounds, help="real targets ~ U(LOW, HIGH), in [0, 1]"
    )
    parser.add_argument(
        "--fake-label", type=probability, nargs=2, metavar=bounds, help="fake targets ~ U(LOW, HIGH), in [0, 1]"
    )
    parser.add_argument("--no-label-smoothing", action="store_true", default=None, help="hard targets: real 1, fake 0")
    parser.add_argument(
        "--instance-noise",
        type=noise_std,
        metavar="SIGMA",
        help="Gaussian noise of std SIGMA (0 to 1) on D's inputs, annealed linearly to 0 (default: the recipe's)",
    )
    parser.add_argument("--seed", type=non_negative_int, help="seed for weights, noise, batches, dropout (default 0)")
    parser.add_argument(
        "--d-steps", type=positive_int, metavar="N", help="discriminator updates per generator update (default 1)"
    )
    parser.add_argument(
        "--ema-decay",
        type=ema_decay,
        metavar="D",
        help="keep an exponential moving average of G's weights with decay D (e.g. 0.999; 0: off), updated after "
        "every G step; grids, scores and tinygan.sample use it (default: the recipe's; MNIST's default: 0.999)",
    )
    parser.add_argument(
        "--augment",
        type=augment_policy,
        metavar="POLICY",
        help="differentiable augmentation of everything D sees: a comma-separated list of translation, cutout, "
        "color, or none (default: the recipe's, none)",
    )
    parser.add_argument(
        "--score-every",
        type=non_negative_int,
        metavar="N",
        help="every N epochs score samples with the project's metric (tinygan.metrics, tinygan.metrics_cifar): "
        "FID and classifier score into metrics.csv and quality.png, the lowest FID kept as best.npz (default 0: off)",
    )
    parser.add_argument(
        "--score-samples",
        type=sample_count,
        metavar="N",
        help=f"samples scored each time, 2 to {MAX_SCORE_SAMPLES:,} (default 2000)",
    )
    parser.add_argument(
        "--data-dir",
        type=folder_name,
        help="folder holding the dataset files, an error if they are not there (else: cache, download)",
    )
    parser.add_argument("--out", type=folder_name, help="run folder (default: runs/<name>-<date>-<time>)")
    parser.add_argument(
        "--resume",
        type=folder_name,
        metavar="RUN",
        help="continue the run in folder RUN from its latest checkpoint (RUN/checkpoint.npz), with its own options "
        "(see below)",
    )
    parser.add_argument(
        "--allow-other-data",
        action="store_true",
        default=None,
        help="with --resume: continue even if the data differs from the run's (other images or count)",
    )
    parser.add_argument(
        "--sample-every",
        type=positive_int,
        metavar="N",
        help="save a sample grid every N epochs, and at the last (default: the recipe's; 1, the CIFAR-10 default 5)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        metavar="N",
        help="also keep checkpoints/epoch_NNNN.npz every N epochs (default 0: only the latest)",
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="train on the first N images only (quick looks)"
    )
    parser.add_argument(
        "--g-loss",
        choices=("nonsaturating", "minimax"),
        help="generator loss: the non-saturating -log D(G(z)) or the original minimax log(1 - D(G(z))) (default: "
        "the recipe's; minimax for the dense MNIST default recipe, nonsaturating otherwise)",
    )
    parser.add_argument("--no-progress", action="store_true", default=None, help="no progress bar (one line per epoch)")
    parser.add_argument(
        "--no-cuda-graph",
        action="store_true",
        default=None,
        help="on the GPU, launch every kernel of a step one by one instead of replaying it as one CUDA graph",
    )
    parser.add_argument(
        "--precision",
        choices=RUN_PRECISIONS,
        help="GPU matrix products: fp32 (exact float32, default), tf32 (tensor cores, ~1e-3 relative error, "
        "faster convolutions) or bf16 (the convolutions' GEMM operands in bfloat16, ~1e-2, fastest); weights, "
        "activations and Adam stay float32 in every mode. Default: $TINYGAN_PRECISION, else fp32",
    )


RESUME_HELP = """
--resume RUN continues the run from RUN/checkpoint.npz (an earlier checkpoint file is refused: copy it as
checkpoint.npz into a new folder to go on from it) with the options it was started with. --epochs, --sample-every,
--checkpoint-every, --score-every, --no-progress, --no-cuda-graph and --data-dir may be given and apply;
any other option given with --resume must equal the run's, or the resume is refused naming it. The run records its data
(source, image count, digest): other data is refused unless --allow-other-data is given. A run folder is
locked while a run uses it (RUN/.lock); a second run given the same --out is refused, and a lock
whose process has ended (or whose PID a later process now has) is taken over with a note. A command
refused before training starts removes the run folder it made (never one that was there before).

Exit codes: 0 done (or finished already), 1 bad option, data or checkpoint, or folder in use,
2 no GPU, 3 training diverged (NaN), 130 interrupted (a checkpoint is saved: resume it).
"""


def check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Checks across options, as parser errors (one line)."""
    for option in ("real_label", "fake_label"):
        value = getattr(args, option, None)
        if value and value[0] > value[1]:
            parser.error(f"argument --{option.replace('_', '-')}: expected LOW <= HIGH, received {value[0]} {value[1]}")
    precision = getattr(args, "precision", None)
    if precision not in (None, "fp32") and getattr(args, "device", None) != "gpu" and not getattr(args, "resume", None):
        parser.error(f"argument --precision: {precision} needs --device gpu (the CPU computes in fp32)")
    return args


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


def _shown(value: Any) -> str:
    if value is None:
        return "the default"
    if value == "":  # an empty setting (--augment none)
        return "none"
    if isinstance(value, bool):
        return "given" if value else "not given"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _same(given: Any, recorded: Any) -> bool:
    if isinstance(given, (list, tuple)) or isinstance(recorded, (list, tuple)):
        return (
            isinstance(given, (list, tuple)) and isinstance(recorded, (list, tuple)) and list(given) == list(recorded)
        )
    return given == recorded


def refuse_changed_options(run: str, given: dict[str, Any], recorded: dict[str, Any]) -> None:
    """ValueError naming the first option in ``given`` (not None, not in RESUME_OPTIONS) whose value is not
    the run's ``recorded`` one."""
    for dest, value in given.items():
        if value is None or dest in RESUME_OPTIONS:
            continue
        option = "--" + ("class" if dest == "class_name" else dest.replace("_", "-"))
        if dest not in recorded:
            raise ValueError(f"{option}: {run} does not record it, so --resume cannot check it; leave it out")
        if not _same(value, recorded[dest]):
            raise ValueError(
                f"{option}: {run} was trained with {_shown(recorded[dest])}, received {_shown(value)}; a resumed run "
                "keeps its options (only --epochs, --sample-every, --checkpoint-every, --score-every, "
                "--no-progress, --no-cuda-graph and --data-dir may change)"
            )


def recorded_options(config: GANConfig, run_dir: Path) -> dict[str, Any]:
    """What each common option would have been to give the run ``config``: the record --resume compares with."""
    hard = config.real_label == (1.0, 1.0) and config.fake_label == (0.0, 0.0)
    both = config.lr_d if config.lr_d == config.lr_g else f"{config.lr_d} (D) and {config.lr_g} (G)"
    recorded: dict[str, Any] = {
        "device": config.device,
        "batch_size": config.batch_size,
        "lr": both,
        "lr_d": config.lr_d,
        "lr_g": config.lr_g,
        "real_label": list(config.real_label),
        "fake_label": list(config.fake_label),
        "no_label_smoothing": True if hard else "label smoothing",
        "instance_noise": config.instance_noise,
        "seed": config.seed,
        "limit": config.data_options.get("limit"),
        "g_loss": config.g_loss,
        "precision": config.precision,
        "d_steps": config.d_steps,
        "ema_decay": config.ema_decay,
        "augment": config.augment,
        "score_samples": config.score_samples,
        "out": str(run_dir),
    }
    if config.recipe:
        recorded["recipe"] = config.recipe
    return recorded


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While a command runs, a warning (a data file whose md5 is not the published one) is one ``warning:``
    line on stderr instead of Python's ``file:line: Category`` and the echo of the source line that raised
    it; the previous display is restored after."""

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        print(f"warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run(
    args: argparse.Namespace,
    name: str,
    make_config: Callable[[argparse.Namespace], GANConfig],
    load_data: LoadData,
    example_options: Callable[[GANConfig], dict[str, Any]] = lambda config: {},
    model: str | None = None,
) -> int:
    """Build or resume a run from ``args`` and train it (``name``: the run folder's prefix; ``model``: the
    model it trains, default ``name``; a checkpoint of another model is refused). Returns the exit code.

    ``load_data(data_options, data_dir)`` returns ``(images, source)``; ``example_options(config)`` gives
    the example's own options as the run records them (for --resume's comparison)."""
    try:
        with one_line_warnings():
            if args.resume:
                return _resume(args, model or name, load_data, example_options)
            return _start(args, name, make_config, load_data)
    except TrainingDiverged as exc:
        return fail(str(exc), EXIT_DIVERGED)
    except backend.DeviceError as exc:
        return fail(str(exc), EXIT_NO_GPU)
    except (CheckpointError, RunLocked, ValueError, OSError) as exc:
        return fail(str(exc), EXIT_ERROR)
    except MemoryError as exc:  # numpy names the array it could not allocate
        return fail(f"out of memory: {exc or 'an allocation failed'}", EXIT_ERROR)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)


def _need_gpu(device: str) -> int | None:
    if device == "gpu":
        reason = backend.gpu_unavailable_reason()
        if reason:
            return fail(f"--device gpu needs a CUDA GPU: {reason}. Run with --device cpu instead.", EXIT_NO_GPU)
    return None


def _check_precision(config: GANConfig) -> None:
    """A precision this GPU has no tensor cores for is refused before any data is loaded (ValueError: exit 1)."""
    if config.device == "gpu":
        reason = backend.precision_unavailable_reason(config.precision)
        if reason is not None:
            raise ValueError(f"--precision {config.precision}: {reason}")


def run_folder_problem(path: str | os.PathLike, option: str = "--out") -> str | None:
    """Why no run folder can be made or written at ``path``, or None: checked before data is loaded."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{option} {path} is a file; expected a run folder"
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"{option} {path}: {existing} is a file, so no folder can be made there"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{option} {path}: no permission to write in {existing}"
    return None


@contextlib.contextmanager
def run_folder(path: Path, option: str = "--out") -> Iterator[RunLock]:
    """The run folder ``path``, made where needed and locked (:class:`RunLock`) for the ``with`` block;
    a folder that cannot be made or written is a ValueError naming ``option``."""
    problem = run_folder_problem(path, option)
    if problem:
        raise ValueError(problem)
    lock = RunLock(path)
    try:
        lock.acquire()
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot make the run folder there: {exc.strerror or exc}") from None
    try:
        yield lock
    finally:
        lock.release()


# What marks a folder as a run's: a checkpoint, or the plan of a per-class CIFAR-10 run (examples/cifar_dcgan.py).
RUN_FILES = ("checkpoint.npz", "classes.json")


def held_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a run of either example already: a new run started there would mix
    its files with that run's (a per-class root with a dense MNIST checkpoint, say)."""
    return any((Path(folder) / name).exists() for name in RUN_FILES)


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """The folders that creating ``path`` (with its parents) would make, deepest first: what a refusal
    may remove again with :func:`remove_empty_folders`."""
    missing: list[Path] = []
    path = Path(path).absolute()
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a folder holding anything, this
    invocation's or someone else's, is kept, and so is every folder above it."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def _start(
    args: argparse.Namespace, name: str, make_config: Callable[[argparse.Namespace], GANConfig], load_data: LoadData
) -> int:
    code = _need_gpu(args.device)
    if code is not None:
        return code
    config = make_config(args)
    _check_precision(config)
    limit = config.data_options.get("limit")
    if limit is not None and limit < config.batch_size:  # known before minutes of loading data
        raise ValueError(f"--limit {limit}: fewer images than one batch (batch size {config.batch_size})")
    out = Path(args.out) if args.out else new_run_dir(name)
    created = missing_folders(out)  # a refusal before training starts removes what it made (never older folders)
    started = False
    try:
        with run_folder(out):
            if held_run(out):
                return fail(f"{out} already holds a run: use --resume {out}, or another --out", EXIT_ERROR)
            data, source = load_data(config.data_options, args.data_dir)
            trainer = GANTrainer(config, data, out, progress=not args.no_progress, data_source=source)
            print(
                f"run folder: {out}  ({len(data)} images, {trainer.steps_per_epoch} steps per epoch, "
                f"device {config.device})"
            )
            trainer.G.summary((trainer.latent_dim,))
            trainer.D.summary(tuple(data.shape[1:]))
            started = True
            return _train(trainer)
    finally:
        if not started:
            remove_empty_folders(created)


def _resume(
    args: argparse.Namespace, name: str, load_data: LoadData, example_options: Callable[[GANConfig], dict[str, Any]]
) -> int:
    path = checkpoint_path(args.resume)
    run_dir = path.parent
    if path.is_file() and path.name != "checkpoint.npz":  # the trainer continues RUN/checkpoint.npz, never this file
        raise ValueError(
            f"--resume {args.resume}: expected a run folder or its checkpoint.npz; a run continues from its latest "
            f"checkpoint (to go on from {path.name} instead, copy it as checkpoint.npz into a new folder and resume "
            "that)"
        )
    meta = read_meta(path)
    config = validate_meta(path, meta, GANTrainer.METRICS)
    check_model(path, config, name)
    code = _need_gpu(config.device)
    if code is not None:
        return code
    _check_precision(config)
    if args.device is not None and args.device != config.device:
        return fail(
            f"--device: {run_dir} was trained on the {config.device}; resume it there (a {args.device} run draws "
            "other random numbers, so it could not continue exactly)",
            EXIT_ERROR,
        )
    given = {k: v for k, v in vars(args).items() if k != "out"}
    if args.out is not None and Path(args.out).resolve() != run_dir.resolve():
        raise ValueError(f"--out: a resumed run writes into its own folder {run_dir}, received {args.out}")
    refuse_changed_options(str(run_dir), given, {**recorded_options(config, run_dir), **example_options(config)})
    overrides: dict[str, Any] = {
        key: getattr(args, key)
        for key in ("epochs", "sample_every", "checkpoint_every", "score_every")
        if getattr(args, key)
    }
    for key in ("checkpoint_every", "score_every"):
        if getattr(args, key) == 0:
            overrides[key] = 0
    if args.no_cuda_graph:
        overrides["cuda_graph"] = False
    epochs = overrides.get("epochs", config.epochs)
    if meta["epoch"] >= epochs:  # said before any data is loaded
        print(
            f"{run_dir} is finished: it has trained {meta['epoch']} of {epochs} epochs. "
            f"To train longer, resume with --epochs N (N > {meta['epoch']})."
        )
        return 0
    with run_folder(run_dir, "--resume"):
        data_dir = args.data_dir or config.data_options.get("data_dir")
        try:
            data, source = load_data(config.data_options, data_dir)
        except FileNotFoundError as exc:
            if args.data_dir is None and data_dir is not None:  # the run's recorded folder: the files may have moved
                raise ValueError(f"{exc} ({run_dir} was trained from there; if the files moved, resume with "
                                 "--data-dir DIR)") from None  # fmt: skip
            raise
        trainer = GANTrainer.resume(
            run_dir,
            data,
            overrides,
            progress=not args.no_progress,
            data_source=source,
            allow_other_data=bool(args.allow_other_data),
            model=name,
        )
        if trainer.data_note:
            print(trainer.data_note)
        print(f"resuming {run_dir} at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch}")
        return _train(trainer)


def _train(trainer: GANTrainer) -> int:
    trainer.resume_hint = f"resume with: {resume_command(trainer.out_dir)}"
    history = trainer.run()
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
    if args.d_steps is not None:
        settings["d_steps"] = args.d_steps
    if args.ema_decay is not None:
        settings["ema_decay"] = args.ema_decay
    if args.augment is not None:
        settings["augment"] = args.augment
    if args.g_loss is not None:  # else the recipe's, or GANConfig's default (nonsaturating)
        settings["g_loss"] = args.g_loss
    if args.sample_every is not None:  # else the recipe's, or GANConfig's default (every epoch)
        settings["sample_every"] = args.sample_every
    return settings


def config_fields(settings: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(GANConfig)}
    return {k: v for k, v in settings.items() if k in names}


def common_config(args: argparse.Namespace, recipe: str) -> dict[str, Any]:
    """The GANConfig fields every example takes from the common options (defaults filled in)."""
    return {
        "recipe": recipe,
        "seed": 0 if args.seed is None else args.seed,
        "device": args.device or "cpu",
        "cuda_graph": not args.no_cuda_graph,
        "precision": args.precision or _default_precision(args.device or "cpu"),
        "checkpoint_every": args.checkpoint_every or 0,
        "score_every": args.score_every or 0,
        "score_samples": args.score_samples or 2000,
    }


def _default_precision(device: str) -> str:
    """fp32 on the CPU; on the GPU the environment's setting (TINYGAN_PRECISION, or TINYGAN_TF32=1), as the
    Python API reads it, so both ways of asking for tf32 give the same run."""
    if device != "gpu":
        return "fp32"
    precision = backend.get_precision()
    if precision not in RUN_PRECISIONS:
        raise ValueError(f"TINYGAN_PRECISION={precision}: runs take one of {', '.join(RUN_PRECISIONS)}")
    return precision


def data_dir_record(data_dir: str | None) -> str | None:
    """An explicit --data-dir as an absolute path, so that a resume from elsewhere finds the same folder."""
    return None if data_dir is None else str(Path(data_dir).expanduser().resolve())


__all__ = [
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NO_GPU",
    "RESUME_OPTIONS",
    "ArgumentParser",
    "add_common_options",
    "apply_recipe",
    "check_options",
    "fail",
    "folder_name",
    "held_run",
    "missing_folders",
    "new_run_dir",
    "remove_empty_folders",
    "run_folder",
    "run_folder_problem",
    "run",
]
