"""Embedding and Identity against independent expectations: a plain indexing loop, the
``inputs != 0`` mask written out, Keras 2's ``input_length`` shape rule by hand; output
shapes and config round trips."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.layers import Dense, Embedding, Identity, Input, Masking
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics

KERAS2, KERAS3 = "2.2.4", "3.15.1"


def lookup_loop(table, indices):
    """Row ``int(i)`` of ``table`` (negative: counted from the end) for every index."""
    flat = np.asarray(indices).reshape(-1)
    rows = []
    for value in flat:
        index = int(value)  # truncates toward zero, like Keras's cast to int32
        rows.append(table[index + len(table) if index < 0 else index])
    return np.array(rows, dtype=table.dtype).reshape(*np.shape(indices), table.shape[1])


def built(layer, table):
    layer.build(None)
    layer.set_weights([table])
    return layer


@settings(max_examples=40, deadline=None)
@given(
    input_dim=st.integers(1, 9),
    output_dim=st.integers(1, 4),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    dtype=st.sampled_from(["int32", "int64", "uint8", "float32", "float64"]),
    keras3=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_embedding_equals_an_indexing_loop(input_dim, output_dim, shape, dtype, keras3, seed):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((input_dim, output_dim)).astype("float32")
    low = -input_dim if keras3 and dtype[0] != "u" else 0
    indices = rng.integers(low, input_dim, shape)
    if dtype.startswith("float"):  # fractional parts truncate toward zero
        fraction = rng.choice([0.0, 0.3, 0.9], shape) * np.where(indices < 0, -1, 1)
        indices = (indices + fraction * (np.abs(indices) < input_dim - 1)).astype(dtype)
    indices = indices.astype(dtype)
    with keras_semantics(KERAS3 if keras3 else KERAS2):
        layer = built(Embedding(input_dim, output_dim), table)
    out = layer(indices)
    np.testing.assert_array_equal(out, lookup_loop(table, indices))
    assert out.dtype == np.float32
    assert layer.compute_output_shape((None, *shape)) == (None, *shape, output_dim)


def test_mask_zero_is_computed_on_the_uncast_input():
    layer = built(Embedding(4, 2, mask_zero=True), np.eye(4, 2, dtype="float32"))
    x = np.array([[0.0, 0.25, -0.5, 3.0, 0.0]], dtype="float32")
    expected_mask = np.array([[False, True, True, True, False]])
    np.testing.assert_array_equal(layer.compute_mask(x), expected_mask)
    np.testing.assert_array_equal(layer(x), np.eye(4, 2, dtype="float32")[[0, 0, 0, 3, 0]][None])
    assert layer.supports_masking
    assert Embedding(4, 2).compute_mask(x) is None and not Embedding(4, 2).supports_masking


def test_mask_zero_flows_into_a_model_and_ignores_an_incoming_mask():
    x = Input((4, 2))
    tokens = Model(x, Embedding(5, 3, mask_zero=True)(Masking()(x)))
    assert tokens.outputs[0].mask.shape == (None, 4, 2)  # the Embedding's own mask
    rows = np.array([[[0, 1], [2, 0], [0, 0], [4, 3]]], dtype="float32")
    np.testing.assert_array_equal(tokens.compute_mask(rows), rows != 0)


@pytest.mark.parametrize(
    ("input_length", "input_shape", "expected"),
    [
        (4, (None, 4), (None, 4, 3)),
        (4, (None, None), (None, 4, 3)),  # the declared length fills an unknown size
        ([2, None], (None, 2, 5), (None, 2, 5, 3)),
        ([None, 6], (None, None, None), (None, None, 6, 3)),
        (None, (None, 7, 2), (None, 7, 2, 3)),
    ],
)
def test_keras2_input_length_output_shape(input_length, input_shape, expected):
    layer = Embedding(10, 3, input_length=input_length)
    assert layer.compute_output_shape(input_shape) == expected


def test_keras2_input_length_declares_the_input_shape_keras3_ignores_it():
    assert Embedding(10, 3, input_length=5).batch_input_shape == (None, 5)
    assert Embedding(10, 3, input_length=[2, None]).batch_input_shape == (None, 2, None)
    assert Embedding(10, 3).batch_input_shape == (None, None)  # Keras 2: always an input
    model = Sequential([Embedding(10, 3, input_length=5)])
    assert model.output_shape == (None, 5, 3) and model.inputs[0].dtype == "float32"
    with keras_semantics(KERAS3), pytest.warns(UserWarning, match="input_length` is ignored"):
        layer = Embedding(10, 3, input_length=5)
    assert not hasattr(layer, "batch_input_shape") and layer.input_length is None
    assert "input_length" not in layer.get_config()


def test_tf_keras_nested_batch_input_shape_of_a_list_input_length():
    """tf.keras writes ``input_length=[2, None]`` as ``batch_input_shape: [null, [2, null]]``."""
    config = {"batch_input_shape": [None, [2, None]], "input_length": [2, None]}
    with keras_semantics("2.21.0"):
        layer = Embedding.from_config({"input_dim": 4, "output_dim": 2, **config})
    assert layer.batch_input_shape == (None, 2, None)


def test_weights_argument_list_or_bare_matrix():
    table = np.arange(6, dtype="float32").reshape(3, 2)
    for weights in ([table], table):
        layer = Embedding(3, 2, weights=weights)
        np.testing.assert_array_equal(layer(np.array([[2, 0]])), table[[2, 0]][None])


@pytest.mark.parametrize("version", [KERAS2, "2.21.0", KERAS3])
def test_embedding_config_round_trip(version):
    with keras_semantics(version):
        layer = Embedding(
            6,
            2,
            embeddings_initializer="glorot_uniform",
            embeddings_regularizer="l2",
            activity_regularizer="l1",
            embeddings_constraint="non_neg",
            mask_zero=True,
            input_length=None if version == KERAS3 else 3,
            name="tokens",
        )
        config = layer.get_config()
        clone = Embedding.from_config(config)
    assert clone.get_config() == config
    assert config["mask_zero"] is True and config["embeddings_constraint"] is not None
    assert ("input_length" in config) == (version != KERAS3)
    table = np.random.default_rng(0).standard_normal((6, 2)).astype("float32")
    indices = np.array([[5, 0, 1]])
    np.testing.assert_array_equal(built(clone, table)(indices), built(layer, table)(indices))


def test_embedding_weights_and_losses():
    layer = built(Embedding(3, 2, embeddings_regularizer="l2"), np.ones((3, 2), "float32"))
    assert [v.name for v in layer.weights] == ["embeddings"] and layer.count_params() == 6
    assert layer.losses == pytest.approx([0.01 * 6])


@pytest.mark.parametrize("version", [KERAS2, "2.21.0", KERAS3])
def test_identity_returns_its_input_and_masks_per_version(version):
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype("float32")
    with keras_semantics(version):
        inputs = Input((3, 4))
        model = Model(inputs, Identity()(Masking()(inputs)))
        layer = Identity(name="same")
    np.testing.assert_array_equal(layer(x), x)
    assert layer.compute_output_shape((None, 3, 4)) == (None, 3, 4)
    x[0, 1] = 0
    mask = model.compute_mask(x)
    if version == KERAS3:
        np.testing.assert_array_equal(mask, np.any(x != 0, axis=-1))
    else:
        assert mask is None  # tf.keras's Identity drops masks
    assert Identity.from_config(layer.get_config()).get_config() == layer.get_config()


def test_identity_between_layers_changes_nothing():
    x = np.random.default_rng(2).standard_normal((5, 3)).astype("float32")
    dense = Dense(2, kernel_initializer="ones")
    model = Sequential([Identity(input_shape=(3,)), dense])
    np.testing.assert_allclose(model.predict(x), x.sum(axis=1, keepdims=True).repeat(2, 1))
