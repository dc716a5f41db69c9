#!/usr/bin/env bash
# The training runs behind the README's results, for one call on a lent GPU machine.
#
# Expects the genuine data in .data/ (not committed; carried to the GPU machine):
#   .data/mnist/*.gz                      the four MNIST IDX files
#   .data/cifar/cifar-10-batches-py/      CIFAR-10 python batches
#   .data/cache/metrics/mnist_classifier.npz   the cached scoring classifier (python -m tinygan.metrics)
# Writes logs, sample grids, plots, metrics and scores (no checkpoints) to $OUT/*.tgz, each under the
# 16 MB a returned file may have, and prints each run's last epochs and scores.
# RUN_SECONDS bounds each training process (default 420), so whatever finished comes back.
# RUNSET picks the runs: "survey" (the first call: eager launches, before the CUDA-graph step existed) or
# "recipes" (the second: the original recipe to epoch 60, candidates for the default recipe, CIFAR-10), or
# "original180" (the original recipe for all of its 180 epochs, alone on the GPU, scored every 20 epochs).
# SKIP_INSTALL=1 leaves out the offline `pip install -e .` (when the caller has installed tinygan already).
set -u
export PYTHONUNBUFFERED=1 TINYGAN_DATA="$PWD/.data/cache"
OUT=${OUT:-/tmp/out}
RUNS=$OUT/runs
LIMIT=${RUN_SECONDS:-420}
mkdir -p "$RUNS"
nvidia-smi -L
[ -n "${SKIP_INSTALL:-}" ] ||
  python3 -m pip install -q --no-deps --no-build-isolation -e . >"$RUNS/install.log" 2>&1 || cat "$RUNS/install.log"

mnist() {  # name, options...
  local name=$1; shift
  timeout --signal=INT "$LIMIT" python3 examples/mnist_dense.py --device gpu --data-dir .data/mnist --no-progress \
    --out "$RUNS/$name" "$@" >"$RUNS/$name.log" 2>&1
}
cifar() {
  local name=$1; shift
  timeout --signal=INT "$LIMIT" python3 examples/cifar_dcgan.py --device gpu --data-dir .data/cifar --no-progress \
    --out "$RUNS/$name" "$@" >"$RUNS/$name.log" 2>&1
}

start=$(date +%s)
case "${RUNSET:-recipes}" in
survey)
  mnist original --recipe original --epochs 60 --checkpoint-every 20 --sample-every 10 &
  mnist smooth --epochs 30 --checkpoint-every 10 --sample-every 10 &
  mnist smooth_leaky --epochs 30 --activation leaky --checkpoint-every 10 --sample-every 10 &
  mnist smooth_tanh --epochs 30 --output tanh --checkpoint-every 10 --sample-every 10 &
  mnist smooth_lrg --epochs 30 --lr-d 1e-4 --lr-g 2e-4 --checkpoint-every 10 --sample-every 10 &
  cifar cifar_all --class all --checkpoint-every 50 --sample-every 25 &
  cifar cifar_joint --class joint --checkpoint-every 50 --sample-every 25 &
  cifar cifar_joint_noise --class joint --instance-noise 0.1 --auto-stop --checkpoint-every 50 --sample-every 25 &
  ;;
recipes)
  each="--epochs 30 --checkpoint-every 10 --sample-every 10 --activation leaky --output tanh"
  mnist original --recipe original --epochs 60 --checkpoint-every 20 --sample-every 10 &
  mnist leaky_tanh $each --no-label-smoothing &
  mnist leaky_tanh_smooth $each --real-label 0.9 0.9 &
  mnist leaky_tanh_noise $each --real-label 0.9 0.9 --instance-noise 0.1 &
  mnist leaky_tanh_b64 $each --real-label 0.9 0.9 --batch-size 64 &
  mnist leaky_tanh_lr1 $each --real-label 0.9 0.9 --lr 1e-4 &
  mnist leaky_smooth_noise --epochs 30 --checkpoint-every 10 --sample-every 10 --activation leaky \
    --real-label 0.9 0.9 --instance-noise 0.2 &
  cifar cifar_all --class all --checkpoint-every 50 --sample-every 25 &
  cifar cifar_joint --class joint --checkpoint-every 50 --sample-every 25 &
  ;;
original180)
  mnist original180 --recipe original --checkpoint-every 20 --sample-every 20 &
  ;;
esac
wait
echo "training took $(( $(date +%s) - start )) s"

# Score every kept MNIST checkpoint (and the last one) with the cached classifier.
for run in "$RUNS"/original "$RUNS"/original180 "$RUNS"/smooth* "$RUNS"/leaky*; do
  [ -d "$run" ] || continue
  for ckpt in "$run"/checkpoints/*.npz "$run"/checkpoint.npz; do
    [ -f "$ckpt" ] || continue
    tag=$(basename "$ckpt" .npz)
    python3 -m tinygan.sample "$ckpt" --n 10000 --out "/tmp/$tag.npy" --grid "$run/$tag-grid.png" --device gpu >/dev/null &&
      python3 -m tinygan.metrics "/tmp/$tag.npy" --data-dir .data/mnist --json "$run/$tag-scores.json" \
        >"$run/$tag-scores.txt" 2>&1 &
  done
  wait
done
for run in "$RUNS"/*/; do find "$run" -name '*.npz' -delete; done
for log in "$RUNS"/*.log; do echo "== $log"; grep -E "^epoch|auto-stop|error|Error" "$log" | tail -n 4; done
for s in "$RUNS"/*/*-scores.txt; do echo "== $s"; head -n 20 "$s"; done
cd "$RUNS"
pack() {  # archive, then the runs (folders and logs) that exist
  local archive=$1; shift
  local present=()
  for p in "$@"; do [ -e "$p" ] && present+=("$p"); done
  [ ${#present[@]} -gt 0 ] && tar -czf "$OUT/$archive" "${present[@]}"
}
pack mnist_original.tgz original original.log
pack mnist_original180.tgz original180 original180.log
pack mnist_candidates.tgz smooth* leaky*
pack cifar_all.tgz cifar_all cifar_all.log
pack cifar_joint.tgz cifar_joint*
cd "$OUT" && rm -rf "$RUNS"
ls -la "$OUT"
echo "all done after $(( $(date +%s) - start )) s"
