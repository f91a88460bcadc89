"""The thread count of the BLAS behind Numba's ``np.dot`` (SciPy's OpenBLAS).

Some CPU kernels split their work over Numba's threads (``prange``) and
call BLAS from each of them. OpenBLAS's own worker threads must then stay
idle: on two cores the two pools take turns instead of running together
(measured on the MNIST convnet's fused blocks: a 0.6 ms kernel took 4.5 ms
at the median, a time slice of the scheduler). ``single_threaded()`` sets
the count to one for the length of a ``with`` block and restores it after;
a plan whose steps split their work runs inside it (``Plan.forward`` and
``Plan.backward``).

The library is found among the loaded shared objects (``/proc/self/maps``):
SciPy's wheels ship ``libscipy_openblas``, other builds link a system
``libopenblas``. Where none is found (another BLAS, another OS) the block
changes nothing.
"""

import ctypes
import os

_SETTERS = (
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)
_library = None
_searched = False


def _loaded_openblas_paths():
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    # numpy's own OpenBLAS (64-bit integers, symbols ending in ``64_``) is
    # not the one Numba's np.dot calls; SciPy's comes first.
    return sorted((p for p in paths if os.path.isfile(p)), key=lambda p: ("scipy" not in p, p))


def _find_library():
    """``(set, get)`` of the BLAS Numba calls, or None."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library Numba's np.dot calls)

    for path in _loaded_openblas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SETTERS:
            setter, getter = getattr(library, set_name, None), getattr(library, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                return setter, getter
    return None


def _blas():
    global _library, _searched
    if not _searched:
        _library, _searched = _find_library(), True
    return _library


def blas_threads():
    """The BLAS's current thread count, or None when it cannot be read."""
    library = _blas()
    return None if library is None else library[1]()


class single_threaded:
    """``with single_threaded():`` runs the block with BLAS on one thread
    (nestable; a no-op where the BLAS is not found)."""

    __slots__ = ("_previous",)

    def __enter__(self):
        library = _blas()
        self._previous = None
        if library is not None:
            self._previous = library[1]()
            if self._previous != 1:
                library[0](1)
        return self

    def __exit__(self, *exc):
        if self._previous is not None and self._previous != 1:
            _blas()[0](self._previous)
        return False
