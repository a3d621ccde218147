"""Reshapes to shapes computed at run time keep an empty size: TimeDistributed flattens
(batch, steps) into rows and back, MultiHeadAttention over several axes flattens them, and
UpSampling with unknown sizes multiplies its input's shape. With a plain Reshape a 0 in
the computed shape copied the input's size at that index, so an empty batch of empty
sequences came back (0, 2, 2) where the layer gives (0, 0, 2), or failed. Every
combination of empty and non-empty sizes must give the reference's shape and numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from layerserve.export import to_onnx
from layerserve.export.opsets import max_runtime_opset
from layerserve.export.parity import session
from layerserve.layers import (
    Dense,
    GlobalAveragePooling1D,
    Input,
    MultiHeadAttention,
    TimeDistributed,
    UpSampling2D,
)
from layerserve.models import Model

FEATURES = 4


def time_distributed_dense() -> Model:
    x = Input((None, FEATURES))
    return Model(x, TimeDistributed(Dense(2))(x))


def time_distributed_pooling() -> Model:
    x = Input((None, None, FEATURES))
    return Model(x, TimeDistributed(GlobalAveragePooling1D())(x))


def attention_over_two_axes() -> Model:
    x = Input((None, None, FEATURES))
    return Model(x, MultiHeadAttention(2, 3, attention_axes=(1, 2))(x, x))


def upsampling() -> Model:
    x = Input((None, None, FEATURES))
    return Model(x, UpSampling2D((2, 3))(x))


MODELS = {
    "time_distributed_dense": (time_distributed_dense, 2),
    "time_distributed_pooling": (time_distributed_pooling, 3),
    "attention_over_two_axes": (attention_over_two_axes, 3),
    "upsampling": (upsampling, 3),
}


@pytest.mark.parametrize("name", MODELS)
def test_every_mix_of_empty_sizes_keeps_the_reference_shape(name):
    build, free_axes = MODELS[name]
    model = build()
    runner = session(to_onnx(model, opset=max_runtime_opset()))
    rng = np.random.default_rng(0)
    for sizes in itertools.product((0, 1, 3), repeat=free_axes):
        x = rng.normal(size=(*sizes, FEATURES)).astype(np.float32)
        (got,) = runner.run(None, {runner.get_inputs()[0].name: x})
        expected = np.asarray(model.predict(x))
        assert got.shape == expected.shape, (sizes, got.shape, expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=str(sizes))
