"""How large a grid D's Adam update should have when it runs beside G's forward (fourteenth session).

``GANStep.__call__`` runs D's last Adam step, its figures and the reset of G's gradients on a second stream
beside the G step's G forward. At Adam's default grid (4 blocks an SM) the first timeline showed the overlap
saving 1 µs: the update fills every SM and G's small products wait for its blocks to drain. This times the
whole captured step (``bench.steps.tiny_gpu_step``, as ``GANTrainer.run`` takes it) with the update's grid capped
at 1, 2 and 4 blocks an SM, and with the fork off (``one_stream``), interleaved over rounds.

    python -m bench.dev.beside_blocks [--model mnist|dcgan] [--rounds 5] [--replays 200]   # needs a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mnist", "dcgan"), default="mnist")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replays", type=int, default=200)
    args = parser.parse_args(argv)
    from tinygan.backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason:
        print(f"beside_blocks needs a CUDA GPU: {reason}", file=sys.stderr)
        return 2
    from tinygan.kernels.gpu.streams import one_stream

    from bench import steps
    from bench.profile_step import BATCH
    from bench.step_precisions import time_step

    variants: dict[str, tuple[int | None, bool]] = {
        "one stream": (None, True),
        "beside, 1 block/SM": (1, False),
        "beside, 2 blocks/SM": (2, False),
        "beside, 4 blocks/SM (Adam's default)": (4, False),
    }
    built = {}
    for name, (per_sm, serial) in variants.items():
        with one_stream() if serial else contextlib.nullcontext():
            b = steps.tiny_gpu_step(args.model, BATCH[args.model], graph=True)
            if per_sm is not None:
                b.keep.step.beside_blocks_per_sm = per_sm
            for _ in range(3):  # eager, captured, replayed
                b.fn()
        built[name] = b
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, b in built.items():
            times[name].append(time_step(b, args.replays) * 1e3)
    print(f"{args.model} fp32, whole-step graph, median of {args.rounds} rounds of {args.replays} replays")
    print("| variant | step ms | rounds |")
    print("| --- | ---: | --- |")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.3f} | {' / '.join(f'{x:.3f}' for x in t)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
