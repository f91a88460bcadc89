"""Start-up cost, tracked in seconds: from launching a fresh Python process
to the end of its first ``train_on_batch`` and ``predict`` of the
Fashion-MNIST MLP (128 samples).

Cold: an empty Numba cache directory, made afresh for every measurement, so
every kernel the step needs is compiled. Warm: a cache directory filled by
one earlier run (in ``setup``), so kernels are loaded, not compiled.
"""

import os
import subprocess
import sys
import tempfile
import time

PROGRAM = """
import time
import numpy as np
import nkeras as keras
from nkeras import layers
model = keras.Sequential([
    keras.Input(shape=(28, 28)), layers.Flatten(),
    layers.Dense(512, activation="relu"), layers.Dense(512, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
x = np.random.rand(128, 28, 28).astype("float32")
y = np.random.randint(0, 10, 128)
model.train_on_batch(x, y)
model.predict(x, verbose=0)
print(time.time())
"""


def seconds_to_first_step(cache_dir):
    """Run PROGRAM with ``NUMBA_CACHE_DIR=cache_dir`` (and ``cache_dir`` as
    its working directory, so a source checkout there cannot shadow the
    installed package); return the seconds from launch to its last step."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    launched = time.time()
    finished = subprocess.run([sys.executable, "-c", PROGRAM], env=env, cwd=cache_dir, check=True,
                              capture_output=True, text=True).stdout
    return float(finished.split()[-1]) - launched


class _StartupTrack:
    unit = "seconds"
    number = 1
    repeat = 1
    rounds = 1
    timeout = 300


class ColdStart(_StartupTrack):
    """Start-up with an empty Numba cache: every kernel compiles."""

    def track_cold_start(self):
        with tempfile.TemporaryDirectory(prefix="nkeras-cold-cache-") as cache_dir:
            return seconds_to_first_step(cache_dir)


class WarmStart(_StartupTrack):
    """Start-up with a filled Numba cache: kernels load from disk."""

    def setup(self):
        self.cache = tempfile.TemporaryDirectory(prefix="nkeras-warm-cache-")
        seconds_to_first_step(self.cache.name)

    def teardown(self):
        self.cache.cleanup()

    def track_warm_start(self):
        return seconds_to_first_step(self.cache.name)
