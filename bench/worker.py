"""One measurement job in a process of its own: ``python -m bench.worker '<json spec>'``.

The report starts one worker per implementation (and one per memory measurement) because what shares
a process distorts the numbers: Numba's and PyTorch's OpenMP pools spin on the same cores, CuPy's and
PyTorch's memory pools hold on to the same GPU, and a high-water mark of resident memory
(``ru_maxrss``) only means something in a fresh process. Results go to ``spec["out"]`` as JSON,
rewritten after every record, so a worker stopped by its time limit still leaves what it measured.

Kinds: "peak" (machine description and measured peak), "kernels", "steps" (also the batch-size scaling,
and on the GPU the steps' peak memory), "memory" (peak host memory of training steps), "precisions" (the GPU
step at every precision beside PyTorch's, with each tinygan step's timeline split: issue 11's targets).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness

KERNEL_BUDGET = {("cpu", True): 0.1, ("cpu", False): 0.4, ("gpu", True): 0.03, ("gpu", False): 0.15}
STEP_BUDGET = {("cpu", True): 1.0, ("cpu", False): 3.0, ("gpu", True): 0.1, ("gpu", False): 0.4}


class Output:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {"records": [], "info": {}}

    def info(self, **kw: Any) -> None:
        self.data["info"].update(kw)
        self.flush()

    def emit(self, record: dict[str, Any]) -> None:
        self.data["records"].append(record)
        self.flush()
        status = record.get("status")
        what = record.get("id", record.get("kind"))
        median = record.get("median_s")
        shown = f"{median * 1e3:10.3f} ms" if median is not None else ""
        print(
            f"  {what:42s} {record.get('impl', ''):10s} {record.get('variant', ''):6s} {status:7s} {shown}", flush=True
        )

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=float))
        os.replace(tmp, self.path)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:400]


# -- peak ----------------------------------------------------------------------------------------------------


def run_peak(spec: dict[str, Any], out: Output) -> None:
    device = spec["device"]
    out.info(machine=harness.gpu_machine() if device == "gpu" else harness.cpu_machine())
    out.info(load_before=harness.load_average())
    out.info(peak=harness.measure_peak(device, quick=spec.get("quick", False)))
    out.info(blas=harness.blas_info(), load_after=harness.load_average())


# -- kernels ---------------------------------------------------------------------------------------------------


def _expected(case: Any, cache_dir: str | None) -> tuple[dict, tuple]:
    """The float64 reference outputs, shared through ``cache_dir`` by the workers of one report."""
    from bench import cases

    if cache_dir is None or case.check is not None:
        return cases.expected_outputs(case)
    path = Path(cache_dir) / f"{case.id}.npz"
    if path.exists():
        with np.load(path) as f:
            return {}, tuple(f[f"arr_{i}"] for i in range(len(f.files)))
    a64, want = cases.expected_outputs(case)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, *want)
    os.replace(tmp, path)
    return a64, want


def _require_torch_cuda(impl: str, device: str) -> None:
    if impl == "torch" and device == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"PyTorch {torch.__version__} has no usable CUDA device here")


def run_kernels(spec: dict[str, Any], out: Output) -> None:
    from bench import cases

    device, impl, quick = spec["device"], spec["impl"], spec.get("quick", False)
    _require_torch_cuda(impl, device)
    if impl == "torch":
        from bench.steps import configure_torch

        configure_torch(device)
    timer = harness.timer_for(impl, device)
    out.info(timer=timer.name, load_before=harness.load_average())
    pattern = re.compile(spec["filter"]) if spec.get("filter") else None
    for case in cases.cases_for(device):
        if case.model not in spec.get("models", [case.model]):
            continue
        if pattern is not None and not pattern.search(case.id):
            continue
        record: dict[str, Any] = {"kind": "kernel", "id": case.id, "impl": impl, "device": device}
        try:
            expected = _expected(case, spec.get("cache"))
            runner = cases.setup_runner(case, impl, device)
        except NotImplementedError as exc:
            out.emit({**record, "status": "n/a", "error": _error(exc)})
            continue
        except Exception as exc:
            out.emit({**record, "status": "error", "error": _error(exc)})
            continue
        try:
            ok, err, text = cases.validate(case, runner, expected)
        except Exception as exc:
            out.emit({**record, "status": "error", "error": "validation raised " + _error(exc)})
            continue
        record.update(max_error=err, check=text)
        if not ok:  # a wrong kernel is reported, never timed
            out.emit({**record, "status": "wrong"})
            continue
        try:
            stats = harness.measure_quietly(
                runner.fn,
                timer,
                budget_s=KERNEL_BUDGET[(device, quick)],
                min_repeats=3 if quick else 5,
                warmup=1 if quick else 2,
            )
        except Exception as exc:
            out.emit({**record, "status": "error", "error": "timing raised " + _error(exc)})
            continue
        out.emit({**record, "status": "ok", **stats.as_dict()})
    out.info(load_after=harness.load_average())


# -- steps -------------------------------------------------------------------------------------------------------


def step_factories(impl: str, device: str) -> dict[str, Any]:
    """variant -> (model, batch) -> steps.Built."""
    from bench import steps

    if impl == "torch":
        factories = {"eager": lambda m, n: steps.torch_step(m, n, device)}
        if device == "gpu":
            factories["graph"] = steps.torch_graph_step
        return factories
    if device == "gpu":
        return {
            "eager": lambda m, n: steps.tiny_gpu_step(m, n, graph=False),
            "graph": lambda m, n: steps.tiny_gpu_step(m, n, graph=True),
        }

    def eager(m: str, n: int) -> Any:
        trainer = steps.tiny_trainer(m, n, device, impl)
        return steps.Built(steps.tiny_step(trainer), trainer, "one GANStep call")

    return {"eager": eager}


def _validate_step(impl: str, variant: str, device: str, model: str, n: int, want: Any, built: Any) -> tuple:
    from bench import steps

    if variant == "eager":
        if impl == "torch":
            return steps.validate_torch(model, n, device, want)
        return steps.validate_tiny(model, n, device, impl, want)
    if impl == "torch":
        return steps.check_graph_step(built)
    return steps.validate_tiny_graph(model, n, built)


def _reference_gradients(model: str, n: int, cache_dir: str | None) -> list[np.ndarray]:
    from bench import steps

    path = Path(cache_dir) / f"step-{model}-{n}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as f:
            return [f[f"arr_{i}"] for i in range(len(f.files))]
    want = steps.reference_gradients(model, n)
    if path is not None:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, *want)
        os.replace(tmp, path)
    return want


def run_steps(spec: dict[str, Any], out: Output) -> None:
    from bench import cases, steps

    device, impl, quick = spec["device"], spec["impl"], spec.get("quick", False)
    _require_torch_cuda(impl, device)
    timer = harness.timer_for(impl, device)
    out.info(timer=timer.name, load_before=harness.load_average())
    factories = step_factories(impl, device)
    for variant in spec.get("variants") or list(factories):
        factory = factories.get(variant)
        if factory is None:
            continue
        for model in spec.get("models", steps.MODELS):
            if [impl, variant, model] in spec.get("skip", []):
                continue
            sizes = spec.get("sizes", {}).get(model, [steps.BATCH[model]])
            if spec.get("scaling_only"):
                sizes = [b for b in sizes if b != steps.BATCH[model]]
            for n in sizes:
                headline = n == steps.BATCH[model]
                record = {
                    "kind": "step",
                    "id": f"{model}.step",
                    "model": model,
                    "batch": n,
                    "impl": impl,
                    "variant": variant,
                    "device": device,
                    "headline": headline,
                    "flops": cases.step_flops(model, n),
                }
                try:
                    built = factory(model, n)
                    record["how"] = built.how
                    if headline:
                        want = _reference_gradients(model, n, spec.get("cache")) if variant == "eager" else None
                        ok, err, text = _validate_step(impl, variant, device, model, n, want, built)
                        record.update(max_error=err, check=text)
                        if not ok:
                            out.emit({**record, "status": "wrong"})
                            break  # a wrong step is not timed at any batch size
                    if headline and device == "gpu":
                        _gpu_memory_reset(impl)
                    stats = harness.measure_quietly(
                        built.fn,
                        timer,
                        stream=built.stream,
                        budget_s=STEP_BUDGET[(device, quick)] if headline else STEP_BUDGET[(device, True)],
                        min_repeats=(3 if quick else 5) if headline else 3,
                        max_repeats=100,
                        # a captured step records its graph on the second call: keep that out of the samples
                        warmup=3 if variant == "graph" else 2 if headline else 1,
                    )
                    out.emit({**record, "status": "ok", **stats.as_dict()})
                    if headline and device == "gpu":
                        out.emit(_gpu_memory_record(record, built))
                except NotImplementedError as exc:
                    out.emit({**record, "status": "n/a", "error": _error(exc)})
                    break
                except Exception as exc:
                    out.emit(
                        {**record, "status": "error", "error": _error(exc), "trace": traceback.format_exc()[-800:]}
                    )
                    if headline:
                        break
                finally:
                    built = None
                    _release(device, impl)
    out.info(load_after=harness.load_average())


def _release(device: str, impl: str) -> None:
    """Give the previous batch size's memory back before the next one is built."""
    import gc

    gc.collect()
    if device != "gpu":
        return
    if impl == "torch":
        import torch

        torch.cuda.empty_cache()
    else:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


