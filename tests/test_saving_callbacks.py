"""ModelCheckpoint and BackupAndRestore with real models and files."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nkeras as keras
from nkeras import layers
from nkeras.saving import saving_lib


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(8, activation="relu"), layers.Dropout(0.3),
                              layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def test_model_checkpoint_writes_loadable_models_and_weights(tmp_path):
    x, y = _data()
    model = _model()
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.keras")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch:02d}.weights.h5"), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.weights.npz"), save_weights_only=True,
                                        monitor="val_loss", save_best_only=True),
    ]
    model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=callbacks)
    names = sorted(os.listdir(tmp_path))
    assert names == ["best.weights.npz"] + [f"m-{e:02d}.keras" for e in (1, 2, 3)] + [
        f"w-{e:02d}.weights.h5" for e in (1, 2, 3)]
    last = keras.models.load_model(tmp_path / "m-03.keras")
    np.testing.assert_array_equal(last.predict(x, verbose=0), model.predict(x, verbose=0))
    assert last.optimizer.iterations == model.optimizer.iterations
    other = _model(seed=1)
    other.load_weights(tmp_path / "w-03.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_checkpoint_refuses_unsavable_models_before_training(tmp_path):
    class Unregistered(layers.Dense):
        pass

    model = keras.Sequential([keras.Input((4,)), Unregistered(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, _ = _data()
    with pytest.raises(ValueError, match="register_keras_serializable"):
        model.fit(x, np.zeros((64, 2)), epochs=1, verbose=0,
                  callbacks=[keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))])
    assert os.listdir(tmp_path) == []


def test_interrupted_save_leaves_previous_checkpoint_whole(tmp_path, monkeypatch):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "ckpt.keras"
    model.save(path)
    before = path.read_bytes()
    model.fit(x, y, epochs=1, verbose=0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(saving_lib.h5_store, "weights_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.keras"]
    monkeypatch.undo()
    keras.models.load_model(path)


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import nkeras as keras

    backup, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keras.utils.set_random_seed(42)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 4)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [keras.callbacks.BackupAndRestore(backup)] + ([Kill()] if kill_at else [])
    model.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=callbacks)
    model.save_weights(out)
""")


def _run(script, *args):
    root = os.path.dirname(os.path.dirname(keras.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, capture_output=True,
                          timeout=300, check=False)


def test_backup_and_restore_resumes_after_sigkill(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    backup = tmp_path / "backup"
    # 6 steps per epoch: step 16 is in the middle of the third epoch.
    killed = _run(script, backup, tmp_path / "never.weights.npz", 16)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert os.listdir(backup) == ["latest.weights.h5"]
    resumed = _run(script, backup, tmp_path / "resumed.weights.npz", 0)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert not os.path.exists(backup / "latest.weights.h5")
    straight = _run(script, tmp_path / "other", tmp_path / "straight.weights.npz", 0)
    assert straight.returncode == 0, straight.stderr.decode()
    a = np.load(tmp_path / "resumed.weights.npz", allow_pickle=False)
    b = np.load(tmp_path / "straight.weights.npz", allow_pickle=False)
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


def test_backup_and_restore_in_process(tmp_path):
    x, y = _data()
    model = _model()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), double_checkpoint=True, delete_checkpoint=False)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[backup])
    assert history.epoch == [0, 1]
    assert sorted(os.listdir(tmp_path)) == ["latest.weights.h5", "previous.weights.h5"]
    (tmp_path / "latest.weights.h5").write_bytes(b"garbage")
    resumed = _model()
    history = resumed.fit(x, y, epochs=3, batch_size=16, verbose=0,
                          callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path), double_checkpoint=True)])
    assert history.epoch == [1, 2]  # the previous backup (after epoch 0) was used
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="save_freq"):
        keras.callbacks.BackupAndRestore(str(tmp_path), save_freq=0)
    (tmp_path / "latest.weights.h5").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot restore"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path))])
