"""layerserve's own archive (round trips, no pickle, atomic writes), Lambda safety for
Keras 2 and Keras 3 files, and the typed errors every broken input gives."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from layerserve import errors  # noqa: E402
from layerserve.layers import (  # noqa: E402
    LSTM,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Lambda,
    Masking,
)
from layerserve.models import Input, Model, Sequential, load_model, model_from_json  # noqa: E402

# Keras-internal NumPy 2 noise, not about layerserve.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
RNG = np.random.default_rng(7)


def randomize(model: Any) -> Any:
    model.set_weights([RNG.normal(0, 0.5, w.shape) for w in model.get_weights()])
    return model


# ---- round trips of layerserve's own format -------------------------------------------------


def sequential_model() -> tuple[Any, Any]:
    model = Sequential(
        [
            Dense(4, activation="relu", input_shape=(3,)),
            Dropout(0.3),
            Dense(2, activation="softmax"),
        ]
    )
    return model, RNG.normal(0, 1, (4, 3)).astype("float32")


def functional_model() -> tuple[Any, Any]:
    a, b = Input(shape=(3,), name="a"), Input(shape=(5, 2), name="b")
    hidden = Dense(4, activation="tanh")(a)
    out_a = Dense(2, activation="hard_sigmoid")(hidden)
    sequences = LSTM(3, return_sequences=True)(Masking()(b))
    model = Model([a, b], [out_a, sequences, hidden])
    x_b = RNG.normal(0, 1, (4, 5, 2)).astype("float32")
    x_b[1, 2] = 0.0
    return model, [RNG.normal(0, 1, (4, 3)).astype("float32"), x_b]


def lstm_model() -> tuple[Any, Any]:
    model = Sequential(
        [Masking(input_shape=(5, 3)), LSTM(3, return_sequences=True, go_backwards=True), LSTM(2)]
    )
    x = RNG.normal(0, 1, (3, 5, 3)).astype("float32")
    x[0, 1] = 0.0
    return model, x


def conv_model() -> tuple[Any, Any]:
    model = Sequential(
        [
            Conv2D(3, 3, strides=2, padding="same", dilation_rate=1, input_shape=(7, 7, 2)),
            Conv2D(2, 2, data_format="channels_first", use_bias=False),
            Flatten(data_format="channels_first"),
            Dense(2),
        ]
    )
    return model, RNG.normal(0, 1, (2, 7, 7, 2)).astype("float32")


def nested_and_shared_model() -> tuple[Any, Any]:
    inner = Sequential([Dense(3, activation="elu", input_shape=(4,)), Dense(2)])
    shared = Dense(4, activation="tanh")
    a = Input(shape=(4,))
    twice = shared(shared(a))
    model = Model(a, [Dense(1)(inner(twice)), inner(a)])
    return model, RNG.normal(0, 1, (3, 4)).astype("float32")


def keras3_written_model(tmp_path: Path) -> tuple[Any, Any]:
    """Keras 3 semantics (hard_sigmoid = x/6 + 1/2, sigmoid LSTM gates) must survive."""
    km = keras.Sequential(
        [
            keras.Input((4, 3)),
            keras.layers.LSTM(3, return_sequences=True),
            keras.layers.Dense(2, activation="hard_sigmoid"),
        ]
    )
    km.save(tmp_path / "k3.keras")
    return load_model(tmp_path / "k3.keras"), RNG.normal(0, 2, (2, 4, 3)).astype("float32")


ROUND_TRIPS: dict[str, Callable[[Path], tuple[Any, Any]]] = {
    "sequential": lambda _: sequential_model(),
    "functional-multi-in-out": lambda _: functional_model(),
    "lstm": lambda _: lstm_model(),
    "conv2d": lambda _: conv_model(),
    "nested-and-shared": lambda _: nested_and_shared_model(),
    "keras3-written": keras3_written_model,
}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_native_round_trip_is_exact(tmp_path: Path, case: str) -> None:
    model, x = ROUND_TRIPS[case](tmp_path)
    if case != "keras3-written":
        randomize(model)
    model.save(tmp_path / "model.lsm")
    loaded = load_model(tmp_path / "model.lsm")
    assert loaded.to_json() == model.to_json()
    before, after = model.get_weights(), loaded.get_weights()
    assert len(before) == len(after)
    for w0, w1 in zip(before, after, strict=True):
        assert w0.dtype == w1.dtype
        np.testing.assert_array_equal(w0, w1)
    for y0, y1 in zip(_as_list(model.predict(x)), _as_list(loaded.predict(x)), strict=True):
        np.testing.assert_array_equal(y0, y1)
    masks0, masks1 = _as_list(model.compute_mask(x)), _as_list(loaded.compute_mask(x))
    for m0, m1 in zip(masks0, masks1, strict=True):
        assert (m0 is None) == (m1 is None)
        if m0 is not None:
            np.testing.assert_array_equal(m0, m1)


def test_keras3_semantics_survive_the_native_format(tmp_path: Path) -> None:
    """Compared with Keras itself, not only with the model before saving."""
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="hard_sigmoid")])
    km.set_weights([np.eye(3, dtype="float32") * 2.8, np.zeros(3, "float32")])
    km.save(tmp_path / "k.keras")
    load_model(tmp_path / "k.keras").save(tmp_path / "k.lsm")
    x = np.array([[1.0, -1.0, 0.95]], dtype="float32")  # 2.8 * 0.95 = 2.66: formulas differ
    np.testing.assert_allclose(
        load_model(tmp_path / "k.lsm").predict(x), np.asarray(km(x)), atol=1e-6
    )


def test_native_archive_contains_no_pickle(tmp_path: Path) -> None:
    model, _ = functional_model()
    randomize(model).save(tmp_path / "model.lsm")
    with zipfile.ZipFile(tmp_path / "model.lsm") as archive:
        names = archive.namelist()
        arrays = []
        for name in names:
            data = archive.read(name)
            assert not data.startswith(b"\x80")  # a pickle protocol 2+ header
            if name.endswith(".npy"):
                array = np.load(io.BytesIO(data), allow_pickle=False)
                assert array.dtype.kind == "f"
                arrays.append(array)
            else:
                assert name.endswith(".json")
                json.loads(data)
    assert len(arrays) == len(model.get_weights())
    for stored, weight in zip(arrays, model.get_weights(), strict=True):
        np.testing.assert_array_equal(stored, weight)


def test_an_archive_holding_a_pickled_array_is_refused(tmp_path: Path) -> None:
    model, _ = sequential_model()
    model.save(tmp_path / "model.lsm")
    with zipfile.ZipFile(tmp_path / "model.lsm") as source:
        entries = {name: source.read(name) for name in source.namelist()}
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    entries["weights/00000.npy"] = buffer.getvalue()
    with zipfile.ZipFile(tmp_path / "evil.lsm", "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    with pytest.raises(errors.ModelFormatError, match="corrupt"):
        load_model(tmp_path / "evil.lsm")


def _raise(*_: Any, **__: Any) -> Any:
    raise RuntimeError("disk full")


@pytest.mark.parametrize("failing", ["get_weights", "to_json"])
def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """A failed save leaves the previous file intact and no temporary file behind;
    ``to_json`` fails after part of the archive was already written."""
    old, x = sequential_model()
    randomize(old).save(tmp_path / "model.lsm")
    saved = (tmp_path / "model.lsm").read_bytes()
    new, _ = sequential_model()
    monkeypatch.setattr(new, failing, _raise)
    with pytest.raises(RuntimeError, match="disk full"):
        new.save(tmp_path / "model.lsm")
    assert (tmp_path / "model.lsm").read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lsm"]
    np.testing.assert_array_equal(load_model(tmp_path / "model.lsm").predict(x), old.predict(x))


def test_save_to_a_new_path_leaves_nothing_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = sequential_model()
    monkeypatch.setattr(model, "get_weights", _raise)
    with pytest.raises(RuntimeError):
        model.save(tmp_path / "sub" / "model.lsm")
    assert list((tmp_path / "sub").iterdir()) == []


def test_save_gives_the_file_the_permissions_a_plain_write_would(tmp_path: Path) -> None:
    """The temporary file behind the atomic rename is private (0600); the saved model
    must get the mode ``open(path, "wb")`` gives: 0666 minus the umask for a new file,
    the existing mode when a file is overwritten."""
    model, _ = sequential_model()
    umask = os.umask(0o022)
    try:
        model.save(tmp_path / "new.lsm")
        assert (tmp_path / "new.lsm").stat().st_mode & 0o777 == 0o644
        (tmp_path / "new.lsm").chmod(0o640)
        model.save(tmp_path / "new.lsm")
        assert (tmp_path / "new.lsm").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


# ---- Lambda: stored bytecode needs safe_mode=False ------------------------------------------


def double(x: Any) -> Any:
    return x * 2


def _layerserve_lambda_json(tmp_path: Path) -> tuple[Callable[..., Any], Any]:
    model = Sequential([Lambda(lambda x: x * 2, input_shape=(3,)), Dense(2)])
    randomize(model)
    document = model.to_json()
    config = json.loads(document)["config"]["layers"][0]["config"]
    assert config["function_type"] == "lambda" and isinstance(config["function"], list)

    def load(**kwargs: Any) -> Any:
        loaded = model_from_json(document, **kwargs)  # JSON holds no weights
        loaded.set_weights(model.get_weights())
        return loaded

    return load, model


def _layerserve_lambda_archive(tmp_path: Path) -> tuple[Callable[..., Any], Any]:
    model = Sequential([Lambda(lambda x: x * 2, input_shape=(3,)), Dense(2)])
    randomize(model).save(tmp_path / "lambda.lsm")
    return (lambda **kw: load_model(tmp_path / "lambda.lsm", **kw)), model


def _keras3_lambda(tmp_path: Path) -> tuple[Callable[..., Any], Any]:
    km = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)]
    )
    km.save(tmp_path / "lambda.keras")
    with zipfile.ZipFile(tmp_path / "lambda.keras") as archive:
        assert b"__lambda__" in archive.read("config.json")
    return (lambda **kw: load_model(tmp_path / "lambda.keras", **kw)), km


def _keras3_lambda_h5(tmp_path: Path) -> tuple[Callable[..., Any], Any]:
    km = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)]
    )
    km.save(tmp_path / "lambda.h5")
    return (lambda **kw: load_model(tmp_path / "lambda.h5", **kw)), km


LAMBDA_FILES = {
    "keras2-style-json": _layerserve_lambda_json,
    "layerserve-archive": _layerserve_lambda_archive,
    "keras3-.keras": _keras3_lambda,
    "keras3-.h5": _keras3_lambda_h5,
}


@pytest.mark.parametrize("source", list(LAMBDA_FILES))
def test_stored_lambda_is_refused_by_default_and_runs_when_trusted(
    tmp_path: Path, source: str
) -> None:
    load, reference = LAMBDA_FILES[source](tmp_path)
    with pytest.raises(errors.UnsafeDeserializationError) as info:
        load()
    assert "safe_mode=False" in str(info.value)
    assert "Lambda" in str(info.value)
    model = load(safe_mode=False)
    x = RNG.normal(0, 1, (4, 3)).astype("float32")
    kernel, bias = model.layers[-1].get_weights()
    np.testing.assert_allclose(model.predict(x), (2 * x) @ kernel + bias, atol=1e-5)
    np.testing.assert_allclose(
        model.predict(x),
        np.asarray(reference.predict(x, verbose=0))
        if source.startswith("keras3")
        else reference.predict(x),
        atol=1e-5,
    )


NAMED_FUNCTION_224 = (
    '{"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [{"class_name": '
    '"Lambda", "config": {"name": "lambda_1", "trainable": true, "batch_input_shape": [null, '
    '3], "dtype": "float32", "function": "double", "function_type": "function", '
    '"output_shape": null, "output_shape_type": "raw", "arguments": {}}}]}, '
    '"keras_version": "2.2.4", "backend": "tensorflow"}'
)


def _named_function_sources(tmp_path: Path) -> dict[str, Callable[..., Any]]:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(double)])
    km.save(tmp_path / "named.keras")
    return {
        "keras3-.keras": lambda **kw: load_model(tmp_path / "named.keras", **kw),
        "keras2.2.4-json": lambda **kw: model_from_json(NAMED_FUNCTION_224, **kw),
    }


@pytest.mark.parametrize("source", ["keras3-.keras", "keras2.2.4-json"])
def test_named_lambda_function_resolves_through_custom_objects(tmp_path: Path, source: str) -> None:
    load = _named_function_sources(tmp_path)[source]
    with pytest.raises(errors.UnknownObjectError, match="'double'.*custom_objects"):
        load()
    model = load(custom_objects={"double": double})  # no bytecode: safe mode is fine
    x = RNG.normal(0, 1, (2, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x), 2 * x)


# ---- every broken input gives a typed error that says what it expected and found ----------


def _keras_file(tmp_path: Path, name: str = "m.keras") -> Path:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    km.save(tmp_path / name)
    return tmp_path / name


def _truncated_keras(tmp_path: Path) -> Callable[[], Any]:
    path = _keras_file(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return lambda: load_model(path)


def _corrupt_keras_member(member: str, data: bytes) -> Callable[[Path], Callable[[], Any]]:
    def make(tmp_path: Path) -> Callable[[], Any]:
        source = _keras_file(tmp_path, "source.keras")
        with zipfile.ZipFile(source) as archive:
            entries = {n: archive.read(n) for n in archive.namelist()}
        entries[member] = data
        with zipfile.ZipFile(tmp_path / "m.keras", "w") as archive:
            for name, value in entries.items():
                archive.writestr(name, value)
        return lambda: load_model(tmp_path / "m.keras")

    return make


def _bit_flipped_native(tmp_path: Path) -> Callable[[], Any]:
    model, _ = sequential_model()
    model.save(tmp_path / "m.lsm")
    data = bytearray((tmp_path / "m.lsm").read_bytes())
    with zipfile.ZipFile(tmp_path / "m.lsm") as archive:
        info = archive.getinfo("weights/00000.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for offset in range(start, start + info.compress_size, 7):
        data[offset] ^= 0xFF
    (tmp_path / "m.lsm").write_bytes(bytes(data))
    return lambda: load_model(tmp_path / "m.lsm")


def _file(data: bytes) -> Callable[[Path], Callable[[], Any]]:
    def make(tmp_path: Path) -> Callable[[], Any]:
        (tmp_path / "m.bin").write_bytes(data)
        return lambda: load_model(tmp_path / "m.bin")

    return make


def _weights_only_h5(tmp_path: Path) -> Callable[[], Any]:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    km.save_weights(tmp_path / "only.weights.h5")
    return lambda: load_model(tmp_path / "only.weights.h5")


def _keras2_weights(layers: dict[str, list[np.ndarray]]) -> Callable[[Path], Callable[[], Any]]:
    """Loads a Keras 2 weights-only file into Dense(4) -> Dense(2) on (None, 3)."""

    def make(tmp_path: Path) -> Callable[[], Any]:
        _write_keras2_weights(tmp_path / "w.h5", layers)
        model = Sequential([Dense(4, input_shape=(3,), name="dense_1"), Dense(2, name="dense_2")])
        return lambda: model.load_weights(tmp_path / "w.h5")

    return make


def _write_keras2_weights(path: Path, layers: dict[str, list[np.ndarray]]) -> None:
    """A weights-only file in Keras 2.2.4's layout: a group per layer, in order."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([n.encode() for n in layers])
        handle.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers.items():
            group = handle.create_group(name)
            names = [f"{name}/{w}:0".encode() for w in ("kernel", "bias")[: len(weights)]]
            group.attrs["weight_names"] = np.array(names)
            for weight_name, value in zip(names, weights, strict=True):
                group.create_dataset(weight_name.decode(), data=value)


