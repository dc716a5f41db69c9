"""Recipe study for the two examples: candidates for the default recipe, each on several seeds, scored with
the project's metric (issue 14).

    python tools/recipe_study.py --data-dir .data/mnist --device gpu --out $OUT/study \\
        --epochs 30 --score-every 10 --score-samples 10000 --seeds 0 1 --time-budget 240
    python tools/recipe_study.py --model cifar --data-dir CIFAR --device gpu --out $OUT/cifar --time-budget 420

CIFAR-10 (``--model cifar``, :func:`cifar_main`)
------------------------------------------------
As ``examples/cifar_dcgan.py --class all``: one G/D per class (about 380 images each on the partial data),
for every candidate on every seed. Candidates are relative to the CURRENT default recipe
(``tinygan.recipes.CIFAR_RECIPES["default"]``: since 2026-12-02 the challenge's settings with an EMA of G,
decay 0.999, over translation,cutout augmentation, 780 epochs since the tenth session, G's resize-convolution
and D's 4x4 stride-2 convolutions since the eleventh) and none equals it
(:data:`CIFAR_CANDIDATES`):
"default" (no options) trains first, always, as its own runs; the same runs also score their raw generator,
filed as "no-ema" (the EMA does not feed back into training: :data:`CIFAR_RAW_TWIN`). Then "original"
(``--recipe original``, the challenge's settings: no EMA, no augmentation, so every study shows the old
baseline too), "no-aug" (``--augment none``), "aug-tcc" (``--augment translation,cutout,color``), "convT5"
and "convT4" (``--upsample``), "d-conv3" (``--downsample conv3``), and "combo" (:func:`combination`): the
best of each option group (augmentation, upsampling, downsampling) that beat the default on every seed;
where fewer than two did, the better of each group by mean FID anyway (the table says so), so that every
study shows two changes together; skipped where fewer than two groups ran (``--candidates``).
"original" stays out of combo: a baseline, not an option.

Each run trains without any output (no checkpoint, grid, plot or GIF: :func:`_train_quietly`), then its
sampling generator makes ``--score-samples`` images from fixed noise, scored with
:mod:`tinygan.metrics_cifar` against the test images of its class (Fréchet distance in the classifier's
features, the share recognised as the class; results.csv's ``generator`` says which: ema or raw). The
classifier is the cached one, trained first on
``--device`` where there is none. Every candidate ("original" included, not its own 150) trains the same
``--epochs`` (default 780, the default recipe's), lowered for every run when the first run shows that the
study would not fit ``--time-budget`` (unless ``--no-fit-budget``); results.md says which epochs ran.
"beats default" and "FID -30%" compare with the default's own runs. A candidate that fails (diverges, a
kernel error) is noted and the study goes on with the next. Writes four files: ``results.csv``,
``results.md``, ``overview.png`` (a row per class, the candidates side by side, seed 0) and ``grids.tar``
(``grid-CANDIDATE.png``, a row per class, for each candidate). ``--smoke`` trains a tiny classifier
instead, for a CPU test in seconds.

MNIST
-----

Every candidate is the default recipe (examples/mnist_dense.py's ``make_config``) with a few options
changed (:data:`CANDIDATES`); each trains once per seed with ``--score-every``, so the samples of its
sampling generator (the EMA generator where the candidate keeps one) are scored every N epochs and at
its last with :mod:`tinygan.metrics` on ``--score-samples`` images (the Fréchet distance to the MNIST
test set in the classifier's features, the classifier score, the rarest predicted class). A candidate
counts as better than the default only where it wins on every seed.

Writes at most three files into ``--out`` (so that one device call brings them all back):

- ``results.csv``: one row per candidate, seed and scored epoch;
- ``results.md``: the table (each seed's figures, their mean, and whether the candidate beats the
  default on every seed at the last scored epoch), the real held-out reference line, the settings;
- ``samples.png``: one row of 10 samples per candidate (seed 0, its last epoch), in the table's order.

``--time-budget SECONDS`` bounds the whole study: a run still training when it is spent stops at the
next step (its scores so far are kept), no run starts that the last run's duration says would not
finish, and the files are written after every run, so a study cut short still reports what it has.
Runs train in a scratch folder (``--work-dir``, default a temporary folder in /dev/shm where there is
one, removed at the end), with sample grids and plots only at their last epoch;
their epoch lines go to ``WORK/NAME.log``, the terminal gets one line per run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tinygan.data.download import DataIntegrityWarning  # noqa: E402
from tinygan.recipes import CIFAR_RECIPES  # noqa: E402

# name -> command-line options on top of the default recipe (what a user would type)
# (in the order they run: the most informative first, in case the time budget ends the study early)
CANDIDATES: dict[str, list[str]] = {
    "default": [],  # since 2026-12-02 with an EMA of decay 0.999 (bench/results/recipe-study-2026-12-02.md)
    "no-ema": ["--ema-decay", "0"],
    "aug-translation": ["--augment", "translation"],
    "aug-translation-cutout": ["--augment", "translation,cutout"],
    "ema-0.9999": ["--ema-decay", "0.9999"],
    "lr-1e-4": ["--lr", "0.0001"],
    "d-steps-2": ["--d-steps", "2"],
    # Since 2026-12-02 (second study of bench/results/recipe-study-2026-12-02.md) the default trains G with the
    # minimax loss; this is the non-saturating loss it replaced.
    "nonsaturating": ["--g-loss", "nonsaturating"],
    # Sixth session (the classifier score and the rarest class at epoch 30 were short of issue 14's targets):
    # twice the steps per epoch, a faster Adam, hard labels. Since then the default's rate is 6e-4 (fifth study
    # of bench/results/recipe-study-2026-12-02.md); "lr-2e-4" is the rate it replaced.
    "lr-2e-4": ["--lr", "0.0002"],
    "batch-64": ["--batch-size", "64"],
    "lr-4e-4": ["--lr", "0.0004"],
    "no-label-smoothing": ["--no-label-smoothing"],
    "lr-4e-4-batch-64": ["--lr", "0.0004", "--batch-size", "64"],
    # Ninth session: does the rate's trend (2e-4 -> 4e-4 -> 6e-4: score 8.75 -> 8.93 -> 8.95 at epoch 30) go on?
    "lr-8e-4": ["--lr", "0.0008"],
    # Tenth session: the score still short of 9.2 at epoch 30 rises with training (9.14 at epoch 60, 9.19 at 90):
    # more, smaller steps per epoch; no instance noise (it blurs what D sees); a slower G (two time scales).
    "batch-32-lr-3e-4": ["--batch-size", "32", "--lr", "0.0003"],
    "batch-64-lr-6e-4": ["--batch-size", "64", "--lr", "0.0006"],
    "no-instance-noise": ["--instance-noise", "0"],
    "lr-g-3e-4": ["--lr-g", "0.0003"],
}
FIELDS = (
    "candidate",
    "seed",
    "epoch",
    "fid",
    "classifier_score",
    "rarest_class_fraction",
    "classes_covered",
    "options",
    "stopped_early",
    "train_seconds",
)


def _example(name: str) -> Any:
    """examples/NAME.py as a module (its make_config, parse_args and load_data)."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--model", choices=("mnist", "cifar"), default="mnist", help="which example (mnist)")
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST IDX files / cifar-10-batches-py")
    parser.add_argument("--out", required=True, help="folder for the results (at most 8 files)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"epochs per run, every candidate (MNIST 30; CIFAR-10 {CIFAR_RECIPES['default']['epochs']}, the "
        "default recipe's, lowered to fit --time-budget)",
    )
    parser.add_argument("--score-every", type=int, default=10, help="MNIST: score every N epochs and at the last (10)")
    parser.add_argument(
        "--score-samples", type=int, help="samples scored each time (MNIST 10000; CIFAR-10 1000 per class)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every candidate (0 1)")
    parser.add_argument(
        "--candidates",
        help="comma-separated subset of the model's candidates (default: all; CIFAR-10 always trains 'default')",
    )
    parser.add_argument("--limit", type=int, help="MNIST: train on the first N images only (a quick look or a test)")
    parser.add_argument("--time-budget", type=float, help="seconds for the whole study (MNIST 240, CIFAR-10 420)")
    parser.add_argument("--work-dir", help="MNIST: scratch folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--classes", help="CIFAR-10: comma-separated classes (default: all ten)")
    parser.add_argument("--batch-size", type=int, help="CIFAR-10: batch size (default: the recipe's, 128)")
    parser.add_argument(
        "--no-fit-budget",
        dest="fit_budget",
        action="store_false",
        help="CIFAR-10: keep --epochs even when the first run says the study will not fit the budget",
    )
    parser.add_argument("--grid-columns", type=int, default=10, help="CIFAR-10: samples per class in the grids")
    parser.add_argument(
        "--smoke", action="store_true", help="CIFAR-10: a tiny classifier trained for the study (tests, CPU)"
    )
    args = parser.parse_args(argv)
    cifar = args.model == "cifar"
    table = CIFAR_CANDIDATES if cifar else CANDIDATES
    names = list(table) if not args.candidates else [c.strip() for c in args.candidates.split(",")]
    twins = [c for c in names if cifar and c in CIFAR_RAW_TWIN.values()]
    if twins:
        parser.error(f"--candidates: {twins} come from the default's runs (its raw generator), not runs of their own")
    unknown = [c for c in names if c not in table]
    if unknown:
        parser.error(f"--candidates: unknown {unknown}; expected some of {list(table)}")
    if cifar:  # the baseline of every verdict trains first, listed or not
        names = ["default", *[c for c in names if c != "default"]]
    args.candidate_names = names
    args.epochs = args.epochs if args.epochs is not None else (CIFAR_RECIPES["default"]["epochs"] if cifar else 30)
    args.score_samples = args.score_samples if args.score_samples is not None else (1000 if cifar else 10000)
    args.time_budget = args.time_budget if args.time_budget is not None else (420.0 if cifar else 240.0)
    for option in ("epochs", "score_every", "score_samples", "grid_columns"):
        if getattr(args, option) < (2 if option == "score_samples" else 1):
            parser.error(f"--{option.replace('_', '-')}: expected a positive integer, received {getattr(args, option)}")
    if args.batch_size is not None and args.batch_size < 2:
        parser.error(f"--batch-size: expected an integer >= 2, received {args.batch_size}")
    if args.time_budget <= 0:
        parser.error(f"--time-budget: expected a positive number of seconds, received {args.time_budget}")
    classes, args.classes = args.classes, None
    if cifar:
        from tinygan.data.cifar10 import CLASS_NAMES

        if classes:
            args.classes = [c.strip() for c in classes.split(",")]
            wrong = [c for c in args.classes if c not in CLASS_NAMES]
            if wrong:
                parser.error(f"--classes: unknown {wrong}; expected some of {list(CLASS_NAMES)}")
    elif args.smoke or args.batch_size:
        parser.error("--smoke and --batch-size are options of --model cifar")
    return args


def _real_reference(scorer_data: Any, classifier: Any, n: int, device: str) -> dict[str, Any] | None:
    """The figures of ``n`` held-out real images (what real digits score at this n)."""
    from tinygan import metrics

    if scorer_data.holdout is None:
        return None
    images = scorer_data.holdout[0][:n].astype("float32") / 255
    result = metrics.evaluate(images, classifier=classifier, data=scorer_data, device=device, verbose=None)
    return result["real"]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def write_results(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace, real: Any, notes: list[str]) -> None:
    """results.csv and results.md from the rows so far (rewritten whole, through a temporary file)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "results.csv")

    seeds = args.seeds
    by_key = {(r["candidate"], r["seed"], r["epoch"]): r for r in rows}
    epochs = sorted({r["epoch"] for r in rows})
    last_epoch = {}
    for r in rows:
        key = (r["candidate"], r["seed"])
        last_epoch[key] = max(last_epoch.get(key, 0), r["epoch"])
    lines = [
        "# MNIST recipe study (tools/recipe_study.py)",
        "",
        f"Dense MNIST GAN, default recipe plus each candidate's options; {args.epochs} epochs, seeds "
        f"{', '.join(map(str, seeds))}, device {args.device}; tinygan.metrics on {args.score_samples} samples of "
        "the sampling generator (the EMA generator where the candidate keeps one) every "
        f"{args.score_every} epochs. FID: the classifier-feature Fréchet distance to the MNIST test set (lower is "
        "better); score: the classifier score (max 10); rarest: the rarest predicted class's share of the samples. "
        "'beats default': lower FID than the default recipe on every seed at the same epoch.",
        "",
    ]
    header = ["candidate", "epoch"]
    header += [f"FID s{s}" for s in seeds] + ["FID mean", "score mean", "rarest (min)", "beats default"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for name in args.candidate_names:
        for epoch in epochs:
            entries = [by_key.get((name, s, epoch)) for s in seeds]
            if not any(entries):
                continue
            fids = [e["fid"] for e in entries if e]
            base = [by_key.get(("default", s, epoch)) for s in seeds]
            if name == "default":
                verdict = ""
            elif all(entries) and all(base):
                verdict = "yes" if all(e["fid"] < b["fid"] for e, b in zip(entries, base)) else "no"
            else:
                verdict = "(missing seeds)"
            cells = [name, str(epoch)]
            cells += [f"{e['fid']:.3f}" if e else "-" for e in entries]
            cells += [
                f"{_mean(fids):.3f}",
                f"{_mean([e['classifier_score'] for e in entries if e]):.2f}",
                f"{100 * min(e['rarest_class_fraction'] for e in entries if e):.1f}%",
                verdict,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if real is not None:
        lines += [
            "",
            f"Real held-out MNIST images (n = {real['n']}): FID {real['frechet_distance']:.3f}, score "
            f"{real['classifier_score']:.2f}, rarest class {100 * real['coverage']['rarest_fraction']:.1f}%.",
        ]
    lines += ["", "Candidates (options on top of the default recipe):", ""]
    lines += [f"- {name}: `{' '.join(CANDIDATES[name]) or '(none)'}`" for name in args.candidate_names]
    if any(name.startswith(("ema-", "no-ema")) for name in args.candidate_names):
        lines += [
            "",
            "The EMA candidates (no-ema included) train exactly the default's trajectory (the average does not feed "
            "back into training): their rows differ from the default's only by the averaging.",
        ]
    lines += ["", *[f"Note: {note}" for note in notes]]
    (out / "results.md").write_text("\n".join(lines).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return cifar_main(args) if args.model == "cifar" else study(args)
    except (ValueError, OSError) as exc:  # missing or damaged data, an unwritable --out: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1


def study(args: argparse.Namespace) -> int:
    start = time.monotonic()
    deadline = start + args.time_budget
    out = Path(args.out)

    from tinygan import metrics
    from tinygan.quality import mnist_scorer
    from tinygan.train import GANTrainer
    from tinygan.viz import save_grid

    example = _example("mnist_dense")
    classifier_data = metrics.load_data(args.data_dir, download=False, verbose=None)
    classifier = metrics.load_classifier(args.data_dir, data=classifier_data, device=args.device, download=False)
    scorer = mnist_scorer(args.data_dir, args.device, classifier=classifier)
    real = _real_reference(classifier_data, classifier, args.score_samples, args.device)
    print(
        f"classifier ready ({time.monotonic() - start:.0f} s); "
        f"{len(args.candidate_names)} candidates x seeds {args.seeds}",
        flush=True,
    )

    # Folders only once the data and the classifier are there: a refusal leaves none behind.
    out.mkdir(parents=True, exist_ok=True)
    # Checkpoints are written after every epoch: in memory (tmpfs) where there is one, so they cost no disk time.
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="recipe_study-", dir=scratch))
    work.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    grid_rows = []
    data = None
    last_duration = 0.0
    try:
        for name in args.candidate_names:
            for seed in args.seeds:
                remaining = deadline - time.monotonic()
                if remaining < last_duration:
                    notes.append(f"time budget: {name} seed {seed} and later runs not started ({remaining:.0f} s left)")
                    raise TimeoutError
                cli_args = [*CANDIDATES[name], "--seed", str(seed), "--epochs", str(args.epochs)]
                cli_args += ["--device", args.device, "--data-dir", args.data_dir, "--no-progress"]
                cli_args += ["--sample-every", str(args.epochs)]  # grids and plots once, at the end
                cli_args += ["--score-every", str(args.score_every), "--score-samples", str(args.score_samples)]
                if args.limit:
                    cli_args += ["--limit", str(args.limit)]
                config = example.make_config(example.parse_args(cli_args))
                if data is None:
                    with contextlib.redirect_stdout(sys.stderr):
                        data, source = example.load_data(config.data_options, args.data_dir)
                folder = work / f"{name}-seed{seed}"
                began = time.monotonic()
                with open(work / f"{name}-seed{seed}.log", "w") as log, contextlib.redirect_stdout(log):
                    trainer = GANTrainer(config, data, folder, progress=False, data_source=source, scorer=scorer)
                    trainer.run(on_step=lambda t: time.monotonic() > deadline and t.request_stop())
                last_duration = time.monotonic() - began
                stopped = trainer.stop_requested
                for row in trainer.history:
                    if "fid" in row:
                        rows.append(
                            {
                                "candidate": name,
                                "seed": seed,
                                "epoch": int(row["epoch"]),
                                "fid": row["fid"],
                                "classifier_score": row["classifier_score"],
                                "rarest_class_fraction": row["rarest_class_fraction"],
                                "classes_covered": int(row["classes_covered"]),
                                "options": " ".join(CANDIDATES[name]),
                                "stopped_early": stopped,
                                "train_seconds": round(last_duration, 1),
                            }
                        )
                if seed == args.seeds[0]:
                    grid_rows.append(trainer.generate(trainer.fixed_noise[:10]))
                last = next((r for r in reversed(trainer.history) if "fid" in r), None)
                figures = "not scored" if last is None else f"epoch {int(last['epoch'])} FID {last['fid']:.3f}"
                print(
                    f"{name} seed {seed}: {figures} ({last_duration:.0f} s)"
                    + (" (stopped: time budget)" if stopped else ""),
                    flush=True,
                )
                write_results(out, rows, args, real, notes)
                if stopped:
                    notes.append(f"time budget: {name} seed {seed} stopped at epoch {trainer.epoch + 1}")
                    raise TimeoutError
    except TimeoutError:
        print(f"time budget of {args.time_budget:.0f} s spent: writing what there is", flush=True)
    finally:
        write_results(out, rows, args, real, notes)
        if grid_rows:
            save_grid(np.concatenate(grid_rows), out / "samples.png", nrow=10)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'samples.png'} ({time.monotonic() - start:.0f} s)"
    )
    return 0


# ---------------------------------------------------------------------------------------------- CIFAR-10

# CIFAR-10 candidates, in the order they run, each relative to the CURRENT default recipe
# (tinygan.recipes.CIFAR_RECIPES["default"]: since 2026-12-02 the original settings + EMA 0.999 over
# translation,cutout augmentation, 780 epochs since the tenth session's rounds 3-5 (390 before), resize /
# conv4 since rounds 6-7; bench/results/cifar-study-2026-12-02.md). "default" trains
# first, always: every verdict is relative to it. Its runs also score their raw generator, filed as "no-ema"
# (:data:`CIFAR_RAW_TWIN`), so EMA needs no candidate of its own. No candidate may equal the default's
# settings (tests/test_recipe_study.py checks it): the study's old "ema", "aug-tc" and "ema-aug-tc" are the
# default itself now. "combo" is built after the others (:func:`combination`).
CIFAR_CANDIDATES: dict[str, list[str]] = {
    "default": [],
    # The challenge's settings (no EMA, no augmentation), so that every study shows the old baseline too. It
    # trains the study's epochs like every candidate (--epochs comes after its options), not its own 150.
    "original": ["--recipe", "original"],
    "no-aug": ["--augment", "none"],
    "aug-tcc": ["--augment", "translation,cutout,color"],
    # Since round 7 the default upsamples by resize-convolution and downsamples by 4x4 convolutions
    # (tinygan.models.UPSAMPLES, DOWNSAMPLES): the other choices of each are the candidates.
    "convT5": ["--upsample", "convT5"],
    "convT4": ["--upsample", "convT4"],
    "d-conv3": ["--downsample", "conv3"],
    "combo": [],  # filled in by combination()
}
# candidate -> the name its raw generator's scores are filed under (filed only where the run keeps an EMA:
# the average does not feed back into training, so the raw G of the same run is the no-EMA variant).
CIFAR_RAW_TWIN = {"default": "no-ema"}
# Options that change one setting of the default each, in groups that set the same option; "combo" takes
# one of each group. "original" is another baseline, not an option, and stays out of it.
CIFAR_COMBO_GROUPS = {
    "augmentation": ("no-aug", "aug-tcc"),
    "upsampling": ("convT5", "convT4"),
    "downsampling": ("d-conv3",),
}
CIFAR_FIELDS = (
    "candidate",
    "seed",
    "class",
    "epochs",
    "fid",
    "recognized",
    "classifier_score",
    "real_fid",
    "real_recognized",
    "options",
    "generator",
    "train_seconds",
)
SMOKE_CLASSIFIER = {  # --smoke: a classifier small enough to train in a second on the CPU
    "type": "cifar-convnet",
    "convs": [[3, 8, 3, 1, 1], [8, 16, 4, 2, 1]],
    "features": 32,
    "classes": 10,
    "dropout": 0.0,
    "description": "penultimate layer: the 32 ReLU activations that feed the last Dense (smoke test)",
    "input_scaling": "uint8 pixels / 127.5 - 1 (samples in [0, 1]: 2 x - 1), NCHW",
}


def _mean_by(rows: list[dict[str, Any]], candidate: str, seed: int, key: str) -> float:
    values = [r[key] for r in rows if r["candidate"] == candidate and r["seed"] == seed]
    return _mean(values)


def beats_default(rows: list[dict[str, Any]], candidate: str, seeds: list[int], classes: list[str]) -> bool | None:
    """Whether ``candidate``'s Fréchet distance, averaged over the classes, is lower than the default's on
    every seed; None while either lacks a class or a seed."""
    for name in (candidate, "default"):
        done = {(r["seed"], r["class"]) for r in rows if r["candidate"] == name}
        if not all((s, c) in done for s in seeds for c in classes):
            return None
    return all(_mean_by(rows, candidate, s, "fid") < _mean_by(rows, "default", s, "fid") for s in seeds)


def _mean_fid(rows: list[dict[str, Any]], candidate: str) -> float:
    """``candidate``'s Fréchet distance averaged over its seeds and classes (inf where it has no rows)."""
    return _mean([r["fid"] for r in rows if r["candidate"] == candidate] or [math.inf])


def combination(rows: list[dict[str, Any]], seeds: list[int], classes: list[str]) -> tuple[list[str] | None, str]:
    """The options of "combo" and why: of each group of :data:`CIFAR_COMBO_GROUPS` (candidates that set the
    same option, so at most one of each combines) the candidate that beat the default on every seed (the
    lower mean Fréchet distance where both did). Where fewer than two groups have such a winner, the better
    of each group that ran, by mean Fréchet distance, so that every study shows two changes together (one may
    only help beside the other); None (combo skipped) where fewer than two groups ran at all: one option
    alone is its own candidate."""
    best, winners, beat = [], [], []
    for group in CIFAR_COMBO_GROUPS.values():
        ran = [name for name in group if any(r["candidate"] == name for r in rows)]
        if ran:
            best.append(min(ran, key=lambda c: _mean_fid(rows, c)))
        won = [name for name in ran if beats_default(rows, name, seeds, classes)]
        beat += won
        if won:
            winners.append(min(won, key=lambda c: _mean_fid(rows, c)))
    groups = " and ".join(CIFAR_COMBO_GROUPS)
    if len(best) < 2:
        return None, f"skipped: fewer than two of the option groups ({groups}) ran, nothing to combine"
    if len(winners) >= 2:
        return [opt for name in winners for opt in CIFAR_CANDIDATES[name]], (
            f"the better candidate of each group ({groups}) that beat the default on every seed: "
            f"{' and '.join(winners)}"
        )
    return [opt for name in best for opt in CIFAR_CANDIDATES[name]], (
        f"beat the default on every seed: {', '.join(beat) or 'none'}, not one of each group ({groups}): "
        f"the better of each group by mean FID, {' and '.join(best)}"
    )


def cifar_labels(candidate_names: list[str]) -> list[str]:
    """The row labels of a study of these candidates, in the table's order: each candidate, then the raw
    twin its runs also score ("default", "no-ema", ...)."""
    labels = []
    for name in candidate_names:
        labels += [name, *([CIFAR_RAW_TWIN[name]] if name in CIFAR_RAW_TWIN else [])]
    return labels


def _settings(recipe: dict[str, Any]) -> str:
    return ", ".join(f"{k} {' to '.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in recipe.items())


def write_cifar_results(
    out: Path, rows: list[dict[str, Any]], args: argparse.Namespace, classes: list[str], info: dict[str, Any]
) -> None:
    """results.csv and results.md for the CIFAR-10 study (rewritten whole after every run)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CIFAR_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "results.csv")
    seeds = args.seeds
    names = cifar_labels(args.candidate_names)
    present = [n for n in names if any(r["candidate"] == n for r in rows)]
    epochs = info.get("epochs", args.epochs)
    lines = [
        "# CIFAR-10 recipe study (tools/recipe_study.py --model cifar)",
        "",
        f"The CIFAR-10 DCGAN, one G/D per class (`--class all`), the current default recipe plus each "
        f"candidate's options; **{epochs} epochs** per class for every candidate ('original' included, not its "
        f"own {CIFAR_RECIPES['original']['epochs']}), seeds {', '.join(map(str, seeds))}, device {args.device}. "
        "Each run's sampling generator (the EMA generator where the run keeps one: all but 'original'; "
        f"'no-ema' is the raw generator of the default's own runs) makes {args.score_samples} samples, scored "
        "with tinygan.metrics_cifar against the test images of its class: FID = the Fréchet distance in the "
        "classifier's features (lower is better), rec = the share of samples the classifier recognises as the "
        "class. Means over the classes. 'beats default': lower mean FID than the default on every seed; "
        "'FID -30%': classes whose FID (mean of the seeds) is at least 30% below the default's.",
        "",
        f"Default recipe (tinygan.recipes.CIFAR_RECIPES['default']): {_settings(CIFAR_RECIPES['default'])}; "
        f"this study's epochs: {epochs}.",
        "",
    ]
    if info.get("classifier"):
        lines += [info["classifier"], ""]
    header = ["candidate", *[f"FID s{s}" for s in seeds], *[f"rec s{s}" for s in seeds]]
    header += ["worst class rec", "FID -30%", "beats default", "seconds"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def per_class(name: str, key: str) -> dict[str, float]:
        return {c: _mean([r[key] for r in rows if r["candidate"] == name and r["class"] == c]) for c in classes}

    base = per_class("default", "fid")
    for name in present:
        cells = [name]
        cells += [f"{_mean_by(rows, name, s, 'fid'):.2f}" for s in seeds]
        cells += [f"{100 * _mean_by(rows, name, s, 'recognized'):.0f}%" for s in seeds]
        rec = per_class(name, "recognized")
        worst = min(rec, key=lambda c: rec[c] if not math.isnan(rec[c]) else math.inf)
        cells.append(f"{100 * rec[worst]:.0f}% ({worst})")
        fid = per_class(name, "fid")
        better = sum(1 for c in classes if fid[c] < 0.7 * base[c])
        cells.append("" if name == "default" else f"{better}/{len(classes)}")
        verdict = beats_default(rows, name, seeds, classes)
        cells.append("" if name == "default" else {True: "yes", False: "no", None: "(incomplete)"}[verdict])
        cells.append(f"{sum(r['train_seconds'] for r in rows if r['candidate'] == name):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per class (mean of the seeds): FID / recognised", ""]
    lines += ["| candidate | " + " | ".join(classes) + " |", "|" + "---|" * (len(classes) + 1)]
    for name in present:
        fid, rec = per_class(name, "fid"), per_class(name, "recognized")
        lines.append(f"| {name} | " + " | ".join(f"{fid[c]:.1f} / {100 * rec[c]:.0f}%" for c in classes) + " |")
    real = {c: next((r for r in rows if r["class"] == c), None) for c in classes}
    if any(real.values()):
        cells = [f"{r['real_fid']:.1f} / {100 * r['real_recognized']:.0f}%" if r else "-" for r in real.values()]
        lines.append("| real held-out | " + " | ".join(cells) + " |")
        lines += [
            "",
            "real held-out: the class's held-out real training images (unseen by the classifier, as many as there "
            "are: about 63 a class on the partial data), scored the same way; at so small an n their FID is "
            "dominated by the small-n bias.",
        ]
    lines += [
        "",
        "Candidates (options on top of the default recipe; `--recipe original` starts from the original one):",
        "",
    ]
    twins = {twin: name for name, twin in CIFAR_RAW_TWIN.items()}
    for name in names:
        if name in twins:
            lines.append(f"- {name}: the raw generator (not its EMA) of the '{twins[name]}' runs")
        elif name == "combo":
            if info.get("combo") or not info.get("combo_why"):  # built, or not yet; where skipped, the why says so
                lines.append(f"- combo: `{info.get('combo') or '(not built yet)'}`")
        else:
            lines.append(f"- {name}: `{' '.join(CIFAR_CANDIDATES[name]) or '(none)'}`")
    if info.get("combo_why"):
        lines.append(f"- combo: {info['combo_why']}")
    shown = ", ".join(n for n in present)
    lines += [
        "",
        f"overview.png: one row per class ({', '.join(classes)}), seed 0; side by side, left to right: {shown}. "
        "grids.tar: grid-CANDIDATE.png, the same per candidate.",
    ]
    lines += ["", *[f"Note: {note}" for note in info.get("notes", [])]]
    (out / "results.md").write_text("\n".join(lines).rstrip() + "\n")


def write_grids(out: Path, grids: dict[str, dict[str, np.ndarray]], classes: list[str], columns: int) -> None:
    """``overview.png``: one row per class, the candidates side by side (``columns`` samples each, in the
    table's order, a white column between them, black where a class was not trained), and ``grids.tar``:
    ``grid-CANDIDATE.png`` for each (a row per class), for the README."""
    import tarfile

    from tinygan.viz import save_grid

    shape = next(iter(next(iter(grids.values())).values())).shape[1:]
    blank, white = np.zeros((columns, *shape), np.float32), np.ones((1, *shape), np.float32)
    rows = []
    for class_name in classes:
        for i, label in enumerate(grids):
            rows += [white] if i else []
            rows.append(grids[label].get(class_name, blank))
    save_grid(np.concatenate(rows), out / "overview.png", nrow=len(grids) * (columns + 1) - 1)
    tmp = out / ".grids.tar.tmp"
    with tarfile.open(tmp, "w") as tar, tempfile.TemporaryDirectory() as folder:
        for label, by_class in grids.items():
            path = Path(folder) / f"grid-{label}.png"
            save_grid(np.concatenate([by_class.get(c, blank) for c in classes]), path, nrow=columns)
            tar.add(path, arcname=path.name)
    tmp.replace(out / "grids.tar")


def _raw_images(trainer: Any, z: np.ndarray) -> np.ndarray:
    """The raw generator's images (G, not its average) for noise ``z``, in [0, 1]."""
    from tinygan import backend
    from tinygan.viz import to_images

    out = trainer.G.forward(backend.to_device(z.astype(trainer.G.dtype), trainer.device), training=False)
    return to_images(backend.to_numpy(out), trainer.image_shape, trainer.config.image_range)


def _train_quietly(trainer: Any, deadline: float) -> bool:
    """Train ``trainer`` for its epochs without any output (no checkpoints, grids, plots or GIF: the study
    only scores the end); False when the deadline stopped it. Raises TrainingDiverged on a non-finite loss."""
    from tinygan import backend
    from tinygan.train import TrainingDiverged

    config = trainer.config
    with trainer.runner.active(), backend.precision(config.precision):
        for epoch in range(config.epochs):
            trainer.epoch = epoch  # what noise_sigma() anneals by
            trainer.runner.begin_epoch(trainer.rng.permutation(len(trainer.data)), 0)
            for _ in range(trainer.steps_per_epoch):
                trainer.runner.step(trainer.noise_sigma())
            if epoch % 10 == 9 or epoch == config.epochs - 1:
                for _, figures in trainer.runner.collect():
                    if not all(math.isfinite(v) for v in figures.values()):
                        raise TrainingDiverged(f"non-finite loss by epoch {epoch + 1}")
            if time.monotonic() > deadline:
                return False
    trainer.epoch = config.epochs
    return True


def cifar_main(args: argparse.Namespace) -> int:
    import gc

    from tinygan import metrics_cifar
    from tinygan.data.cifar10 import CLASS_NAMES
    from tinygan.train import GANTrainer

    start = time.monotonic()
    deadline = start + args.time_budget
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = args.classes or list(CLASS_NAMES)
    example = _example("cifar_dcgan")
    info: dict[str, Any] = {"notes": [], "epochs": args.epochs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataIntegrityWarning)
        data = metrics_cifar.load_data(args.data_dir, download=False, verbose=None)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            classifier = metrics_cifar.load_classifier(
                data,
                path=Path(tmp) / "clf.npz",
                device=args.device,
                epochs=1,
                batch_size=8,
                lr=1e-4,  # the default 2e-3 leaves every ReLU of so small a net dead after a few noisy steps
                record=SMOKE_CLASSIFIER,
                verbose=None,
            )
    else:
        classifier = metrics_cifar.load_classifier(data, device=args.device)
    accuracy, training = classifier.meta["test_accuracy"], classifier.meta["training"]
    info["classifier"] = (
        f"Classifier: {100 * accuracy:.1f}% test accuracy on {classifier.meta['n_test']} test images, trained on "
        f"{training['n_train']} images ({training['epochs']} epochs, {training.get('augmentation', '')}; "
        f"{'trained in this study' if classifier.trained else 'cached'}, {training['seconds']} s on the "
        f"{training.get('device', 'device')})."
    )
    per_class = classifier.meta.get("test_accuracy_per_class")
    if per_class:
        info["classifier"] += " Per class: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in per_class.items()) + "."
    print(f"classifier ready: {100 * accuracy:.1f}% test accuracy ({time.monotonic() - start:.0f} s)", flush=True)

    names = args.candidate_names  # "default" first
    runs_total = len(names) * len(args.seeds) * len(classes)
    rows: list[dict[str, Any]] = []
    grids: dict[str, dict[str, np.ndarray]] = {}  # candidate -> class -> samples (seed 0)
    images_by_class: dict[str, Any] = {}
    real_by_class: dict[str, Any] = {}
    z_score = {s: np.random.default_rng([s, 3]).standard_normal((args.score_samples, 100)) for s in args.seeds}

    def one_run(name: str, options: list[str], seed: int, class_name: str, epochs: int) -> bool:
        cli_args = [*options, "--seed", str(seed), "--epochs", str(epochs), "--device", args.device]
        cli_args += ["--data-dir", args.data_dir, "--class", class_name, "--no-progress"]
        if args.batch_size:
            cli_args += ["--batch-size", str(args.batch_size)]
        config = example.make_config(example.parse_args(cli_args))
        if class_name not in images_by_class:
            with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore", DataIntegrityWarning)
                images_by_class[class_name] = example.load_data(config.data_options, args.data_dir)
        images, source = images_by_class[class_name]
        began = time.monotonic()
        with tempfile.TemporaryDirectory() as folder:
            trainer = GANTrainer(config, images, folder, progress=False, data_source=source)
            finished = _train_quietly(trainer, deadline)
        seconds = time.monotonic() - began
        if not finished:
            return False
        z = z_score[seed]
        keeps_ema = config.ema_decay > 0
        sets = [(name, "ema" if keeps_ema else "raw", trainer.generate(z))]
        # The raw twin's scores come free with these runs (the EMA does not feed back into training); without
        # an EMA the raw generator is the one already scored.
        if name in CIFAR_RAW_TWIN and keeps_ema:
            sets.append((CIFAR_RAW_TWIN[name], "raw", _raw_images(trainer, z)))
        for label, generator, samples in sets:
            result = metrics_cifar.evaluate(samples, data, classifier, class_name=class_name, seed=seed)
            entry = result["samples"]
            if class_name not in real_by_class:
                real_by_class[class_name] = result["real"] or {"frechet_distance": math.nan, "recognized": math.nan}
            real = real_by_class[class_name]
            rows.append(
                {
                    "candidate": label,
                    "seed": seed,
                    "class": class_name,
                    "epochs": epochs,
                    "fid": entry["frechet_distance"],
                    "recognized": entry["recognized"],
                    "classifier_score": entry["classifier_score"],
                    "real_fid": real["frechet_distance"],
                    "real_recognized": real["recognized"],
                    "options": " ".join(options) if label == name else "",
                    "generator": generator,
                    "train_seconds": round(seconds, 2),
                }
            )
            if seed == args.seeds[0]:
                grids.setdefault(label, {})[class_name] = samples[: args.grid_columns]
        del trainer
        gc.collect()
        return True

    def write_all() -> None:
        write_cifar_results(out, rows, args, classes, info)
        if grids:
            order = [n for n in cifar_labels(names) if n in grids]
            write_grids(out, {n: grids[n] for n in order}, classes, args.grid_columns)

    state = {"epochs": args.epochs, "done": 0, "total": runs_total}

    def skipped(name: str) -> str:
        left, total = state["total"] - state["done"], state["total"]
        later = names[names.index(name) + 1 :]
        return f"{left} of {total} runs skipped" + (f"; candidates not run: {', '.join(later)}" if later else "")

    def run_candidate(name: str, options: list[str]) -> None:
        """Every seed and class of one candidate; TimeoutError when the budget ends it."""
        for seed in args.seeds:
            for class_name in classes:
                began = time.monotonic()
                if not one_run(name, options, seed, class_name, state["epochs"]):
                    info["notes"].append(
                        f"time budget: {name} seed {seed} {class_name} stopped before its end (not scored); "
                        + skipped(name)
                    )
                    raise TimeoutError
                took = time.monotonic() - began
                state["done"] += 1
                left = state["total"] - state["done"]
                if state["done"] == 1 and args.fit_budget and took * left > deadline - time.monotonic():
                    # The study would not fit: fewer epochs for every run (the same for all candidates).
                    share = (deadline - time.monotonic()) / (took * (left + 1))
                    fitted = max(1, int(state["epochs"] * share * 0.7))
                    if fitted < state["epochs"]:
                        info["notes"].append(
                            f"the first run took {took:.1f} s at {state['epochs']} epochs: {state['total']} runs would "
                            f"not fit the budget, so every run trains {fitted} epochs"
                        )
                        print(f"epochs {state['epochs']} -> {fitted} to fit the budget", flush=True)
                        state["epochs"] = info["epochs"] = fitted
                        rows.clear()
                        grids.clear()
                        state["done"] = 0
                        if not one_run(name, options, seed, class_name, fitted):
                            info["notes"].append(f"time budget: spent in the first run; {skipped(name)}")
                            raise TimeoutError
                        state["done"] = 1
                elif left and time.monotonic() + took > deadline:
                    info["notes"].append(
                        f"time budget: runs after {name} seed {seed} {class_name} not started; " + skipped(name)
                    )
                    raise TimeoutError
            print(
                f"{name} seed {seed}: mean FID {_mean_by(rows, name, seed, 'fid'):.2f}, recognised "
                f"{100 * _mean_by(rows, name, seed, 'recognized'):.0f}% ({time.monotonic() - start:.0f} s)",
                flush=True,
            )
            write_all()

    try:
        # A first short run compiles the kernels, so that the timed first run measures training alone.
        if not one_run("warm-up", [], args.seeds[0], classes[0], 1):
            info["notes"].append(f"time budget: spent before the first run; none of the {runs_total} runs started")
            raise TimeoutError
        rows.clear()
        grids.clear()
        for name in names:
            options = list(CIFAR_CANDIDATES[name])
            if name == "combo":
                combo, info["combo_why"] = combination(rows, args.seeds, classes)
                if combo is None:
                    state["total"] -= len(args.seeds) * len(classes)
                    print(f"combo {info['combo_why']}", flush=True)
                    continue
                options = combo
                info["combo"] = " ".join(options)
            try:
                run_candidate(name, options)
            except (TimeoutError, KeyboardInterrupt):
                raise
            except Exception as exc:  # one candidate failing (diverged, a kernel error) is a result, not the end
                state["done"] = sum(1 for r in rows if r["candidate"] not in CIFAR_RAW_TWIN.values())
                info["notes"].append(f"{name} failed, its remaining runs skipped: {type(exc).__name__}: {exc}")
                print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    except TimeoutError:
        print(f"time budget of {args.time_budget:.0f} s spent: writing what there is", flush=True)
    finally:
        write_all()
    written = sorted(p.name for p in out.iterdir())
    print(f"wrote {', '.join(written)} into {out} ({time.monotonic() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
