"""Minimax against non-saturating generator loss on real MNIST: the dense GAN trained with each loss on
several seeds, with what the guide's section 11 asks a reader to look at (issue 15, docs/backprop.md).

    python tools/loss_study.py --data-dir .data/mnist --device gpu --out $OUT/loss-study \\
        --epochs 30 --seeds 0 1 --time-budget 210
    python tools/loss_study.py --replot $OUT/loss-study --out docs/figures   # the figure again, from its files

Every run is a recipe of examples/mnist_dense.py (``default``, then ``original`` where the time budget
allows) with ``--g-loss nonsaturating`` or ``--g-loss minimax`` and nothing else changed, trained once per
seed. Per epoch the study keeps the whole of the run's ``metrics.csv`` row: D(x) and D(G(z)) (``d_real``,
``d_fake``, means over the epoch's steps), what G receives from D (``g_input_grad``, the mean over the
epoch's steps of RMS_i ||dl_i/dG(z_i)||; ``g_input_grad_probe``, the same on a fixed probe batch), how
evenly the batch's samples share G's step (``g_weight_share``, (sum w_i)^2 / (n sum w_i^2) with w_i
D(G(z_i)) for minimax and 1 - D(G(z_i)) for non-saturating: 1 when all weigh the same), each
layer's relative update ||Δθ||/||θ|| (``update.*``), the share of dead units (``dead.G``, ``dead.D``), and
every ``--score-every`` epochs the scores of :mod:`tinygan.metrics` on ``--score-samples`` samples of the
sampling generator (the EMA generator where the recipe keeps one): class coverage (``classes_covered``,
``rarest_class_fraction``), the classifier score and the Fréchet distance to the MNIST test set (``fid``).
The sample grids the runs write every ``--sample-every`` epochs (64 samples of the run's fixed noise, drawn
by the sampling generator) are kept for epochs 1-3, every fifth and the last.

Writes at most six files into ``--out`` (so that one device call brings them all back):

- ``results.csv``: one row per recipe, loss, seed and epoch, every column of the runs' ``metrics.csv``;
- ``results.md``: the table (each run at a few epochs), the real held-out reference line, the settings;
- ``minimax_vs_nonsaturating.png``: the guide's figure (the default recipe): curves of both losses and
  every seed side by side, and sample grids at a few epochs;
- ``minimax_vs_nonsaturating_original.png``: the same for the original recipe, where it ran;
- ``grids.npz``: the sample grids (uint8 images, key ``RECIPE/LOSS/sSEED/eEPOCH``), for ``--replot``;
- ``runs.tar``: each run's ``metrics.csv``, ``config.json`` and log of epoch lines.

``--replot DIR`` draws the figures again from ``DIR/results.csv`` and ``DIR/grids.npz`` (no training, no
data): how docs/figures/minimax_vs_nonsaturating.png is made from a recorded study.

``--time-budget SECONDS`` bounds the whole study: a run still training when it is spent stops at the next
step (its epochs so far are kept), no run starts that the last run's duration says would not finish, and
the files are written after every run, so a study cut short still reports what it has. Runs train in a
scratch folder (``--work-dir``, default a temporary folder in /dev/shm where there is one, removed at
the end); the terminal gets one line per run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import math
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOSSES = ("nonsaturating", "minimax")
RECIPES = ("default", "original")
KEY_FIELDS = ("recipe", "loss", "seed", "epoch")
# How each loss is drawn in the figures: colour by loss, line style by seed.
COLORS = {"nonsaturating": "tab:blue", "minimax": "tab:red"}
SEED_STYLES = ("-", "--", ":", "-.")
FIGURE_NAMES = {"default": "minimax_vs_nonsaturating.png", "original": "minimax_vs_nonsaturating_original.png"}


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
    parser.add_argument("--data-dir", help="folder holding the four MNIST IDX files (needed unless --replot)")
    parser.add_argument("--out", required=True, help="folder for the study's files (at most six)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (default 30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of every run (0 1)")
    parser.add_argument(
        "--recipes",
        default="default,original",
        help="comma-separated recipes, in the order they run (default,original)",
    )
    parser.add_argument("--score-every", type=int, default=2, help="score every N epochs and at the last (2)")
    parser.add_argument("--score-samples", type=int, default=5000, help="samples scored each time (5000)")
    parser.add_argument(
        "--sample-every",
        type=int,
        default=1,
        help="the runs' sample grids every N epochs (1; kept: 1-3, every 5th, the last)",
    )
    parser.add_argument("--limit", type=int, help="train on the first N images only (a quick look or a test)")
    parser.add_argument("--time-budget", type=float, default=210.0, help="seconds for the whole study (210)")
    parser.add_argument("--work-dir", help="scratch folder for the runs (default: a temporary one, removed)")
    parser.add_argument("--replot", metavar="DIR", help="only draw the figures from DIR's results.csv and grids.npz")
    args = parser.parse_args(argv)
    args.recipe_names = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in args.recipe_names if r not in RECIPES]
    if unknown or not args.recipe_names:
        parser.error(f"--recipes: unknown {unknown or args.recipes!r}; expected some of {list(RECIPES)}")
    for option in ("epochs", "score_every", "score_samples", "sample_every"):
        if getattr(args, option) < (2 if option == "score_samples" else 1):
            parser.error(f"--{option.replace('_', '-')}: expected a positive integer, received {getattr(args, option)}")
    if args.time_budget <= 0:
        parser.error(f"--time-budget: expected a positive number of seconds, received {args.time_budget}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit: expected a positive number of images, received {args.limit}")
    if args.replot is None and not args.data_dir:
        parser.error("--data-dir: required to train (only --replot DIR draws without data)")
    if args.replot is not None:
        for name in ("results.csv", "grids.npz"):
            if not (Path(args.replot) / name).is_file():
                parser.error(f"--replot: {Path(args.replot) / name} not found (a folder this study wrote)")
    return args


# -- the runs ------------------------------------------------------------------------------------------


def run_options(recipe: str, loss: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The command line of examples/mnist_dense.py for one run (what a user would type)."""
    options = ["--recipe", recipe, "--g-loss", loss, "--seed", str(seed), "--epochs", str(args.epochs)]
    options += ["--device", args.device, "--data-dir", args.data_dir, "--no-progress"]
    options += ["--sample-every", str(min(args.sample_every, args.epochs))]
    options += ["--score-every", str(args.score_every), "--score-samples", str(args.score_samples)]
    if args.limit:
        options += ["--limit", str(args.limit)]
    return options


