"""The background writer of a run's outputs: order, latest-wins per file, the bounded queue, errors that
reach the training thread, and the run loop's use of it (checkpoints, samples, plots, Ctrl-C, errors)."""

import threading
import time

import numpy as np
import pytest

from tinygan.checkpoint import load_checkpoint
from tinygan.train import GANConfig, GANTrainer, TrainingDiverged
from tinygan.writer import OutputWriter


def gate():
    """A job that blocks the writer until the returned event is set (and says when it started)."""
    started, release = threading.Event(), threading.Event()

    def job():
        started.set()
        assert release.wait(10)

    return job, started, release


def test_jobs_run_in_order_and_a_waiting_job_is_replaced_by_a_newer_one_of_its_key():
    writer = OutputWriter()
    done = []
    job, started, release = gate()
    writer.submit("gate", "test", job)
    assert started.wait(10)
    writer.submit("a", "test", done.append, "a1")
    writer.submit("b", "test", done.append, "b")
    writer.submit("a", "test", done.append, "a2")  # a1 has not started: a2 takes its place, before b
    assert writer.pending() == 3
    release.set()
    writer.flush()
    assert done == ["a2", "b"]
    assert writer.replaced == 1
    assert writer.busy_seconds["test"] > 0
    writer.close()


def test_a_full_queue_makes_submit_wait_for_room():
    writer = OutputWriter(max_pending=1)
    job, started, release = gate()
    writer.submit("gate", "test", job)
    assert started.wait(10)
    writer.submit("one", "test", lambda: None)  # the queue's one place
    submitted = threading.Event()
    thread = threading.Thread(target=lambda: (writer.submit("two", "test", lambda: None), submitted.set()))
    thread.start()
    time.sleep(0.3)
    assert not submitted.is_set()  # waiting for room
    release.set()
    assert submitted.wait(10)
    thread.join()
    writer.close()
    assert writer.pending() == 0


def test_a_job_error_is_raised_on_the_submitting_thread_and_later_jobs_still_run():
    writer = OutputWriter()
    done = []

    def fail():
        raise OSError("samples/epoch_0003.png: disk full")

    writer.submit("bad", "test", fail)
    writer.submit("good", "test", done.append, 1)
    with pytest.raises(OSError, match="epoch_0003.png: disk full"):
        writer.flush()
    assert done == [1]
    writer.flush()  # raised once, not again
    writer.submit("bad", "test", fail)  # submit never raises: the caller asks when it is ready
    writer.close()
    with pytest.raises(OSError, match="disk full"):
        writer.raise_error()


def test_close_without_draining_drops_waiting_jobs_but_finishes_the_running_one():
    writer = OutputWriter()
    done = []
    job, started, release = gate()
    writer.submit("gate", "test", lambda: (job(), done.append("gate")))
    assert started.wait(10)
    writer.submit("later", "test", done.append, "later")
    threading.Timer(0.2, release.set).start()
    writer.close(drain=False)
    assert done == ["gate"]
    with pytest.raises(RuntimeError, match="submit after close"):
        writer.submit("x", "test", done.append, "x")


def test_bad_queue_size_is_refused():
    with pytest.raises(ValueError, match="max_pending: expected a positive integer, received 0"):
        OutputWriter(max_pending=0)


# -- the run loop -------------------------------------------------------------------------------------------
def small_config(**overrides):
    settings = dict(epochs=3, batch_size=25, g_options={"seed": 0}, d_options={"seed": 1}, log_every=3)
    settings.update(overrides)
    return GANConfig(**settings)


@pytest.fixture
def data():
    return np.random.default_rng(0).random((100, 784)).astype(np.float32)


