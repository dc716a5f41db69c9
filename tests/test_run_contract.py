"""The run contract: one run per folder (a lock, taken over from a dead process), stale temporary files of
killed checkpoint writes removed, data identity recorded and checked on resume, finished runs."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinygan.run_contract as contract
from tinygan.checkpoint import CheckpointError, read_meta
from tinygan.run_contract import LockOwner, RunLock, RunLocked, data_identity, remove_stale_temporaries
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
    assert LockOwner.parse((tmp_path / ".lock").read_text()) == LockOwner.this_process()  # left for the outer

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


# ---------------------------------------------------------------- whose lock is it: PIDs are reused

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="no /proc: start times unknown here")


def write_lock(folder: Path, record, age: float = 0.0) -> Path:
    path = folder / ".lock"
    path.write_text(record if isinstance(record, str) else json.dumps(record) + "\n")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def owner_record(pid, **changes):
    record = {"pid": pid, "host": socket.gethostname(), "boot_id": contract._boot_id(),
              "start": contract._start_ticks(pid)}  # fmt: skip
    record.update(changes)
    return record


def taken_over(tmp_path, capsys, why):
    lock = RunLock(tmp_path).acquire()
    assert lock.owned and LockOwner.parse((tmp_path / ".lock").read_text()) == LockOwner.this_process()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"note: {tmp_path / '.lock'}: ") and why in out, out
    assert "taking the run folder over" in out
    lock.release()
    assert not (tmp_path / ".lock").exists()


def test_the_lock_records_pid_host_boot_and_start(tmp_path):
    with RunLock(tmp_path):
        record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    if Path("/proc/self/stat").is_file():
        assert record["start"] == contract._start_ticks(os.getpid()) and isinstance(record["boot_id"], str)


@needs_proc
def test_a_reused_pid_is_not_the_owner(tmp_path, live_pid, capsys):
    """The lock's PID is alive, but the process with that PID started at another time: not the owner."""
    write_lock(tmp_path, owner_record(live_pid, start=contract._start_ticks(live_pid) - 1))
    taken_over(tmp_path, capsys, f"process {live_pid} has ended (PID {live_pid} now belongs to another process")


@needs_proc
def test_the_live_owner_keeps_its_lock(tmp_path, live_pid):
    write_lock(tmp_path, owner_record(live_pid))
    with pytest.raises(RunLocked, match=rf"is in use by another run \(process {live_pid}, .*wait for it to finish"):
        RunLock(tmp_path).acquire()


@needs_proc
def test_an_old_bare_pid_lock_reused_by_a_later_process(tmp_path, live_pid, capsys):
    """tinygan wrote only the PID before: still read; a process that started after the lock was written
    cannot be its owner."""
    write_lock(tmp_path, f"{live_pid}\n", age=3600)
    taken_over(tmp_path, capsys, f"PID {live_pid} now belongs to a process started after the lock")


def test_an_old_bare_pid_lock_of_a_live_process_is_held(tmp_path, live_pid):
    write_lock(tmp_path, f"{live_pid}\n")
    with pytest.raises(RunLocked, match=rf"in use by another run \(process {live_pid},"):
        RunLock(tmp_path).acquire()


def test_a_dead_owner_is_said_in_one_line(tmp_path, dead_pid, capsys):
    write_lock(tmp_path, owner_record(dead_pid, start=12345))
    taken_over(tmp_path, capsys, f"process {dead_pid} has ended")


def test_a_lock_from_before_a_restart_is_stale(tmp_path, live_pid, capsys):
    write_lock(tmp_path, owner_record(live_pid, boot_id="another-boot"))
    if contract._boot_id() is None:
        pytest.skip("no boot id here (no /proc)")
    taken_over(tmp_path, capsys, f"process {live_pid} ran before this machine restarted")


