"""Sequential and functional models: building, running, weights, summary and configs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve import regularizers
from layerserve.errors import ConfigError, MaskingNotSupportedError
from layerserve.layers import (
    LSTM,
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Lambda,
    Masking,
    Reshape,
)
from layerserve.models import Model, Sequential
from layerserve.serialization import safe_mode_scope

RTOL, ATOL = 1e-5, 1e-6


def close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def relu(v):
    return np.maximum(v, 0)


# ---- Sequential ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "input_shape"),
    [
        ({"input_shape": (16,)}, (None, 16)),
        ({"input_dim": 16}, (None, 16)),
        ({"batch_input_shape": (None, 16)}, (None, 16)),
        ({"batch_input_shape": (8, 16)}, (8, 16)),
        ({"input_shape": (16,), "batch_size": 4}, (4, 16)),
    ],
)
def test_sequential_input_from_first_layer(kwargs, input_shape):
    model = Sequential([Dense(32, **kwargs), Dense(3)])
    assert model.input_shape == input_shape
    assert model.output_shape == (input_shape[0], 3)
    assert model.layers[0].output_shape == (input_shape[0], 32)
    assert [type(layer) for layer in model.layers] == [Dense, Dense]  # no InputLayer listed
    assert model.count_params() == 16 * 32 + 32 + 32 * 3 + 3


def test_sequential_add_pop_and_layers(rng):
    model = Sequential()
    first = Dense(4, input_shape=(3,), activation="relu")
    model.add(first)
    assert model.output_shape == (None, 4)
    second = Dense(2)
    model.add(second)
    assert model.layers == [first, second]
    assert model.output_shape == (None, 2)
    model.pop()
    assert model.layers == [first]
    assert model.output_shape == (None, 4)
    x = rng.normal(size=(5, 3)).astype("float32")
    kernel, bias = first.get_weights()
    close(model.predict(x), relu(x @ kernel + bias))
    model.pop()
    assert model.layers == []
    with pytest.raises(ConfigError, match="no layers"):
        model.pop()


def test_sequential_with_explicit_input():
    model = Sequential()
    model.add(Input((3,)))
    model.add(Dense(2))
    assert model.input_shape == (None, 3)
    assert model.output_shape == (None, 2)
    assert not any(isinstance(layer, InputLayer) for layer in model.layers)
    model2 = Sequential([InputLayer(input_shape=(5,)), Dense(2)])
    assert model2.input_shape == (None, 5)


def test_sequential_deferred_build_from_data(rng):
    model = Sequential([Dense(4, activation="relu"), Dense(2)])
    assert not model.built
    with pytest.raises(ConfigError, match="not been built"):
        _ = model.output_shape
    x = rng.normal(size=(3, 5)).astype("float32")
    y = model.predict(x)
    assert model.built
    assert model.input_shape == (None, 5)
    assert model.output_shape == (None, 2)
    (k1, b1), (k2, b2) = (layer.get_weights() for layer in model.layers)
    assert k1.shape == (5, 4)
    close(y, relu(x @ k1 + b1) @ k2 + b2)


def test_sequential_build_with_shape():
    model = Sequential([Dense(4), Dense(2)])
    model.build((None, 7))
    assert model.input_shape == (None, 7)
    assert model.count_params() == 7 * 4 + 4 + 4 * 2 + 2


def test_sequential_rank3_and_shapes():
    model = Sequential([Dense(8, input_shape=(5, 3)), Reshape((4, -1)), Flatten()])
    assert [layer.output_shape for layer in model.layers] == [
        (None, 5, 8),
        (None, 4, 10),
        (None, 40),
    ]


def test_sequential_failed_add_leaves_model_unchanged():
    model = Sequential([Masking(input_shape=(3, 2))])
    with pytest.raises(MaskingNotSupportedError):
        model.add(Flatten())
    assert len(model.layers) == 1


# ---- functional Model ----------------------------------------------------------------


def test_functional_two_inputs_two_outputs(rng):
    a_in, b_in = Input((3,), name="a"), Input((4,), name="b")
    ha = Dense(5, activation="relu", name="da")(a_in)
    hb = Dense(5, name="db")(b_in)
    summed = Lambda(lambda xs: xs[0] + xs[1], name="sum")([ha, hb])
    out1 = Dense(2, name="head1")(summed)
    out2 = Activation("tanh", name="head2")(hb)
    model = Model([a_in, b_in], [out1, out2])
    assert model.input_shape == [(None, 3), (None, 4)]
    assert model.output_shape == [(None, 2), (None, 5)]
    assert model.input_names == ["a", "b"]
    assert model.output_names == ["head1", "head2"]
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    wa = model.get_layer("da").get_weights()
    wb = model.get_layer("db").get_weights()
    w1 = model.get_layer("head1").get_weights()
    h_b = b @ wb[0] + wb[1]
    expected1 = (relu(a @ wa[0] + wa[1]) + h_b) @ w1[0] + w1[1]
    y1, y2 = model.predict([a, b])
    close(y1, expected1)
    close(y2, np.tanh(h_b))
    # Inputs by name work as well.
    y1_named, _ = model.predict({"b": b, "a": a})
    close(y1_named, expected1)


def test_shared_layer_called_twice(rng):
    a_in, b_in = Input((4,)), Input((4,))
    shared = Dense(3, name="shared")
    out = Lambda(lambda xs: xs[0] - xs[1])([shared(a_in), shared(b_in)])
    model = Model([a_in, b_in], out)
    assert len(shared.inbound_nodes) == 2
    assert model.count_params() == 4 * 3 + 3  # counted once
    assert len(model.get_weights()) == 2
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    kernel, _ = shared.get_weights()
    close(model.predict([a, b]), (a - b) @ kernel)  # the bias cancels


def test_functional_layer_order_is_by_depth_like_keras():
    x_in, y_in = Input((2,), name="x"), Input((2,), name="y")
    d1 = Dense(2, name="d1")(x_in)
    d3 = Dense(2, name="d3")(Dense(2, name="d2")(y_in))
    model = Model([x_in, y_in], Lambda(lambda v: v[0] + v[1], name="add")([d1, d3]))
    # Checked with keras 3.15.1: ['y', 'x', 'd2', 'd1', 'd3', 'add'].
    assert [layer.name for layer in model.layers] == ["y", "x", "d2", "d1", "d3", "add"]


def test_nested_model(rng):
    inner = Sequential(
        [Dense(3, input_shape=(2,), activation="relu", name="i1"), Dense(2, name="i2")],
        name="inner",
    )
    x_in = Input((2,))
    out = Dense(1, name="after")(inner(x_in))
    outer = Model(x_in, out)
    assert outer.output_shape == (None, 1)
    assert inner in outer.layers
    x = rng.normal(size=(4, 2)).astype("float32")
    (k1, b1), (k2, b2) = inner.layers[0].get_weights(), inner.layers[1].get_weights()
    k3, b3 = outer.get_layer("after").get_weights()
    close(outer.predict(x), (relu(x @ k1 + b1) @ k2 + b2) @ k3 + b3)
    assert [w.shape for w in outer.get_weights()] == [(2, 3), (3,), (3, 2), (2,), (2, 1), (1,)]
    assert outer.count_params() == 9 + 8 + 3


def test_training_true_at_node_forces_dropout_in_predict():
    x_in = Input((200,))
    forced = Dropout(0.5, seed=3)(x_in, training=True)
    plain = Dropout(0.5, seed=3)(x_in)
    model = Model(x_in, [forced, plain])
    x = np.ones((4, 200), dtype="float32")
    y_forced, y_plain = model.predict(x)
    np.testing.assert_array_equal(y_plain, x)
    assert set(np.unique(y_forced)) == {0.0, 2.0}
    assert model.get_config()["layers"][1]["inbound_nodes"][0][0][3] == {"training": True}


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 40), batch_size=st.integers(1, 50), seed=st.integers(0, 100))
def test_predict_in_batches_equals_one_call(rows, batch_size, seed):
    gen = np.random.default_rng(seed)
    x_in = Input((3, 2))
    h = LSTM(4, return_sequences=True)(Masking()(x_in))
    model = Model(x_in, [Dense(2)(h), LSTM(3)(h)])
    x = gen.normal(size=(rows, 3, 2)).astype("float32")
    x[gen.random(rows) < 0.3, 1] = 0.0  # masked steps for some samples
    whole = model(x)
    batched = model.predict(x, batch_size=batch_size)
    for a, b in zip(batched, whole, strict=True):
        assert a.shape == b.shape
        close(a, b)


# ---- weights and parameters ----------------------------------------------------------


def test_get_weights_follow_layer_order(rng):
    model = Sequential(
        [
            Conv2D(2, 3, input_shape=(5, 5, 1)),
            Flatten(),
            Dense(4, use_bias=False),
            Dense(1),
        ]
    )
    expected_shapes = [(3, 3, 1, 2), (2,), (18, 4), (4, 1), (1,)]
    weights = model.get_weights()
    assert [w.shape for w in weights] == expected_shapes
    per_layer = [w for layer in model.layers for w in layer.get_weights()]
    for got, want in zip(weights, per_layer, strict=True):
        np.testing.assert_array_equal(got, want)
    new = [rng.normal(size=s).astype("float32") for s in expected_shapes]
    model.set_weights(new)
    np.testing.assert_array_equal(model.layers[0].get_weights()[0], new[0])
    np.testing.assert_array_equal(model.layers[2].get_weights()[0], new[2])
    np.testing.assert_array_equal(model.layers[3].get_weights()[1], new[4])
    # The new weights are the ones used for computing.
    x = rng.normal(size=(2, 5, 5, 1)).astype("float32")
    conv = model.layers[0](x)  # the layer alone, with the same weights
    close(model.predict(x), (conv.reshape(2, -1) @ new[2]) @ new[3] + new[4])


def test_lstm_weight_order():
    model = Sequential([LSTM(4, input_shape=(5, 3))])
    assert [w.shape for w in model.get_weights()] == [(3, 16), (4, 16), (16,)]


@pytest.mark.parametrize(
    ("layer", "input_shape", "expected"),
    [
        (lambda: Dense(32), (16,), 16 * 32 + 32),
        (lambda: Dense(32, use_bias=False), (16,), 16 * 32),
        (lambda: Dense(5), (7, 3), 3 * 5 + 5),  # rank 3: last axis only
        (lambda: LSTM(4), (10, 3), 4 * (4 * (3 + 4) + 4)),
        (lambda: LSTM(4, use_bias=False), (10, 3), 4 * 4 * (3 + 4)),
        (lambda: LSTM(1, return_sequences=True), (2, 6), 4 * (1 * (6 + 1) + 1)),
        (lambda: Conv2D(8, (3, 3)), (10, 10, 3), 3 * 3 * 3 * 8 + 8),
        (lambda: Conv2D(8, (3, 5), data_format="channels_first"), (3, 10, 10), 3 * 5 * 3 * 8 + 8),
        (lambda: Conv2D(4, 1, use_bias=False), (6, 6, 5), 5 * 4),
        (lambda: Flatten(), (2, 3), 0),
        (lambda: Dropout(0.2), (4,), 0),
    ],
)
def test_count_params(layer, input_shape, expected):
    built = layer()
    model = Sequential([InputLayer(input_shape=input_shape), built])
    assert built.count_params() == expected
    assert model.count_params() == expected
    assert sum(w.size for w in model.get_weights()) == expected


def test_count_params_unbuilt_layer_raises():
    with pytest.raises(ConfigError, match="isn't built"):
        Dense(3).count_params()


def test_frozen_layer_weights_alone():
    frozen = Dense(3, trainable=False)
    frozen(np.ones((1, 2), dtype="float32"))
    assert frozen.trainable_weights == []
    assert [w.shape for w in frozen.non_trainable_weights] == [(2, 3), (3,)]


def test_a_frozen_model_lists_its_layers_trainable_weights_first():
    """Keras 2.2's order (``Network.non_trainable_weights``): freezing a model leaves its
    layers trainable, and the model lists their trainable weights, then their
    non-trainable ones, as its ``.h5`` group holds them."""
    normalization, dense = BatchNormalization(input_shape=(3,)), Dense(2)
    model = Sequential([normalization, dense])
    model.trainable = False
    gamma, beta, mean, variance = normalization.weights
    expected = [gamma, beta, dense.kernel, dense.bias, mean, variance]
    assert model.trainable_weights == []
    assert [id(w) for w in model.non_trainable_weights] == [id(w) for w in expected]
    assert [id(w) for w in model.weights] == [id(w) for w in (gamma, beta, mean, variance)] + [
        id(dense.kernel),
        id(dense.bias),
    ]  # layer by layer, as get_weights and the .keras format list them


def test_frozen_layer_weights_in_a_model():
    model = Sequential([Dense(32, input_shape=(16,)), Dense(10, trainable=False)])
    assert [w.shape for w in model.trainable_weights] == [(16, 32), (32,)]
    assert [w.shape for w in model.non_trainable_weights] == [(32, 10), (10,)]
    # get_weights stays in layer order whatever is frozen.
    assert [w.shape for w in model.get_weights()] == [(16, 32), (32,), (32, 10), (10,)]
    lines = []
    model.summary(print_fn=lines.append)
    assert "Trainable params: 544" in lines
    assert "Non-trainable params: 330" in lines


# ---- summary -------------------------------------------------------------------------


def test_sequential_summary(capsys):
    model = Sequential(
        [
            Dense(32, input_shape=(16,), name="hidden"),
            Dropout(0.5, name="drop"),
            Dense(10, name="logits"),
        ],
        name="clf",
    )
    model.summary()
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert 'Model: "clf"' in lines[0]
    for name, cls, shape, params in [
        ("hidden", "Dense", "(None, 32)", 16 * 32 + 32),
        ("drop", "Dropout", "(None, 32)", 0),
        ("logits", "Dense", "(None, 10)", 32 * 10 + 10),
    ]:
        row = next(line for line in lines if line.startswith(f"{name} ({cls})"))
        assert shape in row
        assert row.split()[-1] == str(params)
    assert "Total params: 874" in text
    assert "Trainable params: 874" in text
    assert "Non-trainable params: 0" in text


def test_functional_summary_with_print_fn():
    a_in, b_in = Input((3,), name="in_a"), Input((4,), name="in_b")
    shared = Dense(5, name="shared")
    out = Lambda(lambda xs: xs[0] * xs[1], name="mul")(
        [shared(Dense(4, name="proj")(a_in)), shared(b_in)]
    )
    model = Model([a_in, b_in], out, name="two_in")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "two_in"' in text
    for name, cls, params in [
        ("in_a", "InputLayer", 0),
        ("in_b", "InputLayer", 0),
        ("proj", "Dense", 16),
        ("shared", "Dense", 25),
        ("mul", "Lambda", 0),
    ]:
        row = next(line for line in lines if line.startswith(f"{name} ({cls})"))
        assert str(params) in row.split()
    assert "proj[0][0]" in text and "in_b[0][0]" in text  # the shared layer's two nodes
    assert "shared[0][0]" in text and "shared[1][0]" in text
    assert "Total params: 41" in text


def test_summary_formats_large_counts_with_commas():
    model = Sequential([Dense(1000, input_shape=(1000,))])
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 1,001,000" in lines
    assert "Trainable params: 1,001,000" in lines


# ---- configs -------------------------------------------------------------------------


def strip_bytecode(config):
    """Lambda bytecode may be marshalled differently after a reload; compare the rest."""
    if isinstance(config, dict):
        return {k: ("<code>" if k == "function" else strip_bytecode(v)) for k, v in config.items()}
    if isinstance(config, list):
        return [strip_bytecode(v) for v in config]
    return config


def assert_same_outputs(a, b):
    a_list = a if isinstance(a, list) else [a]
    b_list = b if isinstance(b, list) else [b]
    assert len(a_list) == len(b_list)
    for x, y in zip(a_list, b_list, strict=True):
        close(x, y)


def sequential_model():
    return Sequential(
        [
            Masking(input_shape=(4, 3)),
            LSTM(5, return_sequences=True, go_backwards=True),
            Dense(2, activation="relu", kernel_regularizer="l2"),
            Dropout(0.25, noise_shape=(None, 1, 2), seed=1),
            LSTM(3),  # consumes the mask
            Dense(1, activation="sigmoid"),
        ]
    )


def deferred_sequential():
    model = Sequential([Dense(3, activation="tanh"), Dense(2)])
    model.build((None, 6))
    return model


def shared_functional():
    a_in, b_in = Input((3,), name="a"), Input((3,), name="b")
    shared = Dense(4, activation="relu", name="shared")
    diff = Lambda(lambda xs: xs[0] - xs[1], name="diff")([shared(a_in), shared(b_in)])
    return Model([a_in, b_in], Dense(1, name="out")(diff), name="siamese")


def multi_output_functional():
    x_in = Input((5, 3), name="x")
    seq, h, c = LSTM(4, return_sequences=True, return_state=True, name="rnn")(x_in)
    head = Dense(2, name="head")(Flatten(name="flat")(seq))
    return Model(x_in, [head, h, Activation("tanh", name="act")(c)], name="multi")


def nested_functional():
    inner = deferred_sequential()
    x_in = Input((6,), name="x")
    return Model(x_in, [inner(x_in), Dense(1, name="side")(x_in)], name="outer")


def nested_called_twice():
    """get_config numbers the nested model's calls from 1 (Keras 2), in the outputs and
    in the head's call alike: its first call is an output, its second read by a layer."""
    inner = deferred_sequential()
    a, b = Input((6,), name="a"), Input((6,), name="b")
    return Model([a, b], [inner(a), Dense(2, name="head")(inner(b))], name="outer")


