"""plot_model (Graphviz) and plot_history (matplotlib)."""

import importlib.util
import os
import shutil
import stat
import sys

import pytest

import nkeras as keras
from nkeras import layers


def _model():
    a = keras.Input((4,), name="a")
    b = keras.Input((2, 3), name="b")
    x = layers.Dense(5, activation="tanh", name="hidden")(a)
    y = layers.Flatten(name="flat")(b)
    return keras.Model([a, b], [layers.Dense(2, name="out")(x), layers.Dense(1, name="score")(y)])


def test_plot_model_writes_dot(tmp_path):
    keras.utils.plot_model(_model(), to_file=tmp_path / "m.dot", show_shapes=True, show_layer_activations=True,
                           rankdir="LR")
    text = (tmp_path / "m.dot").read_text()
    assert text.startswith('digraph "functional"') and "rankdir=LR" in text
    for label in ("a (InputLayer)", "hidden (Dense)", "activation: tanh", "input: (None, 4)",
                  "output: (None, 5)", "flat (Flatten)", "output: (None, 6)"):
        assert label in text
    assert text.count("->") == 4
    sequential = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    assert "input_layer (InputLayer)" in keras.utils.model_to_dot(sequential)
    with pytest.raises(ValueError, match="not built"):
        keras.utils.model_to_dot(keras.Sequential([layers.Dense(2)]))
    with pytest.raises(ValueError, match="format"):
        keras.utils.plot_model(sequential, to_file=tmp_path / "m.bmpx")


def test_plot_model_renders_with_dot_or_says_it_is_missing(tmp_path, monkeypatch):
    model = _model()
    if shutil.which("dot"):
        keras.utils.plot_model(model, to_file=tmp_path / "m.png", show_shapes=True)
        assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match="Graphviz's 'dot' program"):
        keras.utils.plot_model(model, to_file=tmp_path / "n.png")
    assert not (tmp_path / "n.png").exists()


def test_plot_model_runs_dot_for_images(tmp_path, monkeypatch):
    # A stand-in `dot` records its arguments and input, so the call is checked without Graphviz.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen(sys.argv[3], 'w').write(' '.join(sys.argv[1:]) + "
                    "'\\n' + sys.stdin.read())\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    keras.utils.plot_model(_model(), to_file=tmp_path / "m.svg")
    first, source = (tmp_path / "m.svg").read_text().split("\n", 1)
    assert first == f"-Tsvg -o {tmp_path / 'm.svg'}" and source.startswith("digraph")


def _history():
    history = keras.callbacks.History()
    history.history = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.7], "accuracy": [0.5, 0.8]}
    return history


def test_plot_history(tmp_path, monkeypatch):
    if importlib.util.find_spec("matplotlib") is not None:
        figure = keras.utils.plot_history(_history(), to_file=tmp_path / "h.png")
        assert len(figure.axes) == 2 and (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
        with pytest.raises(ValueError, match="no values"):
            keras.utils.plot_history(_history(), metrics=["mae"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        keras.utils.plot_history(_history())
