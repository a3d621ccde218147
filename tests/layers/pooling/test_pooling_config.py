"""Pooling arguments: configs, defaults per Keras version, aliases, Keras 2.2 documents,
masks per version, and the typed errors."""

import json
import warnings

import numpy as np
import pytest

import layerserve.layers as L
from layerserve import backend as K
from layerserve.errors import (
    ConfigError,
    DTypeError,
    MaskingNotSupportedError,
    NotSupportedError,
    ShapeError,
    UnknownArgumentError,
)
from layerserve.models import Sequential, model_from_json
from layerserve.serialization import keras_semantics

WINDOWED_1D = (L.MaxPooling1D, L.AveragePooling1D)
GLOBAL_1D = (L.GlobalMaxPooling1D, L.GlobalAveragePooling1D)
WINDOWED_ND = (L.MaxPooling2D, L.AveragePooling2D, L.MaxPooling3D, L.AveragePooling3D)
GLOBAL_ND = (
    L.GlobalMaxPooling2D,
    L.GlobalAveragePooling2D,
    L.GlobalMaxPooling3D,
    L.GlobalAveragePooling3D,
)
ALL = WINDOWED_1D + WINDOWED_ND + GLOBAL_1D + GLOBAL_ND


def rank_of(cls):
    return int(cls.__name__[-2])


# ---- configs -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", WINDOWED_1D + WINDOWED_ND, ids=lambda c: c.__name__)
def test_windowed_config_round_trips(cls):
    rank = rank_of(cls)
    layer = cls(
        pool_size=(3, 2, 4)[:rank],
        strides=(2, 1, 3)[:rank],
        padding="SAME",
        data_format="channels_first",
        name="pool",
    )
    config = layer.get_config()
    assert {k: config[k] for k in ("pool_size", "strides", "padding", "data_format")} == {
        "pool_size": [3, 2, 4][:rank],
        "strides": [2, 1, 3][:rank],
        "padding": "same",
        "data_format": "channels_first",
    }
    assert cls.from_config(config).get_config() == config


@pytest.mark.parametrize("cls", WINDOWED_1D + WINDOWED_ND, ids=lambda c: c.__name__)
def test_strides_default_to_the_pool_size(cls):
    rank = rank_of(cls)
    config = cls(pool_size=3).get_config()
    assert config["pool_size"] == config["strides"] == [3] * rank
    default = cls().get_config()
    assert default["pool_size"] == default["strides"] == [2] * rank
    assert default["padding"] == "valid"


@pytest.mark.parametrize("cls", GLOBAL_1D + GLOBAL_ND, ids=lambda c: c.__name__)
def test_global_config_round_trips(cls):
    layer = cls(data_format="channels_first", keepdims=True, name="g")
    config = layer.get_config()
    assert (config["data_format"], config["keepdims"]) == ("channels_first", True)
    assert cls.from_config(config).get_config() == config
    assert cls().get_config()["keepdims"] is False


@pytest.mark.parametrize("version", ["2.2.4", "2.15.0"])
@pytest.mark.parametrize("cls", WINDOWED_1D + GLOBAL_1D, ids=lambda c: c.__name__)
def test_keras2_1d_pools_default_to_channels_last(cls, version):
    K.set_image_data_format("channels_first")
    with keras_semantics(version):
        assert cls().data_format == "channels_last"
        assert cls(data_format=None).data_format == "channels_first"


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_keras3_pools_and_keras2_2d_3d_pools_follow_the_global_format(cls):
    K.set_image_data_format("channels_first")
    with keras_semantics("3.15.1"):
        assert cls().data_format == "channels_first"
    if rank_of(cls) > 1:
        with keras_semantics("2.2.4"):
            assert cls().data_format == "channels_first"


# ---- files and aliases ----------------------------------------------------------------------


def keras224_sequential(*layers):
    return json.dumps(
        {
            "class_name": "Sequential",
            "config": {"name": "sequential_1", "layers": list(layers)},
            "keras_version": "2.2.4",
            "backend": "tensorflow",
        }
    )


def entry(class_name, **config):
    return {"class_name": class_name, "config": {"name": class_name.lower(), **config}}


