#!/usr/bin/env bash
# Everything one call on the lent GPU machine does, in one go (device time is scarce, so nothing
# here needs a second call): report the card and the software, install tinygan without touching
# the network, run every GPU test, time the GPU kernels at DCGAN sizes, time a whole training step
# of both GANs (tinygan eager and as a CUDA graph, PyTorch eager and as a CUDA graph, GPU memory),
# profile the replayed step kernel by kernel, and leave the logs in $OUT.
#
#   bash bench/gpu_check.sh            # on the GPU machine; $OUT defaults to ./gpu-check-out
#   SKIP_BENCH=1 SKIP_TRAIN_BENCH=1 TESTS=tests/test_gpu_training.py bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"

exec > >(tee -a "$LOG") 2>&1

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) tinygan GPU check, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== card"
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
echo "== software"
"$PY" - <<'EOF'
import platform, sys
print("python", sys.version.split()[0], platform.machine())
for name in ("numpy", "cupy", "numba", "pytest", "torch"):
    try:
        mod = __import__(name)
        print(name, mod.__version__)
    except Exception as exc:  # report, don't fail: the tests say what they need
        print(name, "not importable:", exc)
import cupy
rt = cupy.cuda.runtime
print("CUDA runtime", rt.runtimeGetVersion(), "driver", rt.driverGetVersion())
print("device 0:", rt.getDeviceProperties(0)["name"].decode(), "cc", cupy.cuda.Device(0).compute_capability)
EOF
nvcc --version 2>/dev/null | tail -1

echo "== install (no network: --no-deps --no-build-isolation)"
if "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip-install.log" 2>&1; then
    echo "editable install ok"
else
    # tinygan/__init__.py also finds kernels/ from a checkout, so the repository root on the path is enough.
    echo "pip install failed (see pip-install.log); using PYTHONPATH=$PWD"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import tinygan.kernels.gpu as K, tinygan.gpu_random; print('tinygan.kernels.gpu from', K.__file__)" || exit 1

echo "== GPU tests"
timeout "${TEST_TIMEOUT:-420}" "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$OUT/gpu-tests.xml" --durations=15 ${TESTS:-tests/}
status=$?
"$PY" - "$OUT/gpu-tests.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
a = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
a["passed"] = a["tests"] - a["failures"] - a["errors"] - a["skipped"]
print("== summary (gpu-marked tests collected):", ", ".join(f"{k} {v}" for k, v in a.items()), f"time {suite.get('time')} s")
EOF

if [ -z "${SKIP_BENCH:-}" ]; then
    echo "== kernel timings (CUDA events, median of 30 after 5 warm-ups)"
    timeout "${BENCH_TIMEOUT:-120}" "$PY" - <<'EOF'
import numpy as np, cupy as cp
import tinygan.kernels.gpu as K
from tinygan.gpu_random import PhiloxGenerator

def timed(label, fn, reps=30):
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record(); fn(); b.record(); b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b))
    print(f"{label:60s} {np.median(times) * 1000:9.1f} us")

