"""``POST /v1/shapes`` end to end on a real uvicorn: a model config in, the summary
table out, without weights.

Expectations: parameter counts by hand formula (Dense ``in*units+units``, Conv2D
``kh*kw*in*filters+filters``, LSTM ``4*(in+units+1)*units``) and shapes by hand for the
documentation's example models and for Keras 3 configs made by real Keras, where Keras'
own ``count_params()`` and layer output shapes agree. Hostile configs are refused with a
400 (or 413) before they cost memory."""

from __future__ import annotations

import json
import resource
import zipfile

import httpx
import keras
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve import examples
from layerserve.service import shapes

pytestmark = pytest.mark.parallel_safe


def post(url: str, body) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{url}/v1/shapes", content=body, timeout=30)
    return httpx.post(f"{url}/v1/shapes", json=body, timeout=30)


def rows(document: dict) -> list[tuple]:
    return [
        (r["name"], r["class_name"], r["output_shape"], r["params"], r["connected_to"])
        for r in document["layers"]
    ]


def dense(inputs: int, units: int) -> int:
    return inputs * units + units


def conv2d(kh: int, kw: int, channels: int, filters: int) -> int:
    return kh * kw * channels * filters + filters


def lstm(inputs: int, units: int) -> int:
    return 4 * (inputs + units + 1) * units


# ---- the documentation's example models --------------------------------------------------
EXAMPLES = {
    "mlp": [
        ("hidden_1", "Dense", [None, 256], dense(784, 256), ["hidden_1_input[0][0]"]),
        ("dropout_1", "Dropout", [None, 256], 0, ["hidden_1[0][0]"]),
        ("hidden_2", "Dense", [None, 128], dense(256, 128), ["dropout_1[0][0]"]),
        ("dropout_2", "Dropout", [None, 128], 0, ["hidden_2[0][0]"]),
        ("probabilities", "Dense", [None, 10], dense(128, 10), ["dropout_2[0][0]"]),
    ],
    "conv_flatten": [
        ("conv", "Conv2D", [None, 64, 32, 32], conv2d(3, 3, 3, 64), ["conv_input[0][0]"]),
        ("flatten", "Flatten", [None, 64 * 32 * 32], 0, ["conv[0][0]"]),
    ],
    "masking_lstm": [
        ("masking", "Masking", [None, 10, 8], 0, ["masking_input[0][0]"]),
        ("lstm", "LSTM", [None, 32], lstm(8, 32), ["masking[0][0]"]),
    ],
}


