"""The GPU training step at every precision, tinygan beside PyTorch, in one process (issue 11's targets).

    python -m bench.step_precisions [--rounds 5] [--replays 200] [--out FILE.md] [--one-stream]

For each model (dense MNIST GAN, batch 125; CIFAR-10 DCGAN, batch 128) it builds, as whole-step CUDA graphs:

- tinygan at ``fp32`` (its default), ``tf32`` (``--precision tf32``) and ``bf16`` (``--precision bf16``: the
  convolutions' GEMM operands in bfloat16): ``DeviceRunner.step``;
- PyTorch at ``fp32`` (TF32 off everywhere), ``tf32`` (TF32 matrix products and convolutions) and at its own
  ``default`` (TF32 convolutions through cuDNN, FP32 matrix products): what a user who changes nothing gets;
- with ``--one-stream``, tinygan again with every backward pass on one stream (kernels/gpu/streams.py's
  ``one_stream``): what running the weight and input gradients side by side gains.

Each is validated before it is timed: one step's gradients from the same weights and draws against tinygan's
float64 reference (bench/steps.py, at the tolerance of its precision), and for the graphs, that replays train.
Timing: ``--replays`` back-to-back replays between two CUDA events, ``--rounds`` rounds with the
implementations interleaved (so a clock or neighbour change hits all of them alike); the median of the rounds.
Needs CuPy and a GPU; PyTorch where installed (its rows are left out otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import harness, steps
from tinygan import backend

MODELS = (("mnist", 125, "dense MNIST GAN"), ("dcgan", 128, "CIFAR-10 DCGAN"))


def _stage(what: str, fn: Any) -> Any:
    """``fn()``, then a synchronize, so that an asynchronous CUDA error is reported at the stage that caused it
    (an illegal address met twice on fresh H200s in 2026-12-02's eighth session surfaced only later, from a
    deallocation); the timed replays stay unsynchronized."""
    import cupy

    print(f"stage: {what}", file=sys.stderr, flush=True)
    out = fn()
    cupy.cuda.Device().synchronize()
    return out


def _tinygan(
    model: str, n: int, precision: str, want: list[Any], one_stream: bool = False
) -> tuple[steps.Built, str, bool]:
    """tinygan's step at ``precision``, validated, then captured; with ``one_stream`` captured without the
    backward passes' second stream (kernels/gpu/streams.py), for the comparison."""
    from tinygan.kernels.gpu import streams

    backend.set_precision(precision)
    where = f"tinygan {model} {precision}" + (" (one stream)" if one_stream else "")
    with streams.one_stream() if one_stream else contextlib.nullcontext():
        ok, err, text = _stage(f"{where}: validate", lambda: steps.validate_tiny(model, n, "gpu", "gpu", want))
        built = _stage(f"{where}: build", lambda: steps.tiny_gpu_step(model, n, graph=True))
        for what in ("warm-up", "capture", "replay"):  # the second call captures, the third replays
            _stage(f"{where}: {what}", built.fn)
    check = f"gradients {'within' if ok else 'NOT within'} tolerance {steps.step_tolerance():g}: {text}"
    return built, check, ok


def _torch(model: str, n: int, precision: str, want: list[Any]) -> tuple[steps.Built, str, bool]:
    where = f"PyTorch {model} {precision}"
    ok, err, text = _stage(f"{where}: validate", lambda: steps.validate_torch(model, n, "gpu", want, precision))
    built = _stage(f"{where}: build", lambda: steps.torch_graph_step(model, n, precision=precision))
    graph_ok, _, graph_text = _stage(f"{where}: graph check", lambda: steps.check_graph_step(built))
    tolerance = steps.STEP_TOLERANCE if precision == "fp32" else steps.STEP_TOLERANCE_TF32
    check = f"gradients {'within' if ok else 'NOT within'} {tolerance:g}: {text}; {graph_text}"
    return built, check, ok and graph_ok


def time_step(built: steps.Built, replays: int) -> float:
    """Seconds per step over ``replays`` back-to-back calls, between CUDA events on the step's stream."""
    if built.keep.__class__.__name__ == "TorchGAN":
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            built.fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / replays
    import cupy

    stream = built.stream or cupy.cuda.get_current_stream()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(stream)
    for _ in range(replays):
        built.fn()
    end.record(stream)
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / 1e3 / replays


