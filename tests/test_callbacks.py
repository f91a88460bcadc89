import csv
import io
import math
import re
import sys

import numpy as np
import pytest

from nkeras import callbacks
from nkeras.utils.progbar import Progbar

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text):
    return ANSI.sub("", text).replace("\b", "")


class FakeOptimizer:
    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate
        self.iterations = 0


class FakeMetric:
    def __init__(self, name, direction):
        self.name = name
        self._direction = direction


class FakeModel:
    """The slice of the Model interface that callbacks use."""

    def __init__(self, learning_rate=0.01, metrics=()):
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate)
        self.metrics = list(metrics)
        self.history = None
        self.weights = [np.zeros((2, 3)), np.zeros(3)]
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save_weights(self, filepath, overwrite=True):
        self._write(filepath, "weights")

    def save(self, filepath, overwrite=True):
        self._write(filepath, "model")

    def _write(self, filepath, kind):
        with open(filepath, "w") as handle:
            handle.write(kind)
        self.saved.append((kind, str(filepath)))


def fit(cbs, model, epoch_logs, steps=3, batch_logs=None, verbose=0):
    """Drive callbacks as the training loop does; weights hold the epoch index
    when epoch ``e`` ends. Returns the epochs that ran."""
    callback_list = callbacks.CallbackList(
        cbs, add_history=True, add_progbar=verbose != 0, model=model, verbose=verbose,
        epochs=len(epoch_logs), steps=steps,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    ran = []
    logs = {}
    for epoch, logs in enumerate(epoch_logs):
        callback_list.on_epoch_begin(epoch)
        if callback_list.needs_batch_logs:
            for step in range(steps):
                callback_list.on_train_batch_begin(step)
                callback_list.on_train_batch_end(step, dict(batch_logs(epoch, step)) if batch_logs else {})
                if model.stop_training:
                    break
        model.weights = [np.full_like(w, epoch) for w in model.weights]
        logs = dict(logs)
        callback_list.on_epoch_end(epoch, logs)
        ran.append(epoch)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return ran


def val_losses(values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


# ---- EarlyStopping ------------------------------------------------------------


def test_early_stopping_patience_counts_epochs_without_improvement():
    model = FakeModel()
    stopper = callbacks.EarlyStopping(patience=2)
    ran = fit([stopper], model, val_losses([1.0, 0.9, 0.95, 0.96, 0.5, 0.4]))
    assert ran == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and stopper.best == 0.9 and model.stop_training


def test_early_stopping_patience_zero_stops_at_first_non_improvement():
    ran = fit([callbacks.EarlyStopping(patience=0)], FakeModel(), val_losses([1.0, 0.9, 0.9, 0.8]))
    assert ran == [0, 1, 2]


def test_early_stopping_min_delta_ignores_small_improvements():
    values = [1.0, 0.95, 0.91, 0.88, 0.86]
    assert fit([callbacks.EarlyStopping(patience=1, min_delta=0.1)], FakeModel(), val_losses(values)) == [0, 1]
    ran = fit([callbacks.EarlyStopping(patience=1, min_delta=0.01)], FakeModel(), val_losses(values))
    assert ran == [0, 1, 2, 3, 4]


def test_early_stopping_baseline_must_be_beaten():
    flat = val_losses([0.8, 0.8, 0.8, 0.8])
    assert fit([callbacks.EarlyStopping(patience=2, baseline=0.5)], FakeModel(), flat) == [0, 1]
    assert fit([callbacks.EarlyStopping(patience=2)], FakeModel(), flat) == [0, 1, 2]
    assert fit([callbacks.EarlyStopping(patience=2, baseline=0.9)], FakeModel(), flat) == [0, 1, 2]


@pytest.mark.parametrize("stop_early", [True, False])
def test_early_stopping_restores_best_weights(stop_early, capsys):
    model = FakeModel()
    values = [1.0, 0.5, 0.7, 0.8, 0.9] if stop_early else [1.0, 0.5, 0.7]
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    ran = fit([stopper], model, val_losses(values))
    assert ran[-1] == (3 if stop_early else 2)
    assert all(np.all(w == 1.0) for w in model.weights)
    assert stopper.best_epoch == 1
    out = capsys.readouterr().out
    assert "Restoring model weights from the end of the best epoch: 2." in out
    assert ("Epoch 4: early stopping" in out) == stop_early


def test_early_stopping_without_restore_keeps_last_weights():
    model = FakeModel()
    fit([callbacks.EarlyStopping(patience=1)], model, val_losses([1.0, 0.5, 0.7, 0.8]))
    assert all(np.all(w == 2.0) for w in model.weights)


def test_early_stopping_start_from_epoch_ignores_warmup():
    values = [5.0, 0.1, 3.0, 2.0, 1.0, 1.5, 1.6]
    stopper = callbacks.EarlyStopping(patience=1, start_from_epoch=2)
    ran = fit([stopper], FakeModel(), val_losses(values))
    assert ran == [0, 1, 2, 3, 4, 5]
    assert stopper.best == 1.0


@pytest.mark.parametrize(
    "monitor, mode, values, expected",
    [
        ("val_accuracy", "auto", [0.5, 0.6, 0.55], [0, 1, 2]),
        ("val_accuracy", "auto", [0.5, 0.4, 0.3], [0, 1]),
        ("val_auc", "auto", [0.5, 0.4, 0.3], [0, 1]),
        ("val_loss", "auto", [0.5, 0.6, 0.7], [0, 1]),
        ("val_mae", "auto", [0.5, 0.6, 0.7], [0, 1]),
        ("val_loss", "max", [0.5, 0.6, 0.7], [0, 1, 2]),
        ("val_accuracy", "min", [0.5, 0.4, 0.3], [0, 1, 2]),
    ],
)
def test_early_stopping_modes(monitor, mode, values, expected):
    logs = [{monitor: v} for v in values]
    assert fit([callbacks.EarlyStopping(monitor=monitor, mode=mode)], FakeModel(), logs) == expected


def test_auto_mode_uses_the_models_metric_direction():
    model = FakeModel(metrics=[FakeMetric("score", "up")])
    logs = [{"val_score": v} for v in [0.5, 0.6, 0.4]]
    assert fit([callbacks.EarlyStopping(monitor="val_score")], model, logs) == [0, 1, 2]
    with pytest.raises(ValueError, match="mode='max'"):
        fit([callbacks.EarlyStopping(monitor="val_score")], FakeModel(), logs)


def test_unknown_mode_warns_and_falls_back_to_auto():
    with pytest.warns(UserWarning, match="mode 'sideways' is unknown"):
        stopper = callbacks.EarlyStopping(mode="sideways")
    assert stopper.mode == "auto"


def test_early_stopping_warns_when_monitor_missing():
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available metrics are: loss"):
        ran = fit([callbacks.EarlyStopping()], FakeModel(), [{"loss": 1.0}] * 3)
    assert ran == [0, 1, 2]


# ---- ReduceLROnPlateau / LearningRateScheduler -----------------------------------


def test_reduce_lr_on_plateau_cooldown_and_min_lr(capsys):
    model = FakeModel(learning_rate=1.0)
    rates = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(model.optimizer.learning_rate))
    reducer = callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_lr=0.2, verbose=1)
    fit([reducer, record], model, val_losses([1.0] * 10))
    assert rates == pytest.approx([1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2])
    out = capsys.readouterr().out
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.5." in out
    assert "Epoch 6: ReduceLROnPlateau reducing learning rate to 0.2." in out
    assert out.count("ReduceLROnPlateau") == 3
    assert model.history.history["learning_rate"] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2])


