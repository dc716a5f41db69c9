"""Draw samples from a trained generator without training.

    python -m tinygan.sample RUN/checkpoint.npz --n 10000 --out samples.npy --grid samples.png

Only the generator is loaded: the run's EMA generator (``G_ema/...``, with its own BatchNorm
statistics) where the checkpoint holds one, which is what the run's sample grids show; ``--no-ema``
(``ema=False``) loads the raw trained generator instead. The ``.npy`` holds float32 images in
[0, 1]: (n, 28, 28) for the MNIST model, (n, 32, 32, 3) for the CIFAR-10 DCGAN. It is written to
exactly the path given (no ``.npy`` is appended), through a temporary file renamed into place, so
an interrupted or failed write leaves any earlier file of that name as it was.

A checkpoint is refused, in one line naming the file and the key, when it is missing, not a
tinygan checkpoint, damaged, of another architecture, when its configuration record breaks the
run's schema (:meth:`tinygan.config.GANConfig.from_dict`, the one the trainer resumes with), or when
the generator's weights are not floating point or hold NaN or infinite values (a run that diverged):
such weights would only give NaN images. Exit codes are those of :mod:`tinygan.cli`: 1 for a bad file or option, 2 when
``--device gpu`` has no GPU, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from tinygan import backend
from tinygan.checkpoint import CheckpointError, load_checkpoint, subtree
from tinygan.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NO_GPU, RUN_FILES
from tinygan.config import GANConfig
from tinygan.layers import Sequential
from tinygan.models import IMAGE_SHAPES, LATENT_DIM, build
from tinygan.run_contract import read_config
from tinygan.viz import save_grid, to_images

__all__ = [
    "OneLineArgumentParser",
    "load_generator",
    "main",
    "output_problem",
    "sample",
    "sample_grid",
    "write_atomically",
]

GRID_IMAGES = 64


def _open_checkpoint(path: str | os.PathLike) -> tuple[Path, dict[str, np.ndarray], dict[str, Any]]:
    """``load_checkpoint`` (which validates the file: keys, dtypes, finite values, a JSON object of this
    format) on a checkpoint or run folder; an array too large for memory is a CheckpointError too."""
    path = Path(path)
    if path.is_dir():
        plan = path / RUN_FILES[1]  # classes.json: the root of a per-class CIFAR-10 run, a generator per class folder
        if not (path / "checkpoint.npz").exists() and plan.is_file():
            classes = sorted(str(p) for p in path.iterdir() if (p / "checkpoint.npz").is_file())
            shown = ", ".join(classes[:2]) + (", ..." if len(classes) > 2 else "") if classes else "none trained yet"
            raise CheckpointError(
                f"{path}: a per-class run ({plan.name}) holds one generator per class: give a class's folder ({shown})"
            )
        path = path / "checkpoint.npz"
    try:
        arrays, meta = load_checkpoint(path)
    except MemoryError:
        raise CheckpointError(
            f"{path}: an array in this checkpoint does not fit in memory; not a tinygan run"
        ) from None
    return path, arrays, meta


def load_generator(path: str | os.PathLike, device: str = "cpu", ema: bool = True) -> tuple[Sequential, GANConfig]:
    """Rebuild and load the generator stored in checkpoint ``path`` (or run folder): ``(G, config)``.
    With ``ema`` (default) the EMA generator where the checkpoint holds one (``G_ema/...``), else ``G/...``.

    The configuration is read through the run's own schema (:meth:`GANConfig.from_dict`). Raises
    :class:`CheckpointError` (a ValueError) naming the file and the key for anything wrong with it.
    """
    path, arrays, meta = _open_checkpoint(path)
    config = read_config(path, meta)
    prefix = "G_ema" if ema and subtree(arrays, "G_ema") else "G"
    weights = subtree(arrays, prefix)
    if not weights:
        raise CheckpointError(f"{path}: holds no generator weights (no 'G/...' keys); expected a tinygan GAN run")
    # both generators start with a Dense layer of latent_dim inputs: a record that disagrees with the weights
    # would otherwise build a model of its own size (a latent_dim of 10**9 asks for terabytes) before failing
    latent = config.g_options.get("latent_dim", LATENT_DIM)
    first = weights.get("0.W")
    if first is not None and (first.ndim != 2 or first.shape[0] != latent):
        raise CheckpointError(
            f"{path}: {prefix}/0.W: expected shape ({latent}, units) for config.g_options.latent_dim {latent}, "
            f"received {first.shape}"
        )
    try:
        G = build(config.model, "G", **config.g_options)
    except (TypeError, ValueError, MemoryError) as exc:
        raise CheckpointError(f"{path}: metadata key 'config.g_options': cannot rebuild the generator: {exc}") from None
    G.load_state_dict(weights, source=str(path))
    return G.to(device), config


def sample(
    path: str | os.PathLike, n: int, seed: int = 0, device: str = "cpu", batch_size: int = 1000, ema: bool = True
) -> np.ndarray:
    """``n`` float32 images in [0, 1] from the generator in checkpoint ``path``, ``batch_size`` at a time
    (the EMA generator where there is one, unless ``ema`` is False)."""
    for name, value, low in (("n", n, 1), ("batch_size", batch_size, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, received {value!r}")
    backend.check_device(device)
    G, config = load_generator(path, device, ema)
    latent = int(config.g_options.get("latent_dim", LATENT_DIM))
    rng = np.random.default_rng(seed)
    shape = IMAGE_SHAPES[config.model]
    c, h, w = shape
    try:
        out = np.empty((n, h, w) if c == 1 else (n, h, w, c), np.float32)
    except MemoryError:
        raise ValueError(f"n: {n} images of {shape} need {n * c * h * w * 4 / 1e9:.1f} GB of memory") from None
    for start in range(0, n, batch_size):
        z = rng.standard_normal((min(batch_size, n - start), latent)).astype(G.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below, in one line instead of warnings
            x = backend.to_numpy(G.forward(backend.to_device(z, device), training=False))
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:  # finite weights can still overflow; clipping would hide the NaNs among the images
            raise ValueError(f"{path}: the generator produced {bad} NaN or infinite values in images {start}..")
        out[start : start + len(z)] = to_images(x, shape, config.image_range)
    return out


def sample_grid(
    checkpoints: list[str | os.PathLike],
    path: str | os.PathLike,
    per_row: int = 10,
    seed: int = 0,
    device: str = "cpu",
    ema: bool = True,
) -> Path:
    """A PNG with one row of ``per_row`` samples from each checkpoint's generator (e.g. one per class)."""
    rows = [sample(checkpoint, per_row, seed, device, ema=ema) for checkpoint in checkpoints]
    return save_grid(np.concatenate(rows), path, nrow=per_row)


