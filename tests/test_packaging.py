"""The package installs with kernels/ as nkeras.kernels, also from a wheel."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_kernel_package():
    import nkeras
    import nkeras.kernels.cpu.dense as dense

    assert nkeras.__version__.count(".") == 2
    assert Path(dense.__file__).parent.parent.name == "kernels"


@pytest.mark.slow
def test_non_editable_wheel_imports_kernels(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(ROOT)],
        check=True,
    )
    (wheel,) = wheel_dir.glob("nkeras-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    probe = (
        "import nkeras, nkeras.kernels.cpu.dense as d, numpy as np;"
        "print(nkeras.__file__); print(d.__file__);"
        "m = nkeras.Sequential([nkeras.Input((3,)), nkeras.layers.Dense(2)]);"
        "print('x'.join(map(str, m.predict(np.ones((4, 3)), verbose=0).shape)));"
        "print(nkeras.datasets.digits.load_data()[0][0].shape[0])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    module_path, kernel_path, shape, digits = result.stdout.split()
    assert str(env_dir) in module_path and str(env_dir) in kernel_path, result.stdout
    assert kernel_path.endswith(os.path.join("nkeras", "kernels", "cpu", "dense.py"))
    assert shape == "4x2"
    assert digits == "1437", "the embedded digits data must ship in the wheel"