@pytest.mark.parametrize("as_text", [False, True], ids=["object", "json-text"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_models(server_url, name, as_text):
    model = examples.EXAMPLES[name]()
    config = model.to_json() if as_text else json.loads(model.to_json())
    response = post(server_url, {"model": config})
    assert response.status_code == 200, response.text
    document = response.json()
    expected = EXAMPLES[name]
    assert rows(document) == expected
    total = sum(row[3] for row in expected)
    assert document["total_params"] == total == model.count_params()
    assert document["trainable_params"] == total
    assert document["non_trainable_params"] == 0
    assert document["inputs"] == [
        {"name": n, "shape": list(t.shape), "dtype": "float32"}
        for n, t in zip(model.input_names, model.inputs, strict=True)
    ]
    assert [o["shape"] for o in document["outputs"]] == [expected[-1][2]]


@pytest.mark.parametrize("name", ["antirectifier", "hadamard"])
def test_lambda_bytecode_is_refused(server_url, name):
    response = post(server_url, {"model": json.loads(examples.EXAMPLES[name]().to_json())})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "Lambda" in error and "bytecode" in error and "safe_mode" in error


# ---- Keras 3 configs written by Keras ----------------------------------------------------
def keras_sequential() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="small_cnn",
    )


def keras_masked() -> keras.Model:
    steps = keras.Input((10, 4), name="steps")
    masked = keras.layers.Masking(name="masking")(steps)
    sequence = keras.layers.LSTM(5, return_sequences=True, name="lstm")(masked)
    out = keras.layers.Dense(2, name="per_step")(sequence)
    return keras.Model(steps, out, name="masked")


def keras_two_branches() -> keras.Model:
    left, right = keras.Input((6,), name="left"), keras.Input((4,), name="right")
    frozen = keras.layers.Dense(2, name="frozen")
    frozen.trainable = False
    return keras.Model(
        [left, right], [keras.layers.Dense(3, name="a")(left), frozen(right)], name="two"
    )


KERAS = {
    "sequential": (
        keras_sequential,
        [
            ("conv", "Conv2D", [None, 26, 26, 8], conv2d(3, 3, 1, 8)),
            ("flatten", "Flatten", [None, 26 * 26 * 8], 0),
            ("logits", "Dense", [None, 10], dense(26 * 26 * 8, 10)),
        ],
        0,
    ),
    "masked": (
        keras_masked,
        [
            ("steps", "InputLayer", [None, 10, 4], 0),
            ("masking", "Masking", [None, 10, 4], 0),
            ("lstm", "LSTM", [None, 10, 5], lstm(4, 5)),
            ("per_step", "Dense", [None, 10, 2], dense(5, 2)),
        ],
        0,
    ),
    "two-branches": (
        keras_two_branches,
        [
            ("left", "InputLayer", [None, 6], 0),
            ("right", "InputLayer", [None, 4], 0),
            ("a", "Dense", [None, 3], dense(6, 3)),
            ("frozen", "Dense", [None, 2], dense(4, 2)),
        ],
        dense(4, 2),
    ),
}


@pytest.fixture(scope="module")
def keras_models():
    return {name: build() for name, (build, _, _) in KERAS.items()}


def _layer_shape(layer) -> list:
    return list(layer.output.shape) if hasattr(layer, "output") else list(layer.batch_shape)


def _check_against_keras(document: dict, model: keras.Model, expected, non_trainable: int):
    assert [(r[0], r[1], r[2], r[3]) for r in rows(document)] == expected
    by_name = {layer.name: layer for layer in model.layers}
    for name, _, shape, params in expected:
        if name in by_name:
            assert by_name[name].count_params() == params
            assert _layer_shape(by_name[name]) == shape
    assert document["total_params"] == model.count_params() == sum(e[3] for e in expected)
    keras_non_trainable = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    assert document["non_trainable_params"] == keras_non_trainable == non_trainable
    assert document["trainable_params"] == model.count_params() - non_trainable


@pytest.mark.parametrize("name", KERAS)
def test_keras3_to_json(server_url, keras_models, name):
    model = keras_models[name]
    _, expected, non_trainable = KERAS[name]
    response = post(server_url, {"model": json.loads(model.to_json())})
    assert response.status_code == 200, response.text
    _check_against_keras(response.json(), model, expected, non_trainable)


def test_keras3_config_json_of_a_keras_archive(server_url, keras_models, tmp_path):
    model = keras_models["sequential"]
    path = tmp_path / "small_cnn.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    _, expected, non_trainable = KERAS["sequential"]
    for body in ({"model": config}, config):  # wrapped, or the config.json as it is
        response = post(server_url, body)
        assert response.status_code == 200, response.text
        _check_against_keras(response.json(), model, expected, non_trainable)


# ---- configs without an input shape --------------------------------------------------------
KERAS2_NO_INPUT = {
    "class_name": "Sequential",
    "keras_version": "2.2.4",
    "backend": "tensorflow",
    "config": [
        {"class_name": "Dense", "config": {"name": "d1", "units": 16, "activation": "relu"}},
        {"class_name": "LSTM", "config": {"name": "rnn", "units": 3}},
    ],
}


def test_input_shape_for_a_config_without_one(server_url):
    response = post(server_url, {"model": KERAS2_NO_INPUT, "input_shape": [None, 7, 8]})
    assert response.status_code == 200, response.text
    assert [(r[0], r[2], r[3]) for r in rows(response.json())] == [
        ("d1", [None, 7, 16], dense(8, 16)),
        ("rnn", [None, 3], lstm(16, 3)),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"model": KERAS2_NO_INPUT},
            "the config declares no input shape; pass 'input_shape' with the batch axis "
            "first, e.g. [null, 784]",
        ),
        (
            {"model": json.loads(examples.mlp().to_json()), "input_shape": [None, 100]},
            "the config already declares the input shape [None, 784], which differs from "
            "input_shape [None, 100]; leave 'input_shape' out or change the config",
        ),
        ({"model": KERAS2_NO_INPUT, "input_shape": [None, 0]}, "'input_shape' must be"),
        ({"model": KERAS2_NO_INPUT, "input_shape": "784"}, "'input_shape' must be"),
    ],
    ids=["missing", "conflicting", "zero-size", "not-a-list"],
)
def test_input_shape_refusals(server_url, body, error):
    response = post(server_url, body)
    assert response.status_code == 400, response.text
    assert error in response.json()["error"]


