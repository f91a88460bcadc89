"""``@njit(cache=True)`` kernels: plain functions over arrays that write into
preallocated outputs. Modules are imported lazily by ``nkeras.backend`` so a
program compiles (or loads from cache) only the kernels it uses."""
