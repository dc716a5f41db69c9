"""Exponential moving average of parameters (Polyak & Juditsky, 1992, "Acceleration of stochastic
approximation by averaging"; for GAN generators: Yazici et al., 2019, "The Unusual Effectiveness of
Averaging in GAN Training", ICLR, and Karras et al., 2018, "Progressive Growing of GANs").

After each optimizer step, every averaged tensor moves towards its parameter::

    ema = decay_t ema + (1 - decay_t) param

With ``num_updates`` = t, the number of updates already applied (0 for the first), the decay is
warmed up as TensorFlow's ``tf.train.ExponentialMovingAverage(decay, num_updates)`` does::

    decay_t = min(decay, (1 + t) / (10 + t))

so the first updates (decay 0.1, 0.18, 0.25, ...) quickly forget the random initialization the
average starts from, and a decay of 0.999 only applies from t = 8990 on. ``num_updates=None`` uses
``decay`` as it is. Not a gradient op, so no backward: like Adam's, an in-place update (each
``ema`` array is overwritten where it lies).
"""

__all__ = ["ema_decay", "ema_update_multi"]


def ema_decay(decay, num_updates=None):
    """The decay of the next update, after ``num_updates`` earlier ones (None: no warm-up)."""
    if num_updates is None:
        return float(decay)
    t = int(num_updates)
    return min(float(decay), (1.0 + t) / (10.0 + t))


def check_ema_args(op, ema_params, params):
    """Same length, and each ema array of its parameter's shape and dtype (one message for all sets)."""
    if len(ema_params) != len(params):
        raise ValueError(f"{op}: got {len(ema_params)} ema_params and {len(params)} params")
    for i, (e, p) in enumerate(zip(ema_params, params)):
        if tuple(e.shape) != tuple(p.shape) or e.dtype != p.dtype:
            raise ValueError(
                f"{op}: ema_params[{i}] has shape {tuple(e.shape)} and dtype {e.dtype}, its parameter "
                f"{tuple(p.shape)} and {p.dtype}"
            )


def ema_update_multi(ema_params, params, decay, num_updates=None, advance=True):
    """``ema = d ema + (1 - d) param`` for every pair, d = ema_decay(decay, num_updates); in place.

    ``advance`` matters only for a count kept in device memory (the GPU set's, for a captured graph),
    which the launch then increments; a host count is the caller's to advance."""
    check_ema_args("ema_update_multi", ema_params, params)
    d = ema_decay(decay, num_updates)
    for e, p in zip(ema_params, params):
        e *= d
        e += (1.0 - d) * p
