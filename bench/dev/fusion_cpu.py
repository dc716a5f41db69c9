"""Sequential's fusion plan on the CPU: the seed networks' forward + backward with the plan on and off,
alternating in one process (so both see the same load), validated first (the two agree to float32 rounding).

    python -m bench.dev.fusion_cpu [--reps 10] [--kernels numba]
    python -m bench.dev.fusion_cpu --ops        # the DCGAN D's three large convolutions, op by op

Prints one JSON line per network: medians and minima of fused and unfused (ms), their ratio, and the 1-minute
load average before and after. D runs in evaluation mode (no dropout masks, which are drawn per forward).
``--ops`` times each Conv2d + LeakyReLU(0.2) of the DCGAN discriminator (batch 128) as the fused op against
the conv op followed by the activation op, forward and backward, alternating, validated first.
"""

# ruff: noqa: I001, E402  (tinygan is imported before NumPy on purpose, as in bench.side_by_side)
import argparse
import json
import os
import time

import tinygan  # noqa: F401
import numpy as np

from tinygan import backend, models

NETS = {
    "dcgan.D": ("dcgan", "D", (128, 3, 32, 32)),
    "dcgan.G": ("dcgan", "G", (128, 100)),
    "mnist.G": ("mnist_dense", "G", (125, 100)),
    "mnist.D": ("mnist_dense", "D", (250, 784)),
}


def _pass(net, x, dy, training):
    net.zero_grad()
    y = net.forward(x, training=training, logits=True)
    dx = net.backward(dy)
    return y, dx


OPS_CASES = [  # (x shape, W shape, stride): the DCGAN discriminator's first three convolutions at batch 128
    ((128, 3, 32, 32), (64, 3, 3, 3), (1, 1)),
    ((128, 64, 32, 32), (128, 64, 3, 3), (2, 2)),
    ((128, 128, 16, 16), (128, 128, 3, 3), (2, 2)),
]


def ops(reps: int, kernels: str) -> None:
    K = backend.kernels("cpu", kernels)
    rng = np.random.default_rng(0)
    for xs, ws, s in OPS_CASES:
        _time_ops(K, rng, xs, ws, s, reps)


def _time_ops(K, rng, xs, ws, s, reps: int) -> None:
    slope, pad = 0.2, (1, 1)
    x = rng.standard_normal(xs).astype(np.float32)
    W = (0.1 * rng.standard_normal(ws)).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y, cols = K.conv2d_forward(x, W, b, s, pad, slope)
    z, _ = K.conv2d_forward(x, W, b, s, pad)
    assert np.allclose(y, K.leaky_relu_forward(z, slope), atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    runs = {
        "fused_fwd": lambda: K.conv2d_forward(x, W, b, s, pad, slope),
        "unfused_fwd": lambda: K.leaky_relu_forward(K.conv2d_forward(x, W, b, s, pad)[0], slope),
        "fused_bwd": lambda: K.conv2d_backward(dy, cols, W, x.shape, s, pad, y, slope, dW, db),
        "unfused_bwd": lambda: K.conv2d_backward(
            K.leaky_relu_backward(dy, z, slope), cols, W, x.shape, s, pad, None, None, dW, db
        ),
    }
    times = {k: [] for k in runs}
    load = os.getloadavg()[0]
    for _ in range(reps):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    med = {k: round(1e3 * float(np.median(v)), 2) for k, v in times.items()}
    ratios = {f"{p}_unfused_over_fused": round(med[f"unfused_{p}"] / med[f"fused_{p}"], 3) for p in ("fwd", "bwd")}
    out = {"x": xs, "W": ws, "stride": s, **{f"{k}_ms": v for k, v in med.items()}, **ratios}
    print(json.dumps({**out, "reps": reps, "load": [load, os.getloadavg()[0]]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--kernels", default="numba", choices=["numba", "reference"])
    parser.add_argument("--nets", nargs="*", default=list(NETS))
    parser.add_argument("--ops", action="store_true", help="time the DCGAN D's conv ops instead of whole networks")
    args = parser.parse_args()
    if args.ops:
        return ops(args.reps, args.kernels)
    backend.set_cpu_kernels(args.kernels)
    rng = np.random.default_rng(0)
    for name in args.nets:
        family, role, shape = NETS[name]
        net = models.build(family, role)
        training = role == "G"
        x = rng.standard_normal(shape).astype(np.float32)
        y = net.forward(x, training=training, logits=True)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        results = {}
        for fuse in (False, True):  # validate (and warm up) both
            net.set_fusion(fuse)
            results[fuse] = _pass(net, x, dy, training)
        for a, b in zip(results[False], results[True]):
            err = float(np.linalg.norm(a - b) / np.linalg.norm(a))
            assert err < 1e-5, f"{name}: fused and unfused differ by {err:.2e}"
        times = {False: [], True: []}
        load = os.getloadavg()[0]
        for _ in range(args.reps):
            for fuse in (False, True):
                net.set_fusion(fuse)
                start = time.perf_counter()
                _pass(net, x, dy, training)
                times[fuse].append(time.perf_counter() - start)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(
            json.dumps(
                {
                    "net": name,
                    "kernels": args.kernels,
                    "fused_ms": round(med[True], 2),
                    "unfused_ms": round(med[False], 2),
                    "fused_min_ms": round(1e3 * min(times[True]), 2),
                    "unfused_min_ms": round(1e3 * min(times[False]), 2),
                    "unfused_over_fused": round(med[False] / med[True], 3),
                    "reps": args.reps,
                    "load": [load, os.getloadavg()[0]],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
