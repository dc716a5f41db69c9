"""Time whole training runs end to end, with a breakdown: steps, outputs, start-up, the end of each run.

    python tools/run_wallclock.py --device gpu --data-dir DATA            # both seed runs (issue 11, item 6)
    python tools/run_wallclock.py --device cpu --data-dir DATA --mnist "--epochs 3 --limit 2000" \\
        --cifar "--epochs 3 --limit 128 --batch-size 64"                 # small settings on a CPU

Runs, in this process and one after the other, the two examples' seed runs with their default outputs
(a sample grid, metrics.csv and checkpoint.npz after every epoch, plots, the GIF):

- ``examples/mnist_dense.py --recipe original`` (180 epochs, all 70,000 MNIST images);
- ``examples/cifar_dcgan.py --class all --recipe original`` (one model per class, 150 epochs each, then
  the overview).

``--mnist ARGS`` / ``--cifar ARGS`` add options to each (e.g. fewer epochs, or ``--recipe default``: the
last ``--recipe`` counts); ``--only mnist|cifar`` runs one. ``DATA`` holds the MNIST IDX files and the
CIFAR-10 python version (files or a folder each; ``--mnist-data`` / ``--cifar-data`` when they live
apart). Before the timed runs, a warm-up of one short epoch per model compiles the kernels (Numba on the
CPU, CUDA on the GPU), timed on its own.

For every training run (each class is one) it wraps ``GANTrainer.run`` and reports: its wall-clock
seconds; the steps (the epochs' own seconds, as ``metrics.csv`` records them); the rest of ``run``
(outputs on the training thread, waits for the writer, the final plots and GIF). Where the trainer
keeps ``timings`` (the background writer, tinygan.writer) it also reports the writer's own busy time
by kind. The example's wall-clock time minus its runs is its start-up and end: data loading, model
building, the CIFAR-10 overview. Results go to stdout as a Markdown table, and to ``--json FILE``.
The run folders go to a temporary folder, removed afterwards unless ``--keep DIR`` names one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RunTimer:
    """Wraps ``GANTrainer.run`` to time every training run and keep what the trainer reports."""

    def __init__(self) -> None:
        from tinygan.train import GANTrainer

        self.cls, self.original, self.runs = GANTrainer, GANTrainer.run, []
        timer = self

        def timed_run(trainer: Any, *args: Any, **kwargs: Any) -> Any:
            first_epoch = len(trainer.history)
            start = time.perf_counter()
            try:
                return timer.original(trainer, *args, **kwargs)
            finally:
                wall = time.perf_counter() - start
                new = trainer.history[first_epoch:]
                steps = sum(float(row.get("seconds", 0.0)) for row in new)
                timings = dict(getattr(trainer, "timings", {}) or {})
                timer.runs.append(
                    {
                        "folder": trainer.out_dir.name,
                        "epochs": len(new),
                        "steps_per_epoch": trainer.steps_per_epoch,
                        "wall_s": wall,
                        "steps_s": steps,
                        "rest_s": wall - steps,
                        "outputs_s": timings.get("outputs"),
                        "final_s": timings.get("final"),
                        "writer_wait_s": timings.get("writer_wait"),
                        "writer_busy_s": timings.get("writer_busy"),
                        "outputs_by_part_s": timings.get("outputs_by_part"),
                    }
                )

        GANTrainer.run = timed_run

    def restore(self) -> None:
        self.cls.run = self.original


def run_example(name: str, argv: list[str], timer: RunTimer) -> dict[str, Any]:
    module = load_example(name)
    before = len(timer.runs)
    print(f"\n$ python examples/{name}.py {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    code = module.main(argv)
    wall = time.perf_counter() - start
    runs = timer.runs[before:]
    in_runs = sum(r["wall_s"] for r in runs)
    return {
        "example": name,
        "argv": argv,
        "exit_code": code,
        "wall_s": wall,
        "runs": runs,
        "steps_s": sum(r["steps_s"] for r in runs),
        "rest_of_runs_s": sum(r["rest_s"] for r in runs),
        "outside_runs_s": wall - in_runs,
    }


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def report(results: list[dict[str, Any]], warmup: float, machine: str) -> str:
    lines = [
        f"machine: {machine}",
        f"warm-up (kernel compilation, one short epoch per model): {warmup:.1f} s",
        "",
        "| run | exit | wall s | steps s | rest of run() s | outside run() s | runs | epochs/run | per run wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        runs = r["runs"]
        per = r["wall_s"] / max(len(runs), 1)
        epochs = "/".join(sorted({str(x["epochs"]) for x in runs})) or "0"
        lines.append(
            f"| {r['example']} {shlex.join(r['argv'][:6])} | {r['exit_code']} | {r['wall_s']:.1f} | "
            f"{r['steps_s']:.1f} | {r['rest_of_runs_s']:.1f} | {r['outside_runs_s']:.1f} | {len(runs)} | "
            f"{epochs} | {per:.1f} |"
        )
    lines += [
        "",
        "| training run | epochs | steps/epoch | wall s | steps s | outputs on the training thread s "
        "| final (plots, GIF, drain) s | waited for the writer s | writer busy s (by kind) "
        "| training thread's outputs s (by part) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        for x in r["runs"]:
            busy = x["writer_busy_s"]
            kinds = "" if busy is None else ", ".join(f"{k} {v:.2f}" for k, v in sorted(busy.items()))
            by_part = x.get("outputs_by_part_s") or {}
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(by_part.items(), key=lambda kv: -kv[1]))
            lines.append(
                f"| {x['folder']} | {x['epochs']} | {x['steps_per_epoch']} | {x['wall_s']:.2f} | {x['steps_s']:.2f} | "
                f"{_fmt(x['outputs_s'])} | {_fmt(x['final_s'])} | {_fmt(x['writer_wait_s'])} | {kinds} | {parts} |"
            )
    return "\n".join(lines)


def machine_line(device: str) -> str:
    text = (
        f"{platform.processor() or platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    try:
        import os

        text += f", {len(os.sched_getaffinity(0))} CPU cores available"
    except (AttributeError, OSError):
        pass
    if device == "gpu":
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(0)
            text += f", GPU {props['name'].decode()}"
        except Exception as exc:  # a report line, not a failure
            text += f", GPU unknown ({exc})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--data-dir", help="a folder with the MNIST and CIFAR-10 files")
    parser.add_argument("--mnist-data", help="MNIST's folder (default --data-dir)")
    parser.add_argument("--cifar-data", help="CIFAR-10's folder (default --data-dir)")
    parser.add_argument("--mnist", default="", metavar="ARGS", help="more options for mnist_dense.py")
    parser.add_argument("--cifar", default="", metavar="ARGS", help="more options for cifar_dcgan.py")
    parser.add_argument("--only", choices=("mnist", "cifar"), help="run one of the two")
    parser.add_argument("--no-warmup", action="store_true", help="skip the compiling warm-up")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", metavar="DIR", help="keep the run folders in DIR")
    args = parser.parse_args(argv)
    mnist_data = args.mnist_data or args.data_dir
    cifar_data = args.cifar_data or args.data_dir
    common = ["--device", args.device, "--no-progress"]
    plan = []
    if args.only in (None, "mnist"):
        data = ["--data-dir", mnist_data] if mnist_data else []
        plan.append(("mnist_dense", ["--recipe", "original", *common, *data, *shlex.split(args.mnist)]))
    if args.only in (None, "cifar"):
        data = ["--data-dir", cifar_data] if cifar_data else []
        plan.append(
            ("cifar_dcgan", ["--class", "all", "--recipe", "original", *common, *data, *shlex.split(args.cifar)])
        )

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="run_wallclock-"))
    root.mkdir(parents=True, exist_ok=True)
    timer = RunTimer()
    try:
        warmup = 0.0
        if not args.no_warmup:
            start = time.perf_counter()
            for name, argv_ in plan:
                short = [*argv_, "--epochs", "1", "--limit", "512", "--out", str(root / f"warmup-{name}")]
                if "--class" in short:  # one class is enough to compile the kernels
                    short[short.index("--class") + 1] = "airplane"
                run_example(name, short, timer)
            warmup = time.perf_counter() - start
            del timer.runs[:]
        results = []
        for name, argv_ in plan:
            results.append(run_example(name, [*argv_, "--out", str(root / name)], timer))
    finally:
        timer.restore()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = report(results, warmup, machine_line(args.device))
    print("\n" + text)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine_line(args.device), "warmup_s": warmup, "results": results}, indent=2) + "\n"
        )
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
