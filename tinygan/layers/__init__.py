"""The layers: each one module, each a thin object over the kernels of its op."""

from tinygan.layers.base import Layer
from tinygan.layers.dense import Dense
from tinygan.layers.sequential import Sequential

__all__ = ["Layer", "Dense", "Sequential"]
