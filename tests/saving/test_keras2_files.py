"""Files in the formats Keras 2.2.x and tf.keras 2.x wrote, made by hand from the spec
(section 8.1/8.2): JSON envelopes, whole-model HDF5 files and weights-only HDF5 files.

Expected values are computed here with NumPy from the weights written into the files.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from layerserve.errors import MaskingNotSupportedError
from layerserve.models import load_model, model_from_json
from layerserve.saving import model_from_json as model_from_json_as

ATOL = 1e-5


# ---- NumPy reference math ------------------------------------------------------------------


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def hard_sigmoid_keras2(z: np.ndarray) -> np.ndarray:
    return np.clip(0.2 * z + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(z: np.ndarray) -> np.ndarray:
    return np.clip(z / 6.0 + 0.5, 0.0, 1.0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def lstm(
    x: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray,
    gate: Callable[[np.ndarray], np.ndarray],
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gates i, f, c, o; at a masked step the states and the output carry over."""
    x = x.astype(np.float64)
    units = recurrent.shape[0]
    h = np.zeros((x.shape[0], units))
    c = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f = gate(z[:, :units]), gate(z[:, units : 2 * units])
        o = gate(z[:, 3 * units :])
        c_new = f * c + i * np.tanh(z[:, 2 * units : 3 * units])
        h_new = o * np.tanh(c_new)
        if mask is not None:
            keep = mask[:, t : t + 1]
            h_new, c_new = np.where(keep, h_new, h), np.where(keep, c_new, c)
        h, c = h_new, c_new
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


# ---- hand-written Keras 2.2.4 documents ------------------------------------------------------

GLOROT_224 = (
    '{"class_name": "VarianceScaling", "config": {"scale": 1.0, "mode": "fan_avg", '
    '"distribution": "uniform", "seed": null}}'
)
ZEROS_224 = '{"class_name": "Zeros", "config": {}}'
ORTHOGONAL_224 = '{"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": null}}'
L2_224 = '{"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.009999999776482582}}'


def dense_224(
    name: str,
    units: int,
    activation: str,
    head: str = "",
    kernel_regularizer: str = "null",
    activity_regularizer: str = "null",
) -> str:
    """A 2.2.4 Dense config; ``head`` holds ``batch_input_shape``/``dtype`` when given."""
    return (
        f'{{"name": "{name}", "trainable": true, {head}"units": {units}, '
        f'"activation": "{activation}", "use_bias": true, "kernel_initializer": {GLOROT_224}, '
        f'"bias_initializer": {ZEROS_224}, "kernel_regularizer": {kernel_regularizer}, '
        f'"bias_regularizer": null, "activity_regularizer": {activity_regularizer}, '
        '"kernel_constraint": null, "bias_constraint": null}'
    )


LSTM_224 = (
    '{"name": "lstm_1", "trainable": true, "units": 2, "activation": "tanh", '
    '"recurrent_activation": "hard_sigmoid", "use_bias": true, '
    f'"kernel_initializer": {GLOROT_224}, "recurrent_initializer": {ORTHOGONAL_224}, '
    f'"bias_initializer": {ZEROS_224}, "unit_forget_bias": true, "kernel_regularizer": null, '
    '"recurrent_regularizer": null, "bias_regularizer": null, "activity_regularizer": null, '
    '"kernel_constraint": null, "recurrent_constraint": null, "bias_constraint": null, '
    '"dropout": 0.0, "recurrent_dropout": 0.0, "implementation": 1, '
    '"return_sequences": false, "return_state": false, "go_backwards": false, '
    '"stateful": false, "unroll": false}'
)

SEQUENTIAL_LAYERS_224 = (
    '[{"class_name": "Dense", "config": '
    + dense_224(
        "dense_1",
        4,
        "relu",
        '"batch_input_shape": [null, 3], "dtype": "float32", ',
        kernel_regularizer=L2_224,
    )
    + '}, {"class_name": "Dense", "config": '
    + dense_224("dense_2", 2, "hard_sigmoid")
    + "}]"
)

SEQUENTIAL_224 = (
    '{"class_name": "Sequential", "config": {"name": "sequential_1", "layers": '
    + SEQUENTIAL_LAYERS_224
    + '}, "keras_version": "2.2.4", "backend": "tensorflow"}'
)

