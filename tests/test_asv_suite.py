"""The asv suite in asv_bench/ runs: every benchmark executes once
(``asv run --python=same --quick``) against the installed nkeras, and none
fails. Needs asv (in the ``test`` and ``bench`` extras): skipped without
it, except in CI (``CI=true``), where it fails.

The run uses a copy of asv_bench/asv.conf.json whose results and
environment directories lie in a temporary directory, and a temporary HOME
for asv's machine file, so it leaves nothing behind.
"""

import importlib.util
import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASV_DIR = ROOT / "asv_bench"
MIN_BENCHMARKS = 20
TIMEOUT_S = 600


def _require_asv():
    if importlib.util.find_spec("asv") is not None:
        return
    message = "asv is not installed: pip install -e '.[test]' (or '.[bench]')"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _isolated_config(tmp_path):
    conf = json.loads((ASV_DIR / "asv.conf.json").read_text())
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ASV_DIR / "benchmarks"),
        results_dir=str(tmp_path / "results"),
        html_dir=str(tmp_path / "html"),
        env_dir=str(tmp_path / "env"),
    )
    path = tmp_path / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path


def _asv(args, tmp_path, env):
    return subprocess.run([sys.executable, "-m", "asv", *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_asv_suite_runs_without_failures(tmp_path):
    _require_asv()
    config = _isolated_config(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONUSERBASE": site.getuserbase()}

    machine = _asv(["machine", "--yes"], tmp_path, env)
    assert machine.returncode == 0, machine.stdout + machine.stderr

    run = _asv(["run", "--config", str(config), "--python=same", "--quick", "--show-stderr"], tmp_path, env)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    total = re.search(r"Running (\d+) total benchmarks", output)
    assert total is not None, output
    assert int(total.group(1)) >= MIN_BENCHMARKS, output
    failed = [line for line in output.splitlines() if re.search(r"\bfailed\b", line)]
    assert not failed, "\n".join(failed) + "\n\n" + output
