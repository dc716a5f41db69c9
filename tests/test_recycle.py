"""kernels/cpu/recycle.py: a large output reuses memory only when no array made from it is alive, so a result the
caller holds is never overwritten; the CPU kernels that allocate through it return independent arrays."""

import threading

import numpy as np
import pytest
from tinygan.kernels import cpu as K
from tinygan.kernels.cpu import recycle

BIG = (recycle.MIN_BYTES // 4 + 1024,)  # float32 elements just above the threshold


@pytest.fixture(autouse=True)
def _empty_pool():
    recycle.release()
    yield
    recycle.release()


def _owner(a: np.ndarray) -> np.ndarray:
    return a if a.base is None else a.base


def test_small_arrays_are_plain_numpy():
    a = recycle.empty((10, 10), np.float64)
    assert a.shape == (10, 10) and a.dtype == np.float64 and a.flags.c_contiguous and a.base is None
    assert recycle.held_bytes() == (0, 0)


def test_a_large_block_is_reused_only_after_every_view_is_gone():
    a = recycle.empty(BIG, np.float32)
    assert a.shape == BIG and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    owner = id(_owner(a))
    view = a[5:].reshape(-1)[::2]  # views of views keep the block alive
    del a
    b = recycle.empty(BIG, np.float32)
    assert id(_owner(b)) != owner, "a block that a live view uses was handed out again"
    del view
    c = recycle.empty(BIG, np.float32)
    assert id(_owner(c)) == owner, "the idle block was not reused"
    assert recycle.held_bytes() == (2 * _owner(c).nbytes, 0)


def test_same_bytes_other_shape_and_dtype_reuse_the_block():
    a = recycle.empty(BIG, np.float32)
    owner = id(_owner(a))
    del a
    b = recycle.empty((BIG[0] // 2,), np.float64)
    assert id(_owner(b)) == owner and b.dtype == np.float64 and b.shape == (BIG[0] // 2,)


def test_idle_blocks_are_trimmed_oldest_first(monkeypatch):
    nbytes = BIG[0] * 4
    monkeypatch.setattr(recycle, "IDLE_BYTES", 2 * nbytes)
    held = [recycle.empty((BIG[0] + 8 * i,), np.float32) for i in range(3)]  # three sizes, three blocks
    del held
    assert recycle.held_bytes()[0] == 0 and recycle.held_bytes()[1] > 2 * nbytes
    recycle.empty((BIG[0] + 100,), np.float32)  # a fourth size: the oldest idle blocks go first
    in_use, idle = recycle.held_bytes()
    assert in_use == 0 and idle <= 2 * nbytes + 4096  # the new one is idle again once its array is gone
    recycle.release()
    assert recycle.held_bytes() == (0, 0)


def test_threads_never_share_a_block():
    seen, lock = [], threading.Lock()

    def work(i):
        for _ in range(20):
            a = recycle.empty(BIG, np.float32)
            a.fill(i)
            with lock:
                seen.append(id(_owner(a)))
            assert np.all(a == i), "another thread wrote into this array"

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) <= 4 * 2  # reused, not one block per call


@pytest.mark.parametrize(
    "call",
    [
        lambda x, W: K.conv2d_forward(x, W, None, (1, 1), (1, 1))[0],
        lambda x, W: K.leaky_relu_forward(x, 0.2),
        lambda x, W: K.batchnorm_forward(x, np.ones(x.shape[1], x.dtype), np.zeros(x.shape[1], x.dtype), 1e-5)[0],
    ],
    ids=["conv2d_forward", "leaky_relu_forward", "batchnorm_forward"],
)
def test_kernel_results_held_by_the_caller_are_not_overwritten(call):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 96, 96), dtype=np.float32)  # 4.7 MB outputs: recycled
    W = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    first = call(x, W)
    kept = first.copy()
    for _ in range(3):
        other = call(rng.standard_normal(x.shape, dtype=np.float32), W)
        assert not np.shares_memory(first, other)
        np.testing.assert_array_equal(first, kept)
    del first, other
    again = call(x, W)
    np.testing.assert_array_equal(again, kept)


@pytest.mark.parametrize("model", ["dcgan", "mnist"])
def test_training_steps_are_the_same_with_every_output_recycled(model, monkeypatch):
    """Three CPU training steps with every kernel output recycled (threshold 1 byte) give the bits of the same
    steps with none recycled: no kernel writes into memory that an array still in use holds."""
    from bench import steps

    def train(min_bytes):
        monkeypatch.setattr(recycle, "MIN_BYTES", min_bytes)
        recycle.release()
        trainer = steps.tiny_trainer(model, 8, "cpu", "numba")
        step = steps.tiny_step(trainer)
        for _ in range(3):
            step()
        return {f"{net}.{k}": v.copy() for net in ("G", "D") for k, v in getattr(trainer, net).state_dict().items()}

    plain = train(1 << 62)
    assert recycle.held_bytes() == (0, 0)
    recycled = train(1)
    assert recycle.held_bytes()[0] + recycle.held_bytes()[1] > 0  # the outputs did come from blocks
    assert plain.keys() == recycled.keys()
    for key in plain:
        np.testing.assert_array_equal(recycled[key], plain[key], err_msg=key)
