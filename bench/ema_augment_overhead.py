"""What generator EMA and differentiable augmentation cost per training step (issue 14's target: the GPU
step with both within 15% of the step without them).

    python -m bench.ema_augment_overhead [--device gpu] [--json FILE] [--rounds 3] [--budget 0.3]

For each model (the dense MNIST GAN, batch 125; the CIFAR-10 DCGAN, batch 128) it builds four trainers in
one process: the step without either ("plain"), with ``ema_decay=0.999`` ("ema"), with ``augment=
"translation,cutout,color"`` ("augment"), and with both ("both"); everything else is the example's default
recipe (bench/steps.py's ``tiny_trainer``). On the GPU it times ``trainer.runner.step``, the step as a run
takes it (batch gather, both updates, the EMA update and the figures, captured as one CUDA graph), with
CUDA events on the runner's stream; on the CPU (a check that the script works; not the target) one
``GANStep`` call. The variants are measured in turn, ``--rounds`` times (so that clock and thermal drift
fall on all of them alike); each variant's figure is the median over all its samples, and the overhead is
``both / plain - 1``. Before timing, each GPU trainer's captured step is checked against the same trainer
stepped eagerly (as bench/steps.py's ``validate_tiny_graph`` does): a step that did not capture or
disagrees is timed anyway and flagged in the report and the JSON (``check_failed``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness, steps  # noqa: E402
from tinygan import backend  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"ema_decay": 0.0, "augment": ""},
    "ema": {"ema_decay": 0.999, "augment": ""},
    "augment": {"ema_decay": 0.0, "augment": "translation,cutout,color"},
    "both": {"ema_decay": 0.999, "augment": "translation,cutout,color"},
}
TARGET = 0.15  # issue 14: the step with EMA and augmentation within 15% of the step without them


def build(model: str, variant: str, device: str) -> steps.Built:
    n = steps.BATCH[model]
    config = {**VARIANTS[variant], "cuda_graph": True}
    if device == "gpu":
        import cupy

        trainer = steps.tiny_trainer(model, n, "gpu", "gpu", config=config, batches=4)
        cupy.cuda.Device().synchronize()  # the runner's stream does not wait for the uploads
        trainer.runner.begin_epoch(trainer.rng.permutation(len(trainer.data)), 0)
        return steps.Built(trainer.runner.step, trainer, "DeviceRunner.step (CUDA graph)", trainer.runner.stream)
    trainer = steps.tiny_trainer(model, n, "cpu", "numba", config=config)
    return steps.Built(steps.tiny_step(trainer), trainer, "one GANStep call")


def check(model: str, built: steps.Built, device: str) -> str | None:
    """Why this step must not be timed (None: fine): on the GPU, the captured step must agree with the
    same trainer stepped eagerly."""
    if device != "gpu":
        return None
    trainer = built.keep
    eager = steps.tiny_trainer(
        model,
        steps.BATCH[model],
        "gpu",
        "gpu",
        config={"ema_decay": trainer.config.ema_decay, "augment": trainer.config.augment, "cuda_graph": False},
        batches=4,
    )
    import cupy

    cupy.cuda.Device().synchronize()
    # Same seed: the eager trainer's first batch order is the one the captured trainer drew in build().
    eager.runner.begin_epoch(eager.rng.permutation(len(eager.data)), 0)
    for _ in range(4):
        built.fn()
        eager.runner.step()
    cupy.cuda.Device().synchronize()
    if trainer.runner.graph.graph is None:
        return "the step was not captured (the trainer fell back to eager launches)"
    got = steps.tiny_parameters(trainer)
    want = [backend.to_numpy(p) for p in steps.tiny_parameters(eager)]
    ok, err, text = harness.compare(got, want, 1e-5)
    return None if ok else f"the captured step disagrees with the eager one: {text}"


def run(device: str, rounds: int, budget: float, models: list[str]) -> dict[str, Any]:
    timer = harness.timer_for(device, device)
    result: dict[str, Any] = {
        "device": device,
        "machine": harness.gpu_machine() if device == "gpu" else harness.cpu_machine(),
        "variants": VARIANTS,
        "rounds": rounds,
        "models": {},
    }
    for model in models:
        built = {name: build(model, name, device) for name in VARIANTS}
        # Timed either way (one device call must bring figures back), flagged where the check failed.
        problems = {name: check(model, b, device) for name, b in built.items()}
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(rounds):
            for name in samples:
                b = built[name]
                stats = harness.measure(b.fn, timer, budget_s=budget, min_repeats=5, warmup=3, stream=b.stream)
                samples[name] += stats.samples
        medians = {name: statistics.median(values) for name, values in samples.items()}
        entry: dict[str, Any] = {
            "batch": steps.BATCH[model],
            "how": built["plain"].how,
            "median_ms": {name: 1e3 * value for name, value in medians.items()},
            "samples": {name: len(values) for name, values in samples.items()},
            "check_failed": {name: why for name, why in problems.items() if why},
        }
        if "plain" in medians:
            entry["overhead"] = {name: medians[name] / medians["plain"] - 1 for name in medians if name != "plain"}
            if "both" in medians:
                entry["within_target"] = entry["overhead"]["both"] <= TARGET
        result["models"][model] = entry
        del built
    return result


def report(result: dict[str, Any]) -> str:
    machine = result["machine"]
    where = machine.get("gpu") or machine.get("cpu") or result["device"]
    lines = [f"EMA + augmentation step overhead on {where} ({result['device']}), medians of {result['rounds']} rounds"]
    for model, entry in result["models"].items():
        cells = ", ".join(
            f"{name} {ms:.3f} ms"
            + (f" ({100 * entry['overhead'][name]:+.1f}%)" if name in entry.get("overhead", {}) else "")
            for name, ms in entry["median_ms"].items()
        )
        lines.append(f"  {model} (batch {entry['batch']}, {entry['how']}): {cells}")
        if "within_target" in entry:
            verdict = "within" if entry["within_target"] else "NOT within"
            lines.append(f"    both vs plain: {verdict} the {100 * TARGET:.0f}% target")
        for name, why in entry["check_failed"].items():
            lines.append(f"    {name}: CHECK FAILED (timed anyway, do not trust its figure): {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    parser.add_argument("--models", default="mnist,dcgan", help="comma-separated: mnist, dcgan (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="times each variant is measured, in turn (3)")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of repeats per measurement (0.3)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",")]
    if any(m not in steps.MODELS for m in models):
        parser.error(f"--models: expected some of {list(steps.MODELS)}, received {args.models}")
    if args.rounds < 1 or args.budget <= 0:
        parser.error("--rounds must be at least 1 and --budget positive")
    if args.device == "gpu":
        try:
            backend.require_gpu()
        except backend.DeviceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    start = time.perf_counter()
    result = run(args.device, args.rounds, args.budget, models)
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(report(result))
    print(f"({result['seconds']} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
