"""Bad arguments and bad inputs of the preprocessing layers raise typed errors with
Keras's wording (or "Expected ... Received: arg=value"); what has no exact ONNX form is
refused with NotSupportedError naming the layer, the argument and its value."""

import re

import numpy as np
import pytest

from layerserve.errors import ConfigError, NotSupportedError, ShapeError
from layerserve.layers import (
    CenterCrop,
    Input,
    Normalization,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomZoom,
    Rescaling,
    Resizing,
)
from layerserve.models import Model
from layerserve.serialization import keras_semantics

KERAS3 = "3.15.1"


def on_input(layer, shape, dtype="float32", version="2.21.0"):
    with keras_semantics(version):
        x = Input(shape, dtype=dtype)
        return Model(x, layer()(x))


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: Rescaling("a"),
            ConfigError,
            "Expected `scale` to be a number or an array of numbers. Received: scale='a'",
        ),
        (lambda: Rescaling(None), ConfigError, "Received: scale=None"),
        (lambda: Rescaling(1.0, offset=[1, [2]]), ConfigError, "Received: offset=[1, [2]]"),
        (lambda: Rescaling(True), ConfigError, "Received: scale=True"),
        (
            lambda: Normalization(mean=1.0),
            ConfigError,
            "both `mean` and `variance` must be set. Received: mean=1.0 and variance=None",
        ),
        (
            lambda: Normalization(axis="a"),
            ConfigError,
            "Expected `axis` to be an integer, a list of integers or None. Received: axis='a'",
        ),
        (
            lambda: Normalization(invert="yes"),
            ConfigError,
            "Expected `invert` to be a boolean. Received: invert='yes'",
        ),
        (lambda: Normalization(mean="a", variance=1.0), ConfigError, "Received: mean='a'"),
        (
            lambda: CenterCrop(0, 2),
            ConfigError,
            "Expected `height` to be a positive integer. Received: height=0",
        ),
        (lambda: CenterCrop(2, 2.5), ConfigError, "Received: width=2.5"),
        (lambda: CenterCrop(2, 2, data_format="nchw"), ConfigError, "Received: data_format='nchw'"),
        (
            lambda: Resizing(2, 2, interpolation="cubic"),
            ConfigError,
            "Invalid value for argument `interpolation`. Expected one of",
        ),
        (
            lambda: Resizing(2, 2, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True),
            ConfigError,
            "Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be `True`.",
        ),
        (
            lambda: Resizing(2, 2, fill_mode="reflect"),
            ConfigError,
            "Only `'constant'` is supported. Received: fill_mode='reflect'",
        ),
        (
            lambda: Resizing(2, 2, antialias="yes"),
            ConfigError,
            "Expected `antialias` to be a boolean. Received: antialias='yes'",
        ),
        (
            lambda: Resizing(2, 2, fill_value="x"),
            ConfigError,
            "Expected `fill_value` to be a number. Received: fill_value='x'",
        ),
        (
            lambda: RandomFlip("diagonal"),
            ConfigError,
            "Expected `mode` to be one of ('horizontal', 'vertical', "
            "'horizontal_and_vertical'). Received: mode='diagonal'",
        ),
        (
            lambda: RandomRotation([0.1, 0.2, 0.3]),
            ConfigError,
            "Expected `factor` to be a number or a list of two numbers. "
            "Received: factor=[0.1, 0.2, 0.3]",
        ),
        (
            lambda: RandomRotation(0.1, fill_mode="mirror"),
            ConfigError,
            "Received: fill_mode='mirror'",
        ),
        (
            lambda: RandomZoom(0.1, interpolation="bicubic"),
            ConfigError,
            "Received: interpolation='bicubic'",
        ),
        (
            lambda: RandomContrast(0.1, value_range=[1, 0]),
            ConfigError,
            "Expected `value_range` to be a list of two increasing numbers. "
            "Received: value_range=[1, 0]",
        ),
        (lambda: RandomFlip(rng_type="quantum"), ConfigError, "Received: rng_type='quantum'"),
        (
            lambda: RandomFlip(seed="a"),
            ConfigError,
            "Expected `seed` to be an integer or None. Received: seed='a'",
        ),
        (lambda: RandomCrop(3, -1), ConfigError, "Received: width=-1"),
    ],
)
def test_bad_arguments(build, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build()


@pytest.mark.parametrize(
    "interpolation", ["bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic"]
)
def test_inexact_interpolations_are_refused(interpolation):
    message = f"Resizing shrink: {interpolation} interpolation has no exact ONNX form"
    with pytest.raises(NotSupportedError, match=re.escape(message)) as raised:
        Resizing(2, 2, interpolation=interpolation, name="shrink")
    assert f"Received: interpolation='{interpolation}'" in str(raised.value)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: on_input(lambda: Rescaling([1.0, 2.0, 3.0, 4.0], name="r"), (2, 3)),
            ShapeError,
            "Rescaling r: a scale or offset of shape (4,) does not broadcast to the input shape "
            "(None, 2, 3) without changing it.",
        ),
        (
            lambda: on_input(lambda: Rescaling(np.ones((2, 1, 3)), name="r"), (3,)),
            ShapeError,
            "a scale or offset of shape (2, 1, 3) does not broadcast",
        ),
        (
            lambda: on_input(lambda: Normalization(axis=3), (2, 3)),
            ShapeError,
            "all `axis` values must be in the range [-ndim, ndim). Received inputs with ndim=3, "
            "while axis=(3,)",
        ),
        (
            lambda: on_input(lambda: Normalization(axis=1), (None, 3)),
            ShapeError,
            "all `axis` values to be kept must have a known shape. Received axis=(1,), "
            "inputs.shape=(None, None, 3), with unknown axis at index 1",
        ),
        (
            lambda: on_input(lambda: Normalization(mean=[1.0, 2.0, 3.0], variance=1.0), (2,)),
            ShapeError,
            "`mean` and `variance` of shape (3,) do not broadcast to the kept axes (2,)",
        ),
        (
            lambda: on_input(
                lambda: Normalization(mean=[1.0, 2.0], variance=1.0), (2,), version=KERAS3
            ),
            ConfigError,
            "`mean` and `variance` must have the same shape. Received: mean shape (2,) and "
            "variance shape ()",
        ),
        (
            lambda: on_input(
                lambda: Normalization(mean=[[1.0]], variance=[[1.0]]), (2,), version=KERAS3
            ),
            ConfigError,
            "The rank of `mean` must be less than or equal to the number of axes (1).",
        ),
        (
            lambda: on_input(lambda: CenterCrop(2, 2, name="c"), (4, 4)),
            ShapeError,
            "Input 0 is incompatible with layer c: expected ndim=4, found ndim=3.",
        ),
        (
            lambda: on_input(
                lambda: Resizing(3, 2, antialias=True, name="a"), (5, 6, 1), version=KERAS3
            ),
            NotSupportedError,
            "Resizing a: antialiased bilinear downscaling (5x6 to 3x2) has no exact ONNX form. "
            "Received: antialias=True",
        ),
        (
            lambda: on_input(
                lambda: Resizing(23, 2, "nearest", name="n"), (14, 3, 1), version=KERAS3
            ),
            NotSupportedError,
            "Resizing n: nearest-neighbour resizing from 14 to 23 pixels gives different pixels "
            "on Keras 3's TensorFlow backend",
        ),
        (
            lambda: on_input(lambda: Resizing(3, 2, name="u"), (5, 6, 1), "uint8", version=KERAS3),
            NotSupportedError,
            "Resizing u: Keras 3 rounds bilinear results back to the integer input dtype uint8",
        ),
    ],
)
def test_bad_inputs_and_refusals_at_model_build(build, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build()


def test_training_augmentation_is_refused():
    with pytest.raises(
        NotSupportedError, match=r"RandomFlip f: random augmentation while training"
    ):
        RandomFlip(name="f")(np.ones((1, 2, 2, 1), "float32"), training=True)