rng = np.random.default_rng(0)
f32 = lambda *s: cp.asarray(rng.standard_normal(s).astype(np.float32))
# CIFAR-10 DCGAN, batch 64: discriminator conv 3->64 (32x32 -> 16x16), generator convT 128->64 (8x8 -> 16x16).
x, W, b = f32(64, 3, 32, 32), f32(64, 3, 4, 4), f32(64)
y, cols = K.conv2d_forward(x, W, b, (2, 2), (1, 1))
dy = f32(*y.shape)
timed("im2col 64x3x32x32 k4 s2 p1", lambda: K.im2col(x, (4, 4), (2, 2), (1, 1)))
timed("conv2d_forward 64x3x32x32 -> 64x64x16x16", lambda: K.conv2d_forward(x, W, b, (2, 2), (1, 1)))
timed("conv2d_backward_data (col2im gather)", lambda: K.conv2d_backward_data(dy, W, x.shape, (2, 2), (1, 1)))
timed("conv2d_backward_weight", lambda: K.conv2d_backward_weight(dy, cols, W.shape))
xt, Wt, bt = f32(64, 128, 8, 8), f32(128, 64, 4, 4), f32(64)
yt = K.conv_transpose2d_forward(xt, Wt, bt, (2, 2), (1, 1), (0, 0))
dyt = f32(*yt.shape)
timed("conv_transpose2d_forward 64x128x8x8 -> 64x64x16x16", lambda: K.conv_transpose2d_forward(xt, Wt, bt, (2, 2), (1, 1), (0, 0)))
timed("conv_transpose2d_backward_data", lambda: K.conv_transpose2d_backward_data(dyt, Wt, (2, 2), (1, 1)))
xb, g1, b1 = f32(64, 64, 16, 16), f32(64), f32(64)
yb, mean, var, xhat, inv_std = K.batchnorm_forward(xb, g1, b1, 1e-5)
timed("batchnorm_forward 64x64x16x16", lambda: K.batchnorm_forward(xb, g1, b1, 1e-5))
timed("batchnorm_backward 64x64x16x16", lambda: K.batchnorm_backward(xb, xhat, inv_std, g1))
timed("leaky_relu_forward 64x64x16x16", lambda: K.leaky_relu_forward(xb, 0.2))
xd, Wd, bd = f32(64, 100), f32(100, 1024), f32(1024)
timed("dense_forward 64x100 @ 100x1024", lambda: K.dense_forward(xd, Wd, bd))
z = f32(64, 1)
timed("bce_with_logits 64x1", lambda: K.bce_with_logits(z, 1.0))
shapes = [(100, 256), (256,), (256, 512), (512,), (512, 1024), (1024,), (1024, 784), (784,)] * 2
ps = [f32(*s) for s in shapes]
gs = [f32(*s) for s in shapes]
ms = [cp.zeros(s, np.float32) for s in shapes]
vs = [cp.zeros(s, np.float32) for s in shapes]
def per_tensor():
    for p, g, m, v in zip(ps, gs, ms, vs):
        K.adam_update(p, g, m, v, 2e-4, 0.5, 0.999, 1e-8, 3)
n_params = sum(int(np.prod(s)) for s in shapes)
timed(f"adam_update x{len(shapes)} tensors ({n_params} params)", per_tensor)
timed(f"adam_update_multi, same {len(shapes)} tensors, one launch", lambda: K.adam_update_multi(ps, gs, ms, vs, 2e-4, 0.5, 0.999, 1e-8, 3))
gen = PhiloxGenerator(1)
buf = cp.empty(64 * 100 * 1000, np.float32)
timed("Philox normal_into 6.4M float32", lambda: gen.normal_into(buf))
timed("cupy.random.standard_normal 6.4M float32 (comparison)", lambda: cp.random.standard_normal(buf.size, dtype=np.float32))
EOF
fi
if [ -z "${SKIP_TRAIN_BENCH:-}" ]; then
    # One training step = D step + G step + both Adam updates + the logged figures, the examples' default
    # recipes (MNIST dense GAN batch 125, DCGAN batch 128), 10000 random images. Each step between two
    # CUDA events, median after 10 warm-up steps; "wall" is the host clock over all timed steps.
    BENCH_PY="$(mktemp --suffix=.py)"
    cat >"$BENCH_PY" <<'EOF'
import json, os, statistics, sys, time, traceback
import numpy as np

WHO = sys.argv[1]  # "tinygan", "tinygan-tf32" (graph only, run with TINYGAN_TF32=1), "torch" or "profile"
OUT = os.environ.get("OUT", ".")
MODELS = {
    # the examples' default recipes: batch, D lr, G lr, real labels, fake labels
    "mnist_dense": dict(batch=125, lr_d=2e-4, lr_g=2e-4, real=(0.9, 0.9), fake=(0.0, 0.0), shape=(784,)),
    "dcgan": dict(batch=128, lr_d=2e-4, lr_g=1e-4, real=(0.8, 1.0), fake=(0.0, 0.1), shape=(3, 32, 32)),
}
STEPS = {"eager": int(os.environ.get("EAGER_STEPS", 60)), "graph": int(os.environ.get("GRAPH_STEPS", 300))}
N_IMAGES = 10000


def data_for(family):
    x = np.random.default_rng(0).random((N_IMAGES, *MODELS[family]["shape"]), dtype=np.float32)
    return x if family == "mnist_dense" else 2 * x - 1


def summary(times_ms, wall_ms):
    return {
        "median_ms": statistics.median(times_ms),
        "p10_ms": float(np.percentile(times_ms, 10)),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "wall_ms": wall_ms,
        "steps": len(times_ms),
    }