# model.build((None, 3)) instead of an input shape: "build_input_shape" (spec 8.1).
SEQUENTIAL_BUILT_224 = (
    '{"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [{"class_name": '
    '"Dense", "config": ' + dense_224("dense_1", 4, "relu") + '}, {"class_name": "Dense", '
    '"config": ' + dense_224("dense_2", 2, "hard_sigmoid") + '}], "build_input_shape": '
    '[null, 3]}, "keras_version": "2.2.4", "backend": "tensorflow"}'
)

# Keras 2.2.0-2.2.2: the Sequential config is a bare list of layers.
SEQUENTIAL_222 = (
    '{"class_name": "Sequential", "config": '
    + SEQUENTIAL_LAYERS_224
    + ', "keras_version": "2.2.2", "backend": "tensorflow"}'
)

FUNCTIONAL_224 = (
    '{"class_name": "Model", "config": {"name": "model_1", "layers": ['
    '{"name": "input_1", "class_name": "InputLayer", "config": {"batch_input_shape": '
    '[null, 3], "dtype": "float32", "sparse": false, "name": "input_1"}, '
    '"inbound_nodes": []}, '
    '{"name": "input_2", "class_name": "InputLayer", "config": {"batch_input_shape": '
    '[null, 5, 3], "dtype": "float32", "sparse": false, "name": "input_2"}, '
    '"inbound_nodes": []}, '
    '{"name": "dense_1", "class_name": "Dense", "config": '
    + dense_224("dense_1", 4, "relu")
    + ', "inbound_nodes": [[["input_1", 0, 0, {}]]]}, '
    '{"name": "dense_2", "class_name": "Dense", "config": '
    + dense_224("dense_2", 4, "tanh")
    + ', "inbound_nodes": [[["dense_1", 0, 0, {}]], [["dense_2", 0, 0, {}]]]}, '
    '{"name": "masking_1", "class_name": "Masking", "config": {"name": "masking_1", '
    '"trainable": true, "mask_value": 0.0}, "inbound_nodes": [[["input_2", 0, 0, {}]]]}, '
    '{"name": "lstm_1", "class_name": "LSTM", "config": '
    + LSTM_224
    + ', "inbound_nodes": [[["masking_1", 0, 0, {}]]]}], '
    '"input_layers": [["input_1", 0, 0], ["input_2", 0, 0]], '
    '"output_layers": [["dense_2", 1, 0], ["lstm_1", 0, 0]]}, '
    '"keras_version": "2.2.4", "backend": "tensorflow"}'
)

# ---- hand-written tf.keras 2.x documents (spec 8.2) -------------------------------------------


def tfk_object(module: str, class_name: str, config: str) -> str:
    return (
        f'{{"module": "{module}", "class_name": "{class_name}", "config": {config}, '
        '"registered_name": null}'
    )


GLOROT_TFK = tfk_object("keras.initializers", "GlorotUniform", '{"seed": null}')
ZEROS_TFK = tfk_object("keras.initializers", "Zeros", "{}")


def dense_tfk(
    name: str, units: int, activation: str, head: str = "", activity_regularizer: str = "null"
) -> str:
    return (
        f'{{"name": "{name}", "trainable": true, {head}"dtype": "float32", "units": {units}, '
        f'"activation": "{activation}", "use_bias": true, "kernel_initializer": {GLOROT_TFK}, '
        f'"bias_initializer": {ZEROS_TFK}, "kernel_regularizer": null, '
        f'"bias_regularizer": null, "activity_regularizer": {activity_regularizer}, '
        '"kernel_constraint": null, "bias_constraint": null}'
    )


def tfk_layer(class_name: str, config: str, name: str, inbound: str, shape: str) -> str:
    return (
        f'{{"module": "keras.layers", "class_name": "{class_name}", "config": {config}, '
        f'"registered_name": null, "build_config": {{"input_shape": {shape}}}, '
        f'"name": "{name}", "inbound_nodes": {inbound}}}'
    )


INPUT_TFK = (
    '{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_input_shape": '
    '[null, 3], "dtype": "float32", "sparse": false, "ragged": false, "name": "input_1"}, '
    '"registered_name": null, "name": "input_1", "inbound_nodes": []}'
)