def test_reduce_lr_on_plateau_resets_wait_on_improvement():
    model = FakeModel(learning_rate=1.0)
    fit([callbacks.ReduceLROnPlateau(factor=0.1, patience=2)], model, val_losses([1.0, 1.0, 0.5, 0.5, 0.2, 0.2]))
    assert model.optimizer.learning_rate == 1.0
    fit([callbacks.ReduceLROnPlateau(factor=0.1, patience=2, min_delta=0.4)], model, val_losses([1.0, 1.0, 0.7, 0.5]))
    assert model.optimizer.learning_rate == pytest.approx(0.1)


def test_reduce_lr_on_plateau_rejects_factor_above_one():
    with pytest.raises(ValueError, match="factor >= 1.0"):
        callbacks.ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler_sets_rate_each_epoch(capsys):
    model = FakeModel(learning_rate=0.8)
    seen = []
    record = callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(model.optimizer.learning_rate))
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5, verbose=1)
    fit([scheduler, record], model, val_losses([1.0] * 4))
    assert seen == pytest.approx([0.8, 0.8, 0.4, 0.2])
    assert model.history.history["learning_rate"] == pytest.approx(seen)
    assert "Epoch 3: LearningRateScheduler setting learning rate to 0.4." in capsys.readouterr().out


def test_learning_rate_scheduler_accepts_one_argument_schedule():
    model = FakeModel()
    fit([callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], model, val_losses([1.0] * 3))
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 3)