def time_steps(step, steps, events, sync, warm=10):
    """Each step between two device events (median), and the wall clock over all of them."""
    for _ in range(warm):
        step()
    sync()
    pairs = []
    t0 = time.perf_counter()
    for _ in range(steps):
        a, b = events()
        a.record()
        step()
        b.record()
        pairs.append((a, b))
    sync()
    wall = (time.perf_counter() - t0) * 1000 / steps
    return pairs, wall


def bench_tinygan(modes=("eager", "graph"), label=""):
    import cupy as cp
    from tinygan.train import GANConfig, GANTrainer

    cp.cuda.Device().synchronize()
    free0, total = cp.cuda.runtime.memGetInfo()
    results = {}
    for family, m in MODELS.items():
        data = data_for(family)
        for mode in modes:
            try:
                cfg = GANConfig(
                    model=family, batch_size=m["batch"], lr_d=m["lr_d"], lr_g=m["lr_g"], beta1=0.5,
                    real_label=m["real"], fake_label=m["fake"], device="gpu", epochs=1000,
                    g_options={"seed": 0}, d_options={"seed": 1}, cuda_graph=mode == "graph",
                    image_range="tanh" if family == "dcgan" else "01",
                )
                cp.get_default_memory_pool().free_all_blocks()
                cp.cuda.Device().synchronize()
                free_before, _ = cp.cuda.runtime.memGetInfo()
                tr = GANTrainer(cfg, data, "/tmp/bench-run", progress=False)
                cp.cuda.Device().synchronize()  # uploads on the default stream, before the runner's stream
                tr.runner.begin_epoch(tr.rng.permutation(len(tr.data)), 0)
                stream = tr.runner.stream

                def events():
                    return cp.cuda.Event(), cp.cuda.Event()

                with stream:
                    pairs, wall = time_steps(tr.runner.step, STEPS[mode], events, stream.synchronize)
                times = [cp.cuda.get_elapsed_time(a, b) for a, b in pairs]
                r = summary(times, wall)
                free_after, _ = cp.cuda.runtime.memGetInfo()
                mem = tr.runner.memory()
                r.update(
                    captured=tr.runner.graph.graph is not None,
                    pool_held_mib=mem["pool_held"] / 2**20,
                    graph_pool_mib=mem["graph_pool"] / 2**20,
                    device_delta_mib=(free_before - free_after) / 2**20,
                    device_used_mib=mem["device_used"] / 2**20,
                    context_and_other_mib=(total - free0) / 2**20,
                )
                with stream:
                    sums = tr._acc.get()
                r["figures_finite"] = bool(np.isfinite(sums).all())
                results[f"{family}/{mode}{label}"] = r
                print(f"tinygan {family:12s} {mode + label:6s} median {r['median_ms']:7.3f} ms/step (p10 {r['p10_ms']:.3f}, "
                      f"p90 {r['p90_ms']:.3f}), wall {wall:7.3f} ms/step, captured {r['captured']}, "
                      f"pools {r['pool_held_mib'] + r['graph_pool_mib']:.0f} MiB "
                      f"(graph {r['graph_pool_mib']:.0f}), device +{r['device_delta_mib']:.0f} MiB", flush=True)
                del tr
            except Exception:
                traceback.print_exc()
                results[f"{family}/{mode}{label}"] = {"error": traceback.format_exc()}
    return results


def torch_models(family):
    import torch.nn as nn

    if family == "mnist_dense":
        G = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 1024),
                          nn.ReLU(), nn.Linear(1024, 784), nn.Sigmoid())
        D = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Dropout(0.25), nn.Linear(1024, 512), nn.ReLU(),
                          nn.Dropout(0.25), nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.25), nn.Linear(256, 1))
        return G, D

    class Reshape(nn.Module):
        def forward(self, x):
            return x.view(-1, 128, 4, 4)

    def up(cin, cout):
        return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)

    G = nn.Sequential(nn.Linear(100, 2048), Reshape(), nn.BatchNorm2d(128), nn.LeakyReLU(0.2), up(128, 128),
                      nn.BatchNorm2d(128), nn.LeakyReLU(0.2), up(128, 64), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),
                      up(64, 3), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 3, 2, 1), nn.LeakyReLU(0.2),
                      nn.Conv2d(128, 128, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(128, 32, 3, 2, 1), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(512, 1))
    return G, D