# ---- hostile and broken configs ------------------------------------------------------------
def sequential(*layers: dict) -> dict:
    """A request body for a Sequential config of ``layers``."""
    return {"model": {"class_name": "Sequential", "config": {"name": "s", "layers": list(layers)}}}


def layer(class_name: str, **config) -> dict:
    return {"class_name": class_name, "config": config}


REFUSED = {
    "huge-dense": (
        sequential(layer("Dense", units=10**6, batch_input_shape=[None, 10**6])),
        400,
        "the model has more than 10,000,000,000 parameters",
    ),
    "huge-conv": (
        sequential(
            layer(
                "Conv2D",
                filters=10**5,
                kernel_size=[1000, 1000],
                batch_input_shape=[None, 10**4, 10**4, 10**4],
            )
        ),
        400,
        "refused before allocating anything",
    ),
    "many-small-layers-add-up": (
        sequential(
            layer("Dense", units=60_000, batch_input_shape=[None, 60_000]),
            *[layer("Dense", units=60_000) for _ in range(3)],
        ),
        400,
        "the model has more than 10,000,000,000 parameters",
    ),
    "lambda-probe": (
        sequential(
            layer(
                "Lambda",
                function="relu",
                function_type="function",
                batch_input_shape=[None, 100_000, 100_000],
            )
        ),
        400,
        "give the Lambda an explicit output_shape",
    ),
    # each probe well within its limit (125,000 x 8 elements), all of them past a
    # request's: a few tiny requests like it took the endpoint's builds for minutes
    "lambda-probes-add-up": (
        sequential(
            layer("InputLayer", batch_input_shape=[None, 125_000]),
            *[layer("Lambda", function="tanh", function_type="function") for _ in range(120)],
        ),
        400,
        f"passes the limit of {shapes.MAX_PROBE_TOTAL:,} a request",
    ),
    "lambda-growing-function": (
        sequential(
            layer(
                "Lambda",
                function="tile",
                function_type="function",
                arguments={"n": [30_000, 30_000]},
                batch_input_shape=[None, 1],
            )
        ),
        400,
        "calls 'tile' with arguments ['n']",
    ),
    "lambda-settings-setter": (
        sequential(
            layer(
                "Lambda",
                function="set_epsilon",
                function_type="function",
                batch_input_shape=[None, 1],
            )
        ),
        400,
        "Unknown function: 'set_epsilon'",
    ),
    "too-many-layers": (
        sequential(
            layer("Dense", units=2, batch_input_shape=[None, 2]),
            *[layer("Dense", units=2) for _ in range(shapes.MAX_LAYERS)],
        ),
        400,
        f"layers, over the limit of {shapes.MAX_LAYERS}",
    ),
    "single-layer": (
        {"model": layer("Dense", units=3)},
        400,
        "Expected a Sequential or functional model",
    ),
    "unknown-layer": (
        sequential(layer("Transformer", batch_input_shape=[None, 3])),
        400,
        "Unknown layer: 'Transformer'",
    ),
    "negative-units": (
        sequential(layer("Dense", units=-3, batch_input_shape=[None, 3])),
        400,
        "units",
    ),
    "not-an-object": ([1, 2], 400, 'like {"model": <model config>'),
    "unknown-field": ({"model": {}, "weights": []}, 400, "unknown request fields ['weights']"),
    "model-not-a-config": ({"model": 5}, 400, "'model' must be a model config"),
    "model-text-not-json": ({"model": "{nope"}, 400, "cannot be parsed"),
    "deep-json": (b"[" * 100_000 + b"]" * 100_000, 400, "failed to parse"),
    "over-1-mib": (b" " * (shapes.MAX_BODY_BYTES + 1), 413, "exceeds the maximum"),
}


@pytest.mark.parametrize(("body", "status", "error"), REFUSED.values(), ids=REFUSED.keys())
def test_hostile_configs_are_refused(server_url, body, status, error):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = post(server_url, body)
    assert response.status_code == status, response.text
    assert error in response.json()["error"]
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"the server's peak memory grew by {grown_mib:.0f} MiB"


# Values that replace one part of a valid config.
JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


BASE = json.loads(examples.masking_lstm().to_json())
PATHS = list(_paths(BASE))


@settings(max_examples=80)
@given(path=st.sampled_from(PATHS), junk=JUNK)
def test_broken_configs_get_a_400_never_a_500(server_url, path, junk):
    response = post(server_url, {"model": _replace(BASE, path, junk)})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]