ROUND_TRIP = [
    pytest.param(sequential_model, Sequential, [(3, 4, 3)], id="sequential"),
    pytest.param(deferred_sequential, Sequential, [(2, 6)], id="sequential-built"),
    pytest.param(shared_functional, Model, [(4, 3), (4, 3)], id="shared-layer"),
    pytest.param(multi_output_functional, Model, [(2, 5, 3)], id="multi-output"),
    pytest.param(nested_functional, Model, [(3, 6)], id="nested"),
    pytest.param(nested_called_twice, Model, [(3, 6), (3, 6)], id="nested-called-twice"),
]


@pytest.mark.parametrize(("make", "cls", "input_shapes"), ROUND_TRIP)
def test_config_round_trip(rng, make, cls, input_shapes):
    model = make()
    config = model.get_config()
    with safe_mode_scope(False):
        clone = cls.from_config(config)
    assert strip_bytecode(clone.get_config()) == strip_bytecode(config)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]
    clone.set_weights(model.get_weights())
    arrays = [rng.normal(size=s).astype("float32") for s in input_shapes]
    x = arrays if len(arrays) > 1 else arrays[0]
    assert_same_outputs(clone.predict(x), model.predict(x))


def test_single_output_functional_round_trip_returns_an_array(rng):
    x_in = Input((3,))
    model = Model(x_in, Dense(2)(x_in))
    clone = Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = rng.normal(size=(4, 3)).astype("float32")
    y = clone.predict(x)
    assert isinstance(y, np.ndarray)
    close(y, model.predict(x))


