"""Benchmark report: every kernel and a whole training step of both GANs, in every implementation present,
validated against the NumPy reference first, against PyTorch (where installed) and against the machine's
own measured peak. Writes ``<out>/<machine>-<date>.md``, PNG plots beside it and the raw ``.json``.

    python -m bench.report                      # CPU, plus the GPU when CuPy finds one
    python -m bench.report --device gpu --quick # what bench/gpu_bench.sh runs on the GPU machine
    python -m bench.report --device cpu --sections steps,memory

On a machine that sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE), NumPy's BLAS runs an older kernel than
the CPU supports; to time NumPy fairly, unset both for this command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.report --device cpu

The report states which kernel ran (threadpoolctl). Every measurement runs in a worker process of its
own (bench/worker.py): see there why.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also runnable as `python bench/report.py`
    sys.path.insert(0, str(REPO))

from bench import harness  # noqa: E402

SECTIONS = ("steps", "precisions", "kernels", "memory", "scaling")
SCALING_SIZES = (32, 64, 128, 256, 512, 1024)
LABEL = {"reference": "tinygan reference", "numba": "tinygan Numba", "gpu": "tinygan CuPy", "torch": "PyTorch"}
SHORT = {"reference": "reference", "numba": "Numba", "gpu": "CuPy", "torch": "PyTorch"}
MODEL_TITLE = {"mnist": "dense MNIST GAN", "dcgan": "CIFAR-10 DCGAN"}

# The targets for the same models (seconds per training step).
TARGETS = {
    ("cpu", "eager", "mnist"): ((0.056, 0.056), "PyTorch 2.13 eager, 2 CPU cores"),
    ("cpu", "eager", "dcgan"): ((1.24, 1.24), "PyTorch 2.13 eager, 2 CPU cores"),
    ("gpu", "eager", "mnist"): ((5.2e-3, 6.0e-3), "PyTorch 2.11 eager, one H100"),
    ("gpu", "eager", "dcgan"): ((8.4e-3, 9.1e-3), "PyTorch 2.11 eager, one H100"),
    ("gpu", "graph", "mnist"): ((1.12e-3, 1.12e-3), "PyTorch 2.11 whole-step CUDA graph, one H100"),
    ("gpu", "graph", "dcgan"): ((3.32e-3, 3.32e-3), "PyTorch 2.11 whole-step CUDA graph, one H100"),
}

# Issue 11's targets for the whole-step graph by precision: (model, precisions, seconds per step, and the lead
# over PyTorch's graph it stood for, as (PyTorch precision, factor)); any one of the precisions meets it.
PRECISION_TARGETS = (
    ("dcgan", ("tf32", "bf16"), 1.5e-3, ("default", 2.0)),
    ("dcgan", ("fp32",), 2.8e-3, ("fp32", 1.9)),
    ("mnist", ("fp32",), 0.35e-3, None),
)

# Worker time limits (seconds): a hung worker costs at most this, and leaves what it measured. The GPU's are
# tight because the lent GPU machine's time is scarce (bench/gpu_bench.sh must finish inside 9 minutes).
LIMITS = {
    "cpu": {"peak": 120, "kernels": 900, "steps": 900, "memory": 240, "scaling": 900},
    "gpu": {"peak": 60, "kernels": 150, "steps": 120, "memory": 60, "scaling": 120, "precisions": 240},
}


# -- running the workers ---------------------------------------------------------------------------------------


class Runner:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.cache = tmp / "expected"
        self.cache.mkdir()
        self.start = time.monotonic()
        self.records: list[dict[str, Any]] = []
        self.info: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []
        self.loads: list[float] = []
        self.count = 0

    def remaining(self) -> float:
        if self.args.deadline is None:
            return float("inf")
        return self.args.deadline - (time.monotonic() - self.start)

    def run(self, name: str, spec: dict[str, Any], limit_kind: str) -> dict[str, Any] | None:
        left = self.remaining()
        if left < 15:
            self.problems.append(f"{name}: skipped, the --deadline of {self.args.deadline:.0f} s was reached")
            print(f"== {name}: skipped (deadline)", flush=True)
            return None
        limit = min(LIMITS[spec["device"]][limit_kind], left - 5)
        self.count += 1
        out = self.tmp / f"{self.count:03d}-{name.replace(' ', '_').replace('/', '_')}.json"
        spec = {**spec, "out": str(out), "quick": self.args.quick, "cache": str(self.cache)}
        print(f"== {name} (limit {limit:.0f} s)", flush=True)
        started = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.worker", json.dumps(spec)], cwd=REPO, timeout=limit)
            if proc.returncode != 0:
                self.problems.append(f"{name}: worker exited with status {proc.returncode}")
        except subprocess.TimeoutExpired:
            self.problems.append(f"{name}: stopped after its {limit:.0f} s limit; what it finished is reported")
        print(f"   {time.monotonic() - started:.1f} s", flush=True)
        if not out.exists():
            self.problems.append(f"{name}: no result")
            return None
        data = json.loads(out.read_text())
        info = data.get("info", {})
        if info.get("fatal"):
            self.problems.append(f"{name}: {info['fatal']}")
        for key in ("load_before", "load_after"):
            if info.get(key):
                self.loads.append(info[key][0])
        self.records += data.get("records", [])
        return data


def gpu_reason() -> str | None:
    from tinygan.backend import gpu_unavailable_reason

    return gpu_unavailable_reason()


def impls_for(device: str, args: argparse.Namespace) -> list[str]:
    impls = ["reference", "numba"] if device == "cpu" else ["gpu"]
    if harness.torch_installed() and not args.no_torch:
        impls.append("torch")
    if args.impls:
        wanted = set(args.impls.split(","))
        impls = [i for i in impls if i in wanted]
    return impls


def collect(args: argparse.Namespace, devices: list[str], runner: Runner) -> None:
    from bench import steps

    sections = set(args.sections.split(","))
    models = args.models.split(",")
    for device in devices:
        data = runner.run(f"{device} machine and peak", {"kind": "peak", "device": device}, "peak")
        runner.info[device] = (data or {}).get("info", {})
    for device in devices:
        if "steps" in sections:
            for impl in impls_for(device, args):
                spec = {"kind": "steps", "device": device, "impl": impl, "models": models}
                runner.run(f"{device} {impl} training steps", spec, "steps")
    if "precisions" in sections and "gpu" in devices:
        spec = {"kind": "precisions", "device": "gpu", "models": models, "no_torch": args.no_torch}
        runner.run("gpu training step by precision", spec, "precisions")
    for device in devices:
        if "kernels" in sections:
            for impl in impls_for(device, args):
                spec = {"kind": "kernels", "device": device, "impl": impl, "filter": args.filter, "models": models}
                runner.run(f"{device} {impl} kernels", spec, "kernels")
    # Host memory needs a fresh process per measurement (ru_maxrss); the GPU's is read from the memory pools by
    # the steps workers right after timing each step.
    for device in [d for d in devices if d == "cpu"]:
        if "memory" in sections:
            for impl in impls_for(device, args):
                for variant in ("eager",):
                    for model in models:
                        spec = {"kind": "memory", "device": device, "impl": impl, "variant": variant}
                        spec.update(model=model, batch=steps.BATCH[model])
                        runner.run(f"{device} {impl} {variant} {model} memory", spec, "memory")
    wrong = [
        [r["impl"], r["variant"], r["model"]]
        for r in runner.records
        if r["kind"] == "step" and r.get("headline") and r["status"] != "ok"
    ]
    for device in devices:
        if "scaling" in sections:
            for impl in impls_for(device, args):
                if impl == "reference":
                    continue  # minutes per point for the DCGAN; the Numba and PyTorch curves say what matters
                sizes = {m: scaling_sizes(device, m, args.quick) for m in models}
                spec = {
                    "kind": "steps",
                    "device": device,
                    "impl": impl,
                    "sizes": sizes,
                    "scaling_only": True,
                    "skip": wrong,
                }
                runner.run(f"{device} {impl} batch-size scaling", spec, "scaling")


def scaling_sizes(device: str, model: str, quick: bool) -> list[int]:
    if device == "cpu" and model == "dcgan" and quick:
        return [s for s in SCALING_SIZES if s <= 256]
    return list(SCALING_SIZES)


# -- formatting --------------------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms" if seconds < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e6:.3g} µs" if seconds < 1e-4 else f"{seconds * 1e6:.0f} µs"


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    return f"{us:.1f}" if us < 100 else f"{us:,.0f}"


def spread(record: dict[str, Any]) -> str:
    """IQR as a percentage of the median."""
    return f"±{100 * (record['q3_s'] - record['q1_s']) / 2 / record['median_s']:.0f}%"


def ratio_text(mine: float, other: float) -> str:
    """'2.1x faster' / '1.3x slower' for times mine vs other."""
    if mine <= other:
        return f"{other / mine:.2f}x faster"
    return f"{mine / other:.2f}x slower"


def mib(n: float | None) -> str:
    return "–" if n is None else f"{n / 2**20:,.0f}"


# -- the report -----------------------------------------------------------------------------------------------


class Report:
    def __init__(self, results: Any, devices: list[str], meta: dict[str, Any]) -> None:
        from bench import cases

        self.r = results
        self.devices = devices
        self.meta = meta
        self.cases = {c.id: c for c in cases.all_cases()}
        self.order = list(self.cases)
        self.kernels: dict[tuple[str, str, str], dict] = {}
        self.steps: dict[tuple[str, str, str, str, int], dict] = {}
        self.memory: list[dict] = []
        self.precisions: dict[tuple[str, str, str], dict] = {}
        self.flagged_points: set[tuple] = set()
        for rec in results.records:
            if rec["kind"] == "kernel":
                self.kernels[(rec["device"], rec["id"], rec["impl"])] = rec
            elif rec["kind"] == "step":
                self.steps[(rec["device"], rec["model"], rec["impl"], rec["variant"], rec["batch"])] = rec
            elif rec["kind"] == "memory":
                self.memory.append(rec)
            elif rec["kind"] == "precision" and rec["status"] != "error":
                self.precisions[(rec["model"], rec["impl"], rec["precision"])] = rec

    # -- helpers ----------------------------------------------------------------------------------------------
    def peak(self, device: str) -> dict[str, Any]:
        return self.r.info.get(device, {}).get("peak", {})

    def main_impl(self, device: str) -> str:
        return "numba" if device == "cpu" else "gpu"

    def kernel_ids(self, device: str, model: str, impls: list[str]) -> list[str]:
        """The kernel cases of ``model`` measured on ``device`` by any of ``impls``, in report order."""
        return [
            i for i in self.order if self.cases[i].model == model and any((device, i, x) in self.kernels for x in impls)
        ]

    def rate(self, device: str, case_id: str, rec: dict) -> tuple[str, float | None]:
        """('123 GFLOP/s' or '45 GB/s', fraction of the measured peak)."""
        case = self.cases[case_id]
        peak = self.peak(device)
        if case.bound == "compute":
            value = case.flops / rec["median_s"] / 1e9
            base = peak.get("gemm_gflops")
            return f"{value:,.1f} GFLOP/s", (value / base if base else None)
        value = case.bytes / rec["median_s"] / 1e9
        base = peak.get("copy_gbs")
        return f"{value:,.1f} GB/s", (value / base if base else None)

    def step(self, device: str, model: str, impl: str, variant: str, batch: int | None = None) -> dict | None:
        from bench import steps

        rec = self.steps.get((device, model, impl, variant, batch or steps.BATCH[model]))
        return rec

    def ok(self, rec: dict | None) -> bool:
        return rec is not None and rec.get("status") == "ok"

    def machine_title(self) -> str:
        if "gpu" in self.devices and self.r.info.get("gpu", {}).get("machine"):
            return self.r.info["gpu"]["machine"]["gpu"]
        m = self.r.info.get("cpu", {}).get("machine", {})
        return f"{m.get('cpu', 'CPU')}, {m.get('cores', '?')} cores"

    # -- sections -----------------------------------------------------------------------------------------------
    def render(self, stem: str) -> str:
        out: list[str] = []
        meta = self.meta
        out.append(f"# tinygan benchmarks: {self.machine_title()}, {meta['finished_utc'][:10]}\n")
        loads = self.r.loads
        load_text = f"{min(loads):.2f} to {max(loads):.2f}" if loads else "unknown"
        out.append(
            f"`{' '.join(self.command())}` at commit {meta['commit']}, finished {meta['finished_utc'][11:]} UTC "
            f"after {meta['elapsed_s'] / 60:.1f} min{' (--quick: fewer repeats)' if meta['quick'] else ''}. "
            f"1-minute load average between measurements: {load_text}.\n"
        )
        others = [r["others_cpu"] for r in self.r.records if r.get("others_cpu") is not None]
        if others:
            flagged = sum(1 for r in self.r.records if busy(r))
            out.append(
                f"Other processes' share of the {self.cores()} cores while a measurement ran (/proc/stat less this "
                f"benchmark's own CPU time; the load average counts the benchmark's threads too): median "
                f"{100 * statistics.median(others):.0f}%, at most {100 * max(others):.0f}%. "
                + (
                    f"{flagged} measurements ran while others took more than {100 * harness.BUSY:.0f}% even after "
                    "one retry: they are marked † and are slower than on an idle machine.\n"
                    if flagged
                    else f"No measurement ran while others took more than {100 * harness.BUSY:.0f}%.\n"
                )
            )
        for device in self.devices:
            out += self.machine_section(device)
        for device in self.devices:
            out += self.step_section(device, stem)
        if "gpu" in self.devices:
            out += self.precision_section()
        for device in self.devices:
            out += self.kernel_section(device, stem)
        for device in self.devices:
            out += self.memory_section(device)
        for device in self.devices:
            out += self.scaling_section(device, stem)
        out += self.method_section()
        out += self.problem_section()
        return "\n".join(out).rstrip() + "\n"

    def command(self) -> list[str]:
        cpu = "cpu" in self.devices
        env = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " if cpu and not self.openblas_forced() else ""
        return [f"{env}python -m bench.report", *self.meta["argv"]]

    def openblas_forced(self) -> bool:
        return bool(self.r.info.get("cpu", {}).get("machine", {}).get("openblas_env"))

    def cores(self) -> int:
        for device in ("cpu", "gpu"):
            cores = self.r.info.get(device, {}).get("machine", {}).get("cores")
            if cores:
                return int(cores)
        return os.cpu_count() or 1

    def machine_section(self, device: str) -> list[str]:
        info = self.r.info.get(device, {})
        m, peak = info.get("machine", {}), info.get("peak", {})
        if not m:
            return [f"## Machine ({device})\n", "The machine description failed; see Problems.\n"]
        rows = []
        if device == "cpu":
            forced = m.get("openblas_env") or {}
            rows += [
                ("CPU", f"{m['cpu']} ({', '.join(m.get('flags', [])) or 'no AVX flags listed'})"),
                ("cores", f"{m['cores']} usable, {m.get('memory_gib') or 0:.0f} GiB memory"),
                ("NumPy", f"{m['numpy']}; BLAS {m['numpy_blas']}"),
                (
                    "OPENBLAS_CORETYPE",
                    ", ".join(f"{k}={v}" for k, v in forced.items()) + " (forces an older kernel: NumPy is slowed)"
                    if forced
                    else "unset: OpenBLAS picked its kernel for this CPU",
                ),
                ("Numba", f"{m['numba']}, {m['numba_threads']} threads"),
                ("PyTorch", f"{m['torch']}, {m['cores']} threads" if m.get("torch") else "not installed"),
                ("Python", m.get("python", "?")),
            ]
            gemm = f"NumPy float32 GEMM {peak.get('gemm_n')}³" if peak else ""
        else:
            rows += [
                ("GPU", f"{m['gpu']}, {m['gpu_memory_gib']:.0f} GiB, compute capability {m['compute_capability']}"),
                ("SMs", str(m.get("sm_count"))),
                ("host", f"{m.get('host_cpu', '?')}, {m.get('cores', '?')} cores"),
                ("CUDA", f"runtime {m['cuda_runtime']}, driver {m['cuda_driver']}"),
                ("CuPy", m.get("cupy", "?")),
                ("PyTorch", f"{m['torch']} (CUDA {m.get('torch_cuda')})" if m.get("torch") else "not installed"),
            ]
            gemm = f"CuPy float32 GEMM {peak.get('gemm_n')}³ (cuBLAS, no TF32)" if peak else ""
        if peak:
            rows.append(
                (
                    "measured peak",
                    f"{gemm}: **{peak['gemm_gflops']:,.0f} GFLOP/s** (best; median {peak['gemm_gflops_median']:,.0f}); "
                    f"copy of {peak['copy_bytes'] / 2**20:,.0f} MiB ({peak['copy_by']}): "
                    f"**{peak['copy_gbs']:,.1f} GB/s** read+write (median {peak['copy_gbs_median']:,.1f})"
                    + (
                        f" †: measured while other processes took {100 * peak['others_cpu']:.0f}% of the cores, so "
                        "every % of peak below is overstated"
                        if device == "cpu" and (peak.get("others_cpu") or 0) > harness.BUSY
                        else ""
                    ),
                )
            )
        lines = [f"## Machine ({device.upper()})\n", "| | |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        return lines + [""]

    def step_section(self, device: str, stem: str) -> list[str]:
        from bench import steps

        keys = sorted({(k[2], k[3]) for k in self.steps if k[0] == device}, key=_impl_order)
        if not keys:
            return []
        lines = [
            f"## Training step ({device.upper()})\n",
            "One `GANStep` call (tinygan/step.py: discriminator step on real and fake, generator step through the "
            "frozen discriminator, Adam on both) on a fixed real batch; PyTorch runs the same step (bench/steps.py). "
            "GFLOP/s counts the GEMM work of the step only.\n",
            f"![training step times]({stem}-steps-{device}.png)\n",
            "| model | batch | implementation | median | IQR | GFLOP/s | % of GEMM peak | vs PyTorch eager here | "
            "validation |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        peak = self.peak(device).get("gemm_gflops")
        for model in steps.MODELS:
            torch_rec = self.step(device, model, "torch", "eager")
            for impl, variant in keys:
                rec = self.step(device, model, impl, variant)
                if rec is None:
                    continue
                name = f"{LABEL[impl]} {variant}"
                if not self.ok(rec):
                    lines.append(
                        f"| {MODEL_TITLE[model]} | {rec['batch']} | {name} | **{rec['status']}** | | | | | "
                        f"{rec.get('check') or rec.get('error', '')} |"
                    )
                    continue
                gf = rec["flops"] / rec["median_s"] / 1e9
                pct = f"{100 * gf / peak:.1f}%" if peak else ""
                vs = ratio_text(rec["median_s"], torch_rec["median_s"]) if self.ok(torch_rec) else "–"
                if rec is torch_rec:
                    vs = "(baseline)"
                time_cell = f"**{fmt_time(rec['median_s'])}**{dagger(rec)}"
                lines.append(
                    f"| {MODEL_TITLE[model]} | {rec['batch']} | {name} | {time_cell} | "
                    f"{fmt_time(rec['q3_s'] - rec['q1_s'])} | {gf:,.1f} | {pct} | {vs} | {_check_text(rec)} |"
                )
        lines.append("")
        lines += self.target_lines(device)
        return lines

    def target_lines(self, device: str) -> list[str]:
        from bench import steps

        lines = ["### Against the targets\n"]
        mine_impl = self.main_impl(device)
        any_line = False
        for model in steps.MODELS:
            for variant in ("eager", "graph"):
                target = TARGETS.get((device, variant, model))
                if target is None:
                    continue
                (lo, hi), what = target
                rec = self.step(device, model, mine_impl, variant)
                used = variant
                if not self.ok(rec) and variant == "graph":
                    rec, used = self.step(device, model, mine_impl, "eager"), "eager"
                if not self.ok(rec):
                    continue
                t = rec["median_s"]
                span = fmt_time(lo) if lo == hi else f"{lo * 1e3:.1f}-{hi * 1e3:.1f} ms"
                if lo == hi:
                    verdict = ("ahead" if t < lo else "behind") + f" by {ratio_text(t, lo).split(' ')[0]}"
                elif t < lo:
                    verdict = f"ahead: {ratio_text(t, lo)} than the fast end"
                elif t > hi:
                    verdict = f"behind: {ratio_text(t, lo)} than the fast end, {ratio_text(t, hi)} than the slow end"
                else:
                    verdict = "within the range"
                here = self.step(device, model, "torch", variant)
                here_text = f"; PyTorch {variant} measured here: {fmt_time(here['median_s'])}" if self.ok(here) else ""
                note = "" if used == variant else " (tinygan has no graph-captured step yet: its eager step)"
                lines.append(
                    f"- {MODEL_TITLE[model]}, {variant} target {span} ({what}): {LABEL[mine_impl]} {used} "
                    f"{fmt_time(t)}{note}, **{verdict}**{here_text}."
                )
                any_line = True
        if device == "gpu":
            lines.append(
                "- The targets were taken on one H100 with PyTorch 2.11; compare the PyTorch rows above where the "
                "card or version differs."
            )
        return lines + [""] if any_line else []

    def precision_section(self) -> list[str]:
        """The GPU step at each precision beside PyTorch's (bench.step_precisions' measurement), each tinygan
        step's timeline split, and issue 11's targets: met, or missed by how much and bounded by what."""
        from bench import steps

        if not self.precisions:
            return []
        lines = [
            "## Training step by precision (GPU)\n",
            "Whole-step CUDA graphs, each validated against the float64 reference first (at its precision's "
            "tolerance), then timed in interleaved rounds of back-to-back replays (bench/step_precisions.py); the "
            "median of the rounds. tinygan's `--precision`: `fp32` (its default), `tf32`, `bf16`; PyTorch at `fp32`, "
            "`tf32` and its own `default` (TF32 convolutions through cuDNN, FP32 matrix products). The timeline "
            "columns split one profiled replay's span (bench/dev/step_timeline.py, CUPTI through PyTorch's "
            "profiler): time with a matrix product running, with only other kernels, with no kernel.\n",
            "| model | implementation | precision | median | vs PyTorch default | product / other / none µs | "
            "validation |",
            "| --- | --- | --- | ---: | ---: | ---: | --- |",
        ]
        for model in steps.MODELS:
            for (m, impl, precision), rec in self.precisions.items():
                if m != model:
                    continue
                t = rec.get("timeline")
                split = f"{t['product_us']:.0f} / {t['other_us']:.0f} / {t['none_us']:.0f}" if t else ""
                check = rec["check"] if rec["status"] == "ok" else f"**{rec['status']}**: {rec['check']}"
                lines.append(
                    f"| {MODEL_TITLE[model]} (batch {rec['batch']}) | {impl} | {precision} | "
                    f"**{fmt_time(rec['median_s'])}** | {rec.get('vs_default', '')} | {split} | {check} |"
                )
        lines += ["", "### Against issue 11's targets\n"]
        for model, precisions, limit, lead in PRECISION_TARGETS:
            lines.append(self.precision_target_line(model, precisions, limit, lead))
        return lines + [""]

    def precision_target_line(
        self, model: str, precisions: tuple[str, ...], limit: float, lead: tuple[str, float] | None
    ) -> str:
        recs = [self.precisions.get((model, "tinygan", p)) for p in precisions]
        recs = [r for r in recs if r is not None and r["status"] == "ok"]
        head = f"- {MODEL_TITLE[model]}, {' or '.join(precisions)}, target {fmt_time(limit)}"
        if not recs:
            return head + ": not measured (see Problems)."
        best = min(recs, key=lambda r: r["median_s"])
        t = best["median_s"]
        text = f"{head}: tinygan {best['precision']} {fmt_time(t)}, "
        text += "**met**" if t <= limit else f"**missed by {fmt_time(t - limit)}** ({t / limit:.2f}x the target)"
        if lead is not None:
            theirs = self.precisions.get((model, "PyTorch", lead[0]))
            if theirs is not None and theirs["status"] == "ok":
                ahead = theirs["median_s"] / t
                text += (
                    f"; {ahead:.2f}x ahead of PyTorch's {lead[0]} graph here ({fmt_time(theirs['median_s'])}), "
                    f"against the {lead[1]:g}x the target stood for"
                )
        if t > limit:
            text += ". " + self.precision_bound(best, limit)
        return text + "."

    def precision_bound(self, rec: dict, limit: float) -> str:
        """What bounds a missed step, from this run's own numbers: how its span splits, and at what share of the
        measured FP32 GEMM peak its products run now and would have to run for the target."""
        t = rec.get("timeline")
        if not t:
            return "Bound: not measured (no profiler: PyTorch is not installed)"
        rest = t["other_us"] + t["none_us"]
        text = (
            f"Bound, measured: of one replay's {t['span_us']:.0f} µs, a matrix product runs {t['product_us']:.0f} µs, "
            f"only other kernels {t['other_us']:.0f} µs, no kernel {t['none_us']:.0f} µs"
        )
        peak = self.peak("gpu").get("gemm_gflops")
        if rec["precision"] != "fp32" or not peak:
            return text + " (only the FP32 GEMM peak is measured here)"
        flops = rec["flops"]
        now = flops / (t["product_us"] * 1e-6) / 1e9
        text += (
            f". The step's products are {flops / 1e9:.1f} GFLOP: {fmt_time(flops / (peak * 1e9))} at the measured FP32 "
            f"GEMM peak ({peak / 1e3:.1f} TFLOP/s), so on the step's span they run at {100 * now / peak:.0f}% of it"
        )
        room = limit * 1e6 - rest
        if room <= 0:
            return text + f"; the other kernels and the gaps alone ({rest:.0f} µs) exceed the target"
        need = flops / (room * 1e-6) / 1e9
        return text + (
            f"; with the other kernels and the gaps as they are ({rest:.0f} µs), the target leaves {room:.0f} µs for "
            f"the products: {100 * need / peak:.0f}% of the peak across all of them"
            + (", beyond the FP32 units" if need > peak else "")
        )

    def kernel_section(self, device: str, stem: str) -> list[str]:
        impls = [
            i for i in ("reference", "numba", "gpu", "torch") if any(k[2] == i for k in self.kernels if k[0] == device)
        ]
        if not impls:
            return []
        main = self.main_impl(device)
        lines = [
            f"## Kernels ({device.upper()})\n",
            f"Median µs per call (± half the interquartile range, as % of the median). Rate and % of peak are "
            f"{SHORT[main]}'s: GFLOP/s against the measured GEMM peak for GEMM-shaped ops, GB/s (each input read "
            f"once, each output written once, as the kernel contract states them) against the measured copy "
            f"bandwidth for the rest. The last column is {SHORT[main]}'s time over PyTorch's (below 1: faster).\n",
        ]
        for model in ("mnist", "dcgan"):
            if any(k[0] == device and self.cases[k[1]].model == model for k in self.kernels):
                lines.append(f"![{model} kernels]({stem}-kernels-{device}-{model}.png)\n")
        header = "| layer | pass | " + " | ".join(f"{SHORT[i]} µs" for i in impls)
        header += f" | {SHORT[main]} rate | % peak | {SHORT[main]} / PyTorch |"
        for model in ("mnist", "dcgan"):
            ids = self.kernel_ids(device, model, impls)
            if not ids:
                continue
            lines += [f"### {MODEL_TITLE[model]}\n", header, "| --- | --- |" + " ---: |" * (len(impls) + 3)]
            for case_id in ids:
                case = self.cases[case_id]
                cells = []
                for impl in impls:
                    rec = self.kernels.get((device, case_id, impl))
                    cells.append(_kernel_cell(rec))
                rec = self.kernels.get((device, case_id, main))
                t_rec = self.kernels.get((device, case_id, "torch"))
                rate, frac = self.rate(device, case_id, rec) if self.ok(rec) else ("", None)
                ratio = f"{rec['median_s'] / t_rec['median_s']:.2f}" if self.ok(rec) and self.ok(t_rec) else ""
                pct = f"{100 * frac:.1f}%" if frac is not None else ""
                lines.append(f"| {case.layer} | {case.pass_} | " + " | ".join(cells) + f" | {rate} | {pct} | {ratio} |")
            lines.append("")
        lines += self.why_lines(device)
        return lines

    def why_lines(self, device: str) -> list[str]:
        """One sentence (or two) per op family on where the time goes, from the numbers above."""
        main = self.main_impl(device)
        recs = {cid: r for (d, cid, impl), r in self.kernels.items() if d == device and impl == main and self.ok(r)}
        if not recs:
            return []
        floor = min(r["median_s"] for r in recs.values())
        lines = [
            "### Why kernels are far from peak\n",
            f"The fastest {SHORT[main]} call measured is {fmt_us(floor)} µs: that is the per-call cost "
            + (
                "(Python dispatch, argument checks, the output allocation; Numba's parallel kernels below a size "
                "threshold run on one thread)"
                if device == "cpu"
                else "(Python dispatch through CuPy plus one kernel launch)"
            )
            + ". Calls within 3x of it are counted as overhead-bound below."
            + (
                " Memory-bound rates above 100% mean cache-resident arrays: the peak is a 256 MiB copy from DRAM on "
                "one thread, while these arrays (at most 8 MiB) sit in cache and Numba uses every core."
                if device == "cpu"
                else ""
            )
            + "\n",
        ]
        families = {}
        for cid, r in recs.items():
            families.setdefault(self.cases[cid].family, []).append((cid, r))
        for family, items in families.items():
            fracs = [(self.rate(device, cid, r)[1] or 0.0, cid) for cid, r in items]
            lo, hi = min(fracs), max(fracs)
            bound = sum(1 for _, r in items if r["median_s"] < 3 * floor)
            ratios = [
                (r["median_s"] / self.kernels[(device, cid, "torch")]["median_s"], cid)
                for cid, r in items
                if self.ok(self.kernels.get((device, cid, "torch")))
            ]
            if len(items) == 1:
                text = f"- **{family}** ({_short(self.cases[lo[1]])}): {100 * lo[0]:.1f}% of peak"
            else:
                text = (
                    f"- **{family}** ({len(items)} calls): {100 * lo[0]:.1f}% ({_short(self.cases[lo[1]])}) to "
                    f"{100 * hi[0]:.1f}% ({_short(self.cases[hi[1]])}) of peak"
                )
            if bound:
                text += f"; {bound} overhead-bound" if len(items) > 1 else "; overhead-bound"
            slow = sorted(((r, cid) for r, cid in ratios if r >= 2), reverse=True)
            if len(ratios) == 1:
                text += f"; {ratios[0][0]:.2f}x PyTorch's time"
            elif ratios:
                text += f"; {min(ratios)[0]:.2f}x to {max(ratios)[0]:.2f}x PyTorch's time"
                if slow:
                    shown = ", ".join(f"{_short(self.cases[cid])} ({r:.1f}x)" for r, cid in slow[:4])
                    more = f" and {len(slow) - 4} more" if len(slow) > 4 else ""
                    text += f". PyTorch is at least twice as fast on {shown}{more}"
            text += ". " + WHY[(family, device)]
            lines.append(text)
        return lines + [""]

    def memory_section(self, device: str) -> list[str]:
        recs = [m for m in self.memory if m["device"] == device]
        if not recs:
            return []
        if device == "cpu":
            lines = [
                "## Memory (CPU)\n",
                "Peak resident memory of a process that ran 3 training steps (`ru_maxrss`, a fresh process per "
                "row), and its rise over the same process warmed up (imports, JIT, a step at batch 4) before the "
                "real-size models existed: parameters, optimizer state, activations, caches and temporaries.\n",
                "| model | batch | implementation | peak RSS MiB | rise for the step MiB |",
                "| --- | ---: | --- | ---: | ---: |",
            ]
            for m in recs:
                if m["status"] != "ok":
                    lines.append(f"| {MODEL_TITLE[m['model']]} | {m['batch']} | {LABEL[m['impl']]} | {m['status']} | |")
                    continue
                lines.append(
                    f"| {MODEL_TITLE[m['model']]} | {m['batch']} | {LABEL[m['impl']]} | {mib(m['peak_rss'])} | "
                    f"{mib(m['step_rise'])} |"
                )
        else:
            lines = [
                "## Memory (GPU)\n",
                "Over the timed steps of the training-step measurement. tinygan: the size of CuPy's memory pool (it "
                "keeps every block it ever allocated, so its size is the high-water mark, an upper bound on peak "
                "use) plus the captured graph's own pool, and what was live between steps (weights, gradients, "
                "optimizer state, the layers' caches). PyTorch: `max_memory_allocated` (`max_memory_reserved` "
                "beside it) and what was allocated between steps. Neither counts the CUDA context.\n",
                "| model | batch | implementation | peak MiB | of which CUDA-graph pool MiB | PyTorch reserved MiB | "
                "live between steps MiB |",
                "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
            ]
            for m in recs:
                name = f"{LABEL[m['impl']]} {m['variant']}"
                head = f"| {MODEL_TITLE[m['model']]} | {m['batch']} | {name} |"
                if m["status"] != "ok":
                    lines.append(f"{head} {m['status']} | | | |")
                elif m["impl"] == "torch":
                    lines.append(
                        f"{head} {mib(m['gpu_peak_allocated'])} | | {mib(m['gpu_peak_reserved'])} | "
                        f"{mib(m['gpu_live_after'])} |"
                    )
                else:
                    graph = mib(m["gpu_graph_pool"]) if m.get("gpu_graph_pool") else ""
                    lines.append(
                        f"{head} {mib(m['gpu_pool_high_water'])} | {graph} | | {mib(m['gpu_live_between_steps'])} |"
                    )
        return lines + [""]

    def scaling_curves(self, device: str) -> dict[tuple[str, str, str], list[tuple[int, float]]]:
        curves: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for (d, model, impl, variant, batch), rec in self.steps.items():
            if d == device and self.ok(rec) and impl != "reference":
                curves.setdefault((model, impl, variant), []).append((batch, rec["median_s"]))
                if busy(rec):
                    self.flagged_points.add((d, model, impl, variant, batch))
        return {k: sorted(v) for k, v in curves.items() if len(v) > 1}

    def scaling_section(self, device: str, stem: str) -> list[str]:
        curves = self.scaling_curves(device)
        if not curves:
            return []
        sizes = sorted({b for pts in curves.values() for b, _ in pts})
        lines = [
            f"## Time per step against batch size ({device.upper()})\n",
            f"![scaling]({stem}-scaling-{device}.png)\n",
            "Milliseconds per training step (µs per image in brackets); batch 125 is the MNIST headline batch. "
            "The reference kernels are left out (seconds per DCGAN step at the larger batches).",
        ]
        if device == "cpu" and self.meta["quick"]:
            lines[-1] += " With --quick the CPU DCGAN stops at batch 256."
        lines += ["", "| model | implementation | " + " | ".join(map(str, sizes)) + " |"]
        lines.append("| --- | --- |" + " ---: |" * len(sizes))
        for (model, impl, variant), pts in sorted(curves.items(), key=lambda kv: (kv[0][0], _impl_order(kv[0][1:]))):
            got = dict(pts)
            cells = [
                f"{got[b] * 1e3:,.1f} ({got[b] / b * 1e6:,.0f})"
                + (" †" if (device, model, impl, variant, b) in self.flagged_points else "")
                if b in got
                else ""
                for b in sizes
            ]
            lines.append(f"| {MODEL_TITLE[model]} | {LABEL[impl]} {variant} | " + " | ".join(cells) + " |")
        return lines + [""]

    def method_section(self) -> list[str]:
        return [
            "## Method\n",
            "- Every implementation is validated before it is timed: kernels against tinygan's reference "
            "kernels run in float64 on the same (float32) inputs, error = max|got - want| / max|want|, tolerance "
            "1e-4 (Adam's parameters 1e-5); the training step by its weight gradients of G and D after one step "
            "from the same weights with the same noise, labels and dropout masks, tolerance 1e-2 (see "
            "bench/steps.py for why). A wrong implementation is listed as **wrong** and not timed.",
            "- CPU times: `time.perf_counter` around back-to-back calls (batched to about 2 ms per repeat), "
            "median and interquartile range over the repeats, after warm-up calls (Numba's compilation included "
            "in the warm-up, not in the times). GPU times: CUDA events around the calls after warm-up.",
            "- Each implementation runs in a process of its own (bench/worker.py), so Numba's and PyTorch's "
            "thread pools never share one. PyTorch on the CPU uses as many threads as the machine has cores; on "
            "the GPU, TF32 is off (`allow_tf32 = False` for cuBLAS and cuDNN), so both sides compute in FP32.",
            "- PyTorch's kernels are called as eager training calls them: forward through `torch.nn.functional` "
            "with inputs that require grad, backward through `torch.autograd.grad` for exactly the gradients "
            "tinygan's kernel returns; Adam is `torch.optim.Adam` (default implementation; `fused=True` beside "
            "`adam_update_multi`). Both sides pay their framework's per-call overhead.",
            "- Layer shapes are those of the seed models at batch 125 (MNIST) and 128 (DCGAN); the "
            "discriminator runs on 2N images in its own step, its layers are listed at N.",
            "- FLOPs: 2·M·N·K per GEMM-shaped pass (Dense, both convolutions: forward, data and weight "
            "gradients alike); bytes for the other ops: each input read once and each output written once.",
        ]

    def problem_section(self) -> list[str]:
        bad = [r for r in self.r.records if r.get("status") in ("wrong", "error")]
        if not bad and not self.r.problems:
            return ["", "No implementation failed validation; no worker failed."]
        lines = ["", "## Problems\n"]
        lines += [f"- {p}" for p in self.r.problems]
        for r in bad:
            what = r.get("check") or r.get("error", "")
            lines.append(f"- {r['device']} {r['impl']} {r.get('variant', '')} {r['id']}: **{r['status']}**: {what}")
        return lines

    def summary_table(self) -> str:
        """The few lines printed at the end of a run."""
        from bench import steps

        rows = ["device model  implementation            median      vs PyTorch eager here"]
        for device in self.devices:
            for model in steps.MODELS:
                torch_rec = self.step(device, model, "torch", "eager")
                for key in sorted({(k[2], k[3]) for k in self.steps if k[0] == device}, key=_impl_order):
                    rec = self.step(device, model, *key)
                    if rec is None:
                        continue
                    name = f"{LABEL[key[0]]} {key[1]}"
                    if not self.ok(rec):
                        rows.append(f"{device:6s} {model:6s} {name:25s} {rec['status']}")
                        continue
                    vs = ratio_text(rec["median_s"], torch_rec["median_s"]) if self.ok(torch_rec) else ""
                    vs = "(baseline)" if rec is torch_rec else vs
                    rows.append(f"{device:6s} {model:6s} {name:25s} {fmt_time(rec['median_s']):>10s}  {vs}")
        for device in self.devices:
            for line in self.target_lines(device)[1:]:
                if line.startswith("- ") and "target" in line:
                    rows.append(line.replace("**", ""))
        bad = sum(1 for r in self.r.records if r.get("status") in ("wrong", "error"))
        rows.append(f"{bad} wrong or failed measurements; {len(self.r.problems)} worker problems")
        rows += [f"  {p}" for p in self.r.problems]
        return "\n".join(rows)


# How each op family spends its time, by device. The numbers beside these lines come from the run; these
# sentences say what the code does, so they hold wherever the report runs.
WHY = {
    ("dense", "cpu"): "The products are NumPy's BLAS in both tinygan sets (kernels/cpu keeps the reference Dense), "
    "the same call as the peak measurement: the large ones come close to it, the 100->256 ones are too short to "
    "amortize BLAS's packing and thread start, and the 1-unit output layers are matrix-vector products (the data "
    "gradient an outer product, K = 1) that BLAS runs at a few GFLOP/s.",
    ("dense", "gpu"): "cuBLAS through cupy.matmul: at batch 125-128 most of these GEMMs take a few microseconds, so "
    "the launch and CuPy's dispatch dominate, and the bias add and bias-gradient sum are one more launch each.",
    ("conv2d", "cpu"): "Here % of peak is the share of the call that its GEMM would need at the peak rate; the rest is "
    "im2col (every input pixel copied k² = 9 times), col2im, the NCHW transposes and the bias sum. That rest grows as "
    "the GEMM shrinks: the 3-channel first layer (K = 27) and the 4x4-output last layer are the extremes, where "
    "PyTorch's oneDNN convolutions work without the copies.",
    ("conv2d", "gpu"): "im2col, the cuBLAS GEMM and col2im are separate launches with full-size intermediates, where "
    "cuDNN gathers inside the GEMM (implicit GEMM); the 8x8 and 4x4 layers are launch-bound.",
    ("conv_transpose2d", "cpu"): "Written as conv2d's adjoint: the forward is a GEMM into a column buffer of k² = 25 "
    "entries per input pixel, then a col2im gather; the data gradient is im2col of dy and a GEMM. The copies cost "
    "as much as the arithmetic, and the 64->3 layer's GEMMs are thin (3 channels).",
    ("conv_transpose2d", "gpu"): "A GEMM into a 25-entries-per-pixel column buffer, then a col2im gather kernel: "
    "memory traffic on that buffer plus two launches; launch-bound at the 4->8 layer.",
    ("batchnorm", "cpu"): "Memory-bound (two reductions and one elementwise pass); the arrays (0.5-8 MiB) sit in "
    "cache, so the rate can exceed the large-copy bandwidth.",
    ("batchnorm", "gpu"): "Memory-bound reductions over 0.5-8 MiB: a few microseconds of traffic, so launch-bound.",
    ("activation", "cpu"): "Memory-bound elementwise passes; below 2^18 elements Numba runs them on one thread "
    "(kernels/cpu/activation.py), where PyTorch uses every core. Numba's sigmoid forward evaluates exp with the "
    "scalar libm call in float64 while NumPy and PyTorch use SIMD code: the reason kernels/cpu already keeps "
    "NumPy's tanh forward, and the one large loss to PyTorch here.",
    ("activation", "gpu"): "Elementwise over at most 32 MiB: launch-bound, a few µs of traffic per launch.",
    ("dropout", "cpu"): "Memory-bound elementwise with a byte mask; the layer-level row also draws the mask with "
    "NumPy's float64 generator on the host, which costs more than the kernel.",
    ("dropout", "gpu"): "Launch-bound elementwise kernels; the layer-level row adds the mask draw (on the device "
    "where the layer has a Philox generator there, else on the host and copied over).",
    ("bce", "cpu"): "250-256 logits: pure per-call overhead.",
    ("bce", "gpu"): "256 logits in one block: pure launch cost.",
    ("adam", "cpu"): "Memory-bound: 28 bytes per parameter in one fused pass; per-tensor calls add Python overhead "
    "for the small tensors (biases, BatchNorm).",
    ("adam", "gpu"): "Per tensor, one launch each: launch-bound for the many small tensors, which is what "
    "adam_update_multi (one launch for the whole model) removes.",
}


def _short(case: Any) -> str:
    return f"{re.sub(r'^[GD]: ', '', case.layer)} {case.pass_}"


def _impl_order(key: tuple[str, str]) -> tuple[int, int]:
    impl, variant = key
    return (["reference", "numba", "gpu", "torch"].index(impl), ["eager", "graph"].index(variant))


def busy(rec: dict | None) -> bool:
    return bool(rec and (rec.get("others_cpu") or 0) > harness.BUSY)


def dagger(rec: dict | None) -> str:
    return " †" if busy(rec) else ""


def _kernel_cell(rec: dict | None) -> str:
    if rec is None:
        return ""
    if rec.get("status") == "ok":
        return f"{fmt_us(rec['median_s'])} {spread(rec)}{dagger(rec)}"
    if rec.get("status") == "wrong":
        return f"**wrong** ({rec.get('max_error', float('nan')):.1e})"
    return rec.get("status", "?")


def _check_text(rec: dict) -> str:
    if "max_error" not in rec:
        return "(scaling point)"
    if rec.get("variant") == "graph":
        return "replays train"
    return f"gradients within {rec['max_error']:.1e}"


def git_commit() -> str:
    """The checkout's short commit; TINYGAN_COMMIT where the tree travelled without its .git (a lent GPU)."""
    if os.environ.get("TINYGAN_COMMIT"):
        return os.environ["TINYGAN_COMMIT"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tinygan", "kernels", "bench"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# -- plots ----------------------------------------------------------------------------------------------------


def plot_all(report: Report, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    written = []
    for device in report.devices:
        for fn in (plot_steps, plot_kernels, plot_scaling):
            written += fn(report, device, out_dir, stem)
    return written


COLORS = {"reference": "#999999", "numba": "#1f77b4", "gpu": "#2ca02c", "torch": "#d62728"}


def plot_steps(report: Report, device: str, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    from bench import steps

    keys = sorted({(k[2], k[3]) for k in report.steps if k[0] == device}, key=_impl_order)
    if not keys:
        return []
    models = [m for m in steps.MODELS if any(k[0] == device and k[1] == m for k in report.steps)]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        names, values, colors = [], [], []
        for impl, variant in keys:
            rec = report.step(device, model, impl, variant)
            if report.ok(rec):
                names.append(f"{SHORT[impl]}\n{variant}")
                values.append(rec["median_s"] * 1e3)
                colors.append(COLORS[impl] if variant == "eager" else _lighter(COLORS[impl]))
                ax.errorbar(
                    len(names) - 1,
                    values[-1],
                    yerr=[[values[-1] - rec["q1_s"] * 1e3], [rec["q3_s"] * 1e3 - values[-1]]],
                    color="black",
                    capsize=3,
                    lw=1,
                )
        ax.bar(range(len(values)), values, color=colors)
        for i, v in enumerate(values):
            ax.text(i, v, fmt_time(v / 1e3), ha="center", va="bottom", fontsize=8)
        for variant, style in (("eager", "--"), ("graph", ":")):
            target = TARGETS.get((device, variant, model))
            if target:
                (lo, hi), what = target
                ax.axhspan(lo * 1e3, hi * 1e3 * 1.01, color="orange", alpha=0.35)
                ax.axhline(lo * 1e3, ls=style, color="darkorange", lw=1, label=f"target: {what}")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(
            0, max(values + [t[0][1] * 1e3 for k, t in TARGETS.items() if k[0] == device and k[2] == model]) * 1.15
        )
        ax.set_ylabel("ms per training step (median, IQR bars)")
        ax.set_title(f"{MODEL_TITLE[model]}, batch {steps.BATCH[model]}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Training step, {device.upper()}: {report.machine_title()}", fontsize=10)
    fig.tight_layout()
    path = out_dir / f"{stem}-steps-{device}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_kernels(report: Report, device: str, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt
    import numpy as np

    impls = [
        i for i in ("reference", "numba", "gpu", "torch") if any(k[2] == i and k[0] == device for k in report.kernels)
    ]
    main = report.main_impl(device)
    written = []
    for model in ("mnist", "dcgan"):
        ids = report.kernel_ids(device, model, impls)
        if not ids:
            continue
        labels = [f"{report.cases[i].layer}, {report.cases[i].pass_}" for i in ids]
        height = max(4.0, 0.17 * len(ids) + 1.2)
        fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(15, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
        y = np.arange(len(ids))
        width = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            times = [report.kernels.get((device, i, impl)) for i in ids]
            vals = [r["median_s"] * 1e6 if report.ok(r) else np.nan for r in times]
            ax_t.barh(y + (j - (len(impls) - 1) / 2) * width, vals, height=width, color=COLORS[impl], label=SHORT[impl])
        ax_t.set_xscale("log")
        ax_t.set_xlabel("µs per call (median)")
        ax_t.set_yticks(y, labels, fontsize=6)
        ax_t.invert_yaxis()
        ax_t.legend(fontsize=7, loc="best")
        fracs = []
        for i in ids:
            r = report.kernels.get((device, i, main))
            fracs.append(100 * (report.rate(device, i, r)[1] or np.nan) if report.ok(r) else np.nan)
        colors = ["#1f77b4" if report.cases[i].bound == "compute" else "#ff7f0e" for i in ids]
        ax_p.barh(y, fracs, color=colors)
        ax_p.set_xscale("log")
        ax_p.axvline(100, color="black", lw=0.8)
        ax_p.set_xlabel(f"{SHORT[main]}: % of peak (blue: GEMM GFLOP/s, orange: copy GB/s)")
        fig.suptitle(f"{MODEL_TITLE[model]} kernels, {device.upper()}: {report.machine_title()}", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{stem}-kernels-{device}-{model}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_scaling(report: Report, device: str, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    from bench import steps

    curves = report.scaling_curves(device)
    if not curves:
        return []
    models = [m for m in steps.MODELS if any(k[0] == m for k in curves)]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        for (m, impl, variant), pts in sorted(curves.items(), key=lambda kv: _impl_order(kv[0][1:])):
            if m != model:
                continue
            xs, ys = zip(*[(b, t) for b, t in pts if b in SCALING_SIZES])
            ax.plot(
                xs,
                [t * 1e3 for t in ys],
                marker="o",
                ls="-" if variant == "eager" else "--",
                color=COLORS[impl],
                label=f"{SHORT[impl]} {variant}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(SCALING_SIZES, [str(b) for b in SCALING_SIZES])
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms per training step")
        ax.set_title(MODEL_TITLE[model])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Time per step against batch size, {device.upper()}: {report.machine_title()}", fontsize=10)
    fig.tight_layout()
    path = out_dir / f"{stem}-scaling-{device}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _lighter(color: str) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*(int(c + (255 - c) * 0.5) for c in (r, g, b)))


# -- main ---------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu", "all"),
        default="all",
        help="cpu, gpu, or all: the CPU plus the GPU where CuPy finds one (default)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats, CPU DCGAN scaling up to batch 256")
    parser.add_argument("--out", default=None, help="folder for the report (default bench/results)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--impls", help="comma list: reference, numba, gpu, torch (default: all present)")
    parser.add_argument("--filter", help="only the kernels whose id matches this regular expression")
    parser.add_argument("--models", default="mnist,dcgan", help="comma list of mnist, dcgan (default both)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even where installed")
    parser.add_argument(
        "--deadline", type=float, help="seconds: skip what would start after this (the report is still written)"
    )
    parser.add_argument("--render", metavar="JSON", help="only write the report again from a saved .json")
    args = parser.parse_args(argv)
    args.out_given = args.out is not None
    args.out = args.out or str(REPO / "bench" / "results")
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}: choose from {SECTIONS}")
    if not args.models or set(args.models.split(",")) - {"mnist", "dcgan"}:
        parser.error(f"--models takes mnist, dcgan or both, received {args.models!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_saved(args)
    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("gpu", "all"):
        reason = gpu_reason()
        if reason is None:
            devices.append("gpu")
        else:
            print(f"GPU benchmarks skipped: {reason}", flush=True)
    if not devices:
        print("nothing to measure", flush=True)
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tinygan-report-") as tmp:
        runner = Runner(args, Path(tmp))
        collect(args, devices, runner)
    now = dt.datetime.now(dt.timezone.utc)
    meta = {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "devices": devices,
        "quick": args.quick,
        "elapsed_s": time.monotonic() - started,
        "commit": git_commit(),
        "finished_utc": now.strftime("%Y-%m-%d %H:%M"),
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{machine_slug(runner.info, devices)}-{now:%Y-%m-%d}"
    raw = out_dir / f"{stem}.json"
    saved = {"meta": meta, "info": runner.info, "records": runner.records, "problems": runner.problems}
    saved["loads"] = runner.loads
    raw.write_text(json.dumps(saved, indent=1, default=float) + "\n")
    return write_report(saved, out_dir, stem)


def write_report(saved: dict[str, Any], out_dir: Path, stem: str) -> int:
    results = argparse.Namespace(
        info=saved["info"], records=saved["records"], problems=saved["problems"], loads=saved.get("loads", [])
    )
    report = Report(results, saved["meta"]["devices"], saved["meta"])
    pngs = plot_all(report, out_dir, stem)
    md = out_dir / f"{stem}.md"
    md.write_text(report.render(stem))
    print(f"\nwrote {md}, {stem}.json and {len(pngs)} plots", flush=True)
    print(report.summary_table(), flush=True)
    return 0


def render_saved(args: argparse.Namespace) -> int:
    """Write the Markdown and the plots again from a report's .json (no measuring)."""
    path = Path(args.render)
    saved = json.loads(path.read_text())
    out_dir = Path(args.out) if args.out_given else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_report(saved, out_dir, path.stem)


def machine_slug(info: dict[str, Any], devices: list[str]) -> str:
    if "gpu" in devices and info.get("gpu", {}).get("machine"):
        return harness.slug(info["gpu"]["machine"]["gpu"])
    m = info.get("cpu", {}).get("machine", {})
    return f"{harness.slug(m.get('cpu', 'cpu'))}-{m.get('cores', os.cpu_count())}c"


if __name__ == "__main__":
    sys.exit(main())