def test_learning_rate_scheduler_requires_float():
    with pytest.raises(ValueError, match="should be a float"):
        fit([callbacks.LearningRateScheduler(lambda epoch, lr: 1)], FakeModel(), val_losses([1.0]))


# ---- ModelCheckpoint ----------------------------------------------------------------


def test_model_checkpoint_formats_file_names(tmp_path):
    model = FakeModel()
    pattern = str(tmp_path / "sub" / "w-{epoch:02d}-{val_loss:.2f}.weights.npz")
    values = [0.91234, 0.5, 0.7]
    fit([callbacks.ModelCheckpoint(pattern, save_weights_only=True)], model, val_losses(values))
    expected = [str(tmp_path / "sub" / f"w-{e + 1:02d}-{v:.2f}.weights.npz") for e, v in enumerate(values)]
    assert model.saved == [("weights", path) for path in expected]


def test_model_checkpoint_save_best_only(tmp_path, capsys):
    model = FakeModel()
    pattern = str(tmp_path / "m-{epoch}.keras")
    checkpoint = callbacks.ModelCheckpoint(pattern, monitor="val_accuracy", save_best_only=True, verbose=1)
    fit([checkpoint], model, [{"val_accuracy": v} for v in [0.5, 0.4, 0.7, 0.7, 0.8]])
    assert model.saved == [("model", str(tmp_path / f"m-{e}.keras")) for e in (1, 3, 5)]
    out = capsys.readouterr().out
    assert "Epoch 1: val_accuracy improved from None to 0.50000, saving model to" in out
    assert "Epoch 2: val_accuracy did not improve from 0.50000" in out


def test_model_checkpoint_initial_value_threshold(tmp_path):
    model = FakeModel()
    checkpoint = callbacks.ModelCheckpoint(
        str(tmp_path / "m-{epoch}.keras"), save_best_only=True, initial_value_threshold=0.6
    )
    fit([checkpoint], model, val_losses([0.7, 0.65, 0.5]))
    assert model.saved == [("model", str(tmp_path / "m-3.keras"))]


def test_model_checkpoint_warns_when_monitor_missing(tmp_path):
    model = FakeModel()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_best_only=True)
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        fit([checkpoint], model, [{"loss": 1.0}, {"loss": 0.5}])
    assert len(model.saved) == 2


@pytest.mark.parametrize("save_freq, steps", [(2, 5), (3, 4), (1, 2)])
def test_model_checkpoint_save_freq_in_batches(tmp_path, save_freq, steps):
    model = FakeModel()
    epochs = 3
    pattern = str(tmp_path / "w-{epoch}-{batch}.weights.h5")
    checkpoint = callbacks.ModelCheckpoint(pattern, save_weights_only=True, save_freq=save_freq)
    fit([checkpoint], model, val_losses([1.0] * epochs), steps=steps)
    saved_steps = [g for g in range(1, epochs * steps + 1) if g % save_freq == 0]
    expected = [str(tmp_path / f"w-{(g - 1) // steps + 1}-{(g - 1) % steps + 1}.weights.h5") for g in saved_steps]
    assert [path for _, path in model.saved] == expected


def test_model_checkpoint_per_epoch_needs_no_batch_hooks(tmp_path):
    per_epoch = callbacks.CallbackList([callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))], epochs=1, steps=1)
    per_batch = callbacks.CallbackList([callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq=5)])
    assert not per_epoch.needs_batch_logs
    assert per_batch.needs_batch_logs