@pytest.mark.parametrize(
    ("pool_size", "strides"), [([3], [2]), (3, 2), ([3], 2)], ids=["lists", "ints", "mixed"]
)
def test_keras224_1d_pool_configs_load(pool_size, strides):
    document = keras224_sequential(
        entry(
            "MaxPooling1D",
            trainable=True,
            batch_input_shape=[None, 7, 2],
            dtype="float32",
            strides=strides,
            pool_size=pool_size,
            padding="same",
            data_format="channels_last",
        ),
        entry("GlobalAveragePooling1D", trainable=True, data_format="channels_last"),
    )
    model = model_from_json(document)
    x = np.arange(14, dtype="float32").reshape(1, 7, 2)
    # SAME, pool 3, stride 2 on 7 steps: windows [0,1], [1,2,3], [3,4,5], [5,6].
    pooled = np.array([[2, 3], [6, 7], [10, 11], [12, 13]], dtype="float32")
    np.testing.assert_allclose(model.predict(x), pooled.mean(axis=0, keepdims=True))


def test_keras220_configs_without_data_format_load_as_channels_last():
    """Keras 2.2.0-2.2.2 wrote no data_format for the 1D pools (always channels_last)."""
    K.set_image_data_format("channels_first")
    document = keras224_sequential(
        entry(
            "AveragePooling1D",
            trainable=True,
            batch_input_shape=[None, 4, 3],
            strides=[2],
            pool_size=[2],
            padding="valid",
        ),
        entry("GlobalMaxPooling1D", trainable=True),
    )
    model = model_from_json(document.replace('"2.2.4"', '"2.2.0"'))
    assert [layer.data_format for layer in model.layers] == ["channels_last"] * 2
    x = np.arange(12, dtype="float32").reshape(1, 4, 3)
    np.testing.assert_allclose(model.predict(x), [[7.5, 8.5, 9.5]])


@pytest.mark.parametrize("alias", sorted(L.pooling.ALIASES))
def test_aliases_load_as_their_layer(alias):
    target = L.pooling.ALIASES[alias]
    rank = int(alias[-2])
    global_pool = alias.startswith("Global")
    shape = [None, *(4,) * rank, 2]
    document = keras224_sequential(entry(alias, trainable=True, batch_input_shape=shape))
    model = model_from_json(document)
    assert type(model.layers[0]).__name__ == target
    x = np.random.default_rng(rank).normal(size=(2, *(4,) * rank, 2)).astype("float32")
    direct = getattr(L, target)()
    np.testing.assert_allclose(model.predict(x), direct(x))
    assert model.output_shape == ((None, 2) if global_pool else (None, *(2,) * rank, 2))


# ---- masks per Keras version -----------------------------------------------------------------

MASK_DROPPERS = [
    lambda: L.MaxPooling1D(2),
    lambda: L.AveragePooling1D(2, padding="same"),
    lambda: L.GlobalMaxPooling1D(),
]


@pytest.mark.parametrize("make", MASK_DROPPERS, ids=["max1d", "average1d", "globalmax1d"])
def test_keras22_pools_refuse_a_mask(make):
    with keras_semantics("2.2.4"), pytest.raises(MaskingNotSupportedError, match="masking"):
        Sequential([L.Masking(input_shape=(6, 3)), make()])


@pytest.mark.parametrize("make", MASK_DROPPERS, ids=["max1d", "average1d", "globalmax1d"])
def test_tf_keras_pools_drop_a_mask_silently(make):
    with keras_semantics("2.15.0"), warnings.catch_warnings():
        warnings.simplefilter("error")
        model = Sequential([L.Masking(input_shape=(6, 3)), make()])
    assert model.outputs[0].mask is None
    assert model.compute_mask(np.ones((1, 6, 3), "float32")) is None


@pytest.mark.parametrize("make", MASK_DROPPERS, ids=["max1d", "average1d", "globalmax1d"])
def test_keras3_pools_warn_and_drop_a_mask(make):
    with keras_semantics("3.15.1"), pytest.warns(UserWarning, match="does not support masking"):
        model = Sequential([L.Masking(input_shape=(6, 3)), make()])
    assert model.outputs[0].mask is None


def test_global_average_1d_takes_masks_from_keras_2_2_3():
    x = np.array([[[1.0], [0.0], [3.0]]], dtype="float32")
    with keras_semantics("2.2.2"), pytest.raises(MaskingNotSupportedError):
        Sequential([L.Masking(input_shape=(3, 1)), L.GlobalAveragePooling1D()])
    with keras_semantics("2.2.3"):
        model = Sequential([L.Masking(input_shape=(3, 1)), L.GlobalAveragePooling1D()])
    assert model.outputs[0].mask is None
    np.testing.assert_allclose(model.predict(x), [[2.0]])


