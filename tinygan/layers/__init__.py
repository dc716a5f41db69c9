"""The layers: each one module, each a thin object over the kernels of its op."""

from tinygan.layers.activation import LeakyReLU, ReLU, Sigmoid, Tanh
from tinygan.layers.base import Layer
from tinygan.layers.batchnorm import BatchNorm1d, BatchNorm2d
from tinygan.layers.conv2d import Conv2d
from tinygan.layers.conv_transpose2d import ConvTranspose2d
from tinygan.layers.dense import Dense
from tinygan.layers.dropout import Dropout
from tinygan.layers.reshape import Flatten, Reshape
from tinygan.layers.sequential import Sequential
from tinygan.layers.upsample import Upsample

__all__ = [
    "Layer", "Dense", "Sequential", "Conv2d", "ConvTranspose2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "Dropout", "BatchNorm1d", "BatchNorm2d", "Flatten", "Reshape", "Upsample",
]  # fmt: skip
