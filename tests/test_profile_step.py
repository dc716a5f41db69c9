"""bench.profile_step: the kernel-by-kernel profile of a GPU training step. Its GPU part runs in the device
calls recorded in bench/results (it needs PyTorch's profiler); here: its answers to options that make no sense
(its one-line answer without a GPU is tests/test_bench_gpu_scripts.py's, with the other GPU-only scripts)."""

import pytest

from bench import profile_step


@pytest.mark.parametrize("args", [["--steps", "0"], ["--top", "-1"], ["--model", "resnet"]])
def test_options_that_make_no_sense_are_refused_in_one_line(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        profile_step.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
