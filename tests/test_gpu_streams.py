"""The backward passes' two streams (kernels/gpu/streams.py): the weight gradient on a side stream while the input
gradient runs on the current one.

Concurrency may only change when independent kernels run, never a value: each layer's backward with the fork
gives the bits of the same backward on one stream (``one_stream``), eagerly and replayed from a captured graph,
at every precision, with shapes large enough that the two branches really overlap. And the join really makes
the current stream wait: a buffer written by a long side branch is read complete right after the block.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygan import backend

pytestmark = pytest.mark.gpu

PRECISIONS = ("fp32", "tf32", "bf16")


def _backwards(K, rng):
    """A function running the three layers' fused backward passes (with activation, bias and weight gradients
    accumulated into buffers that already hold values, and the input gradient) on fixed random inputs; it
    returns every output as host arrays."""
    import cupy as cp

    def arr(*shape):
        return cp.asarray(rng.standard_normal(shape), dtype=cp.float32)

    # Dense: the MNIST discriminator's second layer at batch 250 (real and fake).
    xd, Wd, dyd = arr(250, 1024), arr(1024, 512), arr(250, 512)
    yd = cp.maximum(arr(250, 512), 0)
    # Conv2d: the DCGAN discriminator's 64 -> 128 layer, 4x4 stride 2 padding 1, batch 128.
    xc, Wc = arr(128, 64, 16, 16), arr(128, 64, 4, 4)
    dyc, yc = arr(128, 128, 8, 8), arr(128, 128, 8, 8)
    # ConvTranspose2d: the generator's 128 -> 64 layer, 4x4 stride 2 padding 1.
    xt, Wt, dyt = arr(128, 128, 8, 8), arr(128, 64, 4, 4), arr(128, 64, 16, 16)
    yt = cp.maximum(arr(128, 64, 16, 16), 0)
    starts = [arr(1024, 512), arr(512), arr(128, 64, 4, 4), arr(128), arr(128, 64, 4, 4), arr(64)]

    def run():
        dWd, dbd, dWc, dbc, dWt, dbt = (s.copy() for s in starts)
        _, cache = K.conv2d_forward(xc, Wc, None, (2, 2), (1, 1))
        outs = [
            K.dense_backward(dyd, xd, Wd, yd, 0.0, dWd, dbd),
            K.conv2d_backward(dyc, cache, Wc, xc.shape, (2, 2), (1, 1), yc, 0.2, dWc, dbc),
            K.conv_transpose2d_backward(dyt, xt, Wt, (2, 2), (1, 1), yt, 0.0, dWt, dbt),
        ]
        return outs + [dWd, dbd, dWc, dbc, dWt, dbt]

    return run


def _same_bits_as_one_stream(run) -> None:
    """``run()`` (returning device arrays) gives the bits it gives on one stream, three times eagerly and three
    times replayed from a graph captured from it."""
    import cupy as cp
    from tinygan.kernels.gpu._common import capture_gemm
    from tinygan.kernels.gpu.streams import one_stream

    with capture_gemm():  # every GEMM on tinygan's per-stream cuBLAS handles
        with one_stream():
            want = [cp.asnumpy(a) for a in run()]
        for attempt in range(3):  # a missing wait would show as a difference some of the time
            got = [cp.asnumpy(a) for a in run()]
            for i, (w, g) in enumerate(zip(want, got)):
                np.testing.assert_array_equal(w, g, err_msg=f"eager, attempt {attempt}, output {i}")

        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            run()  # compile and allocate (the side stream, its cuBLAS handle) outside the capture
            stream.synchronize()
            stream.begin_capture()
            outs = run()
            graph = stream.end_capture()
            for attempt in range(3):
                graph.launch(stream)
                stream.synchronize()
                for i, (w, g) in enumerate(zip(want, outs)):
                    np.testing.assert_array_equal(w, cp.asnumpy(g), err_msg=f"replay {attempt}, output {i}")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_two_streams_give_the_bits_of_one(K, rng, precision):
    with backend.precision(precision):
        _same_bits_as_one_stream(_backwards(K, rng))


def test_the_join_waits_for_the_side_branch(K):
    """A side branch that takes long (a large GEMM, then a reduction into a buffer) is complete when the
    block ends: the current stream's next kernel reads the buffer's final value, every time."""
    import cupy as cp
    from tinygan.kernels.gpu.streams import fork_join

    a = cp.full((4096, 4096), 1.0 / 4096, dtype=cp.float32)
    for attempt in range(5):
        out = cp.zeros(1, dtype=cp.float32)
        with fork_join() as side:
            with side:
                out[...] = (a @ a @ a).sum()  # 4096**2 entries of 1/4096: 4096
        seen = out * 1  # a kernel on the current stream, right after the join
        assert abs(float(seen[0]) - 4096.0) < 1.0, f"attempt {attempt}: read {float(seen[0])} before the side wrote"


def test_a_fork_inside_one_stream_forks_nothing(K):
    import cupy as cp
    from tinygan.kernels.gpu.streams import fork_join, one_stream

    main = cp.cuda.get_current_stream()
    with one_stream(), fork_join() as side:
        assert side.ptr == main.ptr
    with fork_join() as side:
        assert side.ptr != main.ptr


def test_a_deferred_join_waits_once_at_the_end_of_its_block(K):
    """Inside deferred_joins the forks do not join at their own end: the current stream goes on while each side
    branch runs, and every side branch is complete when the block ends. The arrays a side branch reads are kept
    (fork_join(keep=...)) even after the caller drops them."""
    import cupy as cp
    from tinygan.kernels.gpu.streams import deferred_joins, fork_join

    for attempt in range(3):
        outs = [cp.zeros(1, dtype=cp.float32) for _ in range(3)]
        with deferred_joins():
            for i, out in enumerate(outs):
                a = cp.full((2048, 2048), 1.0 / 2048, dtype=cp.float32)
                with fork_join(keep=(a,)) as side:
                    with side:
                        out[...] = (a @ a @ a).sum() * (i + 1)  # 2048 * (i + 1)
                del a  # the caller's reference goes; the block's keeps the operand alive until the join
                scratch = cp.ones((2048, 2048), dtype=cp.float32)  # main-stream work that may reuse freed memory
                scratch *= 3
        seen = [float((o * 1)[0]) for o in outs]  # kernels on the current stream, after the block
        assert seen == [2048.0, 4096.0, 6144.0], f"attempt {attempt}: {seen}"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_a_models_backward_with_deferred_joins_gives_the_bits_of_one_stream(rng, precision):
    """Sequential.backward joins its layers' side-stream weight gradients once, at its end: the gradients are the
    bits of the same backward on one stream, eagerly and replayed from a captured graph."""
    import cupy as cp

    import tinygan as nn

    net = nn.Sequential(
        nn.Dense(784, 1024, rng=1),
        nn.LeakyReLU(0.2),
        nn.Dense(1024, 512, rng=2),
        nn.LeakyReLU(0.2),
        nn.Dense(512, 256, rng=3),
        nn.LeakyReLU(0.2),
        nn.Dense(256, 1, rng=4),
    ).to("gpu")
    x = cp.asarray(rng.standard_normal((250, 784)), dtype=cp.float32)
    dy = cp.asarray(rng.standard_normal((250, 1)), dtype=cp.float32)

    def run():
        for _, layer in net.named_layers():
            layer.zero_grad()
        net.forward(x, training=True)
        dx = net.backward(dy)
        return [dx] + [layer.grads[k] for _, layer in net.named_layers() for k in layer.params]

    with backend.precision(precision):
        _same_bits_as_one_stream(run)