def test_a_lock_of_another_machine_is_held_and_says_how_to_free_it(tmp_path, dead_pid):
    path = write_lock(tmp_path, owner_record(dead_pid, host="elsewhere", boot_id="x"))
    with pytest.raises(RunLocked) as info:
        RunLock(tmp_path).acquire()
    message = str(info.value)
    assert "\n" not in message and f"(process {dead_pid} on elsewhere, which this machine" in message
    assert f"if that run has ended, delete {path}" in message and path.exists()


def test_a_previous_process_with_this_pid_is_not_this_process(tmp_path, capsys):
    """A lock naming this PID with another start time was left by an earlier process: not re-entered
    (which would leave it unowned), taken over."""
    me = LockOwner.this_process()
    write_lock(tmp_path, owner_record(os.getpid(), start=(me.start or 0) + 1, boot_id=me.boot_id))
    taken_over(tmp_path, capsys, "this process has its PID now")


def test_without_proc_a_live_pid_is_held_and_a_dead_one_is_not(tmp_path, live_pid, dead_pid, monkeypatch, capsys):
    for name in ("_boot_id", "_start_epoch"):
        monkeypatch.setattr(contract, name, lambda *a: None)
    monkeypatch.setattr(contract, "_start_ticks", lambda pid: None)
    for record in (f"{live_pid}\n", owner_record(live_pid, boot_id=None, start=None)):
        write_lock(tmp_path, record, age=3600)
        with pytest.raises(RunLocked, match=f"process {live_pid}, "):
            RunLock(tmp_path).acquire()
    write_lock(tmp_path, f"{dead_pid}\n", age=3600)
    taken_over(tmp_path, capsys, f"process {dead_pid} has ended")


def test_an_unreadable_lock_is_held_while_young_and_taken_over_when_old(tmp_path, capsys):
    write_lock(tmp_path, "")
    with pytest.raises(RunLocked, match="its lock .* is being written; try again in a few seconds"):
        RunLock(tmp_path).acquire()
    write_lock(tmp_path, "garbage", age=60)
    taken_over(tmp_path, capsys, "the lock is unreadable ('garbage')")


def test_a_lock_record_with_more_keys_is_still_read(tmp_path, live_pid):
    write_lock(tmp_path, {**owner_record(live_pid), "written_by": "tinygan 9"})
    with pytest.raises(RunLocked, match=f"process {live_pid}"):
        RunLock(tmp_path).acquire()


def test_taking_over_gives_back_a_lock_that_changed_meanwhile(tmp_path):
    """Of two processes that judged the same lock stale, the second must not remove the first's new one."""
    path = write_lock(tmp_path, owner_record(12345))
    newer = path.read_text()
    assert RunLock(tmp_path)._take_over("what this process judged stale") is False
    assert path.read_text() == newer and sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


@needs_proc
def test_a_temporary_whose_pid_was_reused_is_removed(tmp_path, live_pid):
    old = tmp_path / f".checkpoint.npz.tmp-{live_pid}"
    old.write_bytes(b"partial")
    then = time.time() - 3600
    os.utime(old, (then, then))
    assert remove_stale_temporaries(tmp_path) == [old]


def test_a_host_name_that_changes_mid_run_keeps_the_lock_this_process_s(tmp_path, monkeypatch):
    outer = RunLock(tmp_path).acquire()
    monkeypatch.setattr(contract.socket, "gethostname", lambda: "renamed-by-dhcp")
    with RunLock(tmp_path) as inner:  # the trainer's, inside the example's
        assert not inner.owned
    outer.release()
    assert not (tmp_path / ".lock").exists()


def test_a_pid_beyond_any_process_is_stale_not_a_traceback(tmp_path, capsys):
    """os.kill raises OverflowError for such a PID: a damaged lock or temporary stopped every run here."""
    huge = 2**70
    (tmp_path / f".checkpoint.npz.tmp-{huge}").write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / f".checkpoint.npz.tmp-{huge}"]
    write_lock(tmp_path, f"{huge}\n")
    taken_over(tmp_path, capsys, f"process {huge} has ended")