FUNCTIONAL_TFK = (
    '{"class_name": "Functional", "config": {"name": "model", "trainable": true, "layers": ['
    + INPUT_TFK
    + ", "
    + tfk_layer(
        "Dense", dense_tfk("dense", 4, "relu"), "dense", '[[["input_1", 0, 0, {}]]]', "[null, 3]"
    )
    + ", "
    + tfk_layer(
        "Dense",
        dense_tfk("dense_1", 2, "hard_sigmoid"),
        "dense_1",
        '[[["dense", 0, 0, {}]]]',
        "[null, 4]",
    )
    + '], "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_1", 0, 0]]}, '
    '"keras_version": "2.13.1", "backend": "tensorflow"}'
)

# A 2.2.4 functional model with a nested Sequential (its config has no dtype keys for
# layers built without an input shape, spec 8.1).
NESTED_224 = (
    '{"class_name": "Model", "config": {"name": "model_1", "layers": ['
    '{"name": "input_1", "class_name": "InputLayer", "config": {"batch_input_shape": '
    '[null, 3], "dtype": "float32", "sparse": false, "name": "input_1"}, '
    '"inbound_nodes": []}, '
    '{"name": "sequential_1", "class_name": "Sequential", "config": {"name": "sequential_1", '
    '"layers": ' + SEQUENTIAL_LAYERS_224 + '}, "inbound_nodes": [[["input_1", 0, 0, {}]]]}, '
    '{"name": "dense_3", "class_name": "Dense", "config": '
    + dense_224("dense_3", 1, "linear")
    + ', "inbound_nodes": [[["sequential_1", 1, 0, {}]]]}], '
    '"input_layers": [["input_1", 0, 0]], "output_layers": [["dense_3", 0, 0]]}, '
    '"keras_version": "2.2.4", "backend": "tensorflow"}'
)

# tf.keras 2.x skips node 0 only for a nested model that starts with an InputLayer.
NESTED_TFK = (
    '{"class_name": "Functional", "config": {"name": "model", "trainable": true, "layers": ['
    + INPUT_TFK
    + ', {"module": "keras", "class_name": "Sequential", "config": {"name": "seq_a", '
    '"layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": '
    '{"batch_input_shape": [null, 3], "dtype": "float32", "sparse": false, "ragged": false, '
    '"name": "input_2"}, "registered_name": null}, {"module": "keras.layers", "class_name": '
    '"Dense", "config": ' + dense_tfk("dense_a1", 4, "relu") + ', "registered_name": null}, '
    '{"module": "keras.layers", "class_name": "Dense", "config": '
    + dense_tfk("dense_a2", 2, "hard_sigmoid")
    + ', "registered_name": null}]}, "registered_name": null, "build_config": {"input_shape": '
    '[null, 3]}, "name": "seq_a", "inbound_nodes": [[["input_1", 0, 0, {}]]]}, '
    '{"module": "keras", "class_name": "Sequential", "config": {"name": "seq_b", "layers": '
    '[{"module": "keras.layers", "class_name": "Dense", "config": '
    + dense_tfk("dense_b", 1, "linear")
    + ', "registered_name": null}]}, "registered_name": null, "build_config": {"input_shape": '
    '[null, 2]}, "name": "seq_b", "inbound_nodes": [[["seq_a", 1, 0, {}]]]}], '
    '"input_layers": [["input_1", 0, 0]], "output_layers": [["seq_b", 0, 0]]}, '
    '"keras_version": "2.13.1", "backend": "tensorflow"}'
)

SEQUENTIAL_TFK = (
    '{"class_name": "Sequential", "config": {"name": "sequential", "layers": ['
    '{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_input_shape": '
    '[null, 3], "dtype": "float32", "sparse": false, "ragged": false, "name": "dense_input"}, '
    '"registered_name": null}, '
    '{"module": "keras.layers", "class_name": "Dense", "config": '
    + dense_tfk("dense", 4, "relu", '"batch_input_shape": [null, 3], ')
    + ', "registered_name": null, "build_config": {"input_shape": [null, 3]}}, '
    '{"module": "keras.layers", "class_name": "Dense", "config": '
    + dense_tfk("dense_1", 2, "hard_sigmoid")
    + ', "registered_name": null, "build_config": {"input_shape": [null, 4]}}]}, '
    '"keras_version": "2.13.1", "backend": "tensorflow"}'
)


