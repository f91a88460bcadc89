"""Compute kernels of nkeras, installed as ``nkeras.kernels``.

``cpu`` holds ``@njit`` kernels, one module per family. Kernels import only
numpy, numba and the standard library; they know nothing of layers or models.
"""
