"""Keras 2 files holding cuDNN-layout recurrent weights (spec 10.5).

tf_keras writes the files (``CuDNNGRU`` / ``CuDNNLSTM`` build and save on a CPU; only
running them needs a GPU), in a subprocess as the oracle does. What tf_keras computes
for them comes from tf_keras itself: the same weights loaded into GRU(reset_after=True,
sigmoid) / LSTM(sigmoid) models, which tf_keras converts on loading. A multi-backend
Keras 2.2 file (no cell scope in weight names) is built by hand, from a GRU's weights
put into cuDNN layout by the inverse formula written here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from layerserve.errors import WeightsError
from layerserve.layers import GRU, LSTM, Input
from layerserve.models import Sequential, load_model, model_from_json

WRITER = textwrap.dedent(
    """
    import os, sys, json
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tf_keras as k
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    out = sys.argv[1]
    rng = np.random.default_rng(5)

    def build(gru, lstm, bidirectional=False):
        x = k.Input((6, 3))
        wrap = k.layers.Bidirectional if bidirectional else (lambda layer: layer)
        seq = wrap(gru(4, return_sequences=True))(x)
        last = wrap(gru(3, go_backwards=True))(x)
        lstm_out = wrap(lstm(2, return_sequences=True))(x)
        state = lstm(3, return_state=True)(x)
        return k.Model(x, [seq, last, lstm_out, *state])

    cudnn_gru = lambda units, **kw: CuDNNGRU(units, **kw)
    cudnn_lstm = lambda units, **kw: CuDNNLSTM(units, **kw)
    plain_gru = lambda units, **kw: k.layers.GRU(
        units, reset_after=True, recurrent_activation="sigmoid", **kw)
    plain_lstm = lambda units, **kw: k.layers.LSTM(units, recurrent_activation="sigmoid", **kw)
    x = rng.normal(size=(7, 6, 3)).astype("float32")
    for name, bidirectional in (("plain", False), ("bidirectional", True)):
        cudnn = build(cudnn_gru, cudnn_lstm, bidirectional)
        cudnn.set_weights([rng.normal(0, 0.6, w.shape).astype("float32")
                           for w in cudnn.get_weights()])
        cudnn.save(f"{out}/{name}_cudnn.h5")
        cudnn.save(f"{out}/{name}_cudnn.keras")  # tf_keras's own .keras layout
        keras_layout = build(plain_gru, plain_lstm, bidirectional)
        keras_layout.load_weights(f"{out}/{name}_cudnn.h5")  # tf_keras converts
        expected = keras_layout.predict(x, verbose=0)
        np.savez(f"{out}/{name}_expected.npz", x=x, *expected)
        with open(f"{out}/{name}_gru_model.json", "w") as handle:
            handle.write(keras_layout.to_json())
    # tf_keras refuses cuDNN weights for a GRU with reset_after=False.
    x_in = k.Input((6, 3))
    mismatch = k.Model(x_in, k.layers.GRU(4, reset_after=False)(x_in))
    cudnn = k.Model(x_in, CuDNNGRU(4)(x_in))
    cudnn.save_weights(f"{out}/one_cudnn_gru.h5")
    try:
        mismatch.load_weights(f"{out}/one_cudnn_gru.h5")
        refused = "no"
    except ValueError as exc:
        refused = str(exc)
    with open(f"{out}/mismatch.json", "w") as handle:
        json.dump({"refused": refused, "model": mismatch.to_json()}, handle)
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cudnn")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def expected_outputs(files: Path, name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    data = np.load(files / f"{name}_expected.npz")
    count = len([key for key in data if key.startswith("arr_")])
    return data["x"], [data[f"arr_{i}"] for i in range(count)]


