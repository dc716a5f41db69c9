"""Recipe study for the dense MNIST GAN: candidates for the default recipe, each on several seeds, scored
while they train with tinygan.metrics (issue 14).

    python tools/recipe_study.py --data-dir .data/mnist --device gpu --out $OUT/study \\
        --epochs 30 --score-every 10 --score-samples 10000 --seeds 0 1 --time-budget 240

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

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


def _mnist_example() -> Any:
    path = ROOT / "examples" / "mnist_dense.py"
    spec = importlib.util.spec_from_file_location("mnist_dense_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--data-dir", required=True, help="folder holding the four MNIST IDX files")
    parser.add_argument("--out", required=True, help="folder for results.csv, results.md and samples.png")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (default 30)")
    parser.add_argument("--score-every", type=int, default=10, help="score every N epochs and at the last (10)")
    parser.add_argument("--score-samples", type=int, default=10000, help="samples scored each time (10000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every candidate (0 1)")
    parser.add_argument(
        "--candidates", help=f"comma-separated subset of {', '.join(CANDIDATES)} (default: all, in that order)"
    )
    parser.add_argument("--limit", type=int, help="train on the first N images only (a quick look or a test)")
    parser.add_argument("--time-budget", type=float, default=240.0, help="seconds for the whole study (240)")
    parser.add_argument("--work-dir", help="scratch folder for the runs (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    names = list(CANDIDATES) if not args.candidates else [c.strip() for c in args.candidates.split(",")]
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown:
        parser.error(f"--candidates: unknown {unknown}; expected some of {list(CANDIDATES)}")
    args.candidate_names = names
    for option in ("epochs", "score_every", "score_samples"):
        if getattr(args, option) < (2 if option == "score_samples" else 1):
            parser.error(f"--{option.replace('_', '-')}: expected a positive integer, received {getattr(args, option)}")
    if args.time_budget <= 0:
        parser.error(f"--time-budget: expected a positive number of seconds, received {args.time_budget}")
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
        return study(args)
    except (ValueError, OSError) as exc:  # missing or damaged data, an unwritable --out: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1


def study(args: argparse.Namespace) -> int:
    start = time.monotonic()
    deadline = start + args.time_budget
    out = Path(args.out)

    sys.path.insert(0, str(ROOT))
    from tinygan import metrics
    from tinygan.quality import mnist_scorer
    from tinygan.train import GANTrainer
    from tinygan.viz import save_grid

    example = _mnist_example()
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
            import numpy as np

            save_grid(np.concatenate(grid_rows), out / "samples.png", nrow=10)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'samples.png'} ({time.monotonic() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
