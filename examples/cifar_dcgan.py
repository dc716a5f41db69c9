"""Train the CIFAR-10 DCGAN: one model per class (as the original did), one class, or all classes jointly.

    python examples/cifar_dcgan.py --class all       # ten models, one per class, then an overview grid
    python examples/cifar_dcgan.py --class cat       # one model for one class
    python examples/cifar_dcgan.py --class joint     # one model on every class together
    python examples/cifar_dcgan.py --resume runs/cifar_dcgan-...   # continue a stopped run exactly

Generator: z (100) -> Dense 2048 -> (128, 4, 4) -> [BatchNorm, LeakyReLU 0.2, ConvTranspose 5x5 stride 2] x3
-> Tanh: 32x32x3 images (826,883 parameters; --upsample convT4: ConvTranspose 4x4 stride 2 padding 1, whose
even overlap builds in no checkerboard, 603,971 parameters; --upsample resize: nearest-neighbour upsampling x2,
then Conv 3x3, 430,595 parameters). Discriminator: Conv 3x3 64 -> Conv 3x3/2 128 -> Conv 3x3/2
128 -> Conv 3x3/2 32 -> Dense 1, LeakyReLU 0.2 (260,641 parameters; --downsample conv4: the stride-2
convolutions 4x4 padding 1, whose even overlap puts no checkerboard into the gradient G learns from, 461,345).
The original recipe (--recipe original): Adam beta1 0.5, D lr 2e-4, G lr 1e-4, batch 128, 150 epochs, labels
smoothed to real ~ U(0.8, 1.0) and fake ~ U(0.0, 0.1), a sample grid every epoch. The default recipe adds an EMA
of G (decay 0.999) over translation,cutout augmentation, builds G with --upsample resize and D with --downsample
conv4, and trains 780 epochs, a grid every 5 (the recipe study:
bench/results/cifar-study-2026-12-02.md). Data: the CIFAR-10 python version (cifar-10-python.tar.gz or its extracted
cifar-10-batches-py/ folder) from --data-dir or the cache, downloaded when online.

--auto-stop stops a model once its discriminator has recognised at least --auto-stop-threshold of the
generated images (D(G(z)) < 0.5) for --auto-stop-patience epochs in a row, and keeps the most balanced
epoch (D's accuracy on generated images closest to 50%) as best.npz beside checkpoint.npz; with
--score-every N, best.npz is instead the epoch of the lowest CIFAR-10 Fréchet distance (tinygan.metrics_cifar,
against the test images of the class), which the overview grid then shows. --ema-decay D samples from an
average of G's weights, --augment POLICY augments everything D sees (README, "The examples").

--class all writes one subfolder per class and classes.json (the classes and the options of the run);
--resume ROOT trains every class not yet finished with those recorded options.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# tinygan before NumPy: its import sets OpenBLAS's thread timeout, which NumPy reads once when it loads.
from tinygan import cli
from tinygan.checkpoint import CheckpointError, read_meta
from tinygan.config import GANConfig
from tinygan.data.cifar10 import CLASS_NAMES, load_cifar10, scale_cifar10
from tinygan.models import DOWNSAMPLES, UPSAMPLES
from tinygan.recipes import CIFAR_RECIPES
from tinygan.run_contract import RunLocked
from tinygan.sample import sample_grid

if TYPE_CHECKING:
    import numpy as np

PLAN_FILE = cli.RUN_FILES[1]  # "classes.json" in the root of a per-class run: which classes, with which options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1] + cli.RESUME_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_common_options(parser, CIFAR_RECIPES)
    parser.add_argument(
        "--class",
        dest="class_name",
        choices=[*CLASS_NAMES, "all", "joint"],
        help="a class name, 'all' (one model per class, default) or 'joint' (one model on every class)",
    )
    parser.add_argument(
        "--upsample",
        choices=UPSAMPLES,
        help="G's upsampling layers: convT5 (ConvTranspose 5x5 stride 2, the original; uneven overlap, "
        "checkerboard), convT4 (4x4 stride 2 padding 1, even overlap) or resize (nearest-neighbour upsample x2, "
        "then Conv 3x3) (default: the recipe's; the default recipe's is resize, the original's convT5)",
    )
    parser.add_argument(
        "--downsample",
        choices=DOWNSAMPLES,
        help="D's stride-2 convolutions: conv3 (3x3, the original; uneven overlap, a checkerboard in the gradient "
        "G learns from) or conv4 (4x4 padding 1, even overlap) "
        "(default: the recipe's; the default recipe's is conv4, the original's conv3)",
    )
    parser.add_argument("--auto-stop", action="store_true", default=None, help="stop when D dominates (see below)")
    parser.add_argument(
        "--auto-stop-threshold", type=cli.probability, metavar="P", help="share of generated images (default 0.95)"
    )
    parser.add_argument("--auto-stop-patience", type=cli.positive_int, metavar="N", help="epochs in a row (default 10)")
    return cli.check_options(parser, parser.parse_args(argv))


def make_config(args: argparse.Namespace) -> GANConfig:
    recipe = args.recipe or "default"
    settings = cli.apply_recipe(args, CIFAR_RECIPES[recipe])
    common = cli.common_config(args, recipe)
    return GANConfig(
        model="dcgan",
        data_options={
            "dataset": "cifar10",
            "split": "train",
            "class": None if args.class_name == "joint" else args.class_name,
            "limit": args.limit,
            "data_dir": cli.data_dir_record(args.data_dir),
        },
        g_options=builder_options(common["seed"], "upsample", args.upsample or settings.get("upsample")),
        d_options=builder_options(common["seed"] + 1, "downsample", args.downsample or settings.get("downsample")),
        auto_stop=bool(args.auto_stop),
        auto_stop_threshold=0.95 if args.auto_stop_threshold is None else args.auto_stop_threshold,
        auto_stop_patience=10 if args.auto_stop_patience is None else args.auto_stop_patience,
        image_range="tanh",
        **common,
        **cli.config_fields(settings),
    )


# The original's layers: what a recipe or option that names none builds (the builders' defaults), and what a run's
# record leaves out, so that an original run's configuration stays exactly what it always was.
ORIGINAL_LAYERS = {"upsample": "convT5", "downsample": "conv3"}


def builder_options(seed: int, option: str, value: str | None) -> dict[str, Any]:
    """G's or D's builder options (tinygan.models.dcgan_generator / dcgan_discriminator) as the run records
    them: the seed, and ``option`` ("upsample" or "downsample") where ``value`` is not the original's."""
    options: dict[str, Any] = {"seed": seed}
    if value is not None and value != ORIGINAL_LAYERS[option]:
        options[option] = value
    return options