# ---------------------------------------------------------------- the command line


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors as one ``error: ...`` line and :data:`tinygan.cli.EXIT_ERROR`.

    argparse's own exit code 2 would read as "no GPU" (:data:`tinygan.cli.EXIT_NO_GPU`).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def output_problem(option: str, value: str, suffix: str, required_suffix: bool) -> str | None:
    """Why ``value`` cannot be written as ``option``'s output file, or None: checked before minutes of work.

    A folder, a name without ``suffix`` when ``required_suffix``, a path below an existing file, or a
    folder without write permission each give one line naming the option and the path.
    """
    path = Path(value)
    if path.is_dir() or value.endswith(("/", os.sep)):
        return f"{option} {value} is a folder; expected a file name (ending in {suffix})"
    if required_suffix and path.suffix.lower() != suffix:
        return f"{option} {value}: expected a file name ending in {suffix}, received {path.name!r}"
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"{option} {value}: {existing} is a file, so no folder can be made there"
    if not os.access(existing, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{option} {value}: no permission to write in {existing if not path.exists() else path}"
    return None


def write_atomically(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``: whole or not at all.

    An earlier file of that name stays intact when writing fails or is interrupted. A symlink is
    followed (its target is replaced, the link stays), and a path that exists but is not a regular
    file (``/dev/null``, a FIFO) is written through directly: renaming over it would replace the
    device itself.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        write(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # the suffix tells PIL the format
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _save_npy(path: Path, images: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append .npy to a name without it
        if path.is_file():
            np.save(f, images)
        else:  # a pipe or a device has no file position, which numpy's fast path asks for
            buffer = io.BytesIO()
            np.save(buffer, images)
            f.write(buffer.getbuffer())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m tinygan.sample",
        description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 done, 1 bad checkpoint, file or option, 2 no GPU for --device gpu, 130 interrupted.",
    )
    parser.add_argument("checkpoint", help="a run's checkpoint.npz (or the run folder)")
    parser.add_argument("--n", type=int, default=64, help="number of images, at least 1 (default 64)")
    parser.add_argument(
        "--out",
        metavar="FILE.npy",
        help="write the images (float32 in [0, 1], .npy format) to exactly this file, name as given",
    )
    parser.add_argument("--grid", metavar="FILE.png", help=f"write the first {GRID_IMAGES} images as a PNG grid")
    parser.add_argument("--seed", type=int, default=0, help="noise seed, a non-negative integer (default 0)")
    parser.add_argument("--device", choices=backend.DEVICES, default="cpu", help="where the generator runs")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="images per forward pass, at least 1 (default 1000)"
    )
    parser.add_argument(
        "--no-ema",
        action="store_true",
        help="the raw trained generator, not the EMA generator a run with --ema-decay keeps (its default)",
    )
    args = parser.parse_args(argv)
    for option, value in (("checkpoint", args.checkpoint), ("--out", args.out), ("--grid", args.grid)):
        if value is not None and not value.strip():  # an unset shell variable: never read as "not given"
            parser.error(f"{option}: expected a file name, received {value!r}")
    if not args.out and not args.grid:
        parser.error("nothing to do: give --out FILE.npy and/or --grid FILE.png")
    for option, value, low in (("--n", args.n, 1), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0)):
        if value < low:
            parser.error(f"{option} must be at least {low}, received {value}")
    problems = [output_problem("--out", args.out, ".npy", required_suffix=False) if args.out else None]
    problems.append(output_problem("--grid", args.grid, ".png", required_suffix=True) if args.grid else None)
    if args.out and args.grid and Path(args.out).resolve() == Path(args.grid).resolve():
        problems.append(f"--out and --grid name the same file {args.out}")
    for problem in problems:
        if problem:
            parser.error(problem)
    if args.device == "gpu" and (reason := backend.gpu_unavailable_reason()):
        print(f"error: --device gpu needs a CUDA GPU: {reason}. Run with --device cpu instead.", file=sys.stderr)
        return EXIT_NO_GPU
    try:
        images = sample(args.checkpoint, args.n, args.seed, args.device, args.batch_size, ema=not args.no_ema)
    except backend.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_GPU
    except ValueError as exc:  # CheckpointError is one
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted before anything was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    outputs = [
        ("--out", args.out, lambda tmp: _save_npy(tmp, images), f"{len(images)} images {images.shape[1:]}"),
        ("--grid", args.grid, lambda tmp: save_grid(images[:GRID_IMAGES], tmp), "a grid of "
         f"{min(GRID_IMAGES, len(images))} images"),
    ]  # fmt: skip
    for option, value, write, what in outputs:
        if not value:
            continue
        try:
            write_atomically(value, write)
        except OSError as exc:
            print(f"error: {option} {value}: cannot write it: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print(f"error: interrupted; {value} was not written (an earlier file of that name is intact)",
                  file=sys.stderr)  # fmt: skip
            return EXIT_INTERRUPTED
        print(f"wrote {what} to {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
