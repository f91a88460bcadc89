"""Throughput of nkeras next to PyTorch (eager, CPU) and Keras 3 on JAX.

Every framework trains and predicts with the same model, data, batch size
and optimizer, each in its own subprocess (so thread pools and JIT settings
do not interfere, and a peer that is not installed is simply skipped).
Training throughput is taken over the epochs after the warm-up epochs (the
first epoch includes Numba/XLA compilation); prediction throughput after one
warm-up call. Prints a table with nkeras/peer ratios, the workload's FLOPs per
sample and the bound the machine's measured sgemm rate puts on throughput.

    python asv_bench/compare_peers.py [--frameworks nkeras,torch,jax] [--workload mlp|convnet|transformer|lstm]
        [--epochs 2] [--train-samples 60000] [--batch-size 128]
        [--predict-batch-size 128,1024] [--threads N] [--rounds N] [--synthetic] [--json out.json]
"""

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

GEMM_SIZE = 1024
GEMM_REPEATS = 20
LOAD_WARNING_THRESHOLD = 0.5
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
SGEMM_PROBE = "sgemm"
XLA_SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclasses.dataclass(frozen=True)
class Workload:
    """A model to train on a classification data set, written once per API.

    Attributes:
        description: one line for the report.
        dataset: module name under ``nkeras.datasets`` holding ``load_data()``.
        input_shape: shape of one sample.
        num_classes: labels are integers in ``0..num_classes - 1``.
        build_keras: ``(keras_module) -> compiled model``, for nkeras and Keras 3.
        build_torch: ``(torch_module) -> nn.Module`` returning logits; trained
            with ``CrossEntropyLoss`` and ``torch.optim.Adam(lr=1e-3)``.
        flops: ``() -> (train_flops_per_sample, predict_flops_per_sample, how_counted)``.
    """

    description: str
    dataset: str
    input_shape: tuple
    num_classes: int
    build_keras: Callable
    build_torch: Callable
    flops: Callable


MLP_WIDTHS = (784, 512, 512, 10)


def build_keras_mlp(keras):
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        layers.Flatten(),
        layers.Dense(512, activation="relu"),
        layers.Dense(512, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_torch_mlp(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )


def layer_stack_flops(macs, shape):
    """FLOPs per sample of a stack of layers, counting their matrix products only.

    ``macs`` holds each layer's multiply-adds per sample (a convolution's are
    output positions x filters x kernel taps x input channels). Forward:
    2 * MACs. Backward: the weight gradient of every layer (2 * MACs) and the
    input gradient of every layer but the first (the data needs no gradient:
    nkeras skips it, PyTorch autograd and XLA's dead-code elimination do
    too). Biases, activations, pooling, loss, metric and optimizer update are
    left out (elementwise work, a few per cent of the total).
    """
    forward = 2 * sum(macs)
    backward = 2 * sum(macs) + 2 * sum(macs[1:])
    how = (f"{shape}: forward 2*MACs = {forward / 1e6:.3f} M, backward = weight grads 2*MACs + "
           f"input grads of all but the first layer = {backward / 1e6:.3f} M; matmuls only")
    return forward + backward, forward, how


def dense_stack_flops(widths):
    """FLOPs per sample of a stack of dense layers of these widths."""
    macs = [fan_in * fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:])]
    return layer_stack_flops(macs, "-".join(map(str, widths)))


