"""CuPy GPU kernels: hand-written CUDA (one .cu file per op, beside its wrapper) compiled with NVRTC
on first use and cached; matrix products through cuBLAS.

Importing this module imports cupy; tinygan.backend only does so once a GPU was asked for.
Besides the contract's ops: ``adam_update_multi`` (a whole model's Adam step in one launch, its
step count optionally in device memory) and ``adam.zero_multi``; ``cublas.matmul`` (a GEMM that also
works inside CUDA stream capture, which the ops switch to automatically while the current stream
is capturing, and inside ``_common.capture_gemm``); ``gan`` (the GAN training step's own kernels,
for tinygan.train's CUDA-graph step).
"""

import cupy  # noqa: F401

from . import cublas, gan  # noqa: F401
from .activation import (  # noqa: F401
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from .adam import adam_update, adam_update_multi  # noqa: F401
from .augment import (  # noqa: F401
    augment_parameters,
    brightness_backward,
    brightness_forward,
    contrast_backward,
    contrast_forward,
    cutout_backward,
    cutout_forward,
    saturation_backward,
    saturation_forward,
    translation_backward,
    translation_forward,
)
from .batchnorm import (  # noqa: F401
    batchnorm_backward,
    batchnorm_forward,
    batchnorm_inference,
    batchnorm_update_running,
)
from .bce import bce_with_logits  # noqa: F401
from .conv2d import (  # noqa: F401
    col2im,
    conv2d_backward,
    conv2d_backward_data,
    conv2d_backward_weight,
    conv2d_forward,
    im2col,
)
from .conv_transpose2d import (  # noqa: F401
    conv_transpose2d_backward,
    conv_transpose2d_backward_data,
    conv_transpose2d_backward_weight,
    conv_transpose2d_forward,
)
from .dense import dense_backward, dense_backward_data, dense_backward_weight, dense_forward  # noqa: F401
from .dropout import dropout_backward, dropout_forward  # noqa: F401
from .ema import ema_decay, ema_update_multi  # noqa: F401
from .upsample import upsample_nearest_backward, upsample_nearest_forward  # noqa: F401

IMPLEMENTATION = "gpu"
