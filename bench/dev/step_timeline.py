"""One replayed training step as a timeline (fourteenth session): each kernel's start, duration and stream, and
how the step's wall time splits into time with kernels on both streams, on one, and on none (the gaps between
dependent kernels).

    python -m bench.dev.step_timeline --model mnist --precision fp32 --trace $OUT/trace.json   # on the GPU
    python -m bench.dev.step_timeline --read trace.json                                         # anywhere

``bench.profile_step`` sums each kernel's time over a step; this shows where in the step it runs, which is what
says which kernels are on the critical path (the MNIST fp32 step's 86 kernels sum to 494 µs in a 450 µs step,
two streams). PyTorch's profiler is the CUPTI reader, as in ``bench.profile_step``; ``--read`` needs only the
exported Chrome trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def kernels_of(trace: dict) -> list[dict]:
    """The device-side events (kernels, copies, sets) of a Chrome trace, by start time."""
    events = [
        e
        for e in trace.get("traceEvents", [])
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    ]
    return sorted(events, key=lambda e: e["ts"])


# Kernel names that are matrix products: cuBLAS's (gemm, xmma, gemv, cutlass, their split-K reductions, and nvjet,
# the Hopper kernels cuBLAS picks for its TF32 and BF16 products) and ours.
PRODUCTS = ("gemm", "xmma", "gemv", "cutlass", "splitK", "nvjet", "dense_outer", "dense_row_dot", "igemm")


def is_product(name: str) -> bool:
    return any(word in name for word in PRODUCTS)


def split_steps(events: list[dict], per_step: int) -> list[list[dict]]:
    return [events[i : i + per_step] for i in range(0, len(events) - per_step + 1, per_step)]


def split(step: list[dict]) -> dict[str, float]:
    """How one step's span (µs, first kernel's start to last one's end) splits: by how many streams have a kernel
    running (``none_us``, ``one_us``, ``two_us``: two or more) and by kind (``product_us``: a matrix product
    running; ``other_us``: only other kernels). ``none_us + one_us + two_us == none_us + product_us + other_us
    == span_us``; ``kernel_us`` is the kernels' summed time (above the span where streams overlap)."""
    t0 = step[0]["ts"]
    end = max(e["ts"] + e["dur"] for e in step)
    # Sweep: at each moment, how many streams have a kernel running, and whether one of them is a product.
    marks = sorted(
        [(e["ts"], 1, is_product(e["name"])) for e in step]
        + [(e["ts"] + e["dur"], -1, is_product(e["name"])) for e in step]
    )
    busy = {0: 0.0, 1: 0.0, 2: 0.0}
    kinds = {"product": 0.0, "other": 0.0}
    depth, products, last = 0, 0, t0
    for t, d, product in marks:
        busy[min(depth, 2)] += t - last
        if depth:
            kinds["product" if products else "other"] += t - last
        depth, last = depth + d, t
        products += d if product else 0
    return {
        "span_us": end - t0,
        "kernels": len(step),
        "kernel_us": sum(e["dur"] for e in step),
        "none_us": busy[0],
        "one_us": busy[1],
        "two_us": busy[2],
        "product_us": kinds["product"],
        "other_us": kinds["other"],
    }


def summarize(step: list[dict]) -> list[str]:
    t0 = step[0]["ts"]
    s = split(step)
    lines = [
        f"step: {s['span_us']:.1f} µs from the first kernel's start to the last one's end, {s['kernels']} kernels, "
        f"{s['kernel_us']:.1f} µs of kernel time",
        f"no kernel running: {s['none_us']:.1f} µs; one: {s['one_us']:.1f} µs; two or more: {s['two_us']:.1f} µs",
        f"a matrix product running: {s['product_us']:.1f} µs; only other kernels: {s['other_us']:.1f} µs",
        "",
        "| start µs | dur µs | gap µs | stream | kernel |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    prev_end: dict[int, float] = {}
    for e in step:
        stream = e.get("args", {}).get("stream", e.get("tid"))
        gap = e["ts"] - prev_end.get(stream, e["ts"])
        prev_end[stream] = e["ts"] + e["dur"]
        name = e["name"] if len(e["name"]) <= 70 else e["name"][:67] + "..."
        lines.append(f"| {e['ts'] - t0:.1f} | {e['dur']:.1f} | {gap:.1f} | {stream} | {name} |")
    return lines


def profile(fn: Any, n_steps: int, path: str) -> tuple[dict, list[list[dict]]]:
    """Call the (captured) step ``fn`` ``n_steps`` times under PyTorch's profiler, export the Chrome trace to
    ``path`` and return it with its device events cut into steps (the kernels of one call, counted from the
    trace; none when the trace has fewer events than calls)."""
    import cupy
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cupy.cuda.Device().synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n_steps):
            fn()
        cupy.cuda.Device().synchronize()
    prof.export_chrome_trace(path)
    with open(path) as f:
        trace = json.load(f)
    events = kernels_of(trace)
    per_step = len(events) // n_steps
    return trace, split_steps(events, per_step) if per_step else []


def record(model: str, precision: str, n_steps: int, path: str) -> tuple[float, dict, int]:
    """Replay the step under PyTorch's profiler and export the trace, with its count of kernels per step so that
    ``--read`` can cut it again; (ms per step, the trace, kernels per step)."""
    from bench import steps
    from bench.profile_step import BATCH
    from bench.step_precisions import time_step
    from tinygan import backend

    backend.set_precision(precision)
    built = steps.tiny_gpu_step(model, BATCH[model], graph=True)
    for _ in range(3):
        built.fn()
    step_ms = time_step(built, 50) * 1e3
    trace, cut = profile(built.fn, n_steps, path)
    per_step = len(cut[0]) if cut else 0
    trace["tinygan_kernels_per_step"] = per_step
    with open(path, "w") as f:
        json.dump(trace, f)
    return step_ms, trace, per_step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mnist", "dcgan"), default="mnist")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=5, help="steps replayed under the profiler (default 5)")
    parser.add_argument("--trace", help="where to write the Chrome trace (on the GPU)")
    parser.add_argument("--read", help="summarize this trace instead of recording one")
    parser.add_argument("--per-step", type=int, help="kernels per step (--read; default: from the trace's name)")
    args = parser.parse_args(argv)
    if args.read:
        with open(args.read) as f:
            trace = json.load(f)
        per_step = args.per_step or trace.get("tinygan_kernels_per_step")
        if not per_step:
            print("step_timeline: --per-step is needed for this trace", file=sys.stderr)
            return 2
    else:
        from tinygan.backend import gpu_unavailable_reason

        reason = gpu_unavailable_reason()
        if reason or not args.trace:
            print(f"step_timeline: recording needs a CUDA GPU and --trace ({reason or 'no --trace'})", file=sys.stderr)
            return 2
        step_ms, trace, per_step = record(args.model, args.precision, args.steps, args.trace)
        print(f"{args.model} {args.precision}: {step_ms * 1e3:.1f} µs a replayed step (50 replays), {per_step} kernels")
    steps_ = split_steps(kernels_of(trace), per_step)
    if not steps_:
        print("step_timeline: no whole step in the trace", file=sys.stderr)
        return 2
    print("\n".join(summarize(steps_[len(steps_) // 2])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
