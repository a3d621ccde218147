"""Every code example of the Keras 2.2 core-layer documentation runs and gives the
documented shapes; numbers are checked against hand computations from the weights."""

from __future__ import annotations

import numpy as np
import pytest

from layerserve import backend as K
from layerserve.examples import (
    antirectifier,
    antirectifier_output_shape,
    hadamard_product_sum,
    hadamard_product_sum_output_shape,
)
from layerserve.layers import (
    LSTM,
    Activation,
    Conv2D,
    Dense,
    Flatten,
    Input,
    Lambda,
    Masking,
    Permute,
    RepeatVector,
    Reshape,
)
from layerserve.models import Model, Sequential


@pytest.fixture
def channels_first():
    K.set_image_data_format("channels_first")
    yield
    K.set_image_data_format("channels_last")


def test_dense_example():
    model = Sequential()
    model.add(Dense(32, input_shape=(16,)))
    assert model.output_shape == (None, 32)
    model.add(Dense(32))
    assert model.output_shape == (None, 32)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype("float32")
    (w1, b1), (w2, b2) = model.layers[0].get_weights(), model.layers[1].get_weights()
    np.testing.assert_allclose(model.predict(x), (x @ w1 + b1) @ w2 + b2, rtol=1e-5, atol=1e-6)


def test_activation_example():
    model = Sequential([Dense(64, input_shape=(8,)), Activation("tanh")])
    x = np.random.default_rng(1).standard_normal((2, 8)).astype("float32")
    w, b = model.layers[0].get_weights()
    np.testing.assert_allclose(model.predict(x), np.tanh(x @ w + b), rtol=1e-5, atol=1e-6)


def test_flatten_example_channels_first(channels_first):
    model = Sequential()
    model.add(Conv2D(64, (3, 3), input_shape=(3, 32, 32), padding="same"))
    assert model.output_shape == (None, 64, 32, 32)
    model.add(Flatten())
    assert model.output_shape == (None, 65536)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype("float32")
    out = model.predict(x)
    conv = model.layers[0].call(x)
    # channels_first Flatten emits (H, W, C) order: the channels_last flattening.
    np.testing.assert_array_equal(out, np.transpose(conv, (0, 2, 3, 1)).reshape(1, -1))


def test_flatten_example_default_channels_last_reads_input_as_hwc():
    model = Sequential([Conv2D(64, (3, 3), input_shape=(3, 32, 32), padding="same"), Flatten()])
    assert model.layers[0].output_shape == (None, 3, 32, 64)
    assert model.output_shape == (None, 3 * 32 * 64)


def test_input_example_logistic_regression():
    x = Input(shape=(32,))
    y = Dense(16, activation="softmax")(x)
    model = Model(x, y)
    data = np.random.default_rng(3).standard_normal((4, 32)).astype("float32")
    w, b = model.layers[1].get_weights()
    logits = data @ w + b
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(data), expected, rtol=1e-5, atol=1e-6)


def test_reshape_examples():
    model = Sequential()
    model.add(Reshape((3, 4), input_shape=(12,)))
    assert model.output_shape == (None, 3, 4)
    model.add(Reshape((6, 2)))
    assert model.output_shape == (None, 6, 2)
    model.add(Reshape((-1, 2, 2)))
    assert model.output_shape == (None, 3, 2, 2)
    x = np.arange(24, dtype="float32").reshape(2, 12)
    np.testing.assert_array_equal(model.predict(x), x.reshape(2, 3, 2, 2))


def test_permute_example():
    model = Sequential()
    model.add(Permute((2, 1), input_shape=(10, 64)))
    assert model.output_shape == (None, 64, 10)
    x = np.random.default_rng(4).standard_normal((2, 10, 64)).astype("float32")
    np.testing.assert_array_equal(model.predict(x), np.swapaxes(x, 1, 2))


