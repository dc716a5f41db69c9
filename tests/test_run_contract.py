"""The run contract: one run per folder (a lock, taken over from a dead process), stale temporary files of
killed checkpoint writes removed, data identity recorded and checked on resume, finished runs."""

import subprocess
import sys

import numpy as np
import pytest

from tinygan.checkpoint import CheckpointError, read_meta
from tinygan.run_contract import RunLock, RunLocked, data_identity, remove_stale_temporaries
from tinygan.train import GANConfig, GANTrainer


@pytest.fixture
def data():
    return np.random.default_rng(0).random((40, 784)).astype(np.float32)


def config(**overrides):
    settings = dict(epochs=1, batch_size=20, g_options={"seed": 0}, d_options={"seed": 1})
    settings.update(overrides)
    return GANConfig(**settings)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lock_refuses_a_second_run(tmp_path, live_pid, data):
    (tmp_path / ".lock").write_text(f"{live_pid}\n")
    with pytest.raises(RunLocked, match=rf"{tmp_path} is in use by another run \(process {live_pid}"):
        RunLock(tmp_path).acquire()
    trainer = GANTrainer(config(), data, tmp_path, progress=False)
    with pytest.raises(RunLocked, match="in use by another run"):
        trainer.run()
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "config.json").exists()


def test_a_stale_lock_is_taken_over_and_released(tmp_path, dead_pid, data):
    (tmp_path / ".lock").write_text(f"{dead_pid}\n")
    GANTrainer(config(), data, tmp_path, progress=False).run()
    assert (tmp_path / "checkpoint.npz").is_file()
    assert not (tmp_path / ".lock").exists()


def test_lock_is_reentrant_in_one_process_and_held_for_the_outer_holder(tmp_path):
    outer = RunLock(tmp_path).acquire()
    with RunLock(tmp_path):
        pass
    assert (tmp_path / ".lock").read_text().strip().isdigit()  # the inner release left the outer's lock
    outer.release()
    assert not (tmp_path / ".lock").exists()


def test_stale_checkpoint_temporaries_are_removed(tmp_path, live_pid, dead_pid, data):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / f".checkpoint.npz.tmp-{dead_pid}", tmp_path / "checkpoints" / f".epoch_0001.npz.tmp-{dead_pid}"]
    live = tmp_path / f".checkpoint.npz.tmp-{live_pid}"
    for path in [*stale, live]:
        path.write_bytes(b"partial")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert live.exists()
    for path in stale:
        path.write_bytes(b"partial")
    GANTrainer(config(), data, tmp_path, progress=False).run()
    assert not any(path.exists() for path in stale)


def test_the_run_records_its_data_and_refuses_other_data(tmp_path, data):
    trainer = GANTrainer(config(), data, tmp_path / "run", progress=False, data_source="test images")
    trainer.run()
    record = read_meta(tmp_path / "run")["data"]
    assert record == data_identity(data, "test images")
    assert record["images"] == 40 and record["shape"] == [784]
    other = data.copy()
    other[3, 5] += 0.5  # one value differs
    with pytest.raises(
        CheckpointError, match=r"other data than the run's: it was trained on 40 images .*--allow-other"
    ):
        GANTrainer.resume(tmp_path / "run", other, {"epochs": 2}, progress=False)
    resumed = GANTrainer.resume(tmp_path / "run", other, {"epochs": 2}, progress=False, allow_other_data=True)
    assert resumed.data_note.startswith("note: continuing on other data")
    same = GANTrainer.resume(tmp_path / "run", data.copy(), {"epochs": 2}, progress=False)
    assert same.data_note is None and not same.finished


def test_finished(tmp_path, data):
    GANTrainer(config(), data, tmp_path / "run", progress=False).run()
    assert GANTrainer.resume(tmp_path / "run", data, progress=False).finished
    assert not GANTrainer.resume(tmp_path / "run", data, {"epochs": 2}, progress=False).finished