def test_round_trip_keeps_training_flag():
    x_in = Input((50,))
    model = Model(x_in, Dropout(0.5, seed=0)(x_in, training=True))
    clone = Model.from_config(model.get_config())
    y = clone.predict(np.ones((2, 50), dtype="float32"))
    y = y[0] if isinstance(y, list) else y
    assert set(np.unique(y)) == {0.0, 2.0}


# ---- losses --------------------------------------------------------------------------


def test_weight_regularizer_losses(rng):
    x_in = Input((4,))
    h = Dense(3, kernel_regularizer="l2", bias_regularizer=regularizers.l1(0.1), name="reg")(x_in)
    out = Dense(2, kernel_regularizer=regularizers.l1_l2(l1=0.2, l2=0.3), name="reg2")(h)
    model = Model(x_in, out)
    reg, reg2 = model.get_layer("reg"), model.get_layer("reg2")
    reg.set_weights([rng.normal(size=(4, 3)), rng.normal(size=3)])
    k1, b1 = (w.astype(np.float64) for w in reg.get_weights())
    k2 = reg2.get_weights()[0].astype(np.float64)
    expected = sorted(
        [
            0.01 * np.sum(k1**2),
            0.1 * np.sum(np.abs(b1)),
            0.2 * np.sum(np.abs(k2)) + 0.3 * np.sum(k2**2),
        ]
    )
    close(sorted(model.losses), expected)