def test_repeat_vector_example():
    model = Sequential()
    model.add(Dense(32, input_dim=32))
    assert model.output_shape == (None, 32)
    model.add(RepeatVector(3))
    assert model.output_shape == (None, 3, 32)
    x = np.random.default_rng(5).standard_normal((2, 32)).astype("float32")
    w, b = model.layers[0].get_weights()
    dense = x @ w + b
    out = model.predict(x)
    for step in range(3):
        np.testing.assert_allclose(out[:, step], dense, rtol=1e-5, atol=1e-6)


def test_lambda_square_example():
    model = Sequential([Dense(4, input_shape=(3,))])
    model.add(Lambda(lambda x: x**2))
    assert model.output_shape == (None, 4)
    x = np.random.default_rng(6).standard_normal((2, 3)).astype("float32")
    w, b = model.layers[0].get_weights()
    np.testing.assert_allclose(model.predict(x), (x @ w + b) ** 2, rtol=1e-5, atol=1e-6)


def _antirectifier_by_hand(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.maximum((centred**2).sum(axis=1, keepdims=True), 1e-12))
    unit = centred / norm
    return np.concatenate([np.maximum(unit, 0), np.maximum(-unit, 0)], axis=1)


@pytest.mark.parametrize("output_shape", [antirectifier_output_shape, None])
def test_antirectifier_example(output_shape):
    model = Sequential([Dense(5, input_shape=(3,))])
    model.add(Lambda(antirectifier, output_shape=output_shape))
    assert model.output_shape == (None, 10)
    x = np.random.default_rng(7).standard_normal((4, 3)).astype("float32")
    before = x.copy()
    w, b = model.layers[0].get_weights()
    np.testing.assert_allclose(
        model.predict(x), _antirectifier_by_hand(x @ w + b), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(x, before)


def test_antirectifier_does_not_modify_the_callers_array():
    layer = Lambda(antirectifier)
    x = np.random.default_rng(8).standard_normal((2, 6)).astype("float32")
    before = x.copy()
    layer(x)
    np.testing.assert_array_equal(x, before)


def test_hadamard_product_sum_example():
    input_1, input_2 = Input((8,)), Input((8,))
    x1 = Dense(32)(input_1)
    x2 = Dense(32)(input_2)
    layer = Lambda(hadamard_product_sum, hadamard_product_sum_output_shape)
    x_hadamard, x_sum = layer([x1, x2])
    assert x_hadamard.shape == (None, 32)
    assert x_sum.shape == (None,)
    model = Model([input_1, input_2], [x_hadamard, x_sum])
    rng = np.random.default_rng(9)
    a, c = (rng.standard_normal((3, 8)).astype("float32") for _ in range(2))
    w1, b1 = model.get_layer(x1.history[0].name).get_weights()
    w2, b2 = model.get_layer(x2.history[0].name).get_weights()
    product = (a @ w1 + b1) * (c @ w2 + b2)
    got_product, got_sum = model.predict([a, c])
    np.testing.assert_allclose(got_product, product, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_sum, product.sum(axis=-1), rtol=1e-5, atol=1e-5)


def test_masking_example_skips_masked_timesteps():
    samples, timesteps, features = 3, 6, 4
    x = np.random.default_rng(10).standard_normal((samples, timesteps, features))
    x = x.astype("float32")
    x[0, 3, :] = 0.0
    x[2, 5, :] = 0.0
    model = Sequential()
    model.add(Masking(mask_value=0.0, input_shape=(timesteps, features)))
    model.add(LSTM(32))
    assert model.output_shape == (None, 32)
    expected_mask = np.ones((samples, timesteps), bool)
    expected_mask[0, 3] = expected_mask[2, 5] = False
    masking = Model(model.inputs, model.layers[0].inbound_nodes[-1].outputs[0])
    np.testing.assert_array_equal(masking.compute_mask(x), expected_mask)
    # Skipping a step equals feeding the sequence without it.
    without = np.delete(x[0:1], 3, axis=1)
    short = Sequential([LSTM(32, input_shape=(timesteps - 1, features))])
    short.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x)[0:1], short.predict(without), rtol=1e-5, atol=1e-6)