def test_keras_2_2_channels_first_mask_is_refused():
    with keras_semantics("2.2.4"):
        layer = L.GlobalAveragePooling1D(data_format="channels_first")
        with pytest.raises(NotSupportedError, match="channels_first"):
            Sequential([L.Masking(input_shape=(4, 4)), layer])
    x = np.ones((1, 4, 4), "float32")
    with pytest.raises(NotSupportedError, match="not a masked mean"):
        layer(x, mask=np.ones((1, 4), bool))


# ---- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", WINDOWED_1D + WINDOWED_ND, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2", [2] * 4])
def test_bad_pool_size(cls, bad):
    with pytest.raises(
        ConfigError,
        match=rf"The `pool_size` argument must be a tuple of {rank_of(cls)} .*Received: pool_size=",
    ):
        cls(pool_size=bad)


@pytest.mark.parametrize("bad", [0, -2, (1, 0), 1.5])
def test_bad_strides(bad):
    with pytest.raises(
        ConfigError, match=r"The `strides` argument must be a tuple of 2 .*Received: strides="
    ):
        L.MaxPooling2D(2, strides=bad)


@pytest.mark.parametrize("cls", WINDOWED_1D + WINDOWED_ND, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", ["causal", "full", None, 1])
def test_bad_padding(cls, bad):
    with pytest.raises(ConfigError, match=r"must be 'valid' or 'same'\. Received: padding="):
        cls(padding=bad)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_bad_data_format(cls):
    with pytest.raises(ConfigError, match="Received: data_format='NHWC'"):
        cls(data_format="NHWC")


@pytest.mark.parametrize("cls", GLOBAL_1D + GLOBAL_ND, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_bad_keepdims(cls, bad):
    with pytest.raises(
        ConfigError, match="Expected `keepdims` to be a boolean. Received: keepdims="
    ):
        cls(keepdims=bad)


@pytest.mark.parametrize("keyword", ["pool_length", "keepdims"])
def test_unknown_keywords_are_refused(keyword):
    with pytest.raises(UnknownArgumentError, match=keyword):
        L.MaxPooling2D(**{keyword: 2})


@pytest.mark.parametrize("keyword", ["border_mode", "dim_ordering"])
def test_keras1_keywords_are_refused_outside_keras_2_2(keyword):
    """Keras 2.2 converts them (tests/layers/test_legacy_interfaces.py); tf.keras refuses."""
    with keras_semantics("2.15.0"), pytest.raises(UnknownArgumentError, match=keyword):
        L.MaxPooling2D(**{keyword: "same"})


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_wrong_rank_is_refused(cls):
    rank = rank_of(cls) + 2
    with pytest.raises(ShapeError, match=f"expected ndim={rank}, found ndim={rank + 1}"):
        cls()(np.zeros((1,) * (rank + 1), "float32"))


def test_valid_window_larger_than_the_input():
    with pytest.raises(ShapeError, match=r"zero or negative.*input_shape=\(None, 2, 5, 3\)"):
        Sequential([L.MaxPooling2D(3, input_shape=(2, 5, 3))])
    with pytest.raises(ShapeError, match="zero or negative"):
        L.AveragePooling1D(4)(np.zeros((1, 3, 2), "float32"))  # at run time


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_integer_input_is_refused(cls):
    x = np.ones((1, *(4,) * rank_of(cls), 2), "int32")
    with pytest.raises(DTypeError, match="expects floating-point input. Received: dtype='int32'"):
        cls()(x)


@pytest.mark.parametrize("cls", GLOBAL_1D + GLOBAL_ND, ids=lambda c: c.__name__)
def test_global_pool_over_a_static_empty_axis(cls):
    shape = (None, *(3,) * (rank_of(cls) - 1), 0, 2)
    with pytest.raises(ShapeError, match="with dimension 0 at reduction axis"):
        Sequential([cls(input_shape=shape[1:])])


def test_mask_must_match_the_steps():
    layer = L.GlobalAveragePooling1D()
    with pytest.raises(ShapeError, match=r"mask of shape \(batch, steps\).*mask.shape=\(1, 4\)"):
        layer(np.ones((1, 3, 2), "float32"), mask=np.ones((1, 4), bool))
    with keras_semantics("3.15.1"):
        layer = L.GlobalAveragePooling1D(data_format="channels_first")
    with pytest.raises(ShapeError, match="mask of shape"):
        layer(np.ones((1, 3, 2), "float32"), mask=np.ones((1, 3), bool))
