"""Every CUDA kernel the tests launch compiles to PTX for sm_90 (and, where a
ptxas that reads it is found, assembles for sm_90), without a GPU.

The simulator that runs the CUDA kernel tests executes kernels as Python, so
it cannot catch code that a real GPU build rejects (typing errors, Python
features CUDA lacks, shared arrays of non-constant shape, too many registers
for the block size). ``cuda_compile_check.py`` records every launcher call
the CUDA kernel tests make, replays each with the simulator off to collect
every (kernel, argument types) a real launch would compile, and compiles
each with ``numba.cuda.compile_ptx(..., cc=(9, 0))``. New kernel families
are covered once their tests run their launchers on "cuda"; a public
launcher or a module-level kernel that no test launches fails this test.

Needs NVRTC and NVVM (the test extra installs ``nvidia-cuda-nvrtc`` and
``nvidia-nvvm``): without them the test fails under CI=true and is skipped
elsewhere.
"""

import glob
import json
import os
import subprocess
import sys

import pytest

from cuda_compile_check import RECORDING_ENV, REPO_ROOT, SETUP_HINT, TESTS_DIR

HELPER = os.path.join(TESTS_DIR, "cuda_compile_check.py")
# The tests whose "cuda" cases (selected with -k cuda) call the launchers:
# kernel tests through tests/devices.py, layers and models on the "cuda" device.
RECORDED_TESTS = ("test_kernels_*.py", "test_cuda_*.py", "test_layers*.py")

pytestmark = pytest.mark.skipif(os.environ.get(RECORDING_ENV) == "1", reason="runs the recording itself")


def _run(args, simulator, timeout=600):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1" if simulator else "0", NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING="1")
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, HELPER, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done, (done.stdout + done.stderr)[-6000:]


def _recorded_test_files():
    files = set()
    for pattern in RECORDED_TESTS:
        files.update(glob.glob(os.path.join(TESTS_DIR, pattern)))
    files.discard(os.path.abspath(__file__))
    return sorted(os.path.relpath(path, REPO_ROOT) for path in files)


def _require_compiler(tmp_path):
    """Skip (fail under CI) unless numba-cuda can compile PTX here."""
    probe = tmp_path / "probe.json"
    done, output = _run(["probe", str(probe)], simulator=False, timeout=300)
    if done.returncode != 0 or not probe.exists():
        pytest.fail(f"the PTX probe failed (exit {done.returncode}):\n{output}")
    result = json.loads(probe.read_text())
    if result["setup_error"]:
        message = f"{SETUP_HINT}.\n{result['setup_error']}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return result


def test_every_cuda_kernel_compiles_for_sm_90(tmp_path):
    _require_compiler(tmp_path)

    records = tmp_path / "records.pkl"
    done, record_output = _run(
        [
            "record",
            str(records),
            *("-q", "-k", "cuda", "-m", "not slow and not data", "-p", "no:cacheprovider", "--tb=line"),
            *_recorded_test_files(),
        ],
        simulator=True,
    )
    if done.returncode != 0 or not records.exists():
        pytest.fail(f"recording the launcher calls failed (exit {done.returncode}):\n{record_output}")

    result_path = tmp_path / "result.json"
    done, compile_output = _run(["compile", str(records), str(result_path)], simulator=False)
    if done.returncode != 0 or not result_path.exists():
        pytest.fail(f"compiling the kernels failed (exit {done.returncode}):\n{compile_output}")
    result = json.loads(result_path.read_text())

    setup = ", ".join(f"{name} {where}" for name, where in result["setup"].items())
    summary = (
        f"{result['recorded_calls']} distinct launcher calls (of {result['record']['launches']}, "
        f"recorded in {result['record']['seconds']:.0f} s, pytest exit {result['record']['pytest_exit_code']}); "
        f"{len(result['kernels'])} signatures of {result['kernel_count']} kernels compiled for sm_90 "
        f"in {result['seconds']:.0f} s on {result['workers']} processes; {setup}"
        + (f"; {result['ptxas_note']}" if result["ptxas_note"] else "")
        + (f"; families without launchers yet: {result['empty_families']}" if result["empty_families"] else "")
    )
    print(summary)

    problems = []
    if result["record"]["pytest_exit_code"] not in (0, 1):  # 1: some tests failed, reported by them
        problems.append(f"the recording pytest run exited {result['record']['pytest_exit_code']}:\n{record_output}")
    for error in result["errors"]:
        where = error["kernel"] or "replaying a launcher"
        problems.append(f"{where} (launched by {error['op']}):\n    {error['error']}")
    if result["uncovered_launchers"]:
        problems.append(
            "launchers no CUDA test calls (so their kernels are not compiled here; add a 'cuda' case to "
            f"their kernel test): {', '.join(result['uncovered_launchers'])}"
        )
    if result["unlaunched_kernels"]:
        problems.append(
            f"module-level kernels no recorded launcher call launches: {', '.join(result['unlaunched_kernels'])}"
        )
    assert not problems, f"{len(problems)} problem(s) building the CUDA kernels for a real GPU ({summary}):\n\n" + (
        "\n\n".join(problems)
    )
