"""Compile every CUDA kernel the tests launch to PTX for sm_90, without a GPU.

numba-cuda's simulator runs kernels as Python, so it cannot tell whether a
kernel builds for a real GPU. ``tests/test_cuda_compile.py`` runs the two
steps below, each in a subprocess of its own, since Numba reads
``NUMBA_ENABLE_CUDASIM`` once, when it is first imported:

``record`` (simulator on)
    Runs the tests that call the CUDA launchers (their "cuda" cases, ``-k
    cuda``, in ``test_kernels_*.py``, ``test_cuda_*.py`` and
    ``test_layers*.py``, without ``slow`` and ``data``) with every public
    launcher of ``nkeras.kernels.cuda.<family>`` wrapped: the wrapper notes
    what the launcher was called with (each array's dtype, shape, strides and
    aliasing, each scalar's value) and computes the result with the CPU twin
    of the same name, so the tests go on as usual in seconds instead of the
    simulator's minutes.

``compile`` (simulator off)
    Calls each recorded launcher again, with zero-filled NumPy arrays of the
    recorded shapes, after replacing the launch path of numba.cuda's
    dispatcher so that ``kernel[grid, block](*args)`` runs nothing: it notes
    the kernel, its launch size and its argument types as a real launch would
    type device arrays. Kernels built inside factories (``_make_gemm`` in
    dense.py) are covered too, since the launcher builds them as on a GPU.
    Each distinct (kernel, argument types) is then compiled with
    ``numba.cuda.compile_ptx(..., cc=(9, 0))``, which compiles the
    ``@cuda.jit(device=True)`` functions and ``@njit`` helpers it calls with
    it (for compute capability 9.0: a stand-in answers numba-cuda's question
    about the current device), and, where a ``ptxas`` that reads that PTX is
    found, assembled for sm_90, whose register and shared-memory use is
    checked against the block size the kernel was launched with.
    The result is a JSON file that the test reads.
"""

import functools
import importlib
import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

CC = (9, 0)
ARCH = "sm_90"
# Per-block and per-grid limits of compute capability 9.0.
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
REGISTERS_PER_BLOCK = 65536
STATIC_SHARED_BYTES = 48 * 1024

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
RECORDING_ENV = "NKERAS_CUDA_COMPILE_RECORDING"

SETUP_HINT = (
    "numba-cuda needs NVRTC and NVVM to compile PTX: "
    "pip install 'nvidia-cuda-nvrtc==13.0.*' 'nvidia-nvvm==13.0.*' "
    "(matching numba-cuda's cuda-bindings 13; both are in the test extra)"
)


def _families():
    from nkeras.backend.kernel_set import FAMILIES

    return FAMILIES


def public_launchers(module):
    """The module's public functions (the same rule as test_cuda_device)."""
    found = {}
    for name, value in vars(module).items():
        function = getattr(value, "py_func", value)
        if not name.startswith("_") and inspect.isfunction(function) and function.__module__ == module.__name__:
            found[name] = value
    return found


# ---- record ----------------------------------------------------------------


def _array_spec(array, position, seen):
    """("array", dtype, shape, strides, alias): ``alias`` is the position of an
    earlier argument that is the same array, or None."""
    interface = array.__array_interface__
    identity = (interface["data"][0], array.shape, array.strides, array.dtype.str)
    alias = seen.setdefault(identity, position)
    return ("array", array.dtype.str, tuple(array.shape), tuple(array.strides), None if alias == position else alias)


def _spec(value, position, seen):
    import numpy as np

    host = getattr(value, "_ary", None)  # a simulator device array wraps a NumPy array
    if isinstance(host, np.ndarray):
        return _array_spec(host, position, seen)
    if isinstance(value, np.ndarray):
        return _array_spec(value, position, seen)
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001 (reported, not raised)
        return ("unpicklable", repr(value))
    return ("value", value)


def _host(value):
    host = getattr(value, "_ary", None)
    return value if host is None else host