# ---- HDF5 files in the Keras 2 layout --------------------------------------------------------


def _names(values: list[str]) -> np.ndarray:
    return np.array([v.encode("utf8") for v in values], dtype=bytes)


def _set_list_attribute(group: h5py.Group, name: str, values: list[str], chunks: int) -> None:
    """Keras splits a list attribute over the HDF5 object header limit into ``name0``,
    ``name1``, ... (``np.array_split``); ``chunks > 1`` writes that form."""
    if chunks == 1 or len(values) < 2:
        group.attrs[name] = _names(values)
        return
    for index, chunk in enumerate(np.array_split(_names(values), chunks)):
        group.attrs[f"{name}{index}"] = chunk


def write_layer_groups(
    group: h5py.Group,
    layers: list[tuple[str, list[tuple[str, Any]]]],
    version: str,
    chunks: int = 1,
) -> None:
    """Keras 2 ``save_weights_to_hdf5_group``: one group per layer, datasets at
    ``<layer>/<layer>/<weight>:0`` named by the ``weight_names`` attribute."""
    _set_list_attribute(group, "layer_names", [name for name, _ in layers], chunks)
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = version.encode("utf8")
    for name, weights in layers:
        layer_group = group.create_group(name)
        # A nested model's group holds its inner layers' weights: "dense_1/kernel".
        weight_names = [f"{w if '/' in w else f'{name}/{w}'}:0" for w, _ in weights]
        _set_list_attribute(layer_group, "weight_names", weight_names, chunks)
        for weight_name, (_, value) in zip(weight_names, weights, strict=True):
            layer_group.create_dataset(weight_name, data=np.asarray(value, dtype="float32"))


def write_model_h5(path: Path, document: str, layers: list, version: str) -> None:
    """Keras 2 ``save_model``: the config without the version keys, weights in a group."""
    parsed = json.loads(document)
    config = json.dumps({"class_name": parsed["class_name"], "config": parsed["config"]})
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = version.encode("utf8")
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["model_config"] = config.encode("utf8")
        write_layer_groups(handle.create_group("model_weights"), layers, version)


def write_weights_h5(path: Path, layers: list, version: str, chunks: int = 1) -> None:
    """Keras 2 ``save_weights``: the layer groups at the root of the file."""
    with h5py.File(path, "w") as handle:
        write_layer_groups(handle, layers, version, chunks)


# ---- the fixtures: documents, weights and expected outputs ----------------------------------

RNG = np.random.default_rng(224)
W1, B1 = RNG.normal(0, 1, (3, 4)), RNG.normal(0, 1, 4)
W2, B2 = RNG.normal(0, 1, (4, 2)), RNG.normal(0, 1, 2)
W3, B3 = RNG.normal(0, 1, (2, 1)), RNG.normal(0, 1, 1)
SHARED_W, SHARED_B = RNG.normal(0, 0.7, (4, 4)), RNG.normal(0, 0.5, 4)
LSTM_K, LSTM_U, LSTM_B = (
    RNG.normal(0, 0.6, (3, 8)),
    RNG.normal(0, 0.6, (2, 8)),
    RNG.normal(0, 0.5, 8),
)
X1 = RNG.normal(0, 2, (5, 3)).astype("float32")
X2 = RNG.normal(0, 1, (5, 5, 3)).astype("float32")
X2[0, 2] = 0.0  # interior masked timesteps
X2[1, 0] = 0.0
X2[3, 1:3] = 0.0
X2[4, 4] = 0.0


def sequential_expected(hard_sigmoid: Callable) -> Callable[[], list[np.ndarray]]:
    return lambda: [hard_sigmoid(relu(X1 @ W1 + B1) @ W2 + B2)]