def recorded_options(config: GANConfig) -> dict[str, Any]:
    """This example's own options as the run ``config`` records them (what --resume compares with)."""
    return {
        "class_name": config.data_options.get("class") or "joint",
        "upsample": config.g_options.get("upsample", ORIGINAL_LAYERS["upsample"]),
        "downsample": config.d_options.get("downsample", ORIGINAL_LAYERS["downsample"]),
        "auto_stop": True if config.auto_stop else "no auto-stop",
        "auto_stop_threshold": config.auto_stop_threshold,
        "auto_stop_patience": config.auto_stop_patience,
    }


def load_data(options: dict[str, Any], data_dir: str | None) -> tuple[np.ndarray, str]:
    split = options.get("split", "train")
    loaded = load_cifar10(data_dir, split, options.get("class"))
    images = scale_cifar10(loaded.images)
    if options.get("limit"):
        images = images[: options["limit"]]
    label = options.get("class") or "all classes"
    print(f"data: {loaded.source}, {split} split, {label}: {len(images)} images")
    source = loaded.source
    return images, f"{source.dataset} from {source.kind} ({source.location})"


def _plan_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {k: v for k, v in vars(args).items() if k not in ("resume", "out")}
    options["data_dir"] = cli.data_dir_record(args.data_dir)
    return options


def _read_plan(root: Path) -> tuple[list[str], argparse.Namespace]:
    """The classes and the recorded options of the per-class run in ``root`` (ValueError naming the file)."""
    path = root / PLAN_FILE
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable run plan: {exc}") from None
    classes = plan.get("classes") if isinstance(plan, dict) else None
    if not isinstance(classes, list) or not classes or any(c not in CLASS_NAMES for c in classes):
        raise ValueError(f"{path}: key 'classes': expected a list of CIFAR-10 class names, received {classes!r:.80}")
    options = plan.get("options")
    if isinstance(options, dict):
        recorded = argparse.Namespace(**{**vars(parse_args([])), **options})
    elif isinstance(plan.get("argv"), list) and all(isinstance(a, str) for a in plan["argv"]):
        recorded = parse_args(plan["argv"])  # an older run recorded only its command line
    else:
        raise ValueError(f"{path}: key 'options': expected the run's options, found neither options nor argv")
    return classes, recorded