def torch_trainer(family, device, capturable):
    """tinygan's step in PyTorch: batch from a device index, G(z) detached into D's batch, smoothed labels,
    D step, G step through a frozen D, both Adams, the five figures summed on the device."""
    import torch
    import torch.nn.functional as F

    m = MODELS[family]
    n = m["batch"]
    torch.manual_seed(0)
    G, D = torch_models(family)
    G, D = G.to(device), D.to(device)
    opt_d = torch.optim.Adam(D.parameters(), lr=m["lr_d"], betas=(0.5, 0.999), capturable=capturable)
    opt_g = torch.optim.Adam(G.parameters(), lr=m["lr_g"], betas=(0.5, 0.999), capturable=capturable)
    data = torch.from_numpy(data_for(family)).to(device)
    perm = torch.randperm(N_IMAGES, device=device)
    idx = torch.empty(n, dtype=torch.long, device=device)
    acc = torch.zeros(5, dtype=torch.float64, device=device)
    ones = torch.ones(n, 1, device=device)
    (rl, rh), (fl, fh) = m["real"], m["fake"]
    fixed = torch.cat([torch.full((n, 1), rl), torch.full((n, 1), fl)]).to(device)
    d_params = list(D.parameters())

    def step():
        real = data.index_select(0, idx)
        fake = G(torch.randn(n, 100, device=device)).view_as(real)
        logits = D(torch.cat([real, fake.detach()]))
        if rl == rh and fl == fh:
            t = fixed
        else:
            u = torch.rand(2 * n, 1, device=device)
            t = torch.cat([rl + (rh - rl) * u[:n], fl + (fh - fl) * u[n:]])
        d_loss = F.binary_cross_entropy_with_logits(logits, t)
        opt_d.zero_grad(set_to_none=False)
        d_loss.backward()
        opt_d.step()
        for p in d_params:
            p.requires_grad_(False)
        g_logits = D(G(torch.randn(n, 100, device=device)).view_as(real))
        g_loss = F.binary_cross_entropy_with_logits(g_logits, ones)
        opt_g.zero_grad(set_to_none=False)
        g_loss.backward()
        opt_g.step()
        for p in d_params:
            p.requires_grad_(True)
        with torch.no_grad():
            s = torch.sigmoid(logits)
            acc.add_(torch.stack([d_loss, g_loss, s[:n].mean(), s[n:].mean(), (logits[n:] < 0).float().mean()]).double())

    pos = [0]

    def next_batch():
        s = (pos[0] * n) % (N_IMAGES - n)
        idx.copy_(perm[s : s + n])
        pos[0] += 1

    return step, next_batch, acc


def bench_torch():
    import torch

    dev = "cuda"
    results = {}
    for tf32 in (True, False):
        # PyTorch's defaults: TF32 for cuDNN convolutions on, for matmuls off. "fp32" turns both off.
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        label = "default" if tf32 else "fp32"
        for family in MODELS:
            for mode in ("eager", "graph"):
                try:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    step, next_batch, acc = torch_trainer(family, dev, capturable=mode == "graph")

                    def one():
                        next_batch()
                        step()

                    run = one
                    if mode == "graph":
                        s = torch.cuda.Stream()
                        s.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(s):
                            for _ in range(3):
                                one()
                        torch.cuda.current_stream().wait_stream(s)
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            step()

                        def run():
                            next_batch()
                            graph.replay()

                    def events():
                        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

                    pairs, wall = time_steps(run, STEPS[mode], events, torch.cuda.synchronize)
                    times = [a.elapsed_time(b) for a, b in pairs]
                    r = summary(times, wall)
                    r.update(
                        max_allocated_mib=torch.cuda.max_memory_allocated() / 2**20,
                        reserved_mib=torch.cuda.memory_reserved() / 2**20,
                        figures_finite=bool(torch.isfinite(acc).all()),
                    )
                    results[f"{family}/{mode}/{label}"] = r
                    print(f"torch   {family:12s} {mode:6s} {label:7s} median {r['median_ms']:7.3f} ms/step "
                          f"(p10 {r['p10_ms']:.3f}, p90 {r['p90_ms']:.3f}), wall {wall:7.3f} ms/step, "
                          f"peak allocated {r['max_allocated_mib']:.0f} MiB, reserved {r['reserved_mib']:.0f} MiB",
                          flush=True)
                except Exception:
                    traceback.print_exc()
                    results[f"{family}/{mode}/{label}"] = {"error": traceback.format_exc()}
    return results


