"""The GPU-only scripts of bench/ on a machine without a GPU: each says so in one line (its name, then why there
is no GPU) and exits with status 2, before it imports CuPy or builds anything: no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tinygan.backend import gpu_unavailable_reason

# (module, arguments): each reaches its GPU check past its own argument parsing.
SCRIPTS = [
    ("bench.profile_step", ["--model", "mnist"]),
    ("bench.dev.kernel_versions", ["--op", "col2im"]),
    ("bench.dev.igemm_versions", []),
    ("bench.dev.dense_gemm_versions", []),
    ("bench.dev.dense_step_policies", []),
    ("bench.dev.dense_eager_probe", []),
    ("bench.dev.fp32_compute_probe", []),
    ("bench.dev.pdl_probe", []),
    ("bench.dev.one_step", []),
]


@pytest.mark.parametrize("module,args", SCRIPTS)
def test_a_gpu_script_without_a_gpu_says_why_in_one_line_and_exits_2(module, args):
    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is present: this checks the message where there is none")
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    name = module.rsplit(".", 1)[1]
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{name} needs a CUDA GPU: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_step_timeline_records_only_on_a_gpu_and_reads_anywhere(capsys):
    from bench.dev import step_timeline

    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is present: this checks the message where there is none")
    assert step_timeline.main(["--trace", "out.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("step_timeline: recording needs a CUDA GPU and --trace") and err.count("\n") == 1
