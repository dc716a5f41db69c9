#!/usr/bin/env bash
# The GPU part of the benchmark report in one call on the lent GPU machine: install tinygan without the
# network, then `python -m bench.report --device gpu` (CuPy kernels and PyTorch, validated then timed with
# CUDA events; training steps eager and CUDA-graph; GPU memory; batch-size scaling). Everything lands in
# $OUT: the report (.md), its raw numbers (.json), 4 PNG plots and this log: 7 files. It stops itself
# inside 9 minutes (--deadline; what was measured by then is still written), under the lent machine's
# 10-minute limit per command.
#
#   bash bench/gpu_bench.sh                  # on the GPU machine; $OUT defaults to ./gpu-bench-out
#   DEADLINE=300 bash bench/gpu_bench.sh     # a shorter budget (the report skips what would start later)
#   QUICK=1 bash bench/gpu_bench.sh          # fewer repeats
#   TINYGAN_COMMIT=abc1234 bash ...          # name the commit where the tree came without its .git
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-bench-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
exec > >(tee -a "$OUT/gpu-bench.log") 2>&1

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) tinygan GPU benchmarks, commit ${TINYGAN_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true

# Offline install: the machine has no network, and the GPU image already has numpy, numba, cupy and torch.
if ! "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/tmp/tinygan-pip-install.log 2>&1; then
    echo "pip install failed (/tmp/tinygan-pip-install.log); using PYTHONPATH=$PWD"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - <<'PYEOF' || exit 1
import sys
from tinygan.backend import gpu_unavailable_reason
reason = gpu_unavailable_reason()
if reason:
    sys.exit(f"no usable GPU: {reason}")
import cupy, numpy
try:
    import torch
    t = f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
except ImportError:
    t = "torch not installed (the report leaves PyTorch out)"
print(f"numpy {numpy.__version__}, cupy {cupy.__version__}, {t}")
PYEOF

timeout "${HARD_TIMEOUT:-500}" "$PY" -m bench.report --device gpu --out "$OUT" --deadline "${DEADLINE:-420}" \
    ${QUICK:+--quick}
status=$?
echo "== files in $OUT:"
ls -la "$OUT"
echo "== training step (from the report)"
for md in "$OUT"/*.md; do
    [ -e "$md" ] && awk '/^## Training step/{p=1} /^## Kernels/{p=0} p' "$md" | grep -E '^(\||- |#)'
done
echo "== done: exit status $status"
exit $status
