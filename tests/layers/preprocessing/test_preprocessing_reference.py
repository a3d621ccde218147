"""Rescaling, Normalization and the random augmentation layers against hand formulas:
``x * scale + offset`` (with Keras 3's channels_first trap), ``(x - mean) /
max(sqrt(var), eps)``, the identity at inference with Keras's casts; output shapes,
masks and config round trips."""

import numpy as np
import pytest

from layerserve import backend as K
from layerserve.layers import (
    Input,
    Masking,
    Normalization,
    RandomBrightness,
    RandomContrast,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Rescaling,
)
from layerserve.models import Model
from layerserve.serialization import keras_semantics

KERAS2, TF_KERAS, KERAS3 = "2.2.4", "2.21.0", "3.15.1"


def images(shape, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 256, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# ---- Rescaling ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32", "float64"])
def test_rescaling_casts_then_scales_and_offsets(dtype):
    x = images((2, 3, 4, 3), dtype)
    out = Rescaling(1 / 255.0, offset=-0.5)(x)
    expected = x.astype("float32") * np.float32(1 / 255.0) + np.float32(-0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_rescaling_per_channel_arrays_and_keras3_serialized_arrays():
    x = images((2, 3, 4, 3))
    scale = {"class_name": "__numpy__", "config": {"value": [0.5, 2.0, -1.0], "dtype": "float32"}}
    with keras_semantics(KERAS3):
        layer = Rescaling(scale, offset=(1.0, 0.0, 2.0))
    expected = x * np.array([0.5, 2.0, -1.0], "float32") + np.array([1.0, 0.0, 2.0], "float32")
    np.testing.assert_array_equal(layer(x), expected)
    assert layer.get_config()["scale"] == [0.5, 2.0, -1.0]
    assert layer.get_config()["offset"] == [1.0, 0.0, 2.0]
    assert Rescaling.from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize("version", [TF_KERAS, KERAS3])
def test_rescaling_channels_first_trap_follows_keras3_only(version):
    """With a global channels_first setting Keras 3 reshapes an array scale to (C, 1, 1)
    (the offset stays as it is); tf.keras broadcasts it over the last axis."""
    x = images((2, 3, 4, 3))
    scale, offset = np.array([1.0, 10.0, 100.0], "float32"), np.array([0.0, 1.0, 2.0], "float32")
    K.set_image_data_format("channels_first")
    with keras_semantics(version):
        layer = Rescaling(scale, offset=offset)
    K.set_image_data_format("channels_last")
    out = layer(x)
    if version == KERAS3:
        np.testing.assert_array_equal(out, x * scale[:, None, None] + offset)
    else:
        np.testing.assert_array_equal(out, x * scale + offset)


def test_rescaling_masks_per_version():
    x = images((2, 4, 3))
    x[:, 1] = 0
    for version, passes in ((TF_KERAS, False), (KERAS3, True)):
        with keras_semantics(version):
            inputs = Input((4, 3))
            model = Model(inputs, Rescaling(2.0)(Masking()(inputs)))
        mask = model.compute_mask(x)
        assert (mask is not None) == passes
        if passes:
            np.testing.assert_array_equal(mask, np.any(x != 0, axis=-1))


# ---- Normalization -----------------------------------------------------------------------
def normalized(x, mean, variance, invert=False, eps=1e-7):
    x, mean, variance = (np.asarray(a, np.float64) for a in (x, mean, variance))
    std = np.maximum(np.sqrt(variance), eps)
    return mean + x * std if invert else (x - mean) / std


@pytest.mark.parametrize("version", [TF_KERAS, KERAS3])
def test_normalization_config_statistics(version):
    x = images((5, 4, 3), "float32")
    mean, variance = [1.0, -2.0, 0.5], [4.0, 1e-16, 0.25]  # sqrt(1e-16) < eps: eps is used
    with keras_semantics(version):
        layer = Normalization(mean=mean, variance=variance)
    np.testing.assert_allclose(layer(x), normalized(x, mean, variance), rtol=1e-6)
    assert layer.weights == [] and layer(x).dtype == np.float32
    np.testing.assert_allclose(
        Normalization(mean=mean, variance=variance, invert=True)(x),
        normalized(x, mean, variance, invert=True),
        rtol=1e-6,
        atol=1e-7,
    )


def test_normalization_axes_broadcast_from_the_right():
    """Kept axes (1, 2) of a (N, 4, 3) input; a rank-1 mean spreads over the last one."""
    x = images((2, 4, 3), "int32")
    layer = Normalization(axis=(1, 2), mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])
    expected = normalized(x, [[1.0, 2.0, 3.0]], [[1.0, 4.0, 9.0]])
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)
    scalar = Normalization(axis=None, mean=2.0, variance=9.0)
    np.testing.assert_allclose(scalar(x), normalized(x, 2.0, 9.0), rtol=1e-6)
    per_step = Normalization(axis=1, mean=[0, 1, 2, 3], variance=[1, 1, 4, 4])
    expected = normalized(x, np.array([0, 1, 2, 3])[:, None], np.array([1, 1, 4, 4])[:, None])
    np.testing.assert_allclose(per_step(x), expected, rtol=1e-6)