def functional_expected() -> list[np.ndarray]:
    hidden = relu(X1 @ W1 + B1)
    shared_twice = np.tanh(np.tanh(hidden @ SHARED_W + SHARED_B) @ SHARED_W + SHARED_B)
    mask = np.any(X2 != 0.0, axis=-1)
    _, last, _ = lstm(X2, LSTM_K, LSTM_U, LSTM_B, hard_sigmoid_keras2, mask)
    return [shared_twice, last]


SEQUENTIAL_WEIGHTS = [
    ("dense_1", [("kernel", W1), ("bias", B1)]),
    ("dense_2", [("kernel", W2), ("bias", B2)]),
]
TFK_SEQUENTIAL_WEIGHTS = [
    ("dense", [("kernel", W1), ("bias", B1)]),
    ("dense_1", [("kernel", W2), ("bias", B2)]),
]
FUNCTIONAL_WEIGHTS = [
    ("input_1", []),
    ("input_2", []),
    ("dense_1", [("kernel", W1), ("bias", B1)]),
    ("dense_2", [("kernel", SHARED_W), ("bias", SHARED_B)]),
    ("masking_1", []),
    ("lstm_1", [("kernel", LSTM_K), ("recurrent_kernel", LSTM_U), ("bias", LSTM_B)]),
]
TFK_FUNCTIONAL_WEIGHTS = [("input_1", []), *TFK_SEQUENTIAL_WEIGHTS]

DOCUMENTS = {
    # id: (JSON, Keras version of the HDF5 files, weights, inputs, expected outputs)
    "sequential-2.2.4": (
        SEQUENTIAL_224,
        "2.2.4",
        SEQUENTIAL_WEIGHTS,
        X1,
        sequential_expected(hard_sigmoid_keras2),
    ),
    "sequential-build_input_shape-2.2.4": (
        SEQUENTIAL_BUILT_224,
        "2.2.4",
        SEQUENTIAL_WEIGHTS,
        X1,
        sequential_expected(hard_sigmoid_keras2),
    ),
    "sequential-bare-list-2.2.2": (
        SEQUENTIAL_222,
        "2.2.2",
        SEQUENTIAL_WEIGHTS,
        X1,
        sequential_expected(hard_sigmoid_keras2),
    ),
    "functional-2.2.4": (
        FUNCTIONAL_224,
        "2.2.4",
        FUNCTIONAL_WEIGHTS,
        [X1, X2],
        functional_expected,
    ),
    "functional-tf.keras-2.13.1": (
        FUNCTIONAL_TFK,
        "2.13.1",
        TFK_FUNCTIONAL_WEIGHTS,
        X1,
        sequential_expected(hard_sigmoid_keras2),
    ),
    "functional-nested-sequential-2.2.4": (
        NESTED_224,
        "2.2.4",
        [
            ("input_1", []),
            (
                "sequential_1",
                [
                    ("dense_1/kernel", W1),
                    ("dense_1/bias", B1),
                    ("dense_2/kernel", W2),
                    ("dense_2/bias", B2),
                ],
            ),
            ("dense_3", [("kernel", W3), ("bias", B3)]),
        ],
        X1,
        lambda: [sequential_expected(hard_sigmoid_keras2)()[0] @ W3 + B3],
    ),
    "functional-nested-sequentials-tf.keras-2.13.1": (
        NESTED_TFK,
        "2.13.1",
        [
            ("input_1", []),
            (
                "seq_a",
                [
                    ("dense_a1/kernel", W1),
                    ("dense_a1/bias", B1),
                    ("dense_a2/kernel", W2),
                    ("dense_a2/bias", B2),
                ],
            ),
            ("seq_b", [("dense_b/kernel", W3), ("dense_b/bias", B3)]),
        ],
        X1,
        lambda: [sequential_expected(hard_sigmoid_keras2)()[0] @ W3 + B3],
    ),
    "sequential-tf.keras-2.13.1": (
        SEQUENTIAL_TFK,
        "2.13.1",
        TFK_SEQUENTIAL_WEIGHTS,
        X1,
        sequential_expected(hard_sigmoid_keras2),
    ),
}


def test_hand_written_documents_are_valid_json() -> None:
    for document, *_ in DOCUMENTS.values():
        assert isinstance(json.loads(document), dict)