def assert_outputs(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cudnn_layers_load_as_gru_and_lstm(files):
    x, expected = expected_outputs(files, "plain")
    model = load_model(files / "plain_cudnn.h5")
    rnns = [layer for layer in model.layers if isinstance(layer, (GRU, LSTM))]
    assert [type(layer).__name__ for layer in rnns] == ["CuDNNGRU"] * 2 + ["CuDNNLSTM"] * 2
    for layer in rnns:
        if isinstance(layer, GRU):
            assert layer.reset_after and layer.bias.shape == (2, 3 * layer.units)
        assert layer.get_config().get("recurrent_activation") is None  # fixed, not stored
    assert_outputs(model.predict(x), expected)


@pytest.mark.parametrize("name", ["plain", "bidirectional"])
def test_tf_keras_keras_archives_convert(files, name):
    """tf_keras's ``.keras`` holds a cuDNN layer's own (cuDNN-layout) variables too."""
    x, expected = expected_outputs(files, name)
    assert_outputs(load_model(files / f"{name}_cudnn.keras").predict(x), expected)


def test_gru_and_lstm_config_with_cudnn_weights_converts(files):
    """Keras 2 converts whenever the stored bias shape reveals cuDNN layout."""
    x, expected = expected_outputs(files, "plain")
    model = model_from_json((files / "plain_gru_model.json").read_text())
    model.load_weights(files / "plain_cudnn.h5")
    assert_outputs(model.predict(x), expected)


def test_bidirectional_cudnn_weights_convert(files):
    x, expected = expected_outputs(files, "bidirectional")
    assert_outputs(load_model(files / "bidirectional_cudnn.h5").predict(x), expected)
    model = model_from_json((files / "bidirectional_gru_model.json").read_text())
    model.load_weights(files / "bidirectional_cudnn.h5")
    assert_outputs(model.predict(x), expected)


def test_gru_reset_before_refuses_cudnn_weights(files):
    stored = json.loads((files / "mismatch.json").read_text())
    assert "reset_after" in stored["refused"] or "GRU" in stored["refused"]  # tf_keras too
    model = model_from_json(stored["model"])
    with pytest.raises(WeightsError, match=r"reset_after=False.*CuDNNGRU weights"):
        model.load_weights(files / "one_cudnn_gru.h5")


def test_keras3_never_converts(files, tmp_path):
    """The same arrays in a file that says Keras 3 wrote it are not converted, so their
    shapes do not fit; the Keras 2 original loads into the same model."""
    copy = tmp_path / "keras3.h5"
    copy.write_bytes((files / "one_cudnn_gru.h5").read_bytes())
    with h5py.File(copy, "r+") as handle:
        handle.attrs["keras_version"] = "3.15.1"

    def model():
        return Sequential([Input((6, 3)), GRU(4, reset_after=True)])

    model().load_weights(files / "one_cudnn_gru.h5")
    with pytest.raises(WeightsError, match=r"\(2, 12\)"):
        model().load_weights(copy)


# ------------------------------------------------- multi-backend Keras 2.2, by hand


def to_cudnn(kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, gates: int):
    """The inverse of Keras's conversion: per gate block, the input kernel ``W (F, u)``
    stored as ``W.T`` flattened row-major into an ``(F, u)`` block; the recurrent block
    transposed; GRU biases ``(2, 3u)`` flattened (an LSTM's bias split in two halves)."""
    features, units = kernel.shape[0], recurrent.shape[0]
    kernel_blocks = [w.T.reshape(features, units) for w in np.hsplit(kernel, gates)]
    recurrent_blocks = [u.T for u in np.hsplit(recurrent, gates)]
    if gates == 3:
        cudnn_bias = bias.reshape(-1)
    else:
        cudnn_bias = np.concatenate([bias * 0.25, bias * 0.75])
    return np.hstack(kernel_blocks), np.hstack(recurrent_blocks), cudnn_bias


def mbk_document(units: int) -> str:
    layers = [
        {
            "class_name": "CuDNNGRU",
            "config": {
                "name": "cu_dnngru_1",
                "trainable": True,
                "batch_input_shape": [None, 5, 3],
                "dtype": "float32",
                "units": units,
                "return_sequences": True,
                "return_state": False,
                "go_backwards": False,
                "stateful": False,
                "kernel_initializer": {"class_name": "VarianceScaling", "config": {}},
                "recurrent_initializer": {"class_name": "Orthogonal", "config": {}},
                "bias_initializer": {"class_name": "Zeros", "config": {}},
                "kernel_regularizer": None,
                "recurrent_regularizer": None,
                "bias_regularizer": None,
                "activity_regularizer": None,
                "kernel_constraint": None,
                "recurrent_constraint": None,
                "bias_constraint": None,
            },
        },
        {
            "class_name": "CuDNNLSTM",
            "config": {
                "name": "cu_dnnlstm_1",
                "trainable": True,
                "units": 2,
                "unit_forget_bias": True,
                "return_sequences": False,
                "return_state": False,
                "go_backwards": True,
                "stateful": False,
            },
        },
    ]
    return json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": layers}})


def test_multi_backend_keras_file(tmp_path, rng):
    """A Keras 2.2.4 file: weights named ``cu_dnngru_1/kernel:0``; the expected outputs
    from layerserve's GRU/LSTM given the Keras-layout weights directly."""
    gru = GRU(4, reset_after=True, recurrent_activation="sigmoid", return_sequences=True)
    lstm = LSTM(2, recurrent_activation="sigmoid", go_backwards=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    hidden = gru(x)
    lstm(hidden)
    keras_weights = {
        "cu_dnngru_1": [rng.normal(0, 0.6, w.shape).astype("float32") for w in gru.weights],
        "cu_dnnlstm_1": [rng.normal(0, 0.6, w.shape).astype("float32") for w in lstm.weights],
    }
    gru.set_weights(keras_weights["cu_dnngru_1"])
    lstm.set_weights(keras_weights["cu_dnnlstm_1"])
    expected = lstm(gru(x))
    path = tmp_path / "mbk.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = b"2.2.4"
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["model_config"] = mbk_document(4).encode()
        group = handle.create_group("model_weights")
        group.attrs["layer_names"] = [b"cu_dnngru_1", b"cu_dnnlstm_1"]
        for name, gates in (("cu_dnngru_1", 3), ("cu_dnnlstm_1", 4)):
            arrays = to_cudnn(*keras_weights[name], gates)
            layer_group = group.create_group(name)
            names = [f"{name}/{w}:0" for w in ("kernel", "recurrent_kernel", "bias")]
            layer_group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, array in zip(names, arrays, strict=True):
                layer_group.create_dataset(weight_name, data=array)
    model = load_model(path)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert (
        np.abs(
            to_cudnn(*keras_weights["cu_dnngru_1"], 3)[0] - keras_weights["cu_dnngru_1"][0]
        ).max()
        > 0.1
    )
