"""The implicit-GEMM convolution kernels (kernels/gpu/conv_igemm.cu) at each precision against the float64
reference, through the public ops of tinygan.kernels.gpu: Conv2d forward, data and weight gradient (and
bias gradient), ConvTranspose2d the same, at odd sizes, batch 1, non-square images and kernels, strides
1 to 3, every padding and output_padding the layers accept, and channel counts and pixel counts that
leave ragged tiles (the kernels' tiles are 64 x 64 x 32) and split the weight gradient's long sum.

Tolerances, as the relative norm error ||got - want|| / ||want|| on random normal inputs, follow from
each precision's unit roundoff u (round to nearest): a product of two rounded operands is off by about
u * sqrt(2/3) (relative, rms), and the sums are FP32.
  fp32  FP32 accuracy (split-TF32 products, or FP32 FMAs): 1e-5
  tf32  10 explicit mantissa bits, u = 2**-11: ~4e-4 expected, 1e-3 allowed
  bf16   7 explicit mantissa bits, u = 2**-8:  ~3e-3 expected, 1e-2 allowed
float64 arrays take the float64 im2col path whatever the precision: 1e-12.

Each float32 test runs on both routes an op can take (kernels/gpu/conv_igemm.py ROUTE): the implicit-GEMM
kernels, and im2col / col2im around cuBLAS at the same precision.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tinygan.kernels import reference as R

from tinygan import backend

TOLERANCE = {"fp32": 1e-5, "tf32": 1e-3, "bf16": 1e-2}
PRECISIONS = list(TOLERANCE)

# (N, C, H, W, Cout, kernel, stride, padding)
CONV_CASES = [
    (2, 3, 9, 7, 5, (3, 3), (2, 2), (1, 1)),
    (1, 5, 8, 8, 70, (3, 3), (1, 1), (1, 1)),  # batch 1, Cout over one 64-row tile
    (3, 4, 11, 10, 6, (5, 5), (2, 2), (2, 2)),
    (2, 3, 7, 9, 4, (3, 2), (2, 3), (0, 1)),  # non-square kernel, stride and padding
    (1, 2, 10, 10, 3, (1, 1), (3, 3), (0, 0)),  # stride above the kernel: phases no tap reaches
    (2, 66, 5, 5, 3, (3, 3), (2, 2), (1, 1)),  # K = 594: many k tiles, ragged
    (8, 5, 20, 20, 7, (3, 3), (1, 1), (1, 1)),  # 3,200-long weight-gradient sum: split K
    (4, 3, 6, 4, 2, (4, 4), (2, 2), (1, 1)),
]

# (N, Cin, H, W, Cout, kernel, stride, padding, output_padding)
CONVT_CASES = [
    (2, 3, 4, 5, 2, (4, 4), (2, 2), (1, 1), (0, 0)),
    (1, 2, 3, 3, 3, (3, 3), (2, 2), (1, 1), (1, 1)),
    (2, 2, 5, 4, 3, (3, 2), (1, 1), (0, 1), (0, 0)),
    (1, 3, 4, 4, 2, (5, 5), (3, 3), (2, 2), (2, 1)),
    (3, 4, 1, 1, 5, (4, 4), (1, 1), (0, 0), (0, 0)),
    (2, 70, 4, 4, 65, (5, 5), (2, 2), (2, 2), (1, 1)),  # the DCGAN geometry, ragged tiles
]


def test_precision_setting_and_its_alias(monkeypatch):
    monkeypatch.setattr(backend, "_precision", None)
    monkeypatch.delenv("TINYGAN_PRECISION", raising=False)
    monkeypatch.setenv("TINYGAN_TF32", "1")
    assert backend.get_precision() == "tf32"
    with backend.precision("bf16"):
        assert backend.get_precision() == "bf16"
    assert backend.get_precision() == "tf32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        backend.set_precision("fp16")
    monkeypatch.setattr(backend, "_precision", None)
    monkeypatch.setenv("TINYGAN_PRECISION", "int8")
    with pytest.raises(ValueError, match="TINYGAN_PRECISION='int8'"):
        backend.get_precision()
    monkeypatch.setattr(backend, "_precision", None)
    monkeypatch.setenv("TINYGAN_PRECISION", "fp32")
    assert backend.get_precision() == "fp32"


@pytest.fixture(params=["implicit", "implicit-cp.async", "im2col"])
def route(request, K, monkeypatch):
    """Every conv op on the implicit-GEMM kernels (from any size; register-staged or cp.async tiles), or none."""
    from tinygan.kernels.gpu import conv_igemm

    table = {op: 0 for op in conv_igemm.OPS} if request.param != "im2col" else {}
    pipelined = request.param == "implicit-cp.async"
    monkeypatch.setattr(conv_igemm, "DEFAULT_CFG", conv_igemm.AUTO_PIPE if pipelined else conv_igemm.AUTO)
    monkeypatch.setattr(conv_igemm, "ROUTE", {p: dict(table) for p in PRECISIONS})
    return request.param


def rel_err(got, want) -> float:
    import cupy as cp

    got = cp.asnumpy(got).astype(np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.isfinite(got).all(), "non-finite output (an element left unwritten?)"
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


def poison_pool() -> None:
    """Fill free blocks of CuPy's pool with NaN bytes, so outputs allocated next start as NaN."""
    import cupy as cp

    blocks = [cp.full(1 << 22, 0xFF, dtype=cp.uint8) for _ in range(8)]
    cp.cuda.Device().synchronize()
    del blocks


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_at_each_precision_matches_float64_reference(K, route, rng, precision, case):
    import cupy as cp

    n, c, h, w, cout, k, s, p = case
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((cout, c, *k)), rng.standard_normal(cout)
    y_ref, cols_ref = R.conv2d_forward(x, W, b, s, p)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = R.conv2d_backward_data(dy, W, x.shape, s, p)
    dW_ref, db_ref = R.conv2d_backward_weight(dy, cols_ref, W.shape)
    g = [cp.asarray(a, dtype=cp.float32) for a in (x, W, b, dy)]
    tol = TOLERANCE[precision]
    with backend.precision(precision):
        poison_pool()
        y, cache = K.conv2d_forward(g[0], g[1], g[2], s, p)
        assert rel_err(y, y_ref) <= tol
        poison_pool()
        assert rel_err(K.conv2d_backward_data(g[3], g[1], x.shape, s, p), dx_ref) <= tol
        poison_pool()
        dW, db = K.conv2d_backward_weight(g[3], cache, W.shape)
        assert rel_err(dW, dW_ref) <= tol
        assert rel_err(db, db_ref) <= 1e-5  # FP32 sums of dy at every precision


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_at_each_precision_matches_float64_reference(K, route, rng, precision, case):
    import cupy as cp

    n, cin, h, w, cout, k, s, p, op = case
    x, W, b = rng.standard_normal((n, cin, h, w)), rng.standard_normal((cin, cout, *k)), rng.standard_normal(cout)
    y_ref = R.conv_transpose2d_forward(x, W, b, s, p, op)
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, _ = R.conv_transpose2d_backward_data(dy, W, s, p)
    dW_ref, db_ref = R.conv_transpose2d_backward_weight(dy, x, W.shape, s, p)
    g = [cp.asarray(a, dtype=cp.float32) for a in (x, W, b, dy)]
    tol = TOLERANCE[precision]
    with backend.precision(precision):
        poison_pool()
        assert rel_err(K.conv_transpose2d_forward(g[0], g[1], g[2], s, p, op), y_ref) <= tol
        poison_pool()
        dx, dy_cols = K.conv_transpose2d_backward_data(g[3], g[1], s, p)
        assert rel_err(dx, dx_ref) <= tol
        poison_pool()
        dW, db = K.conv_transpose2d_backward_weight(g[3], g[0], W.shape, s, p, dy_cols=dy_cols)
        assert rel_err(dW, dW_ref) <= tol
        assert rel_err(db, db_ref) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_float64_stays_float64_at_every_precision(K, rng, precision):
    import cupy as cp

    n, c, h, w, cout, k, s, p = CONV_CASES[0]
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((cout, c, *k)), rng.standard_normal(cout)
    y_ref, _ = R.conv2d_forward(x, W, b, s, p)
    with backend.precision(precision):
        y, _ = K.conv2d_forward(cp.asarray(x), cp.asarray(W), cp.asarray(b), s, p)
    assert y.dtype == np.float64
    assert rel_err(y, y_ref) <= 1e-12


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
def test_captured_graph_gives_the_eager_bits(K, route, rng, precision):
    """The same kernels replayed from a CUDA graph (as the training step runs them) give the same bits."""
    import cupy as cp

    x = cp.asarray(rng.standard_normal((4, 6, 12, 10)), dtype=cp.float32)
    W = cp.asarray(rng.standard_normal((9, 6, 3, 3)), dtype=cp.float32)
    Wt = cp.asarray(rng.standard_normal((9, 5, 5, 5)), dtype=cp.float32)
    b = cp.asarray(rng.standard_normal(9), dtype=cp.float32)

    def passes():
        y, cache = K.conv2d_forward(x, W, b, (2, 2), (1, 1))
        dx = K.conv2d_backward_data(y, W, x.shape, (2, 2), (1, 1))
        dW, db = K.conv2d_backward_weight(y, cache, W.shape)
        yt = K.conv_transpose2d_forward(y, Wt, None, (2, 2), (2, 2), (1, 1))
        dxt, _ = K.conv_transpose2d_backward_data(yt, Wt, (2, 2), (2, 2))
        dWt, dbt = K.conv_transpose2d_backward_weight(yt, y, Wt.shape, (2, 2), (2, 2))
        return [y, dx, dW, db, yt, dxt, dWt, dbt]

    from tinygan.kernels.gpu._common import capture_gemm

    with backend.precision(precision), capture_gemm():  # eager GEMMs on the captured ones' cuBLAS handle
        eager = [cp.asnumpy(a) for a in passes()]
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            passes()  # compile and allocate outside the capture
            stream.synchronize()
            stream.begin_capture()
            outs = passes()
            graph = stream.end_capture()
            graph.launch(stream)
            stream.synchronize()
        for i, (e, o) in enumerate(zip(eager, outs)):
            np.testing.assert_array_equal(e, cp.asnumpy(o), err_msg=f"output {i}")