@pytest.mark.parametrize(
    "storage", ["json+weights-only-h5", "json+chunked-attributes-h5", "model-h5"]
)
@pytest.mark.parametrize("doc_id", list(DOCUMENTS))
def test_keras2_files_load_and_predict(tmp_path: Path, doc_id: str, storage: str) -> None:
    document, version, layers, x, expected = DOCUMENTS[doc_id]
    if storage == "model-h5":
        write_model_h5(tmp_path / "model.h5", document, layers, version)
        model = load_model(tmp_path / "model.h5")
    else:
        chunks = 2 if storage == "json+chunked-attributes-h5" else 1
        write_weights_h5(tmp_path / "weights.h5", layers, version, chunks)
        model = model_from_json(document)
        model.load_weights(tmp_path / "weights.h5")
    got = model.predict(x)
    got = got if isinstance(got, list) else [got]
    want = expected()
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)


def test_sequential_224_restores_input_shape_names_and_regularizer() -> None:
    model = model_from_json(SEQUENTIAL_224)
    assert model.input_shape == (None, 3)  # not Keras 3's spurious (None, None, 3)
    assert [layer.name for layer in model.layers] == ["dense_1", "dense_2"]
    model.set_weights([W1, B1, W2, B2])
    # l2 = float32(0.01) on the first kernel, unnormalised (spec section 5).
    w1 = W1.astype("float32")
    assert sum(model.losses) == pytest.approx(0.01 * float(np.sum(w1 * w1)), rel=1e-6)


def test_224_model_h5_weights_file_attributes_are_what_keras_wrote(tmp_path: Path) -> None:
    """Guard for the writer above: the layout is the one the spec describes."""
    write_model_h5(tmp_path / "m.h5", SEQUENTIAL_224, SEQUENTIAL_WEIGHTS, "2.2.4")
    with h5py.File(tmp_path / "m.h5", "r") as handle:
        assert handle.attrs["keras_version"] in (b"2.2.4", "2.2.4")
        assert "keras_version" not in json.loads(handle.attrs["model_config"])
        group = handle["model_weights"]
        assert list(group.attrs["layer_names"]) == [b"dense_1", b"dense_2"]
        assert list(group["dense_1"].attrs["weight_names"]) == [
            b"dense_1/kernel:0",
            b"dense_1/bias:0",
        ]
        np.testing.assert_allclose(group["dense_1"]["dense_1"]["kernel:0"][()], W1, rtol=1e-6)


# ---- semantics that depend on the Keras version that wrote the file ------------------------


def keras3_sequential(layer: str, shape: str) -> str:
    """A Keras 3 ``to_json()`` Sequential (no version keys) around one layer config."""
    policy = (
        '{"module": "keras", "class_name": "DTypePolicy", "config": {"name": '
        '"float32"}, "registered_name": null}'
    )
    return (
        '{"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", '
        f'"trainable": true, "dtype": {policy}, "layers": ['
        '{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": '
        f'{shape}, "dtype": "float32", "sparse": false, "ragged": false, '
        '"name": "input_layer", "optional": false}, "registered_name": null}, '
        + layer.replace("DTYPE", policy)
        + f'], "build_input_shape": {shape}}}, "registered_name": null, '
        f'"build_config": {{"input_shape": {shape}}}}}'
    )


def keras2_sequential(layer_class: str, layer_config: str, version: str) -> str:
    return (
        f'{{"class_name": "Sequential", "config": {{"name": "sequential_1", "layers": '
        f'[{{"class_name": "{layer_class}", "config": {layer_config}}}]}}, '
        f'"keras_version": "{version}", "backend": "tensorflow"}}'
    )


