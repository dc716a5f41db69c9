"""bench.profile_step: the kernel-by-kernel profile of a GPU training step. Its GPU part runs in the device
calls recorded in bench/results (it needs PyTorch's profiler); here: its answers without a GPU and to
options that make no sense."""

import pytest

from bench import profile_step
from tinygan.backend import gpu_unavailable_reason


def test_without_a_gpu_it_says_why_and_exits_2(capsys):
    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is present: this checks the message where there is none")
    assert profile_step.main(["--model", "mnist"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("profile_step needs a CUDA GPU: ") and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--steps", "0"], ["--top", "-1"], ["--model", "resnet"]])
def test_options_that_make_no_sense_are_refused_in_one_line(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        profile_step.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