def run_plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(recipe, loss, seed) in the order they run: a recipe's losses side by side seed by seed, so a study
    cut short by its time budget still has both losses of the first seeds."""
    return [(recipe, loss, seed) for recipe in args.recipe_names for seed in args.seeds for loss in LOSSES]


def _grids_of(folder: Path) -> dict[int, np.ndarray]:
    """``{epoch: grid image (uint8)}`` from a run folder's ``samples/epoch_NNNN.png``."""
    from PIL import Image

    grids = {}
    for path in sorted((folder / "samples").glob("epoch_*.png")):
        with Image.open(path) as image:
            grids[int(path.stem.split("_")[1])] = np.asarray(image.convert("L"))
    return grids


def _real_reference(data: Any, classifier: Any, n: int, device: str) -> dict[str, Any] | None:
    """The figures of ``n`` held-out real images (what real digits score at this n)."""
    from tinygan import metrics

    if data.holdout is None:
        return None
    images = data.holdout[0][:n].astype("float32") / 255
    return metrics.evaluate(images, classifier=classifier, data=data, device=device, verbose=None)["real"]


def train_runs(args: argparse.Namespace, out: Path) -> int:
    start = time.monotonic()
    deadline = start + args.time_budget
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="loss_study-", dir=scratch))
    work.mkdir(parents=True, exist_ok=True)

    from tinygan import metrics
    from tinygan.quality import mnist_scorer
    from tinygan.train import GANTrainer

    example = _mnist_example()
    classifier_data = metrics.load_data(args.data_dir, download=False, verbose=None)
    classifier = metrics.load_classifier(args.data_dir, data=classifier_data, device=args.device, download=False)
    scorer = mnist_scorer(args.data_dir, args.device, classifier=classifier)
    real = _real_reference(classifier_data, classifier, args.score_samples, args.device)
    plan = run_plan(args)
    print(f"classifier ready ({time.monotonic() - start:.0f} s); {len(plan)} runs", flush=True)

    rows: list[dict[str, Any]] = []
    grids: dict[str, np.ndarray] = {}
    notes: list[str] = []
    data_by_scale: dict[Any, Any] = {}
    last_duration = 0.0
    try:
        for recipe, loss, seed in plan:
            name = f"{recipe}-{loss}-seed{seed}"
            remaining = deadline - time.monotonic()
            if remaining < last_duration:
                notes.append(f"time budget: {name} and later runs not started ({remaining:.0f} s left)")
                raise TimeoutError
            config = example.make_config(example.parse_args(run_options(recipe, loss, seed, args)))
            scale = config.data_options["scale"]
            if scale not in data_by_scale:
                with contextlib.redirect_stdout(sys.stderr):
                    data_by_scale[scale] = example.load_data(config.data_options, args.data_dir)
            data, source = data_by_scale[scale]
            folder = work / name
            began = time.monotonic()
            with open(work / f"{name}.log", "w") as log, contextlib.redirect_stdout(log):
                trainer = GANTrainer(config, data, folder, progress=False, data_source=source, scorer=scorer)
                trainer.run(on_step=lambda t: time.monotonic() > deadline and t.request_stop())
            last_duration = time.monotonic() - began
            for row in trainer.history:
                rows.append({"recipe": recipe, "loss": loss, "seed": seed, **row, "train_seconds": last_duration})
            for epoch, image in _grids_of(folder).items():
                if keep_grid(epoch, args.epochs):
                    grids[f"{recipe}/{loss}/s{seed}/e{epoch}"] = image
            last = next((r for r in reversed(trainer.history) if "fid" in r), None)
            figures = "not scored" if last is None else (
                f"epoch {int(last['epoch'])}: FID {last['fid']:.2f}, {int(last['classes_covered'])} classes, "
                f"D(G(z)) {trainer.history[-1]['d_fake']:.3f}"
            )  # fmt: skip
            stopped = trainer.stop_requested
            print(f"{name}: {figures} ({last_duration:.0f} s)" + (" (stopped: time budget)" if stopped else ""),
                  flush=True)  # fmt: skip
            write_outputs(out, rows, grids, work, args, real, notes, figures=False)  # figures: once, at the end
            if stopped:
                notes.append(f"time budget: {name} stopped at epoch {trainer.epoch + 1}")
                raise TimeoutError
    except TimeoutError:
        print(f"time budget of {args.time_budget:.0f} s spent: writing what there is", flush=True)
    finally:
        write_outputs(out, rows, grids, work, args, real, notes)
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    written = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"wrote {out}: {written} ({time.monotonic() - start:.0f} s)")
    return 0