@pytest.mark.parametrize(
    "filepath, weights_only, message",
    [
        ("w.h5", True, r"must end in `\.weights\.h5`"),
        ("w.npz", True, r"must end in `\.weights\.h5`"),
        ("m.weights.npz", False, r"must end in `\.keras`"),
        ("m.h5", False, r"must end in `\.keras`"),
    ],
)
def test_model_checkpoint_rejects_bad_suffix(filepath, weights_only, message):
    with pytest.raises(ValueError, match=message):
        callbacks.ModelCheckpoint(filepath, save_weights_only=weights_only)


@pytest.mark.parametrize(
    "filepath, weights_only", [("w.weights.h5", True), ("w.weights.npz", True), ("m.keras", False)]
)
def test_model_checkpoint_accepts_suffixes(filepath, weights_only):
    assert callbacks.ModelCheckpoint(filepath, save_weights_only=weights_only).filepath == filepath


@pytest.mark.parametrize("save_freq", ["batch", 0, 1.5, True])
def test_model_checkpoint_rejects_bad_save_freq(save_freq):
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.ModelCheckpoint("m.keras", save_freq=save_freq)


def test_model_checkpoint_unknown_format_field(tmp_path):
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "m-{val_acc}.keras"))
    with pytest.raises(KeyError, match="val_acc"):
        fit([checkpoint], FakeModel(), val_losses([1.0]))


# ---- CSVLogger ---------------------------------------------------------------------


def read_csv(path, separator=","):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter=separator))


def test_csv_logger_writes_header_and_rows(tmp_path):
    path = tmp_path / "log.csv"
    logs = [
        {"loss": 1.0 / (e + 1), "accuracy": 0.5 + e / 10, "val_loss": 2.0 - e, "val_accuracy": 0.25 * e}
        for e in range(3)
    ]
    rows_after_first_epoch = []
    peek = callbacks.LambdaCallback(on_epoch_end=lambda epoch, _: epoch == 0 and rows_after_first_epoch.extend(read_csv(path, ";")))
    fit([callbacks.CSVLogger(path, separator=";"), peek], FakeModel(), logs)
    rows = read_csv(path, ";")
    header = ["epoch"] + sorted(logs[0])
    assert rows[0] == header
    assert len(rows_after_first_epoch) == 2
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        assert [float(v) for v in row[1:]] == pytest.approx([logs[epoch][k] for k in header[1:]])
    assert len(rows) == 4


def test_csv_logger_append_writes_header_once(tmp_path):
    path = tmp_path / "log.csv"
    for _ in range(2):
        fit([callbacks.CSVLogger(path, append=True)], FakeModel(), val_losses([0.5, 0.25]))
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "0", "1"]
    fit([callbacks.CSVLogger(path)], FakeModel(), val_losses([0.5]))
    assert len(read_csv(path)) == 2


def test_csv_logger_adds_val_columns_when_validation_is_late(tmp_path):
    path = tmp_path / "log.csv"
    fit([callbacks.CSVLogger(path)], FakeModel(), [{"loss": 1.0}, {"loss": 0.5, "val_loss": 0.7}])
    rows = read_csv(path)
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert rows[1][2] == "NA" and float(rows[2][2]) == pytest.approx(0.7)


# ---- TerminateOnNaN, LambdaCallback, History ------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_terminate_on_nan_stops_on_invalid_loss(bad, capsys):
    model = FakeModel()
    seen_steps = []
    record = callbacks.LambdaCallback(on_train_batch_end=lambda step, logs: seen_steps.append(step))
    ran = fit([callbacks.TerminateOnNaN(), record], model, val_losses([1.0] * 3), steps=5,
              batch_logs=lambda epoch, step: {"loss": bad if step == 2 else 0.5})
    assert ran == [0] and seen_steps == [0, 1, 2] and model.stop_training
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out


def test_terminate_on_nan_ignores_finite_losses_and_can_raise():
    model = FakeModel()
    ran = fit([callbacks.TerminateOnNaN()], model, val_losses([1.0] * 2), batch_logs=lambda e, s: {"loss": 1e30})
    assert ran == [0, 1] and not model.stop_training
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        fit([callbacks.TerminateOnNaN(raise_error=True)], model, val_losses([1.0]),
            batch_logs=lambda e, s: {"loss": math.nan if s == 1 else 1.0})


