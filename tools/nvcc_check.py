"""Compile every CUDA module of tinygan.kernels.gpu and bench/dev here, as NVRTC will on the GPU machine, before
spending device time: each ``CudaModule``'s source (``_common.cu`` prepended) with every instantiation it names,
through nvcc, for Hopper (sm_90, the machine the project measures on) and for the older targets the module claims
(its ``min_cc``: sm_75, a Turing card such as a T4, and sm_80, an A100), with dense_gemm's pre-Hopper module sets
(no clusters) in place of its Hopper one.

    python tools/nvcc_check.py            # needs nvcc (CUDA 12+) on the PATH, no GPU

Why: a device call that meets a source NVRTC refuses fails every test that touches the module (the eighth
session lost one call to a stray brace in layout.cu). The wrappers are imported through tools/gpu_emulate's
NumPy-backed ``cupy``, so CuPy need not be installed. Exits non-zero when a module fails, naming it and its
first errors.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def modules() -> list:
    importlib.import_module("tools.gpu_emulate")  # first: a NumPy-backed cupy, so the wrappers import without a GPU
    gpu = importlib.import_module("tinygan.kernels.gpu")
    CudaModule = importlib.import_module("tinygan.kernels.gpu._common").CudaModule

    found = {}
    for info in pkgutil.iter_modules(gpu.__path__):
        mod = importlib.import_module(f"tinygan.kernels.gpu.{info.name}")
        for value in vars(mod).values():
            if isinstance(value, CudaModule):
                found[value.filename] = value
    # bench/dev's kernel versions (timed beside production, so compiled in the same call).
    kernel_versions = importlib.import_module("bench.dev.kernel_versions")
    adam_versions = importlib.import_module("bench.dev.adam_versions")
    for dev in (kernel_versions._dev_module(), adam_versions._adam_module()):
        found["bench/dev/" + dev.filename] = dev
    return [found[name] for name in sorted(found)]


def targets() -> list[tuple[int, object]]:
    """(compute capability, module) pairs to compile: every module for 90; for 75 and 80 the modules that claim
    them, dense_gemm's being the sets :func:`dense_gemm.module` builds without clusters."""
    found = modules()  # first: it installs the emulator's cupy
    dense_gemm = importlib.import_module("tinygan.kernels.gpu.dense_gemm")
    pairs = [(90, mod) for mod in found]
    older = [mod for mod in found if mod.filename != "dense_gemm.cu"]
    older += [dense_gemm.module(p, w, clusters=False) for p in range(len(dense_gemm.PIPELINES)) for w in (0, 1)]
    for cc in (75, 80):
        pairs += [(cc, mod) for mod in older if mod.min_cc <= cc]
    return pairs


def main() -> int:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        print("nvcc_check: nvcc is not on the PATH", file=sys.stderr)
        return 2
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (cc, mod) in enumerate(targets()):
            names = mod.name_expressions()
            # Taking each instantiation's address makes nvcc compile it, as NVRTC's name expressions do.
            code = (
                mod.source() + "\nvoid tinygan_nvcc_check() {\n" + "".join(f"    (void)&{n};\n" for n in names) + "}\n"
            )
            path = Path(tmp) / f"{i}_{Path(mod.filename).name}"
            path.write_text(code)
            run = subprocess.run(
                [nvcc, "-std=c++17", f"-arch=sm_{cc}", "-cubin", "-o", str(path.with_suffix(".cubin")), str(path)],
                capture_output=True,
                text=True,
            )
            errors = [line for line in run.stderr.splitlines() if "error" in line]
            status = "ok" if run.returncode == 0 else "FAILED"
            print(f"{mod.filename} for sm_{cc}: {len(names)} instantiations, {status}")
            for line in errors[:5]:
                print("    " + line)
            failed += run.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