class _Recorder:
    def __init__(self):
        self.calls = {}
        self.wrapped = []

    def install(self):
        modules = [importlib.import_module(f"nkeras.kernels.cuda.{family}") for family in _families()]
        wrappers = {}
        for family, module in zip(_families(), modules):
            cpu = importlib.import_module(f"nkeras.kernels.cpu.{family}")
            for name, launcher in public_launchers(module).items():
                wrappers[id(launcher)] = self._wrap(family, name, launcher, getattr(cpu, name, None))
                self.wrapped.append(f"{family}.{name}")
        # Also where another family imported the launcher (dense imports
        # activation_forward): KernelSet may find it there first.
        for module in modules:
            for name, value in list(vars(module).items()):
                if id(value) in wrappers:
                    setattr(module, name, wrappers[id(value)])

    def _wrap(self, family, name, launcher, cpu_twin):
        signature = inspect.signature(launcher)
        calls = self.calls

        @functools.wraps(launcher)
        def recorded(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            seen = {}
            specs = tuple(_spec(value, position, seen) for position, value in enumerate(bound.args))
            key = (family, name, specs)
            calls[key] = calls.get(key, 0) + 1
            if cpu_twin is None:  # no CPU twin: run the launcher on the simulator
                return launcher(*args, **kwargs)
            return cpu_twin(*(_host(value) for value in bound.args))

        return recorded


def record(out_path, pytest_args):
    """Run pytest with the launchers recorded; write the calls to ``out_path``."""
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    os.environ[RECORDING_ENV] = "1"
    # As under `python -m pytest` from the repository root (some tests
    # import `tests.<helper>`), with tests/ for the plain `import devices`.
    sys.path[:0] = [REPO_ROOT, TESTS_DIR]
    import pytest

    recorder = _Recorder()
    recorder.install()
    started = time.perf_counter()
    exit_code = pytest.main(list(pytest_args))
    with open(out_path, "wb") as file:
        pickle.dump(
            {
                "calls": [(family, name, specs) for family, name, specs in recorder.calls],
                "launches": sum(recorder.calls.values()),
                "wrapped": recorder.wrapped,
                "pytest_exit_code": int(exit_code),
                "seconds": time.perf_counter() - started,
            },
            file,
        )
    return 0


# ---- compile ---------------------------------------------------------------


def _replay_array(spec):
    import numpy as np

    _, dtype, shape, strides, _ = spec
    dtype = np.dtype(dtype)
    if any(extent == 0 for extent in shape):
        return np.zeros(shape, dtype)
    contiguous = np.zeros(shape, dtype)
    if tuple(contiguous.strides) == tuple(strides):
        return contiguous
    low = sum((extent - 1) * stride for extent, stride in zip(shape, strides) if stride < 0)
    high = sum((extent - 1) * stride for extent, stride in zip(shape, strides) if stride > 0)
    buffer = np.zeros(high - low + dtype.itemsize, np.uint8)
    return np.lib.stride_tricks.as_strided(buffer[-low:].view(dtype)[:1], shape, strides)


def _replay_args(specs):
    args = []
    for spec in specs:
        kind = spec[0]
        if kind == "array":
            args.append(args[spec[4]] if spec[4] is not None else _replay_array(spec))
        elif kind == "value":
            args.append(spec[1])
        else:
            raise TypeError(f"an argument could not be recorded: {spec[1]}")
    return args


def _device_array_type(array):
    """The Numba type a device array of this layout gets at a real launch
    (the rule of numba.cuda's DeviceNDArray._numba_type_)."""
    from numba import types
    from numba.np import numpy_support

    broadcast = 0 in array.strides and array.size != 0
    if array.flags["C_CONTIGUOUS"] and not broadcast:
        layout = "C"
    elif array.flags["F_CONTIGUOUS"] and not broadcast:
        layout = "F"
    else:
        layout = "A"
    return types.Array(numpy_support.from_dtype(array.dtype), array.ndim, layout)


def _kernel_name(dispatcher):
    function = dispatcher.py_func
    name = f"{function.__module__.removeprefix('nkeras.kernels.cuda.')}.{function.__qualname__}"
    cells = []
    for cell in function.__closure__ or ():
        try:
            contents = cell.cell_contents
        except ValueError:
            continue
        skip = inspect.isroutine(contents) or inspect.ismodule(contents) or inspect.isclass(contents)
        if not skip and not hasattr(contents, "py_func"):  # not a kernel or device function
            cells.append(repr(contents))
    return f"{name}[{', '.join(cells)}]" if cells else name


def _kernel_key(dispatcher, argtypes):
    function = dispatcher.py_func
    closure = []
    for cell in function.__closure__ or ():
        try:
            closure.append(repr(cell.cell_contents))
        except ValueError:
            closure.append("<empty>")
    return (function.__code__, tuple(closure), argtypes)


class _TargetDevice:
    """What numba-cuda asks of the current device while compiling."""

    compute_capability = CC


class _Launches:
    """Stands in for a configured launch: types the arguments, launches nothing."""

    def __init__(self):
        self.kernels = {}  # key -> entry
        self.current_op = None
        self.launch_errors = []

    def install(self):
        from numba.cuda import dispatcher as cuda_dispatcher
        from numba.cuda.errors import normalize_kernel_dimensions

        launches = self

        class Launch:
            def __init__(self, dispatcher, griddim, blockdim, sharedmem=0):
                self.dispatcher = dispatcher
                self.griddim, self.blockdim = normalize_kernel_dimensions(griddim, blockdim)
                self.sharedmem = sharedmem

            def __call__(self, *args):
                launches.launch(self, args)

        def configure(self, griddim, blockdim, stream=0, sharedmem=0):
            return Launch(self, griddim, blockdim, sharedmem)

        def forall(self, ntasks, tpb=0, stream=0, sharedmem=0):
            threads = tpb or 128
            return Launch(self, max(1, (ntasks + threads - 1) // threads), threads, sharedmem)

        cuda_dispatcher.CUDADispatcher.configure = configure
        cuda_dispatcher.CUDADispatcher.forall = forall
        # A kernel's calls to @cuda.jit(device=True) functions compile them
        # for the current device's compute capability: answer CC, as an H100
        # or H200 would, instead of looking for a driver.
        cuda_dispatcher.get_current_device = _TargetDevice

    def launch(self, launch, args):
        import numpy as np

        dispatcher = launch.dispatcher
        argtypes = tuple(
            _device_array_type(value) if isinstance(value, np.ndarray) else dispatcher.typeof_pyval(value)
            for value in args
        )
        key = _kernel_key(dispatcher, argtypes)
        entry = self.kernels.get(key)
        if entry is None:
            entry = self.kernels[key] = {
                "dispatcher": dispatcher,
                "argtypes": argtypes,
                "name": _kernel_name(dispatcher),
                "ops": set(),
                "max_threads": 0,
                "max_dynamic_shared": 0,
            }
        entry["ops"].add(self.current_op)
        threads = launch.blockdim[0] * launch.blockdim[1] * launch.blockdim[2]
        entry["max_threads"] = max(entry["max_threads"], threads)
        entry["max_dynamic_shared"] = max(entry["max_dynamic_shared"], int(launch.sharedmem or 0))
        problems = []
        if threads > MAX_THREADS_PER_BLOCK:
            problems.append(f"{threads} threads per block (at most {MAX_THREADS_PER_BLOCK})")
        for axis, (size, limit) in enumerate(zip(launch.blockdim, MAX_BLOCK_DIM)):
            if size > limit or size < 1:
                problems.append(f"block dimension {'xyz'[axis]} = {size} (1 to {limit})")
        for axis, (size, limit) in enumerate(zip(launch.griddim, MAX_GRID_DIM)):
            if size > limit or size < 1:
                problems.append(f"grid dimension {'xyz'[axis]} = {size} (1 to {limit})")
        if problems:
            self.launch_errors.append(
                {
                    "kernel": entry["name"],
                    "op": self.current_op,
                    "error": f"launch {launch.griddim} x {launch.blockdim}: " + "; ".join(problems),
                }
            )


def _find_ptxas():
    candidates = []
    try:  # the CUDA toolkit's or the nvidia-cuda-nvcc wheel's
        from cuda.pathfinder import find_nvidia_binary_utility

        candidates.append(find_nvidia_binary_utility("ptxas"))
    except Exception:  # noqa: BLE001, S110 (an older cuda-pathfinder; the other places follow)
        pass
    candidates.append(shutil.which("ptxas"))
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            candidates.append(os.path.join(os.environ[variable], "bin", "ptxas"))
    candidates.append("/usr/local/cuda/bin/ptxas")
    return [path for path in candidates if path and os.path.isfile(path) and os.access(path, os.X_OK)]


def _ptxas(ptxas, ptx, workdir, name):
    """Assemble ``ptx`` for ARCH: (None or error text, {entry: (registers, shared bytes)})."""
    path = os.path.join(workdir, f"{name}.ptx")
    with open(path, "w") as file:
        file.write(ptx)
    extern = [line for line in ptx.splitlines() if line.startswith(".extern .func") and "vprintf" not in line]
    command = [ptxas, f"-arch={ARCH}", "-v", "-o", os.devnull, path]
    if extern:  # calls into a library linked at load time: assemble as relocatable code
        command.insert(1, "-c")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return "ptxas ran for more than 300 s", {}
    finally:
        os.unlink(path)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        return output.strip() or f"ptxas exited with {done.returncode}", {}
    usage, entry = {}, None
    for line in output.splitlines():
        if "Compiling entry function" in line:
            entry = line.split("'")[1]
            usage[entry] = [0, 0]
        elif entry is not None and "Used" in line and "registers" in line:
            words = line.replace(",", " ").split()
            usage[entry][0] = int(words[words.index("registers") - 1])
            if "smem" in words:
                usage[entry][1] = int(words[words.index("smem") - 2])
    return None, usage


def _registers_fit(registers, threads):
    """Whether a block of ``threads`` fits the registers of one SM (per-warp
    allocation in units of 256 registers)."""
    warps = (threads + 31) // 32
    per_warp = (registers * 32 + 255) // 256 * 256
    return warps * per_warp <= REGISTERS_PER_BLOCK


def _probe(ptxas_candidates, workdir):
    """Compile a trivial kernel: (setup info, setup error, ptxas or None, note)."""
    from numba import cuda, float32

    def probe(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] += 1

    info = {}
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        for library in ("nvrtc", "nvvm"):
            found = load_nvidia_dynamic_lib(library)
            info[library] = f"{found.abs_path} ({found.found_via})"
        ptx, _ = cuda.compile_ptx(probe, (float32[:],), cc=CC)
    except Exception as error:  # noqa: BLE001 (reported, not raised)
        return info, f"{type(error).__name__}: {error}", None, None
    info["ptx"] = " ".join(line for line in ptx.splitlines() if line.startswith((".version", ".target")))
    notes = []
    for ptxas in ptxas_candidates:
        error, _ = _ptxas(ptxas, ptx, workdir, "probe")
        if error is None:
            version = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=False).stdout.strip()
            info["ptxas"] = f"{ptxas} ({version.splitlines()[-1] if version else '?'})"
            return info, None, ptxas, None
        notes.append(f"{ptxas}: {error.splitlines()[0]}")
    note = "no ptxas found" if not ptxas_candidates else "no ptxas reads this PTX: " + "; ".join(notes)
    return info, None, None, note + " (PTX is generated but not assembled)"


def compile_all(records_path, out_path, probe_only=False):
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        raise SystemExit("compile needs NUMBA_ENABLE_CUDASIM=0")
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="nkeras-ptx-")
    result = {"errors": [], "kernels": []}
    info, setup_error, ptxas, note = _probe(_find_ptxas(), workdir)
    result.update(setup=info, setup_error=setup_error, ptxas_note=note)
    if setup_error is not None or probe_only:
        _write(out_path, result, started)
        return 0

    with open(records_path, "rb") as file:
        records = pickle.load(file)
    result["record"] = {key: records[key] for key in ("launches", "pytest_exit_code", "seconds")}
    result["recorded_calls"] = len(records["calls"])

    launches = _Launches()
    launches.install()
    families, module_kernels, uncovered_launchers, empty_families = {}, {}, [], []
    from numba.cuda.dispatcher import CUDADispatcher

    for family in _families():
        try:
            module = importlib.import_module(f"nkeras.kernels.cuda.{family}")
        except Exception as error:  # noqa: BLE001 (reported, not raised)
            result["errors"].append({"kernel": f"kernels/cuda/{family}.py", "op": None, "error": _format(error)})
            continue
        families[family] = public_launchers(module)
        if not families[family]:
            empty_families.append(family)
        for name, value in vars(module).items():
            if isinstance(value, CUDADispatcher) and not value.targetoptions.get("device"):
                module_kernels.setdefault(id(value), (f"{family}.{name}", value))

    recorded_ops = set()
    for family, name, specs in records["calls"]:
        launcher = families.get(family, {}).get(name)
        if launcher is None:
            continue
        recorded_ops.add((family, name))
        launches.current_op = f"{family}.{name}"
        try:
            launcher(*_replay_args(specs))
        except Exception as error:  # noqa: BLE001 (reported, not raised)
            launches.launch_errors.append({"kernel": None, "op": launches.current_op, "error": _format(error)})
    for family, found in families.items():
        uncovered_launchers += [f"{family}.{name}" for name in found if (family, name) not in recorded_ops]
    result["errors"] += _dedupe(launches.launch_errors)

    launched = {id(entry["dispatcher"]) for entry in launches.kernels.values()}
    result["uncovered_launchers"] = sorted(uncovered_launchers)
    result["unlaunched_kernels"] = sorted(name for key, (name, _) in module_kernels.items() if key not in launched)
    result["empty_families"] = empty_families
    result["families"] = {family: sorted(found) for family, found in families.items()}

    # Largest kernels first, spread over worker processes forked from this
    # one (they inherit the dispatchers): the tiled GEMM alone takes most of
    # a minute to compile.
    entries = sorted(
        launches.kernels.values(), key=lambda entry: (-len(entry["dispatcher"].py_func.__code__.co_code), entry["name"])
    )
    global _ENTRIES, _PTXAS, _WORKDIR
    _ENTRIES, _PTXAS, _WORKDIR = entries, ptxas, workdir
    workers = max(1, min(len(entries), os.cpu_count() or 1, 8))
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # A worker that dies (say, NVVM crashing) breaks the pool with an
        # error instead of hanging it.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            rows = list(pool.map(_compile_entry, range(len(entries))))
    else:
        rows = [_compile_entry(index) for index in range(len(entries))]
    result["workers"] = workers
    result["kernel_count"] = len({id(entry["dispatcher"]) for entry in entries})
    for entry, row in zip(entries, rows):
        result["kernels"].append(row)
        if "error" in row:
            result["errors"].append(
                {"kernel": f"{row['kernel']}{row['signature']}", "op": row["ops"], "error": row["error"]}
            )
    shutil.rmtree(workdir, ignore_errors=True)
    _write(out_path, result, started)
    return 0


_ENTRIES, _PTXAS, _WORKDIR = [], None, None


def _compile_entry(index):
    """Compile recorded kernel ``index`` to PTX (and assemble it): its report row."""
    from numba import cuda

    entry = _ENTRIES[index]
    dispatcher = entry["dispatcher"]
    options = dispatcher.targetoptions
    signature = f"({', '.join(str(argtype) for argtype in entry['argtypes'])})"
    row = {"kernel": entry["name"], "signature": signature, "ops": sorted(entry["ops"])}
    tick = time.perf_counter()
    try:
        ptx, _ = cuda.compile_ptx(
            dispatcher.py_func,
            entry["argtypes"],
            debug=options.get("debug"),
            lineinfo=options.get("lineinfo", False),
            fastmath=options.get("fastmath", False),
            opt=options.get("opt"),
            launch_bounds=options.get("launch_bounds"),
            cc=CC,
        )
    except Exception as error:  # noqa: BLE001 (reported, not raised)
        row["error"] = f"compile_ptx(cc={CC}): {_format(error)}"
        ptx = None
    row["compile_seconds"] = round(time.perf_counter() - tick, 3)
    if ptx is not None and _PTXAS is not None:
        error, usage = _ptxas(_PTXAS, ptx, _WORKDIR, f"k{index}")
        if error is not None:
            row["error"] = f"ptxas -arch={ARCH}: {error}"
        elif usage:
            registers = max(used[0] for used in usage.values())
            shared = max(used[1] for used in usage.values())
            row["registers"], row["static_shared_bytes"] = registers, shared
            if not _registers_fit(registers, entry["max_threads"]):
                row["error"] = (
                    f"{registers} registers per thread do not fit a block of "
                    f"{entry['max_threads']} threads ({REGISTERS_PER_BLOCK} registers per block)"
                )
            elif shared + entry["max_dynamic_shared"] > STATIC_SHARED_BYTES:
                row["error"] = f"{shared} bytes of shared memory per block (at most {STATIC_SHARED_BYTES})"
    return row


def _dedupe(errors):
    seen, unique = set(), []
    for error in errors:
        key = (error["kernel"], error["op"], error["error"])
        if key not in seen:
            seen.add(key)
            unique.append(error)
    return unique


def _format(error):
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return text if len(text) <= 4000 else text[:4000] + " ..."


def _write(out_path, result, started):
    result["seconds"] = round(time.perf_counter() - started, 2)
    with open(out_path, "w") as file:
        json.dump(result, file, indent=1, default=str)


def main(argv):
    mode = argv[0]
    if mode == "record":
        return record(argv[1], argv[2:])
    if mode == "compile":
        return compile_all(argv[1], argv[2])
    if mode == "probe":
        return compile_all(None, argv[1], probe_only=True)
    raise SystemExit(f"unknown mode {mode!r}: record OUT PYTEST_ARGS..., compile RECORDS OUT, probe OUT")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
