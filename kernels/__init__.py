"""Low-level ops as pure functions on arrays, installed as ``tinygan.kernels``.

Three implementations with the same names and signatures:
``reference`` (NumPy, readable), ``cpu`` (Numba) and ``gpu`` (CuPy + CUDA).
This package never imports the rest of tinygan.
"""
