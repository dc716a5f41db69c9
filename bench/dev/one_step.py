"""Three eager DCGAN training steps at a precision, for a profiler to pick one step's launches:

    ncu --kernel-name regex:"col2im_bf16|im2col_bf16" --launch-skip 48 --launch-count 24 \\
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \\
        python -m bench.dev.one_step bf16

(24 such launches a step: the first two steps are skipped.) Needs CuPy and a GPU.
"""

import sys

from bench.harness import gpu_missing


def main(argv: list[str]) -> int:
    from tinygan.backend import PRECISIONS

    precision = argv[0] if argv else "fp32"
    if precision not in PRECISIONS:
        print(f"one_step: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", file=sys.stderr)
        return 2
    if gpu_missing("one_step"):
        return 2
    import cupy

    from bench import steps
    from tinygan import backend

    backend.set_precision(precision)
    built = steps.tiny_gpu_step("dcgan", 128, graph=False)
    for _ in range(3):
        built.fn()
    cupy.cuda.Device().synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
