"""TimeDistributed against the inner layer called on each timestep separately (and a
hand formula for Dense and the masked mean), its masks by version, its ONNX export
(batch 0, 1, 7, 64) and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
from rnn_wrapper_checks import assert_export_matches, masked_sequences, random_weights

from layerserve.errors import MaskingNotSupportedError, NotSupportedError, ShapeError
from layerserve.layers import (
    LSTM,
    BatchNormalization,
    Conv2D,
    Dense,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    Input,
    Lambda,
    Masking,
    MaxPooling2D,
    TimeDistributed,
)
from layerserve.models import Model, Sequential, model_from_json
from layerserve.serialization import keras_semantics

STEPS = 4


@pytest.mark.parametrize("batch", [0, 1, 7, 64])
def test_dense_is_the_per_step_product(batch):
    rng = np.random.default_rng(batch)
    layer = TimeDistributed(Dense(5, activation="tanh"))
    x = rng.normal(size=(batch, STEPS, 3)).astype(np.float32)
    layer(x)
    kernel, bias = random_weights(layer, rng)
    np.testing.assert_allclose(
        layer(x), np.tanh(np.einsum("ntf,fu->ntu", x, kernel) + bias), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "inner",
    [
        lambda: Conv2D(3, 2, padding="same"),
        lambda: MaxPooling2D(2),
        lambda: Flatten(),
        lambda: BatchNormalization(),
        lambda: Sequential([Input((6, 6, 2)), Conv2D(2, 3), Flatten(), Dense(3)]),
    ],
)
@pytest.mark.parametrize("batch", [0, 1, 64])
def test_equals_the_inner_layer_step_by_step(inner, batch):
    rng = np.random.default_rng(batch)
    layer = TimeDistributed(inner())
    x = rng.normal(size=(batch, STEPS, 6, 6, 2)).astype(np.float32)
    got = layer(x)
    if layer.weights:
        random_weights(layer, rng)
        got = layer(x)
    steps = [layer.layer(x[:, t]) for t in range(STEPS)]
    np.testing.assert_allclose(got, np.stack(steps, axis=1), rtol=1e-5, atol=1e-6)
    assert got.shape == (batch, *layer.compute_output_shape((None, *x.shape[1:]))[1:])


def documents(rng, batch, words=5, vocab=6):
    """Token ids (N, STEPS, words), zero = padding: whole sentences and single words."""
    tokens = rng.integers(1, vocab, (batch, STEPS, words))
    tokens[rng.random((batch, STEPS, words)) < 0.3] = 0
    if batch > 1:
        tokens[0, 1] = 0  # a sentence with no word
        tokens[1] = 0  # a document with none
    return tokens.astype(np.int32)


@pytest.mark.parametrize("version", ["3.15.1", "2.21.0"])
def test_masked_mean_per_step_and_the_output_mask(version):
    rng = np.random.default_rng(0)
    with keras_semantics(version):
        words = Input((STEPS, 5), dtype="int32")
        embedded = Embedding(6, 3, mask_zero=True)(words)
        model = Model(words, TimeDistributed(GlobalAveragePooling1D())(embedded))
    random_weights(model.layers[1], rng)
    tokens = documents(rng, 7)
    outputs, mask = model.run(tokens)
    table = model.layers[1].get_weights()[0]
    keep = tokens != 0
    counts = keep.sum(-1, keepdims=True)
    # Keras divides by the count of kept words; a sentence with none gives 0/0 there.
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (table[tokens] * keep[..., None]).sum(-2) / counts
    np.testing.assert_allclose(outputs, want, rtol=1e-5, atol=1e-6)
    # Keras 3 passes the mask on as it is; tf.keras reduces it to (N, T) with any().
    np.testing.assert_array_equal(mask, keep if version == "3.15.1" else keep.any(-1))


@pytest.mark.parametrize("version", ["3.15.1", "2.21.0"])
def test_export_matches_reference(version):
    rng = np.random.default_rng(1)
    with keras_semantics(version):
        words = Input((STEPS, 5), dtype="int32")
        embedded = Embedding(6, 4, mask_zero=True)(words)
        sentences = TimeDistributed(GlobalAveragePooling1D())(embedded)
        model = Model(words, [sentences, TimeDistributed(Dense(2))(embedded)])
    for layer in model.layers:
        if layer.weights:
            random_weights(layer, rng)
    # Keep a word per sentence: a sentence of padding averages 0/0 (NaN) in Keras too.
    assert_export_matches(
        model, lambda n: np.maximum(documents(rng, n), [1, 0, 0, 0, 0]).astype(np.int32)
    )


def test_export_of_frames_and_sequences():
    rng = np.random.default_rng(2)
    frames = Input((STEPS, 6, 6, 2))
    video = TimeDistributed(Conv2D(3, 3, padding="same", activation="relu"))(frames)
    video = TimeDistributed(Flatten())(TimeDistributed(MaxPooling2D(2))(video))
    series = Input((STEPS, 3))
    masked = Masking()(series)
    model = Model(
        [frames, series],
        [video, TimeDistributed(Dense(2))(masked), TimeDistributed(BatchNormalization())(series)],
    )
    for layer in model.layers:
        if layer.weights:
            random_weights(layer, rng)

    def inputs(n):
        return [
            rng.normal(size=(n, STEPS, 6, 6, 2)).astype(np.float32),
            masked_sequences(rng, (n, STEPS, 3)),
        ]

    assert_export_matches(model, inputs)


def test_config_round_trip_through_json():
    inputs = Input((STEPS, 3))
    model = Model(inputs, TimeDistributed(Dense(2), name="td")(inputs))
    copy = model_from_json(model.to_json())
    copy.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, STEPS, 3)).astype(np.float32)
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))


# ------------------------------------------------------------------------------ errors


def test_lambda_is_refused():
    with pytest.raises(NotSupportedError, match="Lambda"):
        TimeDistributed(Lambda(lambda x: x - x.mean(axis=0)))


@pytest.mark.parametrize("inner", [lambda: Masking(), lambda: Embedding(3, 2, mask_zero=True)])
def test_layers_computing_their_own_mask_are_refused(inner):
    with pytest.raises(NotSupportedError, match="returns a mask of its own"):
        TimeDistributed(inner())(np.zeros((1, STEPS, 3, 2), np.float32))


def test_a_sequence_returning_rnn_is_refused_only_with_a_mask():
    """Unmasked, each step's LSTM runs as the layer alone would; given a mask, its
    per-step output mask is what Keras 3 and tf.keras treat differently."""
    x = np.random.default_rng(3).normal(size=(2, STEPS, 4, 2)).astype("float32")
    distributed = TimeDistributed(LSTM(3, return_sequences=True))
    got = distributed(x)
    alone = np.stack([distributed.layer(x[:, t]) for t in range(STEPS)], axis=1)
    np.testing.assert_array_equal(got, alone)
    inputs = Input((STEPS, 4, 2))
    with pytest.raises(NotSupportedError, match="returns a mask of its own"):
        TimeDistributed(LSTM(3, return_sequences=True))(Masking()(inputs))


def test_rank_two_input_is_refused():
    with pytest.raises(ShapeError, match="min_ndim=3"):
        TimeDistributed(Dense(2))(np.zeros((2, 3), np.float32))


def test_mask_into_a_nested_model_is_refused():
    inner = Sequential([Input((3,)), Dense(2)])
    with pytest.raises(NotSupportedError, match="nested model"):
        TimeDistributed(inner)(np.ones((1, STEPS, 3), np.float32), mask=np.ones((1, STEPS), bool))


def test_keras2_refuses_a_mask_for_a_layer_without_mask_support():
    with keras_semantics("2.21.0"), pytest.raises(MaskingNotSupportedError, match="masking"):
        TimeDistributed(Flatten())(
            np.ones((1, STEPS, 3, 2), np.float32), mask=np.ones((1, STEPS), bool)
        )


def test_weight_penalty_is_counted_once():
    layer = TimeDistributed(
        Dense(2, kernel_regularizer={"class_name": "L2", "config": {"l2": 0.5}})
    )
    layer(np.ones((1, STEPS, 3), np.float32))
    np.testing.assert_allclose(layer.losses, [0.5 * np.sum(layer.get_weights()[0] ** 2)], rtol=1e-6)
