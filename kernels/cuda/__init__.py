"""CUDA twins of ``nkeras.kernels.cpu``.

Every public function here is a host launcher with the same name and
signature as its CPU twin: it takes device arrays (and the same scalars),
picks a grid and a block, and launches ``@cuda.jit`` kernels on the default
stream. Launchers never allocate device memory and never wait for the GPU,
so a training step queues its kernels without a host synchronisation.

Scalar helpers (activations, hashes, per-row loss bodies) are the CPU
modules' ``@njit`` functions: Numba compiles them for the GPU when a CUDA
kernel calls them, so both devices run the same arithmetic.
"""
