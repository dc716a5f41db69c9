"""bench/dev/step_timeline.py's reading of a trace, on a small made-up one (no GPU): the sweep splits the step's
span into time with no, one and two kernels running, and into time with a matrix product running or only other
kernels, and the parts add up to the span."""

from __future__ import annotations

import json

from bench.dev import step_timeline


def _event(name: str, ts: float, dur: float, stream: int) -> dict:
    return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur, "args": {"stream": stream}}


def test_the_sweep_splits_the_span_by_concurrency_and_by_kind(tmp_path, capsys):
    step = [
        _event("sm80_xmma_gemm_f32f32", 0.0, 10.0, 7),  # a product, alone for 5 µs, then beside the next
        _event("void rows_grad_sum<float>", 5.0, 10.0, 8),  # other, beside the product, then alone
        _event("void adam_update<float>", 20.0, 5.0, 7),  # after 5 µs with nothing running
    ]
    trace = {"traceEvents": [*step, *[{**e, "ts": e["ts"] + 100.0} for e in step], {"ph": "X", "cat": "cpu_op"}]}
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    assert step_timeline.main(["--read", str(path), "--per-step", "3"]) == 0
    out = capsys.readouterr().out
    assert "step: 25.0 µs from the first kernel's start to the last one's end, 3 kernels, 25.0 µs of kernel time" in out
    assert "no kernel running: 5.0 µs; one: 15.0 µs; two or more: 5.0 µs" in out
    assert "a matrix product running: 10.0 µs; only other kernels: 10.0 µs" in out
    # The second kernel waited 0 µs on its own stream; the third 10 µs after the first ended on stream 7.
    assert "| 20.0 | 5.0 | 10.0 | 7 |" in out


def test_a_trace_without_a_whole_step_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": [_event("k", 0.0, 1.0, 7)]}))
    assert step_timeline.main(["--read", str(path), "--per-step", "3"]) == 2
    assert capsys.readouterr().err.strip() == "step_timeline: no whole step in the trace"


def test_cublas_hopper_kernels_and_ours_count_as_products():
    for name in ("nvjet_tst_128x256_64x4_2x1_v_bz_TNT", "sm80_xmma_gemm_f32f32", "void conv_igemm<5, 0, 2>(float"):
        assert step_timeline.is_product(name), name
    for name in ("void im2col<float, int>(float", "void adam_update_multi_device_step<float>"):
        assert not step_timeline.is_product(name), name