# -- the files -------------------------------------------------------------------------------------------


def write_outputs(
    out: Path,
    rows: list[dict[str, Any]],
    grids: dict[str, np.ndarray],
    work: Path,
    args: argparse.Namespace,
    real: dict[str, Any] | None,
    notes: list[str],
    figures: bool = True,
) -> None:
    """Every file of the study from what there is so far (each rewritten whole, through a temporary file);
    the figures (about a second of matplotlib each) only with ``figures``."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "results.csv", rows)
    _atomic(out / "results.md", lambda p: p.write_text(results_table(rows, args, real, notes)))
    _atomic(out / "grids.npz", lambda p: np.savez_compressed(p, **grids), suffix=".npz")
    _atomic(out / "runs.tar", lambda p: _pack_runs(p, work))
    if figures:
        make_figures(rows, grids, out)


def _atomic(path: Path, write: Any, suffix: str = "") -> None:
    tmp = path.with_name(f".{path.stem}.tmp{suffix or path.suffix}")
    write(tmp)
    tmp.replace(path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(KEY_FIELDS)
    for row in rows:
        fields += [k for k in row if k not in fields]
    _atomic(path, lambda p: _write_rows(p, fields, rows))


def _write_rows(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """results.csv back as rows: numbers as floats (an empty cell: absent), recipe and loss as text."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in ("recipe", "loss"):
                    row[key] = value
                elif value not in ("", None):
                    row[key] = float(value)
            row["seed"], row["epoch"] = int(row["seed"]), int(row["epoch"])
            rows.append(row)
    return rows