def test_activity_regularizer_losses_follow_the_last_call(rng):
    x_in = Input((3,))
    out = Dense(
        2, activity_regularizer=regularizers.l1(0.5), kernel_initializer="ones", name="act"
    )(x_in)
    model = Model(x_in, out)
    x = rng.normal(size=(4, 3)).astype("float32")
    y = model(x, training=True)
    close(model.losses, [0.5 * np.abs(y.astype(np.float64)).sum()])  # not divided by N
    close(y, np.repeat(x.sum(-1, keepdims=True), 2, axis=1))


def test_a_deeply_nested_model_is_passed_through_once_per_level(monkeypatch):
    """Shapes and masks of a nested model come from one pass through its graph: asked
    one after the other, a model nested n deep was passed through 2**n times (a file of a
    few hundred bytes took minutes to load)."""
    import json

    from layerserve.layers import Dense as DenseLayer
    from layerserve.models import model_from_json

    depth = 14
    layer = {"class_name": "Dense", "config": {"units": 2, "name": "innermost"}}
    for level in range(depth):
        layer = {"class_name": "Sequential", "config": {"name": f"s{level}", "layers": [layer]}}
    document = {
        "class_name": "Sequential",
        "config": {
            "name": "top",
            "layers": [{"class_name": "InputLayer", "config": {"batch_shape": [None, 2]}}, layer],
        },
    }
    calls = []
    original = DenseLayer.compute_output_shape
    monkeypatch.setattr(
        DenseLayer,
        "compute_output_shape",
        lambda self, shape: calls.append(self.name) or original(self, shape),
    )
    model = model_from_json(json.dumps(document))
    assert 0 < calls.count("innermost") <= 4 * depth, len(calls)
    x = np.ones((3, 2), np.float32)
    np.testing.assert_allclose(model.predict(x), model.layers[0].predict(x), rtol=1e-6)