def test_lambda_callback_calls_given_functions():
    calls = []
    lam = callbacks.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: calls.append(f"epoch_begin {epoch}"),
        on_train_batch_begin=lambda step, logs: calls.append(f"batch_begin {step}"),
        on_train_batch_end=lambda step, logs: calls.append(f"batch_end {step} {logs['loss']}"),
        on_epoch_end=lambda epoch, logs: calls.append(f"epoch_end {epoch} {logs['val_loss']}"),
        on_train_end=lambda logs: calls.append("train_end"),
    )
    fit([lam], FakeModel(), val_losses([0.5]), steps=2, batch_logs=lambda e, s: {"loss": float(s)})
    assert calls == [
        "train_begin", "epoch_begin 0", "batch_begin 0", "batch_end 0 0.0", "batch_begin 1", "batch_end 1 1.0",
        "epoch_end 0 0.5", "train_end",
    ]


def test_lambda_callback_rejects_unknown_hooks():
    with pytest.raises(ValueError, match="on_epoch_finish.*valid hooks"):
        callbacks.LambdaCallback(on_epoch_finish=print)


def test_history_records_epoch_logs():
    model = FakeModel()
    logs = [{"accuracy": 0.1 * e, "loss": 1.0 / (e + 1), "val_accuracy": 0.2 * e, "val_loss": 2.0 / (e + 1)} for e in range(3)]
    fit([], model, logs)
    history = model.history
    assert isinstance(history, callbacks.History)
    assert history.epoch == [0, 1, 2]
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for key in history.history:
        assert history.history[key] == [entry[key] for entry in logs]
    assert history.params == {"verbose": 0, "epochs": 3, "steps": 3}


def test_user_history_is_reused():
    model = FakeModel()
    history = callbacks.History()
    callback_list = callbacks.CallbackList([history], add_history=True, model=model)
    assert [cb for cb in callback_list.callbacks if isinstance(cb, callbacks.History)] == [history]
    assert model.history is history


def test_get_config_round_trip(tmp_path):
    made = [
        callbacks.EarlyStopping(monitor="val_accuracy", min_delta=0.01, patience=3, mode="max", baseline=0.5,
                                restore_best_weights=True, start_from_epoch=2),
        callbacks.ReduceLROnPlateau(factor=0.2, patience=4, cooldown=1, min_lr=1e-5, min_delta=0.01),
        callbacks.ModelCheckpoint(str(tmp_path / "w.weights.npz"), save_weights_only=True, save_freq=7,
                                  save_best_only=True, initial_value_threshold=0.3),
        callbacks.CSVLogger(str(tmp_path / "log.csv"), separator="\t", append=True),
        callbacks.TerminateOnNaN(raise_error=True),
    ]
    for callback in made:
        config = callback.get_config()
        assert type(callback).from_config(config).get_config() == config
    made[0]._set_monitor_op()
    assert made[0].get_config()["min_delta"] == 0.01


# ---- CallbackList: batch hooks and lazy logs ---------------------------------------------