def dense_document(
    writer: str, activation: str, activity: str = "null", shape: str = "[null, 5, 3]"
) -> str:
    if writer == "keras3":
        regularizer = (
            ""
            if activity == "null"
            else (
                '"activity_regularizer": {"module": "keras.regularizers", "class_name": "L1", '
                '"config": {"l1": 1.0}, "registered_name": null}, '
            )
        )
        layer = (
            '{"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", '
            f'"trainable": true, "dtype": DTYPE, {regularizer}"units": 2, '
            f'"activation": "{activation}", "use_bias": true, "kernel_initializer": '
            '{"module": "keras.initializers", "class_name": "GlorotUniform", "config": '
            '{"seed": null}, "registered_name": null}, "bias_initializer": {"module": '
            '"keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": '
            'null}, "kernel_regularizer": null, "bias_regularizer": null, '
            '"kernel_constraint": null, "bias_constraint": null, "quantization_config": null}, '
            f'"registered_name": null, "build_config": {{"input_shape": {shape}}}}}'
        )
        return keras3_sequential(layer, shape)
    head = f'"batch_input_shape": {shape}, "dtype": "float32", '
    if writer == "2.2.4":
        config = dense_224("dense_1", 2, activation, head, activity_regularizer=activity)
    else:
        config = dense_tfk(
            "dense", 2, activation, f'"batch_input_shape": {shape}, ', activity_regularizer=activity
        )
    return keras2_sequential("Dense", config, writer)


def lstm_document(writer: str) -> str:
    """An LSTM config without ``recurrent_activation``: the writer's default applies."""
    own = (
        '"units": 2, "activation": "tanh", "use_bias": true, "return_sequences": true, '
        '"go_backwards": false'
    )
    if writer == "keras3":
        return keras3_sequential(
            '{"module": "keras.layers", "class_name": "LSTM", "config": {"name": "lstm", '
            f'"trainable": true, "dtype": DTYPE, {own}}}, "registered_name": null}}',
            "[null, 5, 3]",
        )
    config = (
        '{"name": "lstm_1", "trainable": true, "batch_input_shape": [null, 5, 3], '
        f'"dtype": "float32", {own}}}'
    )
    return keras2_sequential("LSTM", config, writer)


DENSE_KERNEL = np.array([[1.0, -1.0], [0.5, 0.25], [0.0, 0.5]])
DENSE_BIAS = np.array([0.1, -0.2])
# Pre-activations land between the two hard_sigmoid breakpoints (+-2.5 and +-3).
SEMANTIC_X = np.linspace(-2.0, 2.0, 60).reshape(4, 5, 3).astype("float32")


@pytest.mark.parametrize(
    ("writer", "hard_sigmoid"),
    [
        ("2.2.4", hard_sigmoid_keras2),
        ("2.13.1", hard_sigmoid_keras2),
        ("keras3", hard_sigmoid_keras3),
    ],
)
def test_hard_sigmoid_means_what_the_writer_meant(writer: str, hard_sigmoid: Callable) -> None:
    model = model_from_json(dense_document(writer, "hard_sigmoid"))
    model.set_weights([DENSE_KERNEL, DENSE_BIAS])
    pre = SEMANTIC_X @ DENSE_KERNEL + DENSE_BIAS
    assert np.any((np.abs(pre) > 2.5) & (np.abs(pre) < 3))  # the formulas differ here
    np.testing.assert_allclose(model.predict(SEMANTIC_X), hard_sigmoid(pre), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("writer", "gate"),
    # Keras 2.3.0's release notes: "Change default recurrent activation to sigmoid (from
    # hard_sigmoid) in all RNN layers"; tf.keras 2.x and Keras 3 keep sigmoid (spec 10).
    [
        ("2.2.4", hard_sigmoid_keras2),
        ("2.2.2", hard_sigmoid_keras2),
        ("2.3.1", sigmoid),
        ("2.13.1", sigmoid),
        ("keras3", sigmoid),
    ],
)
def test_lstm_default_recurrent_activation_follows_the_writer(writer: str, gate: Callable) -> None:
    model = model_from_json(lstm_document(writer))
    model.set_weights([LSTM_K * 3, LSTM_U * 3, LSTM_B * 3])
    expected, _, _ = lstm(SEMANTIC_X, LSTM_K * 3, LSTM_U * 3, LSTM_B * 3, gate)
    np.testing.assert_allclose(model.predict(SEMANTIC_X), expected, atol=ATOL, rtol=0)


