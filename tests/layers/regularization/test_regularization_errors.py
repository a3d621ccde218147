"""Bad arguments of the noise layers raise typed errors. Keras 3 checks
``0 <= stddev, rate <= 1``; Keras 2 checks nothing, so its files load."""

import re

import numpy as np
import pytest

from layerserve.errors import ConfigError, UnknownArgumentError
from layerserve.layers import AlphaDropout, GaussianDropout, GaussianNoise
from layerserve.serialization import keras_semantics


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: GaussianNoise(1.5),
            "Expected a float value between 0 and 1. Received: stddev=1.5",
        ),
        (lambda: GaussianNoise(-0.1), "Received: stddev=-0.1"),
        (
            lambda: GaussianDropout(1.2),
            "Invalid value received for argument `rate`. Expected a float value between 0 "
            "and 1. Received: rate=1.2",
        ),
        (lambda: AlphaDropout(-0.5), "Received: rate=-0.5"),
    ],
)
def test_keras3_range_checks(build, message):
    with keras_semantics("3.15.1"), pytest.raises(ConfigError, match=re.escape(message)):
        build()


def test_keras2_accepts_any_number():
    for version in ("2.2.4", "2.21.0"):
        with keras_semantics(version):
            assert GaussianNoise(2.5).stddev == 2.5
            assert GaussianDropout(1.5).rate == 1.5 and AlphaDropout(-0.1).rate == -0.1


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: GaussianNoise("0.1"),
            ConfigError,
            "Expected `stddev` to be a number. Received: stddev='0.1'",
        ),
        (
            lambda: GaussianDropout(True),
            ConfigError,
            "Expected `rate` to be a number. Received: rate=True",
        ),
        (
            lambda: GaussianNoise(0.1, seed="a"),
            ConfigError,
            "Expected `seed` to be an integer or None. Received: seed='a'",
        ),
        (
            lambda: AlphaDropout(0.1, noise_shape=[0, 2]),
            ConfigError,
            "Received: noise_shape=[0, 2]",
        ),
        (lambda: AlphaDropout(0.1, noise_shape="all"), ConfigError, "Received: noise_shape='all'"),
        (
            lambda: GaussianNoise(stddev=0.1, sigma=0.2),
            UnknownArgumentError,
            "both the legacy keyword argument `sigma` and the Keras 2 keyword argument",
        ),
    ],
)
def test_bad_arguments(build, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build()


def test_training_errors():
    with pytest.raises(
        ConfigError, match=re.escape("does not broadcast to the input shape (2, 3)")
    ):
        AlphaDropout(0.5, noise_shape=(2, 2), name="a")(np.ones((2, 3), "float32"), training=True)
    with keras_semantics("3.15.1"):
        layer = GaussianDropout(1.0, name="g")
    np.testing.assert_array_equal(layer(np.ones(2, "float32")), np.ones(2))  # inference: fine
    with pytest.raises(
        ConfigError, match=re.escape("Layer g: training with rate=1 divides by zero in Keras 3")
    ):
        layer(np.ones(2, "float32"), training=True)
