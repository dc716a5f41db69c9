"""Differentiable augmentation (Zhao, Liu, Lin, Zhu & Han, 2020, "Differentiable Augmentation for
Data-Efficient GAN Training", NeurIPS; their DiffAugment code, policy ``color,translation,cutout``).

Every transform acts on an NCHW batch ``x`` with per-sample parameters drawn by the caller (never
here), so the same parameters can be applied to two batches, replayed in the backward pass, and
drawn on the GPU by the step's own generator. Each transform is linear (or affine) in ``x``: its
backward is the transposed linear map applied to the upstream gradient ``dy`` and needs nothing of
the forward but the parameters. Per sample n (the parameters are arrays of shape (N,)):

brightness (shift b[n], DiffAugment draws b ~ U[-0.5, 0.5))::

    y = x + b                       dx = dy

saturation (factor s[n], DiffAugment draws s ~ U[0, 2)); mu_c = mean over channels, per pixel::

    y  = (x  - mu_c(x))  s + mu_c(x)         = s x  + (1 - s) mu_c(x)
    dx = (dy - mu_c(dy)) s + mu_c(dy)        = s dy + (1 - s) mu_c(dy)

contrast (factor k[n], DiffAugment draws k ~ U[0.5, 1.5)); mu = mean over (C, H, W), per sample::

    y  = (x  - mu(x))  k + mu(x)
    dx = (dy - mu(dy)) k + mu(dy)

(both maps are symmetric, s I + (1 - s) J/C with J the all-ones matrix, so the backward is the
forward applied to dy).

translation (integer shifts th[n], tw[n], DiffAugment draws each in [-r, r] with r = int(H/8 + 0.5),
resp. W; pixels from outside the image are zero)::

    y[n, c, i, j]  = x[n, c, i + th, j + tw]     where 0 <= i + th < H and 0 <= j + tw < W, else 0
    dx[n, c, i, j] = dy[n, c, i - th, j - tw]    where 0 <= i - th < H and 0 <= j - tw < W, else 0

cutout (a size_h x size_w rectangle, DiffAugment's is half the image, with top-left corner
top[n], left[n] that may lie outside the image, the rectangle then clipped)::

    m[n, i, j] = 0 if top <= i < top + size_h and left <= j < left + size_w, else 1
    y = x m                         dx = dy m

The parameters themselves come from uniform draws u in [0, 1) (one row of N per parameter) through
``augment_parameters``, so that host and device draws map the same way::

    integer row (count, low):    k = low + min(floor(u count), count - 1)     (uniform on low .. low + count - 1)
    float row (scale, offset):   v = u scale + offset

The paper's argument for applying the same differentiable transforms T to real and generated
images in D's step and to generated ones in G's step (gradient through T): D then sees only
augmented images, and G's gradient dL/dG(z) = T^T dL/dT(G(z)) trains G on the un-augmented
distribution, so the augmentation does not leak into the samples.
"""

import numpy as np

__all__ = [
    "augment_parameters",
    "brightness_forward",
    "brightness_backward",
    "saturation_forward",
    "saturation_backward",
    "contrast_forward",
    "contrast_backward",
    "translation_forward",
    "translation_backward",
    "cutout_forward",
    "cutout_backward",
]


def augment_parameters(u, plan, n_int, dtype):
    """Map uniforms to parameters: ``u`` (rows, N) float64 in [0, 1), ``plan`` (rows, 2) float64 with
    (count, low) for the first ``n_int`` rows and (scale, offset) for the others. Returns
    ``(ints, floats)``: (n_int, N) int32 and (rows - n_int, N) of ``dtype``, the equations above."""
    u = np.asarray(u, dtype=np.float64)
    plan = np.asarray(plan, dtype=np.float64)
    if u.ndim != 2 or plan.shape != (u.shape[0], 2) or not 0 <= n_int <= u.shape[0]:
        raise ValueError(
            f"augment_parameters: expected u (rows, N) and plan (rows, 2) with 0 <= n_int <= rows, received "
            f"u {u.shape}, plan {plan.shape}, n_int {n_int}"
        )
    count, low = plan[:n_int, :1], plan[:n_int, 1:]
    ints = (np.minimum(np.floor(u[:n_int] * count), count - 1) + low).astype(np.int32)
    floats = (u[n_int:] * plan[n_int:, :1] + plan[n_int:, 1:]).astype(dtype)
    return ints, floats