def measure(
    model: str,
    n: int,
    rounds: int,
    replays: int,
    has_torch: bool,
    one_stream: bool = False,
    timeline: Any = None,
    want: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Every implementation and precision of ``model``'s step at batch ``n``, validated, captured, then timed in
    ``rounds`` interleaved rounds of ``replays`` replays: one record each (impl, precision, median_s, times,
    check, ok, vs_default). ``timeline(built) -> dict``, where given, is called once on each tinygan step after
    the timing (bench.report passes the profiler's split of the step, bench/dev/step_timeline.py); its result is
    the record's ``timeline``. ``want``: the float64 reference gradients, where the caller has them already."""
    runs: dict[tuple[str, str], Any] = {}
    if want is None:
        want = steps.reference_gradients(model, n)
    for precision in ("fp32", "tf32", "bf16"):
        runs[("tinygan", precision)] = _tinygan(model, n, precision, want)
        if one_stream:
            runs[("tinygan, one stream", precision)] = _tinygan(model, n, precision, want, one_stream=True)
    backend.set_precision("fp32")
    if has_torch:
        for precision in ("fp32", "tf32", "default"):
            runs[("PyTorch", precision)] = _torch(model, n, precision, want)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for round_ in range(rounds):
        for key, (built, _, _) in runs.items():
            if key[0].startswith("tinygan"):
                backend.set_precision(key[1])  # a replay keeps what it captured; set it for clarity
            # Every earlier timing ended in a synchronize, so an asynchronous error surfacing here is this
            # step's: name it (the eighth and thirteenth sessions met an illegal address at this point).
            print(f"stage: {key[0]} {model} {key[1]}: timing round {round_ + 1}", file=sys.stderr, flush=True)
            times[key].append(time_step(built, replays))
    backend.set_precision("fp32")
    base = statistics.median(times[("PyTorch", "default")]) if has_torch else None
    records = []
    for key, (built, check, ok) in runs.items():
        med = statistics.median(times[key])
        ratio = ""
        if base:
            ratio = f"{base / med:.2f}x faster" if med < base else f"{med / base:.2f}x slower"
        rec = {
            "model": model,
            "batch": n,
            "impl": key[0],
            "precision": key[1],
            "median_s": med,
            "times_s": times[key],
            "check": check,
            "ok": ok,
            "vs_default": ratio,
        }
        if timeline is not None and key[0] == "tinygan":
            rec["timeline"] = _stage(f"tinygan {model} {key[1]}: timeline", functools.partial(timeline, built))
        records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (5)")
    parser.add_argument("--replays", type=int, default=200, help="steps per round and implementation (200)")
    parser.add_argument("--out", help="also write the table as markdown to this file")
    parser.add_argument(
        "--one-stream",
        action="store_true",
        help="also time tinygan with its backward passes on one stream (what the second stream gains)",
    )
    parser.add_argument(
        "--no-torch", action="store_true", help="leave PyTorch out even where it is installed (tinygan's rows only)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.replays < 1:
        parser.error("--rounds and --replays must be at least 1")
    import cupy

    has_torch = harness.torch_installed() and not args.no_torch
    card = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    lines = [
        f"# Training step by precision, {card}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m bench.step_precisions --rounds {args.rounds} --replays {args.replays}"
        f"{' --one-stream' if args.one_stream else ''}`: whole-step CUDA graphs,"
        f" median of {args.rounds} interleaved rounds of {args.replays} replays.",
        "",
        "| model | implementation | precision | median | vs PyTorch default | validation |",
        "| --- | --- | --- | ---: | ---: | --- |",
    ]
    for model, n, title in MODELS:
        for rec in measure(model, n, args.rounds, args.replays, has_torch, args.one_stream):
            lines.append(
                f"| {title} (batch {n}) | {rec['impl']} | {rec['precision']} | {rec['median_s'] * 1e3:.3f} ms | "
                f"{rec['vs_default']} | {rec['check']} |"
            )
            print(lines[-1], flush=True)
        if args.out:  # each model's rows as soon as they exist: a later failure keeps them
            Path(args.out).write_text("\n".join(lines) + "\n")
    text = "\n".join(lines) + "\n"
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
