"""The layers: each one module, each a thin object over the kernels of its op."""

from tinygan.layers.activation import *  # noqa: F401,F403
from tinygan.layers.base import Layer
from tinygan.layers.batchnorm import *  # noqa: F401,F403
from tinygan.layers.conv2d import *  # noqa: F401,F403
from tinygan.layers.conv_transpose2d import *  # noqa: F401,F403
from tinygan.layers.dense import Dense
from tinygan.layers.dropout import *  # noqa: F401,F403
from tinygan.layers.reshape import *  # noqa: F401,F403
from tinygan.layers.sequential import Sequential

# INTEGRATION: restore the full list once every layer module exists:
# "Conv2d", "ConvTranspose2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Dropout", "BatchNorm1d", "BatchNorm2d",
# "Flatten", "Reshape"
__all__ = ["Layer", "Dense", "Sequential"]