@pytest.mark.parametrize("layout", ["keras2", "keras3"])
def test_a_refused_load_weights_leaves_every_weight_as_it_was(tmp_path: Path, layout: str) -> None:
    """The file's first layer fits and is set before its second is refused: the model keeps
    the weights it had, not half of the file's."""
    if layout == "keras2":
        path = tmp_path / "w.h5"
        fits, too_wide = [np.ones((3, 4)), np.ones(4)], [np.ones((4, 5)), np.ones(5)]
        _write_keras2_weights(path, {"dense_1": fits, "dense_2": too_wide})
    else:
        path = tmp_path / "k.weights.h5"
        layers = [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(5)]
        keras.Sequential(layers).save_weights(path)
    model = Sequential([Dense(4, input_shape=(3,), name="dense_1"), Dense(2, name="dense_2")])
    before = model.get_weights()
    with pytest.raises(errors.WeightsError, match="dense_2.*\\(4, 2\\).*\\(4, 5\\)"):
        model.load_weights(path)
    for kept, had in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, had)


def _keras3_wrong_shapes(tmp_path: Path) -> Callable[[], Any]:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    km.save_weights(tmp_path / "k.weights.h5")
    model = Sequential([Dense(4, input_shape=(3,), name="dense")])
    return lambda: model.load_weights(tmp_path / "k.weights.h5")