def build_keras_convnet(keras):
    """The Keras example "simple MNIST convnet"."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_torch_convnet(torch):
    nn = torch.nn

    class ToChannelsFirst(nn.Module):
        """(batch, 28, 28, 1) -> (batch, 1, 28, 28): with one channel a free reshape."""

        def forward(self, x):
            return x.reshape(x.shape[0], 1, 28, 28)

    return nn.Sequential(
        ToChannelsFirst(),
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(1600, 10),
    )


CONVNET_MACS = (26 * 26 * 32 * 3 * 3 * 1, 11 * 11 * 64 * 3 * 3 * 32, 1600 * 10)

# examples/transformer_classifier.py: rows as steps, one encoder block.
STEPS, D_MODEL, HEADS, FEED_FORWARD = 28, 64, 4, 128


def build_keras_transformer(keras):
    """The model of examples/transformer_classifier.py; its PositionEmbedding
    is an nkeras custom layer, so Keras gets the same layer written for it."""
    if keras.__name__ == "nkeras":
        spec = importlib.util.spec_from_file_location(
            "transformer_classifier", os.path.join(os.path.dirname(__file__), "..", "examples", "transformer_classifier.py")
        )
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        model = example.build_model(D_MODEL, HEADS, FEED_FORWARD)
    else:
        layers = keras.layers

        class PositionEmbedding(layers.Layer):
            def build(self, input_shape):
                self.embeddings = self.add_weight(shape=input_shape[1:], initializer="uniform", name="embeddings")

            def call(self, x):
                return x + self.embeddings

        inputs = keras.Input(shape=(STEPS, STEPS))
        x = PositionEmbedding()(layers.Dense(D_MODEL)(inputs))
        attended = layers.MultiHeadAttention(HEADS, D_MODEL // HEADS, dropout=0.1)(x, x)
        x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, attended]))
        hidden = layers.Dense(FEED_FORWARD, activation="relu")(x)
        hidden = layers.Dropout(0.1)(layers.Dense(D_MODEL)(hidden))
        x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, hidden]))
        outputs = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling1D()(x))
        model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_torch_transformer(torch):
    nn = torch.nn

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Linear(STEPS, D_MODEL)
            self.positions = nn.Parameter(torch.empty(STEPS, D_MODEL).uniform_(-0.05, 0.05))
            self.attention = nn.MultiheadAttention(D_MODEL, HEADS, dropout=0.1, batch_first=True)
            self.norm1 = nn.LayerNorm(D_MODEL, eps=1e-6)
            self.feed_forward = nn.Sequential(nn.Linear(D_MODEL, FEED_FORWARD), nn.ReLU(),
                                              nn.Linear(FEED_FORWARD, D_MODEL), nn.Dropout(0.1))
            self.norm2 = nn.LayerNorm(D_MODEL, eps=1e-6)
            self.head = nn.Linear(D_MODEL, 10)

        def forward(self, x):
            x = self.project(x) + self.positions
            x = self.norm1(x + self.attention(x, x, x, need_weights=False)[0])
            x = self.norm2(x + self.feed_forward(x))
            return self.head(x.mean(dim=1))

    return Transformer()


# Per sample: the row projection, the query/key/value/output projections,
# scores (q k^T) and their product with the values, the feed-forward pair
# and the head. (The scores and the values product have two operand
# gradients each; counting one, as for a layer, undercounts by ~3 %.)
TRANSFORMER_MACS = (
    STEPS * STEPS * D_MODEL, *(STEPS * D_MODEL * D_MODEL,) * 3, STEPS * STEPS * D_MODEL, STEPS * STEPS * D_MODEL,
    STEPS * D_MODEL * D_MODEL, STEPS * D_MODEL * FEED_FORWARD, STEPS * FEED_FORWARD * D_MODEL, D_MODEL * 10,
)


# examples/fashion_mnist_lstm.py: rows as steps.
LSTM_UNITS = 128


def build_keras_lstm(keras):
    model = keras.Sequential([
        keras.Input(shape=(STEPS, STEPS)),
        keras.layers.LSTM(LSTM_UNITS),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_torch_lstm(torch):
    nn = torch.nn

    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(STEPS, LSTM_UNITS, batch_first=True)
            self.head = nn.Linear(LSTM_UNITS, 10)

        def forward(self, x):
            _, (last_hidden, _) = self.lstm(x)
            return self.head(last_hidden[0])

    return LSTMClassifier()


# Per sample: the four gates' input projection of every step (no input
# gradient: it is the first layer), their recurrent projection of every step
# and the head. The gates' elementwise work is left out, as elsewhere.
LSTM_MACS = (STEPS * STEPS * 4 * LSTM_UNITS, STEPS * LSTM_UNITS * 4 * LSTM_UNITS, LSTM_UNITS * 10)


WORKLOADS = {
    "mlp": Workload(
        description="Flatten -> Dense(512, relu) -> Dense(512, relu) -> Dense(10, softmax); "
                    "Adam(1e-3), sparse categorical cross-entropy, accuracy",
        dataset="fashion_mnist",
        input_shape=(28, 28),
        num_classes=10,
        build_keras=build_keras_mlp,
        build_torch=build_torch_mlp,
        flops=lambda: dense_stack_flops(MLP_WIDTHS),
    ),
    "convnet": Workload(
        description="Conv2D(32, 3, relu) -> MaxPooling2D(2) -> Conv2D(64, 3, relu) -> MaxPooling2D(2) -> Flatten "
                    "-> Dropout(0.5) -> Dense(10, softmax); Adam(1e-3), sparse categorical cross-entropy, accuracy",
        dataset="fashion_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        build_keras=build_keras_convnet,
        build_torch=build_torch_convnet,
        flops=lambda: layer_stack_flops(CONVNET_MACS, "conv 26x26x32 (3x3x1), conv 11x11x64 (3x3x32), dense 1600-10"),
    ),
    "transformer": Workload(
        description=f"rows as {STEPS} steps: Dense({D_MODEL}) + learned positions -> MultiHeadAttention({HEADS} heads, "
                    f"dropout 0.1) + Add + LayerNormalization -> Dense({FEED_FORWARD}, relu) -> Dense({D_MODEL}) -> "
                    "Dropout(0.1) + Add + LayerNormalization -> GlobalAveragePooling1D -> Dense(10, softmax); "
                    "Adam(1e-3), sparse categorical cross-entropy, accuracy",
        dataset="fashion_mnist",
        input_shape=(STEPS, STEPS),
        num_classes=10,
        build_keras=build_keras_transformer,
        build_torch=build_torch_transformer,
        flops=lambda: layer_stack_flops(TRANSFORMER_MACS, f"encoder block d_model {D_MODEL}, {STEPS} steps"),
    ),
    "lstm": Workload(
        description=f"rows as {STEPS} steps: LSTM({LSTM_UNITS}) -> Dense(10, softmax); "
                    "Adam(1e-3), sparse categorical cross-entropy, accuracy",
        dataset="fashion_mnist",
        input_shape=(STEPS, STEPS),
        num_classes=10,
        build_keras=build_keras_lstm,
        build_torch=build_torch_lstm,
        flops=lambda: layer_stack_flops(LSTM_MACS, f"LSTM({LSTM_UNITS}) over {STEPS} steps of {STEPS}: input "
                                                   "projection, recurrent projection, head"),
    ),
}


def timings(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def best_seconds(function, repeats):
    return min(timings(function, repeats))


def gemm_operands():
    rng = np.random.default_rng(0)
    a = rng.random((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = rng.random((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    return a, b, np.empty_like(a)


def gemm_gflops(seconds):
    return 2 * GEMM_SIZE**3 / seconds / 1e9


def numpy_gemm_gflops():
    a, b, c = gemm_operands()
    np.dot(a, b, c)
    return gemm_gflops(best_seconds(lambda: np.dot(a, b, c), GEMM_REPEATS))


def numba_gemm_gflops():
    """sgemm through ``np.dot`` inside ``@njit``, as the nkeras dense kernels call it."""
    from numba import njit

    @njit
    def dot_into(a, b, c):
        np.dot(a, b, c)

    a, b, c = gemm_operands()
    dot_into(a, b, c)
    return gemm_gflops(best_seconds(lambda: dot_into(a, b, c), GEMM_REPEATS))


def train_and_predict_summary(epoch_seconds, final_loss, final_accuracy, predict_seconds, opts, n_train, n_predict):
    timed = epoch_seconds[opts["warmup_epochs"]:]
    rates = [n_train / seconds for seconds in timed]
    return {
        "first_epoch_s": epoch_seconds[0],
        "timed_epoch_s": timed,
        "train_samples_per_s": max(rates),
        "train_samples_per_s_median": statistics.median(rates),
        "final_train_loss": final_loss,
        "final_train_accuracy": final_accuracy,
        "predict_samples_per_s": {
            str(batch): n_predict / min(times) for batch, times in predict_seconds.items()
        },
        "predict_s": {str(batch): times for batch, times in predict_seconds.items()},
    }


def run_keras_api(keras, workload, data, opts):
    """Train and predict through ``fit``/``predict`` (nkeras or Keras 3)."""
    x, y, x_test = data["x_train"], data["y_train"].astype(np.int32), data["x_test"]

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []
            self.loss = []
            self.accuracy = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.loss.append(float(logs["loss"]))
            self.accuracy.append(float(logs["accuracy"]))
            self.seconds.append(time.perf_counter() - self._start)

    model = workload.build_keras(keras)
    timer = EpochTimer()
    model.fit(x, y, batch_size=opts["batch_size"], epochs=opts["warmup_epochs"] + opts["epochs"],
              verbose=0, callbacks=[timer])
    predict_seconds = {}
    for batch in opts["predict_batch_sizes"]:
        model.predict(x_test, batch_size=batch, verbose=0)
        predict_seconds[batch] = timings(lambda: model.predict(x_test, batch_size=batch, verbose=0),
                                        opts["predict_repeats"])
    return train_and_predict_summary(timer.seconds, timer.loss[-1], timer.accuracy[-1], predict_seconds, opts,
                                     len(x), len(x_test))


def run_nkeras(workload, data, opts):
    import numba

    import nkeras

    result = run_keras_api(nkeras, workload, data, opts)
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    result.update(version=nkeras.__version__, threads=f"numba {numba.get_num_threads()}, BLAS {blas_threads}",
                  gemm_gflops=numba_gemm_gflops(), gemm_via="np.dot in @njit")
    return result


def run_jax(workload, data, opts):
    import jax
    import jax.numpy as jnp
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras picked backend {keras.backend.backend()!r}, expected 'jax'")
    result = run_keras_api(keras, workload, data, opts)
    a, b, _ = (jnp.asarray(m) for m in gemm_operands())
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    result.update(version=f"keras {keras.__version__}, jax {jax.__version__}",
                  threads="XLA 1" if opts["threads"] == 1 else f"XLA default ({len(os.sched_getaffinity(0))} CPUs)",
                  gemm_gflops=gemm_gflops(best_seconds(lambda: dot(a, b).block_until_ready(), GEMM_REPEATS)),
                  gemm_via="jax.jit(jnp.dot)")
    return result


def torch_fit_predict(torch, workload, data, opts, device="cpu"):
    """Idiomatic eager PyTorch on ``device``: shuffled index batches over
    tensors preloaded there. Returns the summary and the optimizer."""
    device = torch.device(device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    x = torch.from_numpy(data["x_train"]).to(device)
    y = torch.from_numpy(data["y_train"].astype(np.int64)).to(device)
    x_test = torch.from_numpy(data["x_test"]).to(device)
    batch_size = opts["batch_size"]
    model = workload.build_torch(torch).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    epoch_seconds, losses, accuracies = [], [], []
    for _ in range(opts["warmup_epochs"] + opts["epochs"]):
        synchronize()
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        loss_sum = torch.zeros((), device=device)
        for begin in range(0, len(x), batch_size):
            index = order[begin:begin + batch_size]
            x_batch, y_batch = x[index], y[index]
            logits = model(x_batch)
            loss = loss_fn(logits, y_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                correct += (logits.argmax(dim=1) == y_batch).sum()
                loss_sum += loss * len(index)
        losses.append(loss_sum.item() / len(x))
        accuracies.append(correct.item() / len(x))
        epoch_seconds.append(time.perf_counter() - start)

    def predict(batch):
        model.eval()
        with torch.inference_mode():
            outputs = [torch.softmax(model(x_test[i:i + batch]), dim=1) for i in range(0, len(x_test), batch)]
            return torch.cat(outputs).cpu().numpy()

    predict_seconds = {}
    for batch in opts["predict_batch_sizes"]:
        predict(batch)
        predict_seconds[batch] = timings(lambda: predict(batch), opts["predict_repeats"])  # noqa: B023
    summary = train_and_predict_summary(epoch_seconds, losses[-1], accuracies[-1], predict_seconds, opts,
                                        len(x), len(x_test))
    return summary, optimizer


def run_torch(workload, data, opts):
    import torch

    torch.set_num_threads(opts["threads"] or len(os.sched_getaffinity(0)))
    flushing = opts["torch_flush_denormal"] and torch.set_flush_denormal(True)
    result, optimizer = torch_fit_predict(torch, workload, data, opts)
    a, b, _ = (torch.from_numpy(m) for m in gemm_operands())
    torch.mm(a, b)
    subnormals = sum(int(((tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)).sum())
                     for state in optimizer.state.values() for tensor in state.values() if tensor.dim() > 0)
    result.update(version=torch.__version__, threads=f"torch {torch.get_num_threads()}",
                  notes=f"denormals {'flushed' if flushing else 'kept'}; {subnormals} subnormal Adam slot values",
                  gemm_gflops=gemm_gflops(best_seconds(lambda: torch.mm(a, b), GEMM_REPEATS)),
                  gemm_via="torch.mm")
    return result


@dataclasses.dataclass(frozen=True)
class Framework:
    label: str
    modules: tuple
    run: Callable
    optional: bool


FRAMEWORKS = {
    "nkeras": Framework("nkeras", ("nkeras",), run_nkeras, optional=False),
    "torch": Framework("PyTorch eager", ("torch",), run_torch, optional=True),
    "jax": Framework("Keras 3 / JAX", ("jax", "keras"), run_jax, optional=True),
}


def worker_main(args):
    """Subprocess entry: run one framework (or the sgemm probe), write its result as JSON."""
    opts = json.loads(args.options)
    if args.worker == SGEMM_PROBE:
        with open(args.result, "w") as file:
            json.dump({"probe: numpy np.dot": numpy_gemm_gflops(), "probe: numba np.dot": numba_gemm_gflops()}, file)
        return
    framework = FRAMEWORKS[args.worker]
    with np.load(args.data) as stored:
        data = {
            "x_train": stored["x_train"].astype(np.float32) / 255,
            "y_train": stored["y_train"],
            "x_test": stored["x_test"].astype(np.float32) / 255,
        }
    try:
        for module in framework.modules:
            __import__(module)
    except ImportError as error:
        if not framework.optional:
            raise
        result = {"skipped": f"{module} is not importable ({error})"}
    else:
        result = framework.run(WORKLOADS[opts["workload"]], data, opts)
    with open(args.result, "w") as file:
        json.dump(result, file)


def load_dataset(workload, args):
    """Return ``(arrays, source)``: uint8 images and integer labels, subsampled."""
    n_train, n_predict = args.train_samples, args.predict_samples
    if not args.synthetic:
        try:
            module = importlib.import_module(f"nkeras.datasets.{workload.dataset}")
            (x_train, y_train), (x_test, _) = module.load_data()
        except Exception as error:  # any failure: fall back to synthetic data and say why
            loader = f"nkeras.datasets.{workload.dataset}.load_data()"
            source = f"synthetic ({loader} failed: {type(error).__name__}: {error})"
        else:
            if n_train > len(x_train) or n_predict > len(x_test):
                raise SystemExit(f"--train-samples must be <= {len(x_train)} and --predict-samples <= {len(x_test)} "
                                 f"for {workload.dataset}, got {n_train} and {n_predict}")
            arrays = {
                "x_train": x_train[:n_train].reshape(-1, *workload.input_shape),
                "y_train": y_train[:n_train],
                "x_test": x_test[:n_predict].reshape(-1, *workload.input_shape),
            }
            return arrays, f"{workload.dataset} (real data)"
    else:
        source = "synthetic (--synthetic)"
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (n_train, *workload.input_shape), dtype=np.uint8)
    projection = rng.standard_normal((np.prod(workload.input_shape), workload.num_classes))
    y_train = (x_train.reshape(n_train, -1) / 255 - 0.5) @ projection
    arrays = {
        "x_train": x_train,
        "y_train": y_train.argmax(axis=1).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_predict, *workload.input_shape), dtype=np.uint8),
    }
    return arrays, source + "; labels = argmax of a fixed random projection of the pixels (learnable)"


def run_worker(name, data_path, opts, timeout):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    env = dict(os.environ)
    if name == "jax":
        env["KERAS_BACKEND"] = "jax"
    if opts["threads"]:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(opts["threads"])))
        if name == "jax" and opts["threads"] == 1:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_SINGLE_THREAD_FLAGS}".strip()
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--data", data_path,
               "--result", result_path, "--options", json.dumps(opts)]
    try:
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if completed.returncode != 0:
            tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
            return {"error": f"exit status {completed.returncode}:\n{tail}"}
        with open(result_path) as file:
            return json.load(file)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within --timeout {timeout} s"}
    finally:
        os.unlink(result_path)


def better_round(kept, new):
    """Of two results of one framework, the one that trained faster (or the only one that ran)."""
    if kept is None or "train_samples_per_s" not in kept:
        return new
    if "train_samples_per_s" in new and new["train_samples_per_s"] > kept["train_samples_per_s"]:
        return new
    return kept


def format_rate(value):
    return f"{value:,.0f}"


def ratio_cells(results, names, rate):
    nkeras_rate = rate(results["nkeras"])
    return ["-" if name == "nkeras" else f"{nkeras_rate / rate(results[name]):.2f}" for name in names]


def print_report(report, names):
    workload, settings, machine, flops = report["workload"], report["settings"], report["machine"], report["flops"]
    results = report["results"]
    print(f"\nworkload {settings['workload']!r}: {workload}")
    print(f"data: {report['data_source']}; {settings['train_samples']} training samples, "
          f"{settings['predict_samples']} predict samples")
    print(f"train: batch {settings['batch_size']}, {settings['warmup_epochs']} warm-up epoch(s) + "
          f"{settings['epochs']} timed epoch(s); the best timed epoch is reported"
          + (f", from the best of {settings['rounds']} rounds" if settings["rounds"] > 1 else ""))
    print(f"predict: batch size(s) {', '.join(map(str, settings['predict_batch_sizes']))}; "
          f"1 warm-up call + {settings['predict_repeats']} timed call(s); the best is reported")
    print(f"machine: {machine['cpus']} CPUs, {machine['processor']}; load average at start {machine['load_start']}, "
          f"at end {machine['load_end']}")
    gemm_parts = [f"{via} {rate:.1f}" for via, rate in machine["gemm_gflops"].items()]
    print(f"sgemm {GEMM_SIZE}^3 float32, best of {GEMM_REPEATS}, GFLOP/s: {', '.join(gemm_parts)}; "
          f"machine rate (best) {machine['sgemm_gflops']:.1f}")
    print(f"FLOPs per sample: train {flops['train'] / 1e6:.3f} M, predict {flops['predict'] / 1e6:.3f} M "
          f"({flops['how']})")
    print(f"bound at the machine sgemm rate: train {format_rate(flops['train_bound'])} samples/s, "
          f"predict {format_rate(flops['predict_bound'])} samples/s")
    if machine["load_start"][0] > LOAD_WARNING_THRESHOLD:
        print("warning: the machine was busy when the run started; figures may be low and noisy")

    ran = [name for name in names if "train_samples_per_s" in results[name]]
    for name in names:
        if "skipped" in results[name]:
            print(f"{name}: skipped, {results[name]['skipped']}")
        elif "error" in results[name]:
            print(f"{name}: FAILED, {results[name]['error']}")
    if not ran:
        return
    baseline = results.get("nkeras", {}).get("train_samples_per_s")

    rows = [("", [FRAMEWORKS[name].label for name in ran])]
    rows.append(("version", [results[name]["version"] for name in ran]))
    rows.append(("threads", [results[name]["threads"] for name in ran]))
    rows.append(("train samples/s", [format_rate(results[name]["train_samples_per_s"]) for name in ran]))
    rows.append(("  median of timed epochs",
                 [format_rate(results[name]["train_samples_per_s_median"]) for name in ran]))
    if baseline:
        rows.append(("  nkeras / peer", ratio_cells(results, ran, lambda result: result["train_samples_per_s"])))
    rows.append(("  % of sgemm bound",
                 [f"{100 * results[name]['train_samples_per_s'] / flops['train_bound']:.0f}%" for name in ran]))
    rows.append(("first epoch s (warm-up)", [f"{results[name]['first_epoch_s']:.2f}" for name in ran]))
    rows.append(("final train loss", [f"{results[name]['final_train_loss']:.4f}" for name in ran]))
    rows.append(("final train accuracy", [f"{results[name]['final_train_accuracy']:.4f}" for name in ran]))
    for batch in settings["predict_batch_sizes"]:
        rates = [results[name]["predict_samples_per_s"][str(batch)] for name in ran]
        rows.append((f"predict samples/s, batch {batch}", [format_rate(rate) for rate in rates]))
        if baseline:
            rows.append(("  nkeras / peer", ratio_cells(
                results, ran, lambda result, batch=batch: result["predict_samples_per_s"][str(batch)])))
    rows.append(("own matmul GFLOP/s", [f"{results[name]['gemm_gflops']:.1f}" for name in ran]))
    rows.append(("  via", [results[name]["gemm_via"] for name in ran]))

    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(ran))]
    print()
    for label, cells in rows:
        print(label.ljust(label_width) + "".join("  " + cell.rjust(width) for cell, width in zip(cells, widths)))
    if baseline:
        print("(nkeras / peer > 1: nkeras is faster)")
    for name in ran:
        if "notes" in results[name]:
            print(f"{FRAMEWORKS[name].label}: {results[name]['notes']}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated, from {', '.join(FRAMEWORKS)} (default: all)")
    parser.add_argument("--workload", default="mlp", choices=sorted(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="untimed first epochs (default 1)")
    parser.add_argument("--train-samples", type=int, default=60000, help="training samples used (default 60000)")
    parser.add_argument("--predict-samples", type=int, default=10000, help="samples to predict (default 10000)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    parser.add_argument("--predict-batch-size", default="128,1024",
                        help="comma-separated predict batch sizes (default 128,1024)")
    parser.add_argument("--predict-repeats", type=int, default=3, help="timed predict calls per batch size")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the frameworks in turn this many times and keep each one's fastest-training "
                             "round (less exposed to other processes' load); default 1")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per framework (torch, numba, BLAS; XLA only when 1); "
                             "default 0: each framework's default, all CPUs")
    parser.add_argument("--torch-denormals", action="store_true",
                        help="keep PyTorch's IEEE denormals (default: torch.set_flush_denormal(True), "
                             "matching XLA's default flush-to-zero)")
    parser.add_argument("--synthetic", action="store_true", help="use random data instead of the real data set")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per framework (default 900)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--worker", choices=[SGEMM_PROBE, *FRAMEWORKS], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    names = [name.strip() for name in args.frameworks.split(",") if name.strip()]
    unknown = [name for name in names if name not in FRAMEWORKS]
    if unknown or not names:
        parser.error(f"--frameworks: unknown {unknown or 'empty list'}; valid names are {', '.join(FRAMEWORKS)}")
    args.frameworks = names
    try:
        args.predict_batch_sizes = [int(size) for size in args.predict_batch_size.split(",")]
    except ValueError:
        parser.error(f"--predict-batch-size: expected comma-separated integers, got {args.predict_batch_size!r}")
    if not 0 <= args.threads <= os.cpu_count():
        parser.error(f"--threads: expected 0 (default) or 1..{os.cpu_count()}, got {args.threads}")
    for option in ("rounds", "epochs", "warmup_epochs", "train_samples", "predict_samples", "batch_size", "predict_repeats"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')}: expected a positive integer, got {getattr(args, option)}")
    if min(args.predict_batch_sizes) < 1:
        parser.error(f"--predict-batch-size: expected positive integers, got {args.predict_batch_size!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    workload = WORKLOADS[args.workload]
    load_start = [round(value, 2) for value in os.getloadavg()]
    arrays, source = load_dataset(workload, args)
    print(f"data: {source}", flush=True)
    opts = {
        "workload": args.workload, "epochs": args.epochs, "warmup_epochs": args.warmup_epochs,
        "batch_size": args.batch_size, "predict_batch_sizes": args.predict_batch_sizes,
        "predict_repeats": args.predict_repeats, "threads": args.threads, "rounds": args.rounds,
        "torch_flush_denormal": not args.torch_denormals,
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="nkeras-compare-") as directory:
        data_path = os.path.join(directory, "data.npz")
        np.savez(data_path, **arrays)
        gemm = run_worker(SGEMM_PROBE, data_path, opts, args.timeout)
        if "error" in gemm:
            raise SystemExit(f"the sgemm probe failed: {gemm['error']}")
        for round_index in range(args.rounds):
            for name in args.frameworks:
                print(f"round {round_index + 1}/{args.rounds}: running {name} ...", flush=True)
                start = time.perf_counter()
                result = run_worker(name, data_path, opts, args.timeout)
                print(f"  {name} done in {time.perf_counter() - start:.1f} s", flush=True)
                results[name] = better_round(results.get(name), result)
    for name, result in results.items():
        if "gemm_gflops" in result:
            gemm[f"{name}: {result['gemm_via']}"] = result["gemm_gflops"]
    sgemm = max(gemm.values())
    train_flops, predict_flops, how = workload.flops()
    report = {
        "workload": workload.description,
        "data_source": source,
        "settings": {**opts, "train_samples": len(arrays["x_train"]), "predict_samples": len(arrays["x_test"])},
        "machine": {
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "load_start": load_start, "load_end": [round(value, 2) for value in os.getloadavg()],
            "gemm_gflops": gemm, "sgemm_gflops": sgemm,
        },
        "flops": {
            "train": train_flops, "predict": predict_flops, "how": how,
            "train_bound": sgemm * 1e9 / train_flops, "predict_bound": sgemm * 1e9 / predict_flops,
        },
        "results": results,
    }
    print_report(report, args.frameworks)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