def _class_options(args: argparse.Namespace, root: Path) -> tuple[list[str], argparse.Namespace]:
    """Resuming ROOT: its recorded options, with the options safe to change that were given now. Any
    other option given that differs from the record is refused (ValueError naming it)."""
    classes, recorded = _read_plan(root)
    given = {k: v for k, v in vars(args).items() if k != "out"}
    if args.out is not None and Path(args.out).resolve() != root.resolve():
        raise ValueError(f"--out: a resumed run writes into its own folder {root}, received {args.out}")
    cli.refuse_changed_options(str(root), given, {**vars(recorded), "class_name": "all"})
    effective = copy.copy(recorded)
    for key in cli.RESUME_OPTIONS:
        if key != "resume" and getattr(args, key, None) is not None:
            setattr(effective, key, getattr(args, key))
    return classes, effective


def run_all_classes(args: argparse.Namespace) -> int:
    """One model per class, each in its own subfolder, then a 10-row overview grid."""
    try:
        if args.resume:
            root = Path(args.resume)
            classes, options = _class_options(args, root)
        else:
            root = Path(args.out) if args.out else cli.new_run_dir("cifar_dcgan")
            classes, options = CLASS_NAMES, args
        created = [] if args.resume else cli.missing_folders(root)
        wrote_plan, code = False, cli.EXIT_ERROR
        try:
            with cli.run_folder(root, "--resume" if args.resume else "--out"):
                if not args.resume:
                    if cli.held_run(root):
                        return cli.fail(
                            f"{root} already holds a run: use --resume {root}, or another --out", cli.EXIT_ERROR
                        )
                    plan = {"classes": classes, "argv": sys.argv[1:], "options": _plan_options(args)}
                    (root / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
                    wrote_plan = True
                code = _train_classes(root, classes, options)
        finally:
            # Refused before any class began training (each class removes the folder it made): leave nothing.
            if code != 0 and wrote_plan and sorted(p.name for p in root.iterdir()) == [PLAN_FILE]:
                (root / PLAN_FILE).unlink()
            if code != 0:
                cli.remove_empty_folders(created)
        if code == cli.EXIT_INTERRUPTED and root.is_dir():
            print(f"to continue every class: python {sys.argv[0]} --resume {root}")
        return code
    except (ValueError, OSError, RunLocked) as exc:
        return cli.fail(str(exc), cli.EXIT_ERROR)
    except KeyboardInterrupt:
        return cli.fail("interrupted", cli.EXIT_INTERRUPTED)


def _train_classes(root: Path, classes: list[str], options: argparse.Namespace) -> int:
    for name in classes:
        folder = root / name
        one = copy.copy(options)
        one.class_name, one.out, one.resume = name, str(folder), None
        if (folder / "checkpoint.npz").is_file():
            if _finished(folder, options.epochs):
                print(f"{name}: already trained, skipping")
                continue
            one.resume = str(folder)
        print(f"=== class {name} ({classes.index(name) + 1}/{len(classes)}) ===")
        code = cli.run(one, "cifar_dcgan", make_config, load_data, recorded_options, model="dcgan")
        if code != 0:
            return code
    overview = save_overview(root, classes, options.device or "cpu")
    print(f"overview of every class: {overview}")
    return 0


def _finished(folder: Path, epochs: int | None) -> bool:
    try:
        meta = read_meta(folder)
        return meta["epoch"] >= (epochs or meta["config"]["epochs"])
    except (CheckpointError, KeyError, TypeError):
        return False  # the class's resume reports what is wrong with its checkpoint


def save_overview(root: Path, classes: list[str], device: str = "cpu", per_class: int = 10) -> Path:
    """One row per class: samples from each class's model (best.npz where auto-stop or scoring kept one;
    its EMA generator where the run keeps one)."""
    checkpoints = []
    for name in classes:
        best = root / name / "best.npz"
        checkpoints.append(best if best.is_file() else root / name / "checkpoint.npz")
    return sample_grid(checkpoints, root / "overview.png", per_row=per_class, device=device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    resuming_all = bool(args.resume) and (Path(args.resume) / PLAN_FILE).is_file()
    if resuming_all or (not args.resume and args.class_name in (None, "all")):
        return run_all_classes(args)
    return cli.run(args, "cifar_dcgan", make_config, load_data, recorded_options, model="dcgan")


if __name__ == "__main__":
    sys.exit(main())