def _keras3_archive(path: Path, version: str) -> Path:
    """A ``.keras`` zip as Keras 3 writes it: config.json, metadata.json, weights."""
    weights = path.with_suffix(".h5")
    with h5py.File(weights, "w") as handle:
        variables = handle.create_group("layers/dense/vars")
        variables.create_dataset("0", data=np.ones((3, 2), "float32"))
        variables.create_dataset("1", data=np.zeros(2, "float32"))
        handle.create_group("layers/input_layer/vars")
        handle.create_group("vars")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", dense_document("keras3", "linear", "L1", "[null, 3]"))
        archive.writestr(
            "metadata.json",
            json.dumps({"keras_version": version, "date_saved": "2026-01-01@00:00:00"}),
        )
        archive.write(weights, "model.weights.h5")
    return path


@pytest.mark.parametrize(
    ("writer", "expected"),
    [
        ("2.2.4", 24.0),
        ("2.13.1", 6.0),
        ("keras3", 6.0),
        ("keras-3.13.0-archive", 24.0),
        ("keras-3.15.1-archive", 6.0),
    ],
)
def test_activity_regularizer_batch_scaling_follows_the_writer(
    tmp_path: Path, writer: str, expected: float
) -> None:
    """Dense(2) with a ones kernel on ones(4, 3), L1(1.0): sum |y| = 24; divided by the
    batch of 4 in tf.keras 2.x and Keras >= 3.14 (spec section 5)."""
    if writer.endswith("-archive"):
        model = load_model(_keras3_archive(tmp_path / "m.keras", writer.split("-")[1]))
    else:
        regularizer = (
            '{"class_name": "L1L2", "config": {"l1": 1.0, "l2": 0.0}}'
            if writer == "2.2.4"
            else tfk_object("keras.regularizers", "L1", '{"l1": 1.0}')
        )
        model = model_from_json(dense_document(writer, "linear", regularizer, "[null, 3]"))
        model.set_weights([np.ones((3, 2)), np.zeros(2)])
    model(np.ones((4, 3), dtype="float32"), training=True)
    assert sum(model.losses) == pytest.approx(expected, rel=1e-6)


def test_version_override_reads_a_document_as_another_keras() -> None:
    """``keras_version=`` overrides the envelope: the same bytes, the other formula."""
    model = model_from_json_as(dense_document("2.2.4", "hard_sigmoid"), keras_version="3.15.1")
    model.set_weights([DENSE_KERNEL, DENSE_BIAS])
    pre = SEMANTIC_X @ DENSE_KERNEL + DENSE_BIAS
    np.testing.assert_allclose(
        model.predict(SEMANTIC_X), hard_sigmoid_keras3(pre), atol=ATOL, rtol=0
    )


MASKING_FLATTEN_LAYERS = (
    '[{"class_name": "Masking", "config": {"name": "masking_1", "trainable": true, '
    '"batch_input_shape": [null, 5, 3], "dtype": "float32", "mask_value": 0.0}}, '
    '{"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": true, '
    '"data_format": "channels_last"}}]'
)


@pytest.mark.parametrize("version", ["2.2.4", "2.13.1"])
def test_masking_into_flatten_follows_the_writer(version: str) -> None:
    """Keras 2.2.4 raises TypeError when a non-masking layer receives a mask; tf.keras
    2.x silently drops the mask (spec section 2)."""
    document = (
        '{"class_name": "Sequential", "config": {"name": "sequential_1", "layers": '
        + MASKING_FLATTEN_LAYERS
        + f'}}, "keras_version": "{version}", '
        '"backend": "tensorflow"}'
    )
    if version == "2.2.4":
        with pytest.raises(MaskingNotSupportedError, match="flatten_1"):
            model_from_json(document)
        return
    model = model_from_json(document)
    np.testing.assert_array_equal(model.predict(X2), X2.reshape(5, 15))
    assert model.compute_mask(X2) is None


def test_load_model_reads_a_json_file_with_a_weights_file(tmp_path: Path) -> None:
    """``load_model(path, weights=...)``: a model JSON file plus a Keras weights file."""
    (tmp_path / "model.json").write_text(SEQUENTIAL_224)
    write_weights_h5(tmp_path / "weights.h5", SEQUENTIAL_WEIGHTS, "2.2.4")
    model = load_model(tmp_path / "model.json", weights=tmp_path / "weights.h5")
    np.testing.assert_allclose(
        model.predict(X1), sequential_expected(hard_sigmoid_keras2)()[0], atol=ATOL, rtol=0
    )
