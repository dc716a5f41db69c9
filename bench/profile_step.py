"""Where a tinygan GPU training step spends its time, kernel by kernel (issue 11's "what bounds it").

    python -m bench.profile_step [--model dcgan|mnist] [--precision fp32|tf32|bf16] [--steps 50] [--top 30]

Builds the step as ``GANTrainer.run`` takes it (``bench.steps.tiny_gpu_step``: one whole-step CUDA graph),
times ``--steps`` replays between CUDA events, then replays them again under PyTorch's profiler (CUPTI sees
the kernels inside a graph) and prints each kernel's device time per step, its launches per step and its
share of the summed kernel time. The sum is below the step's time by the gaps between kernels.

PyTorch is only the profiler here, an optional reference as everywhere in bench/: without it the tool
says so and exits 2. Needs CuPy and a GPU.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from bench import steps
from bench.harness import gpu_missing, torch_installed
from bench.step_precisions import MODELS, time_step
from tinygan import backend

BATCH = {model: n for model, n, _ in MODELS}  # the batch each model's step is measured at


def _short(name: str, width: int = 110) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def profile(model: str, precision: str, n_steps: int) -> tuple[float, list[tuple[str, float, float]]]:
    """(ms per replayed step, [(kernel, µs per step, launches per step)] largest first)."""
    import cupy
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    backend.set_precision(precision)
    built = steps.tiny_gpu_step(model, BATCH[model], graph=True)
    for _ in range(3):  # the second call captures, the third replays
        built.fn()
    step_ms = time_step(built, n_steps) * 1e3

    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n_steps):
            built.fn()
        cupy.cuda.Device().synchronize()
    time_us: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for event in prof.key_averages():
        if not str(event.device_type).endswith("CUDA"):
            continue  # host-side calls; the kernels (and copies) are the CUDA-side events
        time_us[event.key] += event.self_device_time_total
        count[event.key] += event.count
    rows = sorted(((k, t / n_steps, count[k] / n_steps) for k, t in time_us.items()), key=lambda r: -r[1])
    return step_ms, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", choices=sorted(BATCH), action="append", help="repeatable (default both)")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], action="append", help="repeatable")
    parser.add_argument("--steps", type=int, default=50, help="replays timed and profiled (default 50)")
    parser.add_argument("--top", type=int, default=30, help="kernels listed per step (default 30)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.top < 1:
        parser.error("--steps and --top must be at least 1")
    if gpu_missing("profile_step"):
        return 2
    if not torch_installed():
        print("profile_step uses PyTorch's profiler (CUPTI): PyTorch is not installed", file=sys.stderr)
        return 2
    for model in args.model or ["dcgan", "mnist"]:
        for precision in args.precision or ["fp32", "tf32"]:
            step_ms, rows = profile(model, precision, args.steps)
            total = sum(t for _, t, _ in rows)
            launches = sum(c for _, _, c in rows)
            print(
                f"\n== {model} {precision}: graph step {step_ms * 1e3:.1f} µs (mean of "
                f"{args.steps} replays); {launches:.0f} kernels and copies per step, {total:.1f} µs summed"
            )
            for name, t, c in rows[: args.top]:
                print(f"{t:9.1f} µs {c:5.1f}x {100 * t / total:5.1f}%  {_short(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
