"""Start-up cost: process start to the end of the first training step.

Runs a small program (build the Fashion-MNIST MLP, one ``train_on_batch``,
one ``predict``) in fresh processes: first with an empty Numba cache (cold:
every kernel compiles), then again with the cache the first run wrote
(warm). Prints wall-clock seconds for each.

    python asv_bench/startup_time.py [--repeats 3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

PROGRAM = """
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
"""


def run_once(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", PROGRAM], env=env, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs to time (the best is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nkeras-numba-cache-") as cache_dir:
        cold = run_once(cache_dir)
        warm = min(run_once(cache_dir) for _ in range(args.repeats))
    print(f"cold start (empty Numba cache): {cold:.2f} s")
    print(f"warm start (cache filled), best of {args.repeats}: {warm:.2f} s")


if __name__ == "__main__":
    main()
