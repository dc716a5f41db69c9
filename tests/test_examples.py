"""The examples as a user runs them: a short run, the sampler, Ctrl-C and resume, --device gpu without a GPU,
options that make no sense, resume keeping its word, one run per folder, loader errors as one line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from example_scripts import CIFAR_EXAMPLE, MNIST_EXAMPLE, load_example, run_example
from formats import write_cifar_folder, write_idx

from tinygan.backend import gpu_unavailable_reason
from tinygan.checkpoint import load_checkpoint


@pytest.fixture
def tiny_mnist(tmp_path):
    """A real-format MNIST folder: the four IDX files, 200 training and 50 test images of noisy strokes."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 200), ("t10k", 50)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 6:22, 12:16] = rng.integers(150, 256, size=(n, 16, 4))
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder


@pytest.fixture(scope="module")
def mnist_example():
    return load_example(MNIST_EXAMPLE)


@pytest.fixture(scope="module")
def cifar_example():
    return load_example(CIFAR_EXAMPLE)


def error_lines(err):
    return [line for line in err.splitlines() if line.strip() and "Warning" not in line and not line.startswith(" ")]


def test_short_example_run_and_sampler(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    result = run_example(
        "--data-dir", str(tiny_mnist), "--epochs", "2", "--batch-size", "50", "--no-progress", "--out", str(out),
        cache=tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "250 images, 5 steps per epoch" in result.stdout
    assert "Total params: 1,486,352" in result.stdout and "Total params: 1,460,225" in result.stdout
    assert "epoch 2/2" in result.stdout
    for name in ("checkpoint.npz", "samples.gif", "losses.png", "metrics.csv", "config.json", "grad_norms.png"):
        assert (out / name).is_file(), name

    sampled = subprocess.run(
        [sys.executable, "-m", "tinygan.sample", str(out / "checkpoint.npz"), "--n", "30",
         "--out", str(tmp_path / "s.npy"), "--grid", str(tmp_path / "g.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (30, 28, 28) and images.dtype == np.float32
    assert (tmp_path / "g.png").is_file()

    again = run_example("--data-dir", str(tiny_mnist), "--out", str(out), cache=tmp_path / "cache")
    assert again.returncode == 1 and "already holds a run" in again.stderr


def test_ctrl_c_saves_and_resume_finishes(tmp_path, tiny_mnist):
    out = tmp_path / "run"
    common = ["--data-dir", str(tiny_mnist), "--batch-size", "25", "--instance-noise", "0", "--no-progress"]
    args = [*common, "--epochs", "40", "--out", str(out)]
    env = {**os.environ, "TINYGAN_DATA": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(MNIST_EXAMPLE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 240
    for line in proc.stdout:
        if line.startswith("epoch 1/40") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "saved" in stdout and "--resume" in stdout
    assert (out / "checkpoint.npz").is_file()

    resumed = run_example("--resume", str(out), "--epochs", "2", "--no-progress", cache=tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "epoch 2/2" in resumed.stdout

    straight = run_example(*common, "--epochs", "2", "--out", str(tmp_path / "straight"), cache=tmp_path / "cache")
    assert straight.returncode == 0, straight.stderr
    a, _ = load_checkpoint(out / "checkpoint.npz")
    b, _ = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    for key in a:
        if key.startswith(("G/", "D/", "opt_")):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="a GPU is present: this checks the no-GPU message")
def test_device_gpu_without_gpu_is_one_clear_line(tmp_path):
    result = run_example("--device", "gpu", cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--device gpu needs a CUDA GPU" in lines[0]


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(MNIST_EXAMPLE), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--device", "--epochs", "--recipe", "--batch-size", "--lr", "--seed", "--data-dir", "--out",
                   "--resume", "--sample-every", "--activation", "--output", "--limit", "--g-loss"):  # fmt: skip
        assert option in result.stdout, option


def test_cifar_per_class_run_resume_and_overview(tmp_path):
    data = tmp_path / "cifar"
    write_cifar_folder(data, per_batch=20, rng=np.random.default_rng(0))  # 10 training images per class
    out = tmp_path / "run"
    common = ["--data-dir", str(data), "--batch-size", "5", "--no-progress", "--instance-noise", "0.1"]
    first = run_example(*common, "--class", "all", "--epochs", "1", "--out", str(out), "--limit", "10",
                        cache=tmp_path / "cache", script=CIFAR_EXAMPLE)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "Total params: 430,595" in first.stdout and "Total params: 461,345" in first.stdout
    assert (out / "overview.png").is_file()
    for name in ("airplane", "truck"):
        assert (out / name / "checkpoint.npz").is_file()
    resumed = run_example("--resume", str(out), cache=tmp_path / "cache", script=CIFAR_EXAMPLE)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("already trained, skipping") == 10

    # A class not yet started when the run stopped is trained with the run's recorded options.
    shutil.rmtree(out / "truck")
    changed = run_example("--resume", str(out), "--lr", "0.1", cache=tmp_path / "cache", script=CIFAR_EXAMPLE)
    assert changed.returncode == 1 and error_lines(changed.stderr) == [
        f"error: --lr: {out} was trained with the default, received 0.1; a resumed run keeps its options (only "
        "--epochs, --sample-every, --checkpoint-every, --score-every, --no-progress, --no-cuda-graph and --data-dir "
        "may change)"
    ]
    resumed = run_example("--resume", str(out), cache=tmp_path / "cache", script=CIFAR_EXAMPLE)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("already trained, skipping") == 9 and "=== class truck (10/10) ===" in resumed.stdout
    truck = json.loads((out / "truck" / "config.json").read_text())
    assert (truck["batch_size"], truck["epochs"], truck["instance_noise"]) == (5, 1, 0.1)
    assert truck["data_options"]["limit"] == 10 and truck["data_options"]["class"] == "truck"

    images = np.load(_sample(out / "cat" / "checkpoint.npz", tmp_path / "cat.npy", 4))
    assert images.shape == (4, 32, 32, 3) and 0 <= images.min() and images.max() <= 1


def _sample(checkpoint, out, n):
    result = subprocess.run(
        [sys.executable, "-m", "tinygan.sample", str(checkpoint), "--n", str(n), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


BAD_OPTIONS = [
    (["--limit", "0"], "argument --limit: expected a positive integer, received '0'"),
    (["--limit", "-5"], "argument --limit: expected a positive integer, received '-5'"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, received '0'"),
    (["--epochs", "-3"], "argument --epochs: expected a positive integer, received '-3'"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, received '0'"),
    (["--lr", "nan"], "argument --lr: expected a number in (0, 1], received 'nan'"),
    (["--lr", "inf"], "argument --lr: expected a number in (0, 1], received 'inf'"),
    (["--lr", "0"], "argument --lr: expected a number in (0, 1], received '0'"),
    (["--lr-g", "2"], "argument --lr-g: expected a number in (0, 1], received '2'"),
    (["--instance-noise", "nan"], "argument --instance-noise: expected a number in [0, 1], received 'nan'"),
    (["--instance-noise", "-0.1"], "argument --instance-noise: expected a number in [0, 1], received '-0.1'"),
    (["--seed", "-1"], "argument --seed: expected a non-negative integer, received '-1'"),
    (["--seed", "x"], "argument --seed: expected a non-negative integer, received 'x'"),
    (["--checkpoint-every", "-1"], "argument --checkpoint-every: expected a non-negative integer, received '-1'"),
    (["--sample-every", "0"], "argument --sample-every: expected a positive integer, received '0'"),
    (["--real-label", "0.5", "1.5"], "argument --real-label: expected a number in [0, 1], received '1.5'"),
    (["--fake-label", "0.2", "0.1"], "argument --fake-label: expected LOW <= HIGH, received 0.2 0.1"),
    (["--precision", "tf32"], "argument --precision: tf32 needs --device gpu (the CPU computes in fp32)"),
    (["--precision", "bf16"], "argument --precision: bf16 needs --device gpu (the CPU computes in fp32)"),
    (["--precision", "fp16"], "argument --precision: invalid choice: 'fp16' (choose from 'fp32', 'tf32', 'bf16')"),
    # an empty value (an unset shell variable) would read as "not given": a new run instead of the resume asked for
    (["--resume", ""], "argument --resume: expected a folder, received ''"),
    (["--out", ""], "argument --out: expected a folder, received ''"),
    (["--data-dir", " "], "argument --data-dir: expected a folder, received ' '"),
    (["--score-samples", "100001"], "argument --score-samples: expected an integer in [2, 100000], received '100001'"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_options_that_make_no_sense_are_one_line(mnist_example, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        mnist_example.parse_args(argv)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].endswith(f": error: {message} (see --help)"), lines


def test_cifar_auto_stop_options_are_checked(cifar_example, capsys):
    with pytest.raises(SystemExit):
        cifar_example.parse_args(["--auto-stop-threshold", "1.5"])
    assert "argument --auto-stop-threshold: expected a number in [0, 1], received '1.5'" in capsys.readouterr().err


def test_resume_keeps_the_runs_options(tmp_path, tiny_mnist, mnist_example, capsys, monkeypatch):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    start = ["--data-dir", str(tiny_mnist), "--epochs", "1", "--batch-size", "50", "--limit", "150", "--lr", "0.0003"]
    start += ["--seed", "3", "--checkpoint-every", "1", "--recipe", "original", "--no-progress", "--out", str(out)]
    assert mnist_example.main(start) == 0
    capsys.readouterr()
    refused = [
        (["--lr", "0.001"], "--lr: {run} was trained with 0.0003, received 0.001"),
        (["--lr-d", "0.001"], "--lr-d: {run} was trained with 0.0003, received 0.001"),
        (["--batch-size", "25"], "--batch-size: {run} was trained with 50, received 25"),
        (["--limit", "100"], "--limit: {run} was trained with 150, received 100"),
        (["--seed", "0"], "--seed: {run} was trained with 3, received 0"),
        (["--precision", "tf32"], "--precision: {run} was trained with fp32, received tf32"),
        (["--recipe", "default"], "--recipe: {run} was trained with original, received default"),
        (["--activation", "leaky"], "--activation: {run} was trained with relu, received leaky"),
        (["--no-label-smoothing"], None),  # the original recipe has hard labels: same, accepted below
        (["--instance-noise", "0.2"], "--instance-noise: {run} was trained with 0.0, received 0.2"),
        (["--out", str(tmp_path / "elsewhere")], "--out: a resumed run writes into its own folder {run}"),
    ]
    for argv, message in refused:
        if message is None:
            continue
        code = mnist_example.main(["--resume", str(out), *argv])
        lines = error_lines(capsys.readouterr().err)
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: " + message.format(run=out)), lines
    assert not (out / "checkpoints" / "epoch_0002.npz").exists()

    # Options equal to the record, and the safe ones, are accepted; the recorded --checkpoint-every still applies.
    same = ["--lr", "0.0003", "--seed", "3", "--no-label-smoothing", "--recipe", "original", "--out", str(out)]
    assert mnist_example.main(["--resume", str(out), *same, "--epochs", "2", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "resuming" in stdout and "epoch 2/2" in stdout
    assert (out / "checkpoints" / "epoch_0002.npz").is_file()
    arrays, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["config"]["batch_size"] == 50 and meta["config"]["lr_g"] == 0.0003 and len(arrays["perm"]) == 150

    assert mnist_example.main(["--resume", str(out)]) == 0
    assert f"{out} is finished: it has trained 2 of 2 epochs" in capsys.readouterr().out


def test_a_dcgan_run_resumed_by_the_mnist_example_says_what_it_holds(tmp_path, tiny_mnist, mnist_example, capsys):
    out = tmp_path / "run"
    argv = ["--data-dir", str(tiny_mnist), "--epochs", "1", "--batch-size", "125", "--no-progress", "--out", str(out)]
    assert mnist_example.main(argv) == 0
    arrays, meta = load_checkpoint(out / "checkpoint.npz")
    meta["config"]["model"] = "dcgan"
    np.savez(out / "checkpoint.npz", __meta__=np.array(json.dumps(meta)), **arrays)
    capsys.readouterr()
    assert mnist_example.main(["--resume", str(out)]) == 1
    assert error_lines(capsys.readouterr().err) == [
        f"error: {out / 'checkpoint.npz'}: key 'config.model': this checkpoint holds the CIFAR-10 DCGAN "
        "(examples/cifar_dcgan.py), not the dense MNIST GAN (examples/mnist_dense.py)"
    ]


def test_a_folder_in_use_is_refused(tmp_path, tiny_mnist, mnist_example, capsys):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{sleeper.pid}\n")
        assert mnist_example.main(["--data-dir", str(tiny_mnist), "--epochs", "1", "--out", str(out)]) == 1
    finally:
        sleeper.kill()
        sleeper.wait()
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and f"{out} is in use by another run (process {sleeper.pid}" in lines[0]
    assert not (out / "config.json").exists()


def test_a_loader_error_is_one_line(tmp_path, tiny_mnist, mnist_example, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_mnist, broken)
    path = broken / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    code = mnist_example.main(["--data-dir", str(broken), "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "train-images-idx3-ubyte.gz" in lines[0]


def test_ema_and_augment_options_are_recorded_checked_on_resume_and_sampled(
    tmp_path, tiny_mnist, mnist_example, capsys, monkeypatch
):
    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    start = ["--data-dir", str(tiny_mnist), "--epochs", "1", "--batch-size", "50", "--limit", "100", "--no-progress"]
    assert (
        mnist_example.main([*start, "--ema-decay", "0.99", "--augment", "translation, cutout", "--out", str(out)]) == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["ema_decay"] == 0.99 and config["augment"] == "translation,cutout" and config["score_every"] == 0
    arrays, meta = load_checkpoint(out / "checkpoint.npz")
    assert "G_ema/6.W" in arrays and meta["ema_updates"] == 2
    capsys.readouterr()
    for argv, message in (
        (["--ema-decay", "0.9"], "--ema-decay: {run} was trained with 0.99, received 0.9"),
        (["--augment", "none"], "--augment: {run} was trained with translation,cutout, received none;"),
        (["--score-samples", "100"], "--score-samples: {run} was trained with 2000, received 100"),
    ):
        code = mnist_example.main(["--resume", str(out), "--epochs", "2", *argv])
        lines = error_lines(capsys.readouterr().err)
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: " + message.format(run=out)), lines
    for argv, message in (
        (["--ema-decay", "1"], "argument --ema-decay: expected a number in [0, 1) (0: no EMA), received '1'"),
        (["--augment", "flip"], "argument --augment: unknown augmentation 'flip' in 'flip'; expected a comma"),
        (["--score-samples", "1"], "argument --score-samples: expected an integer in [2, 100000], received '1'"),
    ):
        with pytest.raises(SystemExit):
            mnist_example.parse_args(argv)
        assert message in capsys.readouterr().err

    def sampled(*extra):
        npy = tmp_path / f"s{len(extra)}.npy"
        result = subprocess.run(
            [sys.executable, "-m", "tinygan.sample", str(out), "--n", "8", "--out", str(npy), *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return np.load(npy)

    from tinygan.sample import sample

    ema, raw = sampled(), sampled("--no-ema")
    np.testing.assert_array_equal(ema, sample(out, 8))
    np.testing.assert_array_equal(raw, sample(out, 8, ema=False))
    assert not np.array_equal(ema, raw)


# ---------------------------------------------------------------- refusals leave nothing behind


def test_a_refused_start_leaves_no_run_folder(tmp_path, mnist_example, cifar_example, capsys, monkeypatch):
    """Missing data, a --limit below one batch, Ctrl-C while loading: the folders this invocation made are
    gone again (with the parents it made, and the default runs/), a folder that was there before stays."""
    monkeypatch.chdir(tmp_path)
    missing = ["--data-dir", str(tmp_path / "nothing"), "--epochs", "1"]
    assert mnist_example.main([*missing, "--out", str(tmp_path / "a" / "b" / "run")]) == 1
    assert mnist_example.main(missing) == 1  # default folder runs/mnist_dense-<date>-<time>
    assert cifar_example.main([*missing, "--class", "cat", "--out", "c"]) == 1
    assert cifar_example.main([*missing, "--class", "all", "--out", "d/all"]) == 1
    assert cifar_example.main([*missing, "--class", "all"]) == 1
    assert mnist_example.main(["--limit", "10", "--batch-size", "50", "--out", "e"]) == 1
    assert "error: --limit 10: fewer images than one batch (batch size 50)" in capsys.readouterr().err

    assert sorted(p.name for p in tmp_path.iterdir()) == []

    before = tmp_path / "mine"
    before.mkdir()
    assert mnist_example.main([*missing, "--out", str(before / "sub")]) == 1  # only sub/ is this run's
    assert cifar_example.main([*missing, "--class", "all", "--out", str(before)]) == 1
    assert before.is_dir() and list(before.iterdir()) == []

    def interrupted(options, data_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(mnist_example, "load_data", interrupted)
    assert mnist_example.main(["--epochs", "1", "--out", "f"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_a_refusal_removes_only_the_folders_it_made(tmp_path, mnist_example, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert mnist_example.main(["--data-dir", str(tmp_path / "nothing"), "--out", str(out / "sub" / "run")]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_an_unusable_out_is_one_line_before_the_data_loads(tmp_path, mnist_example, cifar_example, capsys, monkeypatch):
    monkeypatch.setattr(mnist_example, "load_data", lambda *a: pytest.fail("loaded data for an unusable --out"))
    (tmp_path / "file").write_text("mine")
    cases = [
        (tmp_path / "file", f"--out {tmp_path / 'file'} is a file; expected a run folder"),
        (tmp_path / "file" / "run", f"--out {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, so no folder"),
    ]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/tinygan-run"), "--out /proc/tinygan-run: cannot make the run folder there: "))
    for out, message in cases:
        for example in (mnist_example, cifar_example):
            assert example.main(["--epochs", "1", "--out", str(out)]) == 1
            lines = error_lines(capsys.readouterr().err)
            assert len(lines) == 1 and lines[0].startswith("error: " + message), lines
    assert (tmp_path / "file").read_text() == "mine"


def test_out_of_memory_is_one_line(tmp_path, tiny_mnist, mnist_example, capsys, monkeypatch):
    def too_large(options, data_dir):
        raise MemoryError("Unable to allocate 72.8 TiB for an array with shape (99999999999, 100)")

    monkeypatch.setattr(mnist_example, "load_data", too_large)
    assert mnist_example.main(["--epochs", "1", "--out", str(tmp_path / "run")]) == 1
    assert error_lines(capsys.readouterr().err) == [
        "error: out of memory: Unable to allocate 72.8 TiB for an array with shape (99999999999, 100)"
    ]
    assert list(tmp_path.iterdir()) == [tiny_mnist]


def test_resume_whose_recorded_data_moved_says_how_to_point_at_it(tmp_path, tiny_mnist, mnist_example, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_mnist, moved)
    out = tmp_path / "run"
    argv = ["--data-dir", str(moved), "--epochs", "1", "--batch-size", "50", "--limit", "100", "--no-progress"]
    assert mnist_example.main([*argv, "--out", str(out)]) == 0
    shutil.rmtree(moved)
    capsys.readouterr()
    assert mnist_example.main(["--resume", str(out), "--epochs", "2"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(moved) in lines[0], lines
    assert lines[0].endswith(f"({out} was trained from there; if the files moved, resume with --data-dir DIR)")
    assert mnist_example.main(["--resume", str(out), "--epochs", "2", "--data-dir", str(tiny_mnist)]) == 0


def test_resume_from_another_file_than_checkpoint_npz_is_refused(tmp_path, tiny_mnist, mnist_example, capsys):
    """The trainer continues RUN/checkpoint.npz: --resume RUN/checkpoints/epoch_0001.npz (or a copy beside it)
    used to read that file's record and then train on from checkpoint.npz, or fail after loading the data."""
    out = tmp_path / "run"
    argv = ["--data-dir", str(tiny_mnist), "--epochs", "2", "--batch-size", "50", "--limit", "100", "--no-progress"]
    assert mnist_example.main([*argv, "--checkpoint-every", "1", "--out", str(out)]) == 0
    shutil.copy(out / "checkpoints" / "epoch_0001.npz", out / "old.npz")
    latest = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    for other in (out / "old.npz", out / "checkpoints" / "epoch_0001.npz"):
        assert mnist_example.main(["--resume", str(other), "--epochs", "3"]) == 1
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and lines[0].startswith(f"error: --resume {other}: expected a run folder or its "), lines
        assert "copy it as checkpoint.npz into a new folder" in lines[0]
    assert (out / "checkpoint.npz").read_bytes() == latest and not (out / "checkpoints" / "epoch_0003.npz").exists()
    branch = tmp_path / "branch"
    branch.mkdir()
    shutil.copy(out / "old.npz", branch / "checkpoint.npz")  # what the message advises works
    assert mnist_example.main(["--resume", str(branch), "--epochs", "2"]) == 0
    assert (branch / "checkpoints" / "epoch_0002.npz").is_file()


def test_a_new_run_is_refused_in_a_folder_holding_the_other_example_s_run(
    tmp_path, tiny_mnist, mnist_example, cifar_example, capsys
):
    """A dense MNIST checkpoint in a per-class CIFAR-10 root (or the class folders in an MNIST run) would mix
    two runs in one folder: --resume of either would then meet the other's files."""
    mnist_run, cifar_root = tmp_path / "mnist_run", tmp_path / "cifar_root"
    argv = ["--data-dir", str(tiny_mnist), "--epochs", "1", "--batch-size", "50", "--limit", "100", "--no-progress"]
    assert mnist_example.main([*argv, "--out", str(mnist_run)]) == 0
    cifar_root.mkdir()
    (cifar_root / "classes.json").write_text('{"classes": ["cat"], "options": {}}\n')
    before = {p: sorted(p.iterdir()) for p in (mnist_run, cifar_root)}
    capsys.readouterr()
    assert mnist_example.main([*argv, "--out", str(cifar_root)]) == 1
    assert cifar_example.main(["--class", "all", "--epochs", "1", "--out", str(mnist_run)]) == 1
    assert cifar_example.main(["--class", "cat", "--epochs", "1", "--out", str(cifar_root)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines == [
        f"error: {cifar_root} already holds a run: use --resume {cifar_root}, or another --out",
        f"error: {mnist_run} already holds a run: use --resume {mnist_run}, or another --out",
        f"error: {cifar_root} already holds a run: use --resume {cifar_root}, or another --out",
    ]
    assert before == {p: sorted(p.iterdir()) for p in (mnist_run, cifar_root)}


def test_the_sample_cadence_comes_from_the_recipe_and_the_option_overrides_it(mnist_example, cifar_example):
    """The CIFAR-10 default recipe (780 epochs of 3 steps a class) saves a grid every 5 epochs; the original recipe
    and the MNIST recipes every epoch; --sample-every N overrides any recipe."""
    cifar = cifar_example.make_config
    assert cifar(cifar_example.parse_args(["--class", "cat"])).sample_every == 5
    assert cifar(cifar_example.parse_args(["--class", "cat", "--recipe", "original"])).sample_every == 1
    assert cifar(cifar_example.parse_args(["--class", "cat", "--sample-every", "1"])).sample_every == 1
    assert cifar(cifar_example.parse_args(["--recipe", "original", "--sample-every", "7"])).sample_every == 7
    for recipe in ("default", "original"):
        assert mnist_example.make_config(mnist_example.parse_args(["--recipe", recipe])).sample_every == 1
    assert mnist_example.make_config(mnist_example.parse_args(["--sample-every", "3"])).sample_every == 3


def test_the_generator_loss_comes_from_the_recipe_and_a_recorded_run_keeps_its_own(
    tmp_path, tiny_mnist, mnist_example, cifar_example, capsys, monkeypatch
):
    """Since the second recipe study the dense MNIST default recipe trains G with the minimax loss; the original
    recipe and the CIFAR-10 recipes keep the non-saturating one; --g-loss overrides; a run recorded with the
    old default resumes with the loss it was trained with."""
    config = mnist_example.make_config
    assert config(mnist_example.parse_args([])).g_loss == "minimax"
    assert config(mnist_example.parse_args(["--g-loss", "nonsaturating"])).g_loss == "nonsaturating"
    assert config(mnist_example.parse_args(["--recipe", "original"])).g_loss == "nonsaturating"
    for recipe in ("default", "original"):
        cifar = cifar_example.make_config(cifar_example.parse_args(["--recipe", recipe, "--class", "cat"]))
        assert cifar.g_loss == "nonsaturating"
    assert cifar_example.make_config(cifar_example.parse_args(["--g-loss", "minimax"])).g_loss == "minimax"

    monkeypatch.setenv("TINYGAN_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    start = ["--data-dir", str(tiny_mnist), "--epochs", "1", "--batch-size", "50", "--limit", "100"]
    start += ["--g-loss", "nonsaturating", "--no-progress", "--out", str(out)]  # what the default trained before
    assert mnist_example.main(start) == 0
    capsys.readouterr()
    assert mnist_example.main(["--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    _, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["config"]["g_loss"] == "nonsaturating" and meta["config"]["recipe"] == "default"
    capsys.readouterr()
    assert mnist_example.main(["--resume", str(out), "--g-loss", "minimax", "--epochs", "3"]) == 1
    lines = error_lines(capsys.readouterr().err)
    expected = f"error: --g-loss: {out} was trained with nonsaturating, received minimax;"
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_a_precision_the_gpu_has_no_tensor_cores_for_is_one_line_before_any_data(
    monkeypatch, tmp_path, capsys, mnist_example
):
    """--precision bf16 on a GPU before compute capability 8.0 (a T4, say) is refused up front, exit 1, naming the
    option and the card: never a cuBLAS status deep in the first step, never a silent FP32 run."""
    from tinygan import backend

    monkeypatch.setattr(backend, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(
        backend, "precision_unavailable_reason", lambda p: None if p == "fp32" else f"{p} lacks tensor cores (7.5)"
    )
    out = tmp_path / "run"
    args = ["--device", "gpu", "--data-dir", str(tmp_path / "no-data"), "--out", str(out), "--no-progress"]
    assert mnist_example.main([*args, "--precision", "bf16"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines == ["error: --precision bf16: bf16 lacks tensor cores (7.5)"], lines
    assert not out.exists()  # refused before the run folder or any data