def _pack_runs(path: Path, work: Path) -> None:
    """Each run's metrics.csv, config.json and epoch log, in one uncompressed tar (small)."""
    with tarfile.open(path, "w") as tar:
        for log in sorted(work.glob("*.log")):
            name = log.stem
            tar.add(log, arcname=f"{name}/epochs.log")
            for member in ("metrics.csv", "config.json"):
                if (work / name / member).is_file():
                    tar.add(work / name / member, arcname=f"{name}/{member}")
        if not tar.getmembers():  # an empty archive still says so
            info = tarfile.TarInfo("README")
            text = b"no run finished\n"
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))


def net_mean(row: dict[str, Any], prefix: str) -> float:
    """The mean of a row's columns that start with ``prefix`` (``update.G.``: G's layers), NaN where none."""
    values = [v for k, v in row.items() if k.startswith(prefix) and isinstance(v, float) and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def results_table(
    rows: list[dict[str, Any]], args: argparse.Namespace, real: dict[str, Any] | None, notes: list[str]
) -> str:
    lines = [
        "# Minimax against non-saturating generator loss, dense MNIST GAN (tools/loss_study.py)",
        "",
        f"Recipes {', '.join(args.recipe_names)} of examples/mnist_dense.py with `--g-loss nonsaturating` or "
        f"`--g-loss minimax`, nothing else changed; {args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}, "
        f"device {args.device}{f', the first {args.limit} images' if args.limit else ''}. "
        "D(x), D(G(z)): D's mean outputs over the epoch's steps. received: what G receives from D, "
        "RMS_i ||dl_i/dG(z_i)|| averaged over the epoch's steps (`g_input_grad`); probe: the same on the fixed "
        "probe batch at the epoch's end (`g_input_grad_probe`). share: how evenly the samples share G's step, "
        "(Σw_i)²/(n Σw_i²) with w_i = D(G(z_i)) for minimax and 1 - D(G(z_i)) for non-saturating, epoch mean "
        "(`g_weight_share`; 1: all samples weigh the same). upd G, upd D: the mean over each network's "
        "layers of the epoch's relative update ||Δθ||/||θ|| (per layer in results.csv). dead: units <= 0 on "
        "every probe sample. Scores of tinygan.metrics on "
        f"{args.score_samples} samples of the sampling generator (the EMA generator where the recipe keeps one) "
        f"every {args.score_every} epochs: classes (covered of 10), rarest (the rarest class's share), score "
        "(classifier score, max 10), FID (classifier-feature Fréchet distance to the MNIST test set).",
        "",
    ]
    header = ["recipe", "loss", "seed", "epoch", "D(x)", "D(G(z))", "received", "probe", "share", "upd G", "upd D"]
    header += ["dead G", "dead D", "classes", "rarest", "score", "FID"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for key, runs in _by_run(rows).items():
        scored = [r for r in runs if "fid" in r]
        epochs = {runs[0]["epoch"], runs[-1]["epoch"], *(r["epoch"] for r in runs if r["epoch"] % 10 == 0)}
        if scored:
            epochs.add(scored[0]["epoch"])
        for row in (r for r in runs if r["epoch"] in epochs):
            cells = [*map(str, key), str(row["epoch"])]
            cells += [_fmt(row.get("d_real"), ".3f"), _fmt(row.get("d_fake"), ".3f")]
            cells += [_fmt(row.get("g_input_grad"), ".3g"), _fmt(row.get("g_input_grad_probe"), ".3g")]
            cells += [_fmt(row.get("g_weight_share"), ".3f")]
            cells += [_fmt(net_mean(row, "update.G."), ".2e"), _fmt(net_mean(row, "update.D."), ".2e")]
            cells += [_fmt(row.get("dead.G"), ".2f"), _fmt(row.get("dead.D"), ".2f")]
            cells += [_fmt(row.get("classes_covered"), ".0f")]
            rarest = row.get("rarest_class_fraction")
            cells += ["-" if rarest is None else f"{100 * rarest:.1f}%"]
            cells += [_fmt(row.get("classifier_score"), ".2f"), _fmt(row.get("fid"), ".2f")]
            lines.append("| " + " | ".join(cells) + " |")
    if real is not None:
        lines += [
            "",
            f"Real held-out MNIST images (n = {real['n']}): FID {real['frechet_distance']:.3f}, score "
            f"{real['classifier_score']:.2f}, rarest class {100 * real['coverage']['rarest_fraction']:.1f}%.",
        ]
    lines += ["", "Runs (options of examples/mnist_dense.py):", ""]
    for recipe, loss, seed in run_plan(args):
        shown = " ".join(o for o in run_options(recipe, loss, seed, args) if o != args.data_dir)
        lines.append(f"- {recipe} {loss} seed {seed}: `{shown.replace('--data-dir ', '--data-dir DATA ')}`")
    lines += ["", *[f"Note: {note}" for note in notes]]
    return "\n".join(lines).rstrip() + "\n"


def _by_run(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        runs.setdefault((row["recipe"], row["loss"], int(row["seed"])), []).append(row)
    return {key: sorted(value, key=lambda r: r["epoch"]) for key, value in runs.items()}


# -- the figures -------------------------------------------------------------------------------------------


def _update_g(row: dict[str, Any]) -> float:
    return net_mean(row, "update.G.")


def _rarest_x10(row: dict[str, Any]) -> float:
    return 10 * row.get("rarest_class_fraction", math.nan)


# (title, y-axis label, [column or function of a row, ...], log scale); a panel's second series is drawn
# fainter (its title says what it is).
PANELS: list[tuple[str, str, list[Any], bool]] = [
    ("D(G(z)), epoch mean; faint: D(x)", "D's output", ["d_fake", "d_real"], False),
    ("how evenly the samples share G's step, epoch mean", "g_weight_share", ["g_weight_share"], False),
    (
        "what G receives: RMS ||∂l_i/∂G(z_i)|| (epoch mean; faint: probe)",
        "g_input_grad",
        ["g_input_grad", "g_input_grad_probe"],
        True,
    ),
    ("G's relative update per epoch, mean over layers", "||Δθ|| / ||θ||", [_update_g], True),
    ("classes covered (of 10); faint: rarest class share x 10", "classes", ["classes_covered", _rarest_x10], False),
    ("Fréchet distance to the test set (lower is better)", "FID", ["fid"], True),
]


def make_figures(rows: list[dict[str, Any]], grids: dict[str, np.ndarray], out: Path) -> list[Path]:
    """One figure per recipe with rows (FIGURE_NAMES): the curves of PANELS, then sample grids."""
    written = []
    for recipe in RECIPES:
        recipe_rows = [r for r in rows if r["recipe"] == recipe]
        if not recipe_rows:  # a figure of an earlier study in this folder would pass for this one's
            (out / FIGURE_NAMES[recipe]).unlink(missing_ok=True)
        else:
            path = out / FIGURE_NAMES[recipe]
            _atomic(path, lambda p, rr=recipe_rows, rc=recipe: draw_figure(rr, grids, rc, p))
            written.append(path)
    return written


def _value(row: dict[str, Any], column: Any) -> float:
    value = column(row) if callable(column) else row.get(column, math.nan)
    return float(value) if value is not None else math.nan


def draw_figure(rows: list[dict[str, Any]], grids: dict[str, np.ndarray], recipe: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    runs = _by_run(rows)
    seeds = sorted({seed for _, _, seed in runs})
    grid_epochs = _grid_epochs(grids, recipe)
    grid_rows = [(loss, seed) for seed in seeds for loss in LOSSES if (recipe, loss, seed) in runs]
    n_grid_rows = len(grid_rows) if grid_epochs else 0
    # Heights in inches: the title, two rows of curves, a gap, a row of grids per run.
    title_h, curves_h, gap_h, grid_h, foot_h = 0.6, 6.4, 0.5, 1.45, 0.15
    height = title_h + curves_h + foot_h + (gap_h + grid_h * n_grid_rows if n_grid_rows else 0)
    fig = plt.figure(figsize=(15, height))
    top = 1 - title_h / height
    curves = fig.add_gridspec(2, 3, left=0.06, right=0.98, top=top, bottom=top - (curves_h - 0.45) / height,
                              hspace=0.4, wspace=0.25)  # fmt: skip
    for index, (title, ylabel, series, log) in enumerate(PANELS):
        ax = fig.add_subplot(curves[index // 3, index % 3])
        for (_, loss, seed), run in runs.items():
            style = SEED_STYLES[seeds.index(seed) % len(SEED_STYLES)]
            for number, column in enumerate(series):
                points = [(r["epoch"], _value(r, column)) for r in run]
                points = [(e, v) for e, v in points if math.isfinite(v) and (v > 0 or not log)]
                if points:
                    label = f"{loss} s{seed}" if number == 0 else "_nolegend_"  # the legend: one entry a run
                    marker = "." if len(points) < 20 else None
                    alpha = 1.0 if number == 0 else 0.45
                    ax.plot(*zip(*points), style, color=COLORS[loss], alpha=alpha, marker=marker, label=label)
        if log and ax.lines:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
            low, high = ax.get_ylim()  # within a decade the minor ticks are the only labels; beyond, clutter
            minor = ticker.FormatStrFormatter("%.3g") if high < 10 * low else ticker.NullFormatter()
            ax.yaxis.set_minor_formatter(minor)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        if index == 0 and ax.lines:
            ax.legend(fontsize=6, loc="best")
    if n_grid_rows:
        grids_top = 1 - (title_h + curves_h + gap_h) / height
        cells = fig.add_gridspec(n_grid_rows, len(grid_epochs), left=0.06, right=0.98, top=grids_top,
                                 bottom=foot_h / height, hspace=0.12, wspace=0.04)  # fmt: skip
        for i, (loss, seed) in enumerate(grid_rows):
            for j, epoch in enumerate(grid_epochs):
                ax = fig.add_subplot(cells[i, j])
                image = grids.get(f"{recipe}/{loss}/s{seed}/e{epoch}")
                if image is not None:
                    ax.imshow(image[: image.shape[0] // 2], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"samples (32 of the fixed noise's 64), epoch {epoch}", fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"{loss}\ns{seed}", fontsize=7, color=COLORS[loss])
    fig.suptitle(f"dense MNIST GAN, recipe {recipe}: minimax against non-saturating generator loss", fontsize=11,
                 y=1 - 0.2 / height)  # fmt: skip
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def _grid_epochs(grids: dict[str, np.ndarray], recipe: str) -> list[int]:
    """The epochs of the figure's sample grids: those nearest to the first, a tenth, a third, two thirds and
    the last of the recipe's epochs with grids (1, 3, 10, 20, 30 for 30 epochs)."""
    epochs = sorted({int(k.rsplit("/e", 1)[1]) for k in grids if k.startswith(f"{recipe}/")})
    if not epochs:
        return []
    last = epochs[-1]
    targets = (1, max(2, round(last / 10)), round(last / 3), round(2 * last / 3), last)
    return sorted({min(epochs, key=lambda e: (abs(e - t), e)) for t in targets})


def keep_grid(epoch: int, last: int) -> bool:
    """Which epochs' grids the study keeps (grids.npz stays a few MB): 1-3, every fifth, the last."""
    return epoch <= 3 or epoch % 5 == 0 or epoch == last


def replot(source: Path, out: Path) -> int:
    rows = read_csv(source / "results.csv")
    with np.load(source / "grids.npz") as loaded:
        grids = {key: loaded[key] for key in loaded.files}
    out.mkdir(parents=True, exist_ok=True)
    written = make_figures(rows, grids, out)
    print("wrote " + (", ".join(str(p) for p in written) or "nothing (no rows)"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.replot is not None:
        return replot(Path(args.replot), out)
    out.mkdir(parents=True, exist_ok=True)
    return train_runs(args, out)


if __name__ == "__main__":
    sys.exit(main())
