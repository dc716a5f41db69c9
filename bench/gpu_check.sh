#!/usr/bin/env bash
# Everything one call on the lent GPU machine does, in one go (device time is scarce, so nothing
# here needs a second call): report the card and the software, install tinygan without touching
# the network, run every GPU test, time the GPU kernels at DCGAN sizes, and leave the logs in $OUT.
#
#   bash bench/gpu_check.sh            # on the GPU machine; $OUT defaults to ./gpu-check-out
#   SKIP_BENCH=1 bash bench/gpu_check.sh
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
    --junitxml="$OUT/gpu-tests.xml" --durations=15 tests/
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
echo "== done: pytest exit status $status; log in $LOG"
exit $status