def profile_tinygan():
    """Where a replayed step's time goes: CUPTI (through torch.profiler) sees every kernel of the graph."""
    import torch  # noqa: F401  (before cupy: profiler set-up)
    from torch.profiler import ProfilerActivity, profile

    import cupy as cp
    from tinygan.train import GANConfig, GANTrainer

    results = {}
    for family, m in MODELS.items():
        cfg = GANConfig(model=family, batch_size=m["batch"], lr_d=m["lr_d"], lr_g=m["lr_g"], beta1=0.5,
                        real_label=m["real"], fake_label=m["fake"], device="gpu", epochs=1000,
                        g_options={"seed": 0}, d_options={"seed": 1},
                        image_range="tanh" if family == "dcgan" else "01")
        tr = GANTrainer(cfg, data_for(family), "/tmp/bench-prof", progress=False)
        cp.cuda.Device().synchronize()
        tr.runner.begin_epoch(tr.rng.permutation(len(tr.data)), 0)
        with tr.runner.stream:
            for _ in range(5):
                tr.runner.step()
            tr.runner.stream.synchronize()
            reps = 10
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(reps):
                    tr.runner.step()
                tr.runner.stream.synchronize()
        rows = []
        for e in prof.key_averages():
            t = getattr(e, "device_time_total", None)
            if t is None:
                t = getattr(e, "cuda_time_total", 0)
            if t > 0:
                rows.append((t / reps, e.count / reps, e.key))
        rows.sort(reverse=True)
        total = sum(r[0] for r in rows)
        kernels = sum(r[1] for r in rows)
        print(f"== profile {family}: {kernels:.0f} kernels per step, {total:.0f} us of kernel time per step")
        groups = {}
        for t, c, k in rows:
            g = "gemm" if ("gemm" in k.lower() or "sm90" in k or "cutlass" in k.lower() or "xmma" in k) else k.split("<")[0].split("(")[0][:40]
            a = groups.setdefault(g, [0.0, 0.0])
            a[0] += t
            a[1] += c
        for g, (t, c) in sorted(groups.items(), key=lambda kv: -kv[1][0])[:25]:
            print(f"   {t:8.1f} us  {c:5.0f} launches  {g}")
        results[family] = {"kernels_per_step": kernels, "kernel_us_per_step": total,
                           "top": [(round(t, 2), round(c, 1), k[:120]) for t, c, k in rows[:60]]}
    return results


if __name__ == "__main__":
    fn = {
        "tinygan": bench_tinygan,
        "tinygan-tf32": lambda: bench_tinygan(("graph",), "/tf32"),
        "torch": bench_torch,
        "profile": profile_tinygan,
    }[WHO]
    res = fn()
    with open(os.path.join(OUT, f"train-step-{WHO}.json"), "w") as f:
        json.dump(res, f, indent=1)
EOF
    echo "== training step: tinygan, eager and CUDA graph"
    OUT="$OUT" timeout "${TRAIN_BENCH_TIMEOUT:-150}" "$PY" "$BENCH_PY" tinygan
    echo "== training step: tinygan as a CUDA graph with TF32 GEMMs (TINYGAN_TF32=1; the default is FP32)"
    OUT="$OUT" TINYGAN_TF32=1 timeout "${TRAIN_BENCH_TIMEOUT:-150}" "$PY" "$BENCH_PY" tinygan-tf32
    echo "== training step: PyTorch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null), eager and CUDA graph"
    OUT="$OUT" timeout "${TORCH_BENCH_TIMEOUT:-150}" "$PY" "$BENCH_PY" torch
    if [ -z "${SKIP_PROFILE:-}" ]; then
        echo "== where a replayed tinygan step spends its time (torch.profiler/CUPTI, per step)"
        OUT="$OUT" timeout "${PROFILE_TIMEOUT:-90}" "$PY" "$BENCH_PY" profile
    fi
fi
echo "== done: pytest exit status $status; log in $LOG"
exit $status