def _keras3_json_with(change: Callable[[dict], None]) -> Callable[[Path], Callable[[], Any]]:
    def make(_: Path) -> Callable[[], Any]:
        km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        document = json.loads(km.to_json())
        change(document["config"]["layers"][1]["config"])
        return lambda: model_from_json(json.dumps(document))

    return make


def _quantized_keras(tmp_path: Path) -> Callable[[], Any]:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    km.quantize("int8")
    km.save(tmp_path / "q.keras")
    return lambda: load_model(tmp_path / "q.keras")


def _lora_keras(tmp_path: Path) -> Callable[[], Any]:
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, lora_rank=2)])
    km.save(tmp_path / "lora.keras")
    return lambda: load_model(tmp_path / "lora.keras")


def _newer_native_format(tmp_path: Path) -> Callable[[], Any]:
    model, _ = sequential_model()
    model.save(tmp_path / "m.lsm")
    with zipfile.ZipFile(tmp_path / "m.lsm") as source:
        entries = {name: source.read(name) for name in source.namelist()}
    manifest = json.loads(entries["layerserve.json"])
    manifest["format_version"] += 1
    entries["layerserve.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(tmp_path / "newer.lsm", "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    return lambda: load_model(tmp_path / "newer.lsm")


def _load_weights_from(data: bytes) -> Callable[[Path], Callable[[], Any]]:
    def make(tmp_path: Path) -> Callable[[], Any]:
        (tmp_path / "w.h5").write_bytes(data)
        model = Sequential([Dense(2, input_shape=(3,))])
        return lambda: model.load_weights(tmp_path / "w.h5")

    return make


def _json(text: str) -> Callable[[Path], Callable[[], Any]]:
    return lambda _: lambda: model_from_json(text)


UNKNOWN_LAYER = (
    '{"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": '
    '"ConvLSTM2D", "config": {"name": "conv_lstm2d_1", "filters": 2, "kernel_size": 3}}, '
    '{"class_name": "Dense", "config": {"name": "d", "units": 2}}, {"class_name": '
    '"MyAttention", "config": {"name": "a"}}, {"class_name": "Bidirectional", '
    '"config": {"name": "b", "layer": {"class_name": "MyRecurrent", "config": {"units": 2}}}}, '
    '{"class_name": "TextVectorization", "config": {"name": "t"}}]}, '
    '"keras_version": "2.2.4", "backend": "tensorflow"}'
)
DANGLING_NODE = (
    '{"class_name": "Model", "config": {"name": "m", "layers": [{"name": "input_1", '
    '"class_name": "InputLayer", "config": {"batch_input_shape": [null, 3], "dtype": '
    '"float32", "sparse": false, "name": "input_1"}, "inbound_nodes": []}, {"name": '
    '"dense_1", "class_name": "Dense", "config": {"name": "dense_1", "trainable": true, '
    '"units": 2}, "inbound_nodes": [[["nowhere", 0, 0, {}]]]}], "input_layers": '
    '[["input_1", 0, 0]], "output_layers": [["dense_1", 0, 0]]}, "keras_version": "2.2.4"}'
)

ERROR_CASES: dict[str, tuple[Callable[[Path], Callable[[], Any]], type, tuple[str, ...]]] = {
    # id: (make the failing call, error type, fragments the message must contain)
    "corrupt-json": (
        _json('{"class_name": "Sequential", "config": {'),
        errors.ModelFormatError,
        ("JSON", "cannot be parsed"),
    ),
    "json-array": (
        _json("[1, 2]"),
        errors.ModelFormatError,
        ("Expected a Keras model JSON object", "list"),
    ),
    "json-layer-not-model": (
        _json('{"class_name": "Dense", "config": {"name": "d", "units": 2}}'),
        errors.ModelFormatError,
        ("Expected a Sequential or functional model", "'Dense'"),
    ),
    "unknown-layer-class": (
        _json(UNKNOWN_LAYER),
        errors.UnknownLayerError,
        (
            # Classes inside a wrapper count too; ConvLSTM2D is refused with its reason.
            "Unknown layers: 'ConvLSTM2D', 'MyAttention', 'MyRecurrent', 'TextVectorization'",
            "ConvLSTM2D: a convolutional LSTM",
            "Dense",
            "custom_objects",
        ),
    ),
    "dangling-inbound-node": (_json(DANGLING_NODE), errors.ModelFormatError, ("dense_1",)),
    "truncated-.keras": (
        _truncated_keras,
        errors.ModelFormatError,
        ("expected", "zip", "truncated"),
    ),
    "corrupt-.keras-config": (
        _corrupt_keras_member("config.json", b"{not json"),
        errors.ModelFormatError,
        (".keras", "corrupt", "JSON"),
    ),
    "corrupt-.keras-weights": (
        _corrupt_keras_member("model.weights.h5", b"\x00" * 64),
        errors.ModelFormatError,
        (".keras", "weights"),
    ),
    "bit-flipped-layerserve-archive": (_bit_flipped_native, errors.ModelFormatError, ("corrupt",)),
    "random-bytes": (
        _file(bytes(np.random.default_rng(3).integers(0, 256, 200, np.uint8))),
        errors.ModelFormatError,
        ("expected", "found"),
    ),
    "empty-file": (_file(b""), errors.ModelFormatError, ("expected", "empty")),
    "newer-layerserve-format-version": (
        _newer_native_format,
        errors.ModelFormatError,
        ("newer layerserve", "format version 2"),
    ),
    "load_weights-from-non-hdf5": (
        _load_weights_from(b'{"class_name": "Sequential"}'),
        errors.ModelFormatError,
        ("HDF5 weights file",),
    ),
    "hdf5-weights-only-to-load_model": (
        _weights_only_h5,
        errors.ModelFormatError,
        ("weights only", "model_config", "load_weights"),
    ),
    "weights-wrong-layer-count": (
        _keras2_weights({"dense_1": [np.zeros((3, 4)), np.zeros(4)]}),
        errors.WeightsError,
        ("1 layers", "['dense_1']", "2 layers", "dense_2"),
    ),
    "weights-wrong-shapes": (
        _keras2_weights(
            {"dense_1": [np.zeros((3, 5)), np.zeros(5)], "dense_2": [np.zeros((5, 2)), np.zeros(2)]}
        ),
        errors.WeightsError,
        ("dense_1", "(3, 4)", "(3, 5)"),
    ),
    "keras3-weights-wrong-shapes": (
        _keras3_wrong_shapes,
        errors.WeightsError,
        ("dense", "(3, 4)", "(3, 5)"),
    ),
    "keras3-quantization-config": (
        _keras3_json_with(
            lambda c: c.update(
                quantization_config={
                    "module": "keras.quantizers",
                    "class_name": "Int8QuantizationConfig",
                    "config": {},
                    "registered_name": None,
                }
            )
        ),
        errors.NotSupportedError,
        ("quantization_config", "Int8QuantizationConfig", "Dense"),
    ),
    "keras3-int8-quantized-.keras": (
        _quantized_keras,
        errors.NotSupportedError,
        ("quantization_config",),
    ),
    "keras3-lora-.keras": (_lora_keras, errors.NotSupportedError, ("lora_rank", "2")),
    "keras3-unknown-argument": (
        _keras3_json_with(lambda c: c.update(flux_capacitor=True, name="head")),
        errors.UnknownArgumentError,
        ("Layer 'head' (Dense)", "flux_capacitor"),
    ),
    "keras3-bad-argument-value": (
        _keras3_json_with(lambda c: c.update(units="two", name="head")),
        errors.ConfigError,
        ("Layer 'head' (Dense)", "units='two'"),
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_broken_input_gives_a_typed_error(tmp_path: Path, case: str) -> None:
    make, error_type, fragments = ERROR_CASES[case]
    call = make(tmp_path)
    with pytest.raises(error_type) as info:
        call()
    assert isinstance(info.value, errors.LayerserveError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)


def _damage_dense_2(kind: str) -> Callable[[h5py.File], None]:
    def damage(handle: h5py.File) -> None:
        if kind == "layer group missing":
            del handle["dense_2"]
        elif kind == "weight missing":
            del handle["dense_2/dense_2/bias:0"]
        else:
            del handle["dense_2/dense_2/bias:0"]
            value = np.array([b"ab", b"cd"]) if kind == "bytes" else np.ones(2, np.complex64)
            handle["dense_2"].create_dataset("dense_2/bias:0", data=value)

    return damage


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("layer group missing", "layer_names lists the layer 'dense_2', which it does not hold"),
        ("weight missing", "layer 'dense_2' lists the weight 'dense_2/bias:0', which it does not"),
        ("bytes", "weight bias: expected numbers for its float32 values. Received: dtype=|S2"),
        (
            "complex",
            "weight bias: expected numbers for its float32 values. Received: dtype=complex64",
        ),
    ],
)
def test_a_damaged_weights_file_is_a_weights_error_and_changes_nothing(
    tmp_path: Path, kind: str, says: str
) -> None:
    """A group or dataset the file's own lists name but it lacks, or values that are not
    real numbers (complex ones would keep their real parts): WeightsError naming it."""
    path = tmp_path / "w.h5"
    _write_keras2_weights(
        path, {"dense_1": [np.ones((3, 4)), np.ones(4)], "dense_2": [np.ones((4, 2)), np.ones(2)]}
    )
    with h5py.File(path, "a") as handle:
        _damage_dense_2(kind)(handle)
    model = Sequential([Dense(4, input_shape=(3,), name="dense_1"), Dense(2, name="dense_2")])
    before = model.get_weights()
    with pytest.raises(errors.WeightsError) as info:
        model.load_weights(path)
    assert says in str(info.value)
    for kept, had in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, had)
