"""GaussianNoise, GaussianDropout and AlphaDropout: the identity at inference with masks
passed through; while training, the noise Keras adds, checked against hand formulas
(the same seeded draws) and statistical properties."""

import math

import numpy as np
import pytest

from layerserve.layers import AlphaDropout, GaussianDropout, GaussianNoise, Input, Masking
from layerserve.models import Model
from layerserve.serialization import keras_semantics

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
LAYERS = {
    "gaussian_noise": lambda: GaussianNoise(0.7, seed=1),
    "gaussian_dropout": lambda: GaussianDropout(0.4, seed=2),
    "alpha_dropout": lambda: AlphaDropout(0.3, noise_shape=(None, 1, 3), seed=3),
}


@pytest.mark.parametrize("version", ["2.2.4", "2.21.0", "3.15.1"])
@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_identity_at_inference_with_masks(make, version):
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype("float32")
    x[:, 2] = 0
    with keras_semantics(version):
        inputs = Input((5, 3))
        layer = make()
        model = Model(inputs, layer(Masking()(inputs)))
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    np.testing.assert_array_equal(model.compute_mask(x), np.any(x != 0, axis=-1))
    assert layer.compute_output_shape((None, 5, 3)) == (None, 5, 3)
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_gaussian_noise_training_adds_seeded_normal_noise():
    x = np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4)
    expected = x + 0.7 * np.random.default_rng(5).standard_normal((3, 4))
    out = GaussianNoise(0.7, seed=5)(x, training=True)
    np.testing.assert_allclose(out, expected.astype("float32"), rtol=1e-6)
    assert out.dtype == np.float32
    big = GaussianNoise(0.5)(np.zeros((400, 500), "float32"), training=True)
    assert abs(big.mean()) < 0.005 and abs(big.std() - 0.5) < 0.005


def test_keras2_gaussian_noise_allows_stddev_above_one_and_negative():
    noise = GaussianNoise(2.5, seed=0)(np.zeros((300, 300), "float32"), training=True)
    assert abs(noise.std() - 2.5) < 0.03
    flipped = GaussianNoise(-1.0, seed=4)(np.zeros(5, "float32"), training=True)
    np.testing.assert_allclose(flipped, -np.random.default_rng(4).standard_normal(5), rtol=1e-6)


def test_gaussian_dropout_training_multiplies_by_one_centred_noise():
    x = np.full((300, 400), 2.0, dtype="float32")
    out = GaussianDropout(0.2, seed=6)(x, training=True)
    stddev = math.sqrt(0.2 / 0.8)
    expected = x * (1 + stddev * np.random.default_rng(6).standard_normal(x.shape))
    np.testing.assert_allclose(out, expected.astype("float32"), rtol=1e-6)
    assert abs(out.mean() - 2.0) < 0.01 and abs(out.std() - 2.0 * stddev) < 0.01


def test_alpha_dropout_training_formula_and_noise_shape():
    x = np.random.default_rng(7).standard_normal((6, 5, 3)).astype("float32")
    rate = 0.3
    out = AlphaDropout(rate, noise_shape=(None, 1, 3), seed=8)(x, training=True)
    keep = np.random.default_rng(8).random((6, 1, 3)) >= rate
    alpha_p = -SELU_ALPHA * SELU_SCALE
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    b = -a * alpha_p * rate
    expected = np.where(keep, a * x + b, a * alpha_p + b)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    dropped = ~keep[:, 0, :]  # one keep decision per sample and feature, for every step
    assert np.allclose(out[:, :, :][np.broadcast_to(~keep, out.shape)], a * alpha_p + b)
    assert dropped.any() and (~dropped).any()


def test_alpha_dropout_keeps_selu_moments():
    x = np.random.default_rng(9).standard_normal((600, 500)).astype("float32")
    out = AlphaDropout(0.2, seed=10)(x, training=True)
    assert abs(out.mean()) < 0.01 and abs(out.std() - 1.0) < 0.01


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5])
def test_keras2_training_adds_no_noise_outside_zero_one(rate):
    x = np.ones((2, 3), "float32")
    for layer in (GaussianDropout(rate), AlphaDropout(rate)):
        np.testing.assert_array_equal(layer(x, training=True), x)


def test_keras3_rate_zero_adds_no_noise_and_stddev_zero_neither():
    x = np.ones((2, 3), "float32")
    with keras_semantics("3.15.1"):
        layers = [GaussianDropout(0.0), AlphaDropout(0.0), GaussianNoise(0.0)]
    for layer in layers:
        np.testing.assert_array_equal(layer(x, training=True), x)


def test_keras2_gaussian_noise_with_stddev_zero_still_draws():
    """Keras 2 adds ``N(0, 0)`` noise: zeros, so the input is unchanged."""
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(GaussianNoise(0.0)(x, training=True), x)


def test_configs_keep_every_argument():
    assert GaussianNoise(0.5, seed=3).get_config()["seed"] == 3
    config = AlphaDropout(0.1, noise_shape=[None, 1], seed=2).get_config()
    assert (config["rate"], config["noise_shape"], config["seed"]) == (0.1, [None, 1], 2)
    assert GaussianDropout(0.25).get_config()["rate"] == 0.25
