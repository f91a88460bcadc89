"""Start-up cost: process start to the end of the first training step.

Runs the asv start-up program (build the Fashion-MNIST MLP, one
``train_on_batch``, one ``predict``; see ``benchmarks/startup.py``) in fresh
processes: first with an empty Numba cache (cold: every kernel compiles),
then again with the cache the first run wrote (warm).

    python asv_bench/startup_time.py [--repeats 3]
"""

import argparse
import tempfile

from benchmarks.startup import seconds_to_first_step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs to time (the best is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nkeras-numba-cache-") as cache_dir:
        cold = seconds_to_first_step(cache_dir)
        warm = min(seconds_to_first_step(cache_dir) for _ in range(args.repeats))
    print(f"cold start (empty Numba cache): {cold:.2f} s")
    print(f"warm start (cache filled), best of {args.repeats}: {warm:.2f} s")


if __name__ == "__main__":
    main()