def test_tf_keras_broadcasts_a_scalar_variance():
    x = images((2, 3))
    with keras_semantics(TF_KERAS):
        layer = Normalization(mean=[1.0, 2.0, 3.0], variance=4.0)
    np.testing.assert_allclose(layer(x), normalized(x, [1.0, 2.0, 3.0], 4.0), rtol=1e-6)


def test_normalization_adapted_weights():
    x = images((3, 4, 2))
    layer = Normalization(axis=(1, 2))
    layer.build((None, 4, 2))
    assert [v.name for v in layer.weights] == ["mean", "variance", "count"]
    assert layer.trainable_weights == [] and layer.count.value.dtype == np.int64
    mean = np.random.default_rng(1).standard_normal((4, 2)).astype("float32")
    variance = np.random.default_rng(2).uniform(0.5, 2.0, (4, 2)).astype("float32")
    layer.set_weights([mean, variance, np.int64(60)])
    np.testing.assert_allclose(layer(x), normalized(x, mean, variance), rtol=1e-6)
    assert layer.compute_output_shape((None, 4, 2)) == (None, 4, 2)


def test_normalization_epsilon_comes_from_the_settings():
    x = images((2, 3))
    K.set_epsilon(1e-2)
    try:
        out = Normalization(mean=0.0, variance=1e-6, axis=None)(x)
    finally:
        K.set_epsilon(1e-7)
    np.testing.assert_allclose(out, x / 1e-2, rtol=1e-6)


@pytest.mark.parametrize("version", [TF_KERAS, KERAS3])
def test_normalization_config_round_trip(version):
    with keras_semantics(version):
        layer = Normalization(axis=[1, -1], mean=[[1.0]], variance=[[2.0]], invert=True)
        clone = Normalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert layer.get_config()["axis"] == [1, -1]
    assert Normalization(axis=None).get_config()["axis"] == []


# ---- random augmentation ------------------------------------------------------------------
AUGMENTATIONS = {
    "flip": (lambda: RandomFlip("vertical", seed=1), False),
    "rotation": (lambda: RandomRotation((-0.1, 0.3), fill_mode="nearest"), False),
    "zoom": (lambda: RandomZoom(0.2, width_factor=0.1, interpolation="nearest"), False),
    "translation": (lambda: RandomTranslation(0.1, 0.2, fill_value=2.0), False),
    "contrast": (lambda: RandomContrast(0.4), True),
    "brightness": (lambda: RandomBrightness([-0.1, 0.3], value_range=[0, 1]), True),
}


@pytest.mark.parametrize("version", [TF_KERAS, KERAS3])
@pytest.mark.parametrize("dtype", ["uint8", "float64"])
@pytest.mark.parametrize(("make", "keeps"), AUGMENTATIONS.values(), ids=AUGMENTATIONS.keys())
def test_augmentation_is_the_identity_at_inference(make, keeps, dtype, version):
    x = images((2, 5, 4, 3), dtype)
    with keras_semantics(version):
        layer = make()
    out = layer(x)
    np.testing.assert_array_equal(out, x.astype(out.dtype))
    keeps_dtype = keeps and version == KERAS3 and dtype == "uint8"
    assert out.dtype == (np.uint8 if keeps_dtype else np.float32)
    assert layer.compute_output_shape((None, 5, 4, 3)) == (None, 5, 4, 3)
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
