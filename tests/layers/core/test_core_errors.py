"""Bad arguments and bad inputs of Embedding and Identity raise typed errors with
Keras's wording (or "Expected ... Received: arg=value")."""

import re

import numpy as np
import pytest

from layerserve.errors import (
    ConfigError,
    NotSupportedError,
    ShapeError,
    UnknownArgumentError,
    WeightsError,
)
from layerserve.layers import Embedding, Identity, Input
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"input_dim": 0},
            ConfigError,
            "Expected `input_dim` to be a positive integer. Received: input_dim=0",
        ),
        ({"input_dim": 2.5}, ConfigError, "Received: input_dim=2.5"),
        ({"input_dim": True}, ConfigError, "Received: input_dim=True"),
        (
            {"output_dim": -1},
            ConfigError,
            "Expected `output_dim` to be a positive integer. Received: output_dim=-1",
        ),
        (
            {"mask_zero": "yes"},
            ConfigError,
            "Expected `mask_zero` to be a boolean. Received: mask_zero='yes'",
        ),
        ({"input_length": 0}, ConfigError, "Received: input_length=0"),
        (
            {"input_length": [2, "a"]},
            ConfigError,
            "Expected `input_length` to be a positive integer or a list",
        ),
        ({"embeddings_initializer": "nope"}, ConfigError, "nope"),
        (
            {"sparse": True},
            NotSupportedError,
            "sparse outputs are not supported; layerserve returns dense arrays. "
            "Received: sparse=True",
        ),
        (
            {"lora_rank": 4},
            NotSupportedError,
            "LoRA embeddings are not supported. Received: lora_rank=4",
        ),
        ({"lora_alpha": 8.0}, NotSupportedError, "Received: lora_alpha=8.0"),
        (
            {"quantization_config": {"mode": "int8"}},
            NotSupportedError,
            "quantized embeddings are not supported. "
            "Received: quantization_config={'mode': 'int8'}",
        ),
        ({"use_one_hot_matmul": True}, UnknownArgumentError, "use_one_hot_matmul"),
    ],
)
def test_embedding_bad_arguments(kwargs, error, message):
    arguments = {"input_dim": 5, "output_dim": 2, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        Embedding(**arguments)


def test_neutral_keras3_values_are_accepted():
    layer = Embedding(5, 2, lora_rank=0, lora_alpha=None, quantization_config=None, sparse=False)
    assert layer.get_config()["mask_zero"] is False


@pytest.mark.parametrize(
    ("version", "indices", "message"),
    [
        (
            "2.2.4",
            [[0, -1]],
            "received indices outside [0, 5): the input holds values from -1 to 0 "
            "(Keras 2 does not count negative indices from the end).",
        ),
        (
            "2.21.0",
            [[5, 1]],
            "received indices outside [0, 5): the input holds values from 1 to 5.",
        ),
        (
            "3.15.1",
            [[-6, 4]],
            "received indices outside [-5, 5): the input holds values from -6 to 4.",
        ),
        (
            "3.15.1",
            [[0, 5]],
            "received indices outside [-5, 5): the input holds values from 0 to 5.",
        ),
        (  # fractional indices are truncated first
            "3.15.1",
            [[0.5, 5.25]],
            "received indices outside [-5, 5): the input holds values from 0 to 5.",
        ),
    ],
)
def test_out_of_range_indices_raise_a_shape_error(version, indices, message):
    with keras_semantics(version):
        layer = Embedding(5, 2, name="words")
    with pytest.raises(ShapeError, match="Layer words \\(Embedding\\) " + re.escape(message)):
        layer(np.array(indices))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_indices_raise(value):
    with pytest.raises(ShapeError, match=r"non-finite indices \(NaN or inf\)"):
        Embedding(5, 2)(np.array([[1.0, value]], dtype="float32"))


def test_input_length_must_match_the_input():
    with pytest.raises(
        ShapeError, match=re.escape('"input_length" is 4, but received input has shape (None, 5)')
    ):
        Model(x := Input((5,)), Embedding(9, 2, input_length=4)(x))
    with pytest.raises(
        ShapeError,
        match=re.escape('"input_length" is [2, 3], but received input has shape (None, 6)'),
    ):
        Model(x := Input((6,)), Embedding(9, 2, input_length=[2, 3])(x))


def test_wrong_weights():
    with pytest.raises(
        WeightsError,
        match=re.escape(
            "Layer weight shape (5, 2) not compatible with provided weight shape (2, 5)"
        ),
    ):
        Sequential([Embedding(5, 2, input_length=3, weights=[np.zeros((2, 5))])])


def test_identity_takes_only_base_arguments():
    with pytest.raises(
        UnknownArgumentError, match="Keyword argument not understood by Identity: mode"
    ):
        Identity(mode=1)
