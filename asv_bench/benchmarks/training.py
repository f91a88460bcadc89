"""End to end: the Fashion-MNIST MLP, convnet and LSTM through ``fit``,
``evaluate``, ``predict`` and ``train_on_batch`` on synthetic data of
Fashion-MNIST's shape (28 x 28 float32 images, 10 classes).

For the MLP ``fit`` runs one epoch over 6,000 samples (a tenth of
Fashion-MNIST's training set, to keep the suite quick) and ``predict`` and
``evaluate`` run over 10,000 samples (the size of its test set); the convnet,
about four times the work per sample, uses 2,000 and 4,000, and so does the
LSTM (28 steps of 28 pixels, LSTM 128: about as much work). Batch size 128
throughout.
Every ``setup`` first runs the same call on a slice that meets every batch
size the timed call meets, so that plans are built and kernels are compiled
(or loaded from Numba's cache) before timing starts.
"""

from .common import BATCH_SIZE, DEVICES, build_convnet, build_lstm, build_mlp, synthetic_fashion_mnist, warm_up_samples

TRAIN_SAMPLES = 6_000
TEST_SAMPLES = 10_000
CONVNET_TRAIN_SAMPLES = 2_000
CONVNET_TEST_SAMPLES = 4_000
LSTM_TRAIN_SAMPLES = 2_000
LSTM_TEST_SAMPLES = 4_000


class FitMLP:
    """One epoch of ``fit`` (shuffled, Adam): time and the process's peak memory."""

    params = DEVICES
    param_names = ["device"]
    timeout = 120

    def setup(self, device_name):
        self.model = build_mlp(device_name)
        self.x, self.y = synthetic_fashion_mnist(TRAIN_SAMPLES)
        warm = warm_up_samples(TRAIN_SAMPLES)
        self.model.fit(self.x[:warm], self.y[:warm], batch_size=BATCH_SIZE, epochs=1, verbose=0)

    def time_fit_one_epoch(self, device_name):
        self.model.fit(self.x, self.y, batch_size=BATCH_SIZE, epochs=1, verbose=0)

    def peakmem_fit_one_epoch(self, device_name):
        self.model.fit(self.x, self.y, batch_size=BATCH_SIZE, epochs=1, verbose=0)


class InferMLP:
    """``predict`` and ``evaluate`` (loss and accuracy) over 10,000 samples."""

    params = DEVICES
    param_names = ["device"]
    timeout = 120

    def setup(self, device_name):
        self.model = build_mlp(device_name)
        self.x, self.y = synthetic_fashion_mnist(TEST_SAMPLES, seed=1)
        warm = warm_up_samples(TEST_SAMPLES)
        self.model.predict(self.x[:warm], batch_size=BATCH_SIZE, verbose=0)
        self.model.evaluate(self.x[:warm], self.y[:warm], batch_size=BATCH_SIZE, verbose=0)

    def time_predict(self, device_name):
        self.model.predict(self.x, batch_size=BATCH_SIZE, verbose=0)

    def time_evaluate(self, device_name):
        self.model.evaluate(self.x, self.y, batch_size=BATCH_SIZE, verbose=0)


class TrainOnBatchMLP:
    """One ``train_on_batch`` of 128 samples: a single training step with
    its Python overhead. Each call takes the next batch of a 6,000-sample
    set, as a training loop does."""

    params = DEVICES
    param_names = ["device"]

    def setup(self, device_name):
        self.model = build_mlp(device_name)
        self.x, self.y = synthetic_fashion_mnist(TRAIN_SAMPLES, seed=2)
        self.batches = TRAIN_SAMPLES // BATCH_SIZE
        self.step = 0
        self.time_train_on_batch(device_name)

    def time_train_on_batch(self, device_name):
        start = self.step * BATCH_SIZE
        self.model.train_on_batch(self.x[start:start + BATCH_SIZE], self.y[start:start + BATCH_SIZE])
        self.step = (self.step + 1) % self.batches


class FitConvnet:
    """One epoch of the convnet's ``fit`` over 2,000 samples (shuffled, Adam)."""

    params = DEVICES
    param_names = ["device"]
    timeout = 180

    def setup(self, device_name):
        self.model = build_convnet(device_name)
        self.x, self.y = synthetic_fashion_mnist(CONVNET_TRAIN_SAMPLES, channels=1)
        warm = warm_up_samples(CONVNET_TRAIN_SAMPLES)
        self.model.fit(self.x[:warm], self.y[:warm], batch_size=BATCH_SIZE, epochs=1, verbose=0)

    def time_fit_one_epoch(self, device_name):
        self.model.fit(self.x, self.y, batch_size=BATCH_SIZE, epochs=1, verbose=0)


class InferConvnet:
    """The convnet's ``predict`` over 4,000 samples."""

    params = DEVICES
    param_names = ["device"]
    timeout = 180

    def setup(self, device_name):
        self.model = build_convnet(device_name)
        self.x, _ = synthetic_fashion_mnist(CONVNET_TEST_SAMPLES, seed=1, channels=1)
        self.model.predict(self.x[:warm_up_samples(CONVNET_TEST_SAMPLES)], batch_size=BATCH_SIZE, verbose=0)

    def time_predict(self, device_name):
        self.model.predict(self.x, batch_size=BATCH_SIZE, verbose=0)


class FitLSTM:
    """One epoch of the LSTM's ``fit`` over 2,000 samples (shuffled, Adam)."""

    params = DEVICES
    param_names = ["device"]
    timeout = 180

    def setup(self, device_name):
        self.model = build_lstm(device_name)
        self.x, self.y = synthetic_fashion_mnist(LSTM_TRAIN_SAMPLES)
        warm = warm_up_samples(LSTM_TRAIN_SAMPLES)
        self.model.fit(self.x[:warm], self.y[:warm], batch_size=BATCH_SIZE, epochs=1, verbose=0)

    def time_fit_one_epoch(self, device_name):
        self.model.fit(self.x, self.y, batch_size=BATCH_SIZE, epochs=1, verbose=0)


class InferLSTM:
    """The LSTM's ``predict`` over 4,000 samples."""

    params = DEVICES
    param_names = ["device"]
    timeout = 180

    def setup(self, device_name):
        self.model = build_lstm(device_name)
        self.x, _ = synthetic_fashion_mnist(LSTM_TEST_SAMPLES, seed=1)
        self.model.predict(self.x[:warm_up_samples(LSTM_TEST_SAMPLES)], batch_size=BATCH_SIZE, verbose=0)

    def time_predict(self, device_name):
        self.model.predict(self.x, batch_size=BATCH_SIZE, verbose=0)