# -- memory --------------------------------------------------------------------------------------------------------


def _gpu_memory_reset(impl: str) -> None:
    """Before the timed steps: drop what validation left cached, so that the pool's high-water mark after them
    is this step's. (GPU memory needs no fresh process: the pools count it, not the host's resident size.)"""
    import gc

    gc.collect()
    if impl == "torch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        import cupy

        cupy.cuda.Device().synchronize()
        cupy.get_default_memory_pool().free_all_blocks()


def _gpu_memory_record(step: dict[str, Any], built: Any) -> dict[str, Any]:
    """Peak GPU memory over the timed steps: CuPy's pool size (it keeps every block it allocated, so its size
    is the high-water mark) plus a captured graph's own pool, or torch's peak allocator statistics."""
    record = {k: step[k] for k in ("id", "model", "batch", "impl", "variant", "device")}
    record.update(kind="memory", status="ok")
    if step["impl"] == "torch":
        import torch

        torch.cuda.synchronize()
        record.update(
            gpu_peak_allocated=torch.cuda.max_memory_allocated(),
            gpu_peak_reserved=torch.cuda.max_memory_reserved(),
            gpu_live_after=torch.cuda.memory_allocated(),
        )
        return record
    import cupy

    cupy.cuda.Device().synchronize()
    pool = cupy.get_default_memory_pool()
    graph_pool = 0
    if hasattr(built.keep, "gpu_memory"):  # the captured graph allocates from a pool of its own
        graph_pool = int(built.keep.gpu_memory().get("graph_pool", 0))
    record.update(
        gpu_pool_high_water=pool.total_bytes() + graph_pool,
        gpu_graph_pool=graph_pool,
        gpu_live_between_steps=pool.used_bytes(),
    )
    return record


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_memory(spec: dict[str, Any], out: Output) -> None:
    """Peak host memory of 3 training steps at one batch size, in this fresh process: ``ru_maxrss``, and its
    rise over the resident size of the process warmed up (imports, JIT, a step at batch 4) before the real-size
    models existed. (GPU memory comes with the GPU step timings: see _gpu_memory_record.)"""
    device, impl, variant, model, n = spec["device"], spec["impl"], spec["variant"], spec["model"], spec["batch"]
    record: dict[str, Any] = {"kind": "memory", "id": f"{model}.step", "model": model, "batch": n}
    record.update(impl=impl, variant=variant, device=device)
    try:
        if device != "cpu":
            raise NotImplementedError("GPU memory is measured by the steps worker")
        factory = step_factories(impl, device)[variant]
        warm = factory(model, 4)
        warm.fn()
        warm.fn()
        del warm
        import gc

        gc.collect()
        rss_before = _rss_bytes()
        built = factory(model, n)
        for _ in range(3):
            built.fn()
        peak = _maxrss_bytes()
        record.update(status="ok", peak_rss=peak, rss_before=rss_before, step_rise=peak - rss_before)
    except NotImplementedError as exc:
        record.update(status="n/a", error=_error(exc))
    except Exception as exc:
        record.update(status="error", error=_error(exc))
    out.emit(record)