def check_augment_args(op, x, *per_sample):
    """One error message for every kernel set: x must be (N, C, H, W), each parameter array (N,)."""
    if np.ndim(x) != 4:
        raise ValueError(f"{op}: expected an (N, C, H, W) batch, received shape {tuple(np.shape(x))}")
    n = x.shape[0]
    for name, arr in per_sample:
        if tuple(np.shape(arr)) != (n,):
            raise ValueError(f"{op}: {name} must have one entry per sample, shape ({n},), received {np.shape(arr)}")


def _per_sample(v, x):
    """A per-sample scalar as a (N, 1, 1, 1) array of x's dtype, to broadcast over C, H, W."""
    return np.asarray(v, dtype=x.dtype).reshape(-1, 1, 1, 1)


def brightness_forward(x, shift):
    check_augment_args("brightness_forward", x, ("shift", shift))
    return x + _per_sample(shift, x)


def brightness_backward(dy, shift):
    check_augment_args("brightness_backward", dy, ("shift", shift))
    return dy.copy()


def _mix_with_mean(x, factor, axis):
    mu = x.mean(axis=axis, keepdims=True)
    return (x - mu) * _per_sample(factor, x) + mu


def saturation_forward(x, factor):
    check_augment_args("saturation_forward", x, ("factor", factor))
    return _mix_with_mean(x, factor, axis=1)


def saturation_backward(dy, factor):
    check_augment_args("saturation_backward", dy, ("factor", factor))
    return _mix_with_mean(dy, factor, axis=1)


def contrast_forward(x, factor):
    check_augment_args("contrast_forward", x, ("factor", factor))
    return _mix_with_mean(x, factor, axis=(1, 2, 3))


def contrast_backward(dy, factor):
    check_augment_args("contrast_backward", dy, ("factor", factor))
    return _mix_with_mean(dy, factor, axis=(1, 2, 3))


def _shift(src, shift_h, shift_w):
    """out[n, :, i, j] = src[n, :, i + shift_h[n], j + shift_w[n]], zero where that lies outside."""
    out = np.zeros_like(src)
    _, _, h, w = src.shape
    for n, (dh, dw) in enumerate(zip(np.asarray(shift_h).tolist(), np.asarray(shift_w).tolist())):
        # Output rows i with 0 <= i + dh < h, and the source rows they read.
        i0, i1 = max(0, -dh), min(h, h - dh)
        j0, j1 = max(0, -dw), min(w, w - dw)
        if i0 < i1 and j0 < j1:
            out[n, :, i0:i1, j0:j1] = src[n, :, i0 + dh : i1 + dh, j0 + dw : j1 + dw]
    return out


def translation_forward(x, shift_h, shift_w):
    check_augment_args("translation_forward", x, ("shift_h", shift_h), ("shift_w", shift_w))
    return _shift(x, shift_h, shift_w)


def translation_backward(dy, shift_h, shift_w):
    check_augment_args("translation_backward", dy, ("shift_h", shift_h), ("shift_w", shift_w))
    return _shift(dy, -np.asarray(shift_h), -np.asarray(shift_w))


def cutout_mask(shape, top, left, size):
    """The (N, 1, H, W) boolean keep mask m for a batch of shape ``shape``: False inside each rectangle."""
    n, _, h, w = shape
    size_h, size_w = size
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    top = np.asarray(top).reshape(-1, 1, 1)
    left = np.asarray(left).reshape(-1, 1, 1)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return (~inside)[:, None, :, :]


def cutout_forward(x, top, left, size):
    check_augment_args("cutout_forward", x, ("top", top), ("left", left))
    return x * cutout_mask(x.shape, top, left, size)


def cutout_backward(dy, top, left, size):
    check_augment_args("cutout_backward", dy, ("top", top), ("left", left))
    return dy * cutout_mask(dy.shape, top, left, size)