@pytest.mark.gpu
def test_lower_precisions_really_round(K, rng, monkeypatch):
    """tf32 and bf16 differ from fp32 on the implicit-GEMM kernels (so the setting reaches them), by about
    their unit roundoff."""
    import cupy as cp
    from tinygan.kernels.gpu import conv_igemm

    monkeypatch.setattr(conv_igemm, "ROUTE", {p: {op: 0 for op in conv_igemm.OPS} for p in PRECISIONS})
    x = cp.asarray(rng.standard_normal((2, 16, 9, 9)), dtype=cp.float32)
    W = cp.asarray(rng.standard_normal((8, 16, 3, 3)), dtype=cp.float32)
    ys = {}
    for precision in PRECISIONS:
        with backend.precision(precision):
            ys[precision] = cp.asnumpy(K.conv2d_forward(x, W, None, 1, 1)[0]).astype(np.float64)
    for precision, lo, hi in (("tf32", 5e-5, 1e-3), ("bf16", 5e-4, 1e-2)):
        err = np.linalg.norm(ys[precision] - ys["fp32"]) / np.linalg.norm(ys["fp32"])
        assert lo < err < hi, (precision, err)


@pytest.mark.gpu
def test_bf16_rounds_every_pass_on_the_im2col_route(K, rng, monkeypatch):
    """At bf16 the im2col route forms its GEMM operands in bfloat16 (cols, dz, W; half the bytes): every pass of
    Conv2d and ConvTranspose2d then differs from the float64 reference by about bf16's roundoff, not FP32's or
    TF32's, and stays within the bf16 tolerance. A backward at another precision than its forward multiplies
    the forward's bfloat16 cols with operands rounded the same way."""
    import cupy as cp
    from tinygan.kernels.gpu import conv_igemm

    monkeypatch.setattr(conv_igemm, "ROUTE", {p: {} for p in PRECISIONS})
    x, W, b = rng.standard_normal((3, 16, 9, 9)), rng.standard_normal((8, 16, 3, 3)), rng.standard_normal(8)
    y_ref, cols_ref = R.conv2d_forward(x, W, b, 2, 1)
    dy = rng.standard_normal(y_ref.shape)
    want = {
        "y": y_ref,
        "dx": R.conv2d_backward_data(dy, W, x.shape, 2, 1),
        "dW": R.conv2d_backward_weight(dy, cols_ref, W.shape)[0],
        "t_y": R.conv_transpose2d_forward(dy, W, None, 2, 1, 0),
    }
    g = {k: cp.asarray(v, dtype=cp.float32) for k, v in (("x", x), ("W", W), ("b", b), ("dy", dy))}
    with backend.precision("bf16"):
        y, cols = K.conv2d_forward(g["x"], g["W"], g["b"], 2, 1)
        got = {"y": y, "t_y": K.conv_transpose2d_forward(g["dy"], g["W"], None, 2, 1, 0)}
    cols_m = cols.cols  # an Im2colCache: cols and the weight operand
    assert cols_m.dtype == np.uint16 and cols_m.shape == (8 * -(-cols_ref.shape[0] // 8), cols_ref.shape[1])
    with backend.precision("fp32"):  # the forward's bfloat16 cache decides the backward's operands
        dW = cp.zeros(W.shape, dtype=cp.float32)
        db = cp.zeros(8, dtype=cp.float32)
        got["dx"] = K.conv2d_backward(g["dy"], cols, g["W"], x.shape, 2, 1, dW=dW, db=db)
        got["dW"] = dW
    for name, ref in want.items():
        err = rel_err(got[name], ref)
        assert 5e-4 < err < TOLERANCE["bf16"], (name, err)
    # The bias gradient sums dz before its rounding to bfloat16: FP32-accurate.
    assert rel_err(db, dy.sum(axis=(0, 2, 3))) < 1e-5


@pytest.mark.gpu
def test_weight_gradient_rejects_a_mismatched_dy(K, rng, monkeypatch):
    import cupy as cp
    from tinygan.kernels.gpu import conv_igemm

    monkeypatch.setattr(conv_igemm, "ROUTE", {p: {op: 0 for op in conv_igemm.OPS} for p in PRECISIONS})
    x = cp.asarray(rng.standard_normal((2, 3, 8, 8)), dtype=cp.float32)
    W = cp.asarray(rng.standard_normal((4, 3, 3, 3)), dtype=cp.float32)
    _, cache = K.conv2d_forward(x, W, None, 1, 1)
    with pytest.raises(ValueError, match="conv2d_backward_weight: dy of shape"):
        K.conv2d_backward_weight(cp.zeros((2, 4, 7, 8), dtype=cp.float32), cache, W.shape)


# -- whole training runs at each precision ------------------------------------------------------------


def _run(family: str, tmp_path, name: str, graph: bool, precision: str):
    from tinygan.train import GANConfig, GANTrainer

    n = 48
    shape = (n, 784) if family == "mnist_dense" else (n, 3, 32, 32)
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    config = GANConfig(
        model=family,
        epochs=2,
        batch_size=8,
        device="gpu",
        g_options={"seed": 0},
        d_options={"seed": 1},
        log_every=3,
        image_range="01" if family == "mnist_dense" else "tanh",
        cuda_graph=graph,
        precision=precision,  # the trainer sets it for the run's length
    )
    trainer = GANTrainer(config, data if family == "mnist_dense" else 2 * data - 1, tmp_path / name, progress=False)
    before = {k: np.array(v) for k, v in trainer.G.state_dict().items()}
    trainer.run()
    return trainer, before


@pytest.mark.gpu
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", ["dcgan", "mnist_dense"])
def test_training_at_each_precision_trains_and_its_graph_equals_eager_launches(K, route, tmp_path, family, precision):
    """A short run per precision (and conv route): losses finite, G's weights moved, and the run replayed from
    the captured CUDA graph ends on the same bits as the run launched kernel by kernel."""
    if family == "mnist_dense" and route != "im2col":
        pytest.skip("the dense GAN has no convolutions: one route is enough")
    from tinygan.train import GANTrainer

    graphed, before = _run(family, tmp_path, "graph", True, precision)
    eager, _ = _run(family, tmp_path, "eager", False, precision)
    assert graphed.runner.graph.graph is not None
    assert all(math.isfinite(row[key]) for row in graphed.history for key in GANTrainer.METRICS)
    after = graphed.G.state_dict()
    assert any(not np.array_equal(np.asarray(after[k]), before[k]) for k in before), "G did not train"
    for k, v in graphed.G.state_dict().items():
        assert np.array_equal(np.asarray(v), np.asarray(eager.G.state_dict()[k])), k
    for k, v in graphed.D.state_dict().items():
        assert np.array_equal(np.asarray(v), np.asarray(eager.D.state_dict()[k])), k


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_backward_reuses_the_forwards_weight_operand_for_the_same_weights_only(K, rng, monkeypatch, precision):
    """conv2d_backward multiplies by the weight operand its forward formed (no second cast) when it is handed
    the very array the forward took, and forms its own from any other: dx then follows the W it is given."""
    import cupy as cp
    from tinygan.kernels.gpu import conv2d as C
    from tinygan.kernels.gpu import conv_igemm

    monkeypatch.setattr(conv_igemm, "ROUTE", {p: {} for p in PRECISIONS})
    x, W, W2 = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((4, 3, 3, 3))
    y_ref, _ = R.conv2d_forward(x, W, None, 2, 1)
    dy = rng.standard_normal(y_ref.shape)
    g = {k: cp.asarray(v, dtype=cp.float32) for k, v in (("x", x), ("W", W), ("W2", W2), ("dy", dy))}
    formed = []
    real = C.weight_operand
    monkeypatch.setattr(C, "weight_operand", lambda *a, **k: formed.append(1) or real(*a, **k))
    with backend.precision(precision):
        _, cache = K.conv2d_forward(g["x"], g["W"], None, 2, 1)
        assert len(formed) == 1
        same = K.conv2d_backward(g["dy"], cache, g["W"], x.shape, 2, 1)
        assert len(formed) == 1  # the forward's operand, reused
        other = K.conv2d_backward(g["dy"], cache, g["W2"], x.shape, 2, 1)
        assert len(formed) == 2  # another array: its own operand
    tol = TOLERANCE[precision]
    assert rel_err(same, R.conv2d_backward_data(dy, W, x.shape, 2, 1)) <= tol
    assert rel_err(other, R.conv2d_backward_data(dy, W2, x.shape, 2, 1)) <= tol