# -- precisions (GPU) -----------------------------------------------------------------------------------------


def _timeline_split(built: Any, where: Path) -> dict[str, float]:
    """The profiler's split of one replayed step (bench/dev/step_timeline.py): of 5 profiled replays, the one
    with the median span, so one slow replay does not decide it."""
    from bench.dev import step_timeline

    _, cut = step_timeline.profile(built.fn, 5, str(where))
    where.unlink(missing_ok=True)  # the trace is tens of MB; its split is what the report keeps
    if not cut:
        raise RuntimeError("the profiler recorded no whole step")
    splits = sorted((step_timeline.split(step) for step in cut), key=lambda s: s["span_us"])
    return splits[len(splits) // 2]


def run_precisions(spec: dict[str, Any], out: Output) -> None:
    """bench.step_precisions' measurement (tinygan fp32/tf32/bf16, PyTorch fp32/tf32/default, whole-step graphs,
    interleaved rounds), one record per model, implementation and precision; each tinygan record also carries
    its step's timeline split where PyTorch's profiler is there to read it."""
    from bench import cases, step_precisions, steps

    if spec["device"] != "gpu":
        raise ValueError("the precisions measurement is a GPU one")
    quick = spec.get("quick", False)
    has_torch = harness.torch_installed() and not spec.get("no_torch", False)
    trace = Path(spec["out"]).with_suffix(".trace.json")
    timeline = (lambda built: _timeline_split(built, trace)) if has_torch else None
    out.info(load_before=harness.load_average())
    for model in spec.get("models", steps.MODELS):
        n = steps.BATCH[model]
        base = {"kind": "precision", "id": f"{model}.step", "model": model, "batch": n, "device": "gpu"}
        try:
            want = _reference_gradients(model, n, spec.get("cache"))
            rounds, replays = (3, 100) if quick else (5, 200)
            records = step_precisions.measure(model, n, rounds, replays, has_torch, timeline=timeline, want=want)
        except Exception as exc:
            out.emit({**base, "status": "error", "error": _error(exc), "trace": traceback.format_exc()[-800:]})
            continue
        base["flops"] = cases.step_flops(model, n)
        for rec in records:
            out.emit({**base, **rec, "status": "ok" if rec["ok"] else "wrong"})
    out.info(load_after=harness.load_average())


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    out = Output(spec["out"])
    started = time.perf_counter()
    try:
        runs = {
            "peak": run_peak,
            "kernels": run_kernels,
            "steps": run_steps,
            "memory": run_memory,
            "precisions": run_precisions,
        }
        runs[spec["kind"]](spec, out)
    except Exception as exc:
        out.info(fatal=_error(exc), trace=traceback.format_exc()[-2000:])
        print(traceback.format_exc(), file=sys.stderr)
        return 1
    finally:
        out.info(seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