class EpochOnly(callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        pass


class BatchEnd(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((batch, logs))


class OldStyleBatchEnd(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_batch_end(self, batch, logs=None):
        self.seen.append(batch)


class ValBatchBegin(callbacks.Callback):
    def on_test_batch_begin(self, batch, logs=None):
        pass


@pytest.mark.parametrize(
    "make, verbose, needed",
    [
        (EpochOnly, 0, False),
        (callbacks.History, 0, False),
        (callbacks.EarlyStopping, 0, False),
        (BatchEnd, 0, True),
        (OldStyleBatchEnd, 0, True),
        (ValBatchBegin, 0, True),
        (callbacks.TerminateOnNaN, 0, True),
        (EpochOnly, 1, True),
        (EpochOnly, 2, False),
    ],
)
def test_needs_batch_logs(make, verbose, needed):
    callback_list = callbacks.CallbackList(
        [make()], add_history=True, add_progbar=verbose != 0, model=FakeModel(), verbose=verbose, epochs=2, steps=4
    )
    assert callback_list.needs_batch_logs is needed


def test_needs_batch_logs_sees_lambda_hooks():
    assert not callbacks.CallbackList([callbacks.LambdaCallback(on_epoch_end=print)]).needs_batch_logs
    assert callbacks.CallbackList([callbacks.LambdaCallback(on_train_batch_end=print)]).needs_batch_logs


def test_batch_hooks_reach_only_overriding_callbacks():
    batch_end, old_style = BatchEnd(), OldStyleBatchEnd()
    callback_list = callbacks.CallbackList([EpochOnly(), batch_end, old_style])
    callback_list.on_train_batch_end(0, {"loss": 1.0})
    callback_list.on_train_batch_end(1, {"loss": 2.0})
    assert batch_end.seen == [(0, {"loss": 1.0}), (1, {"loss": 2.0})]
    assert old_style.seen == [0, 1]


def test_lazy_batch_logs_computed_once_and_only_when_read(monkeypatch):
    calls = []

    def logs():
        calls.append(1)
        return {"loss": 0.5}

    first, second = BatchEnd(), BatchEnd()
    callbacks.CallbackList([first, second]).on_train_batch_end(0, logs)
    assert len(calls) == 1 and first.seen == second.seen == [(0, {"loss": 0.5})]

    calls.clear()
    callback_list = callbacks.CallbackList([], add_progbar=True, verbose=1, epochs=1, steps=100)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    callback_list._progbar.progbar.interval = 1e9
    for step in range(50):
        callback_list.on_train_batch_end(step, logs)
    assert len(calls) == 1


def test_progbar_logger_ignores_validation_batches_during_fit(capsys):
    callback_list = callbacks.CallbackList([], add_progbar=True, verbose=1, epochs=1, steps=2)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    assert callback_list.needs_batch_logs
    callback_list.on_test_begin()
    assert not callback_list._batch_hooks["on_test_batch_end"]
    callback_list.on_test_end({"loss": 0.25})
    callback_list.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.25})
    callback_list.on_train_end()
    evaluate_list = callbacks.CallbackList([], add_progbar=True, verbose=1, epochs=1, steps=2)
    evaluate_list.on_test_begin()
    assert evaluate_list.needs_batch_logs
    out = plain(capsys.readouterr().out)
    assert out.count("\n") == 1 and "loss: 0.5000 - val_loss: 0.2500" in out


# ---- ProgbarLogger and Progbar output -----------------------------------------------


def last_line(text):
    return plain(text).split("\r")[-1].strip("\n")


def test_progbar_logger_verbose_1_prints_epochs_and_bar(capsys):
    logs = [{"accuracy": 0.5 + 0.1 * e, "loss": 1.0 / (e + 2), "val_accuracy": 0.4, "val_loss": 0.75} for e in range(3)]
    fit([], FakeModel(), logs, steps=4, verbose=1, batch_logs=lambda e, s: {"accuracy": 0.5, "loss": 0.5})
    out = plain(capsys.readouterr().out)
    lines = [line.split("\r")[-1].rstrip() for line in out.strip("\n").split("\n")]
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for epoch, line in enumerate(lines[1::2]):
        expected = (f"4/4 ━━━━━━━━━━━━━━━━━━━━ 0s \\d+(us|ms)/step - accuracy: {logs[epoch]['accuracy']:.4f} - "
                    f"loss: {logs[epoch]['loss']:.4f} - val_accuracy: 0.4000 - val_loss: 0.7500")
        assert re.fullmatch(expected, line), line


def test_progbar_logger_verbose_2_prints_one_line_per_epoch(capsys):
    logs = [{"loss": 0.5, "val_loss": 0.25}, {"loss": 0.125, "val_loss": 0.0001}]
    fit([], FakeModel(), logs, steps=12, verbose=2)
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    lines = out.strip("\n").split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert re.fullmatch(r"12/12 - 0s - \d+(us|ms)/step - loss: 0\.5000 - val_loss: 0\.2500", lines[1]), lines[1]
    assert re.fullmatch(r"12/12 - 0s - \d+(us|ms)/step - loss: 0\.1250 - val_loss: 1\.0000e-04", lines[3]), lines[3]


def test_progbar_logger_single_epoch_has_no_epoch_line(capsys):
    fit([], FakeModel(), val_losses([0.5]), steps=2, verbose=2)
    assert "Epoch" not in capsys.readouterr().out


def test_progbar_live_bar_shows_eta_then_total_time(capsys):
    bar = Progbar(target=10, interval=0.0, stateful_metrics=["loss"])
    bar.update(3, [("loss", 0.75)])
    running = last_line(capsys.readouterr().out)
    assert re.fullmatch(r" 3/10 ━{20} 0s \d+(us|ms)/step - loss: 0\.7500", running), running
    assert running.count("━") == 20
    bar.update(10, [("loss", 0.5)])
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.startswith("\b" * len(plain(running)) + "\r")
    assert re.fullmatch(r"10/10 ━{20} 0s \d+(us|ms)/step - loss: 0\.5000", last_line(out))


def test_progbar_throttles_redraws(capsys):
    bar = Progbar(target=1000, interval=1e9)
    for step in range(1, 1000):
        bar.update(step, [("loss", 1.0)])
    assert capsys.readouterr().out.count("\r") == 1
    bar.update(1000, [("loss", 1.0)])
    assert capsys.readouterr().out.count("\r") == 1


def test_progbar_shows_nan_and_small_values(capsys):
    bar = Progbar(target=2, verbose=1, stateful_metrics=["loss", "tiny", "negative"])
    bar.update(2, [("loss", float("nan")), ("tiny", 2.5e-5), ("negative", -0.25)])
    assert last_line(capsys.readouterr().out).endswith("loss: nan - tiny: 2.5000e-05 - negative: -0.2500")
    bar = Progbar(target=2, verbose=2)
    bar.update(2, [("loss", float("inf"))])
    assert capsys.readouterr().out.rstrip("\n").endswith("loss: inf")


def test_progbar_averages_stateless_metrics(capsys, rng):
    values = rng.uniform(0.1, 2.0, size=7)
    bar = Progbar(target=8, interval=0.0, stateful_metrics=["kept"])
    for step, value in enumerate(values, start=1):
        bar.update(step, [("averaged", value), ("kept", value)])
    line = last_line(capsys.readouterr().out)
    assert f"averaged: {values.mean():.4f}" in line and f"kept: {values[-1]:.4f}" in line


def test_progbar_unknown_target(capsys):
    bar = Progbar(target=None, interval=0.0)
    bar.update(5, [("loss", 0.5)])
    assert re.fullmatch(r"      5/Unknown 0s \d+(us|ms)/step - loss: 0\.5000", last_line(capsys.readouterr().out))


def test_progbar_falls_back_to_ascii(monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    Progbar(target=4).update(4, [("loss", 0.5)])
    sys.stdout.flush()
    text = plain(raw.getvalue().decode("ascii"))
    assert "4/4 " + "=" * 20 in text and "loss: 0.5000" in text


def test_progbar_rejects_both_metric_lists():
    with pytest.raises(ValueError, match="only one of `stateful_metrics`"):
        Progbar(10, stateful_metrics=["a"], stateless_metrics=["b"])


def test_progbar_logger_live_bar_counts_batches(capsys):
    callback_list = callbacks.CallbackList([], add_progbar=True, verbose=1, epochs=1, steps=4)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    callback_list._progbar.progbar.interval = 0.0
    callback_list.on_train_batch_end(0, {"loss": 0.5})
    callback_list.on_train_batch_end(1, lambda: {"loss": 0.25})
    assert re.fullmatch(r"2/4 ━{20} 0s \d+(us|ms)/step - loss: 0\.2500", last_line(capsys.readouterr().out))


def test_progbar_logger_unknown_steps_uses_batches_seen(capsys):
    callback_list = callbacks.CallbackList([], add_progbar=True, verbose=2, epochs=1, steps=None)
    assert callback_list.needs_batch_logs
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    for step in range(5):
        callback_list.on_train_batch_end(step, {"loss": 1.0})
    callback_list.on_epoch_end(0, {"loss": 0.5})
    assert re.fullmatch(r"5/5 - 0s - \d+(us|ms)/step - loss: 0\.5000\n", capsys.readouterr().out)