def test_run_writes_its_outputs_through_the_writer_and_reports_the_time(tmp_path, data, capsys):
    trainer = GANTrainer(small_config(), data, tmp_path / "run", progress=False)
    trainer.run()
    assert trainer.writer is None  # closed when the run ended
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] == 3 and len(meta["history"]) == 3
    busy = trainer.timings["writer_busy"]
    assert {"checkpoint", "samples", "metrics", "plots", "gif"} <= set(busy)
    assert trainer.timings["steps"] > 0
    assert "time: steps" in capsys.readouterr().out


def test_the_epoch_checkpoint_written_by_the_writer_equals_a_direct_save(tmp_path, data):
    trainer = GANTrainer(small_config(epochs=2), data, tmp_path / "run", progress=False)
    trainer.run()
    background, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    direct, direct_meta = load_checkpoint(trainer.save(tmp_path / "direct.npz"))
    assert background.keys() == direct.keys()
    for key in background:
        np.testing.assert_array_equal(background[key], direct[key], err_msg=key)
    assert meta == direct_meta


def test_plots_are_drawn_at_most_every_plot_seconds_and_at_the_end(tmp_path, data, monkeypatch):
    calls = []
    monkeypatch.setattr(GANTrainer, "PLOT_SECONDS", 1e9)
    monkeypatch.setattr("tinygan.train.plot_losses", lambda history, path: calls.append(len(history)))
    GANTrainer(small_config(epochs=4), data, tmp_path / "run", progress=False).run()
    assert calls == [4]  # a run shorter than PLOT_SECONDS: only at the end
    calls.clear()
    monkeypatch.setattr(GANTrainer, "PLOT_SECONDS", 0.0)
    GANTrainer(small_config(epochs=3), data, tmp_path / "every", progress=False).run()
    # Handed over after every epoch; one still waiting when the next comes is replaced by it.
    assert calls == sorted(calls) and calls[-1] == 3


def test_a_failing_output_stops_the_run_with_its_error(tmp_path, data, monkeypatch):
    def broken(images, path, *rest):
        raise OSError(f"{path}: no space left on device")

    monkeypatch.setattr("tinygan.train.save_grid", broken)
    trainer = GANTrainer(small_config(epochs=5), data, tmp_path / "run", progress=False)
    with pytest.raises(OSError, match=r"epoch_0001.png: no space left"):
        trainer.run()
    assert trainer.epoch < 5  # raised at a following epoch's end, not at the run's
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")  # the newest checkpoint queued is written
    assert meta["epoch"] == trainer.epoch


def test_a_writer_error_during_another_error_is_printed_not_lost(tmp_path, data, monkeypatch, capsys):
    calls = []

    def plots_fail_after_the_first(history, path):
        calls.append(len(history))
        if len(calls) > 1:
            raise OSError(f"{path}: no space left on device")

    monkeypatch.setattr(GANTrainer, "PLOT_SECONDS", 0.0)  # plots after every epoch, then the final ones
    monkeypatch.setattr("tinygan.train.plot_losses", plots_fail_after_the_first)
    trainer = GANTrainer(small_config(epochs=3, log_every=1), data, tmp_path / "run", progress=False)

    def poison(t):
        if t.global_step == 5:  # epoch 2's first step: step 6 computes with a NaN weight
            t.D[9].params["b"][...] = float("nan")

    with pytest.raises(TrainingDiverged, match=r"at step 6 \(epoch 2\).*last good checkpoint is"):
        trainer.run(on_step=poison)
    assert calls == [1, 1]  # the final plots ran, and failed
    err = capsys.readouterr().err
    assert "also: writing the outputs failed:" in err and "losses.png: no space left on device" in err
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] == 1


def test_stop_writes_the_newest_checkpoint_after_the_waiting_ones(tmp_path, data):
    trainer = GANTrainer(small_config(epochs=3), data, tmp_path / "run", progress=False)
    trainer.run(on_step=lambda t: t.global_step == 6 and t.request_stop())
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert (meta["epoch"], meta["step_in_epoch"]) == (1, 2)
    assert (tmp_path / "run" / "samples.gif").is_file() and (tmp_path / "run" / "losses.png").is_file()
