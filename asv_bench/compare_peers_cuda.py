"""Throughput on an NVIDIA GPU: nkeras on ``cuda`` next to PyTorch eager on CUDA.

A workload of ``compare_peers.py`` (the MLP, convnet, transformer or LSTM on Fashion-MNIST,
Adam, batch 128 and 1024 by default), each framework in its own subprocess on the same GPU, one
run: training samples/s over the epochs after a warm-up epoch, and predict
samples/s. Also times nkeras's GEMM kernel on a large float32 product against
cuBLAS's float32 rate (``torch.mm`` with TF32 off): the device's measured
fp32 rate.

    python asv_bench/compare_peers_cuda.py [--workload mlp|convnet|transformer|lstm] [--batch-sizes 128,1024] [--epochs 2]
        [--train-samples 60000] [--frameworks nkeras,torch] [--json out.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from compare_peers import WORKLOADS, load_dataset, run_keras_api, torch_fit_predict

GEMM_SIZE = 4096
GEMM_REPEATS = 20


def gemm_tflops(seconds):
    return 2 * GEMM_SIZE**3 / seconds / 1e12


def median_event_seconds(cuda_module, function, repeats):
    """Median seconds of ``function()`` between two events of the given module."""
    times = []
    function()
    for _ in range(repeats):
        start, stop = cuda_module.event(), cuda_module.event()
        start.record()
        function()
        stop.record()
        stop.synchronize()
        times.append(cuda_module.event_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def run_nkeras(workload, data, opts):
    from numba import cuda

    import nkeras
    from nkeras.kernels.codes import LINEAR
    from nkeras.kernels.cuda.dense import _launch_gemm

    with nkeras.device("cuda"):
        result = run_keras_api(nkeras, workload, data, opts)
    rng = np.random.default_rng(0)
    a, b = (cuda.to_device(rng.random((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)) for _ in range(2))
    c = cuda.device_array((GEMM_SIZE, GEMM_SIZE), np.float32)
    seconds = median_event_seconds(cuda, lambda: _launch_gemm(a, b, False, False, c[0], False, LINEAR, 0.0, c, c),
                                   GEMM_REPEATS)
    gpu = cuda.get_current_device().name
    result.update(version=nkeras.__version__, gpu=gpu.decode() if isinstance(gpu, bytes) else str(gpu),
                  gemm_tflops=gemm_tflops(seconds), gemm_via="nkeras dense GEMM kernel")
    return result


def run_torch(workload, data, opts):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    result, _ = torch_fit_predict(torch, workload, data, opts, device="cuda")
    device = torch.device("cuda")
    a, b = (torch.rand((GEMM_SIZE, GEMM_SIZE), device=device) for _ in range(2))

    class TorchEvents:
        event = staticmethod(lambda: torch.cuda.Event(enable_timing=True))

        @staticmethod
        def event_elapsed_time(start, stop):
            return start.elapsed_time(stop)

    seconds = median_event_seconds(TorchEvents, lambda: torch.mm(a, b), GEMM_REPEATS)
    result.update(version=torch.__version__, gpu=torch.cuda.get_device_name(),
                  gemm_tflops=gemm_tflops(seconds), gemm_via="torch.mm, cuBLAS fp32 (TF32 off)")
    return result


RUNNERS = {"nkeras": run_nkeras, "torch": run_torch}


def worker_main(args):
    opts = json.loads(args.options)
    with np.load(args.data) as stored:
        data = {
            "x_train": stored["x_train"].astype(np.float32) / 255,
            "y_train": stored["y_train"],
            "x_test": stored["x_test"].astype(np.float32) / 255,
        }
    try:
        result = RUNNERS[args.worker](WORKLOADS[opts["workload"]], data, opts)
    except ImportError as error:
        result = {"skipped": f"not importable: {error}"}
    with open(args.result, "w") as file:
        json.dump(result, file)


def run_worker(name, data_path, opts, timeout):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--data", data_path,
               "--result", result_path, "--options", json.dumps(opts)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            return {"error": f"exit status {completed.returncode}:\n{tail}"}
        with open(result_path) as file:
            return json.load(file)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout} s"}
    finally:
        os.unlink(result_path)


def print_report(report):
    names = report["frameworks"]
    print(f"\nGPU: {next((r['gpu'] for r in report['runs'][0]['results'].values() if 'gpu' in r), '?')}; "
          f"workload {report['workload']!r}; data: {report['data_source']}")
    for run in report["runs"]:
        results = run["results"]
        print(f"\ntrain batch {run['batch_size']}:")
        for name in names:
            result = results[name]
            if "train_samples_per_s" not in result:
                print(f"  {name}: {result.get('skipped') or result.get('error')}")
                continue
            predict = ", ".join(f"batch {b}: {rate:,.0f}" for b, rate in result["predict_samples_per_s"].items())
            print(f"  {name:7s} train {result['train_samples_per_s']:>10,.0f} samples/s  "
                  f"(final loss {result['final_train_loss']:.4f}, acc {result['final_train_accuracy']:.4f}); "
                  f"predict {predict}; GEMM {GEMM_SIZE}^3 {result['gemm_tflops']:.2f} TFLOP/s ({result['gemm_via']})")
        if all("train_samples_per_s" in results.get(name, {}) for name in ("nkeras", "torch")):
            ratio = results["nkeras"]["train_samples_per_s"] / results["torch"]["train_samples_per_s"]
            gemm = results["nkeras"]["gemm_tflops"] / results["torch"]["gemm_tflops"]
            print(f"  nkeras / PyTorch: train {ratio:.2f}x; GEMM kernel at {100 * gemm:.0f}% of cuBLAS fp32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="nkeras,torch")
    parser.add_argument("--workload", default="mlp", choices=sorted(WORKLOADS))
    parser.add_argument("--batch-sizes", default="128,1024", help="training batch sizes (default 128,1024)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    parser.add_argument("--train-samples", type=int, default=60000)
    parser.add_argument("--predict-samples", type=int, default=10000)
    parser.add_argument("--predict-repeats", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="random data instead of Fashion-MNIST")
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    names = [name for name in args.frameworks.split(",") if name]
    unknown = sorted(set(names) - set(RUNNERS))
    if unknown:
        parser.error(f"--frameworks: unknown {unknown}; choose from {sorted(RUNNERS)}")
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    arrays, source = load_dataset(WORKLOADS[args.workload], args)
    runs = []
    with tempfile.TemporaryDirectory(prefix="nkeras-cuda-compare-") as directory:
        data_path = os.path.join(directory, "data.npz")
        np.savez(data_path, **arrays)
        for batch_size in batch_sizes:
            opts = {"workload": args.workload, "epochs": args.epochs, "warmup_epochs": 1, "batch_size": batch_size,
                    "predict_batch_sizes": batch_sizes, "predict_repeats": args.predict_repeats}
            results = {}
            for name in names:
                print(f"batch {batch_size}: running {name} ...", flush=True)
                results[name] = run_worker(name, data_path, opts, args.timeout)
            runs.append({"batch_size": batch_size, "results": results})
    report = {"frameworks": names, "workload": args.workload, "data_source": source, "runs": runs}
    print_report(report)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
