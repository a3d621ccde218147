"""Arguments and configs of the convolution layers: round trips, the keys each Keras
version writes, version-dependent semantics, positional order and the Keras 2 aliases."""

import json

import numpy as np
import pytest

from layerserve import backend as K
from layerserve import constraints, initializers, regularizers
from layerserve.errors import (
    ConfigError,
    MaskingNotSupportedError,
    NotSupportedError,
)
from layerserve.layers import (
    LAYER_ALIASES,
    Conv1D,
    Conv1DTranspose,
    Conv2D,
    Conv2DTranspose,
    Conv3D,
    Conv3DTranspose,
    DepthwiseConv1D,
    DepthwiseConv2D,
    Input,
    Masking,
    SeparableConv1D,
    SeparableConv2D,
)
from layerserve.models import Sequential, model_from_json
from layerserve.serialization import keras_semantics


def options(*weights):
    """Every initializer, regularizer and constraint option of ``weights``."""
    out = {}
    for i, weight in enumerate(weights):
        out[f"{weight}_initializer"] = initializers.RandomNormal(0.0, 0.5, seed=i)
        out[f"{weight}_regularizer"] = regularizers.L1L2(l1=0.5 / (i + 1))
        out[f"{weight}_constraint"] = constraints.MaxNorm(2.0 + i)
    return out


COMMON = {
    "padding": "same",
    "data_format": "channels_first",
    "activation": "elu",
    "use_bias": True,
    "activity_regularizer": regularizers.L1L2(l2=0.25),
    "name": "conv",
    "trainable": False,
    "dtype": "float64",
}

FULL = [
    pytest.param(
        Conv1D,
        dict(filters=4, kernel_size=3, dilation_rate=2, groups=2, **options("kernel", "bias")),
        id="Conv1D",
    ),
    pytest.param(
        Conv2D,
        dict(filters=4, kernel_size=(2, 3), strides=(2, 1), groups=4, **options("kernel", "bias")),
        id="Conv2D",
    ),
    pytest.param(
        Conv3D,
        dict(filters=2, kernel_size=2, dilation_rate=(1, 2, 1), **options("kernel", "bias")),
        id="Conv3D",
    ),
    pytest.param(
        SeparableConv1D,
        dict(
            filters=3,
            kernel_size=3,
            depth_multiplier=2,
            strides=2,
            **options("depthwise", "pointwise", "bias"),
        ),
        id="SeparableConv1D",
    ),
    pytest.param(
        SeparableConv2D,
        dict(
            filters=3,
            kernel_size=2,
            depth_multiplier=3,
            dilation_rate=2,
            **options("depthwise", "pointwise", "bias"),
        ),
        id="SeparableConv2D",
    ),
    pytest.param(
        DepthwiseConv1D,
        dict(kernel_size=3, depth_multiplier=2, dilation_rate=2, **options("depthwise", "bias")),
        id="DepthwiseConv1D",
    ),
    pytest.param(
        DepthwiseConv2D,
        dict(kernel_size=(3, 2), depth_multiplier=2, strides=2, **options("depthwise", "bias")),
        id="DepthwiseConv2D",
    ),
    pytest.param(
        Conv1DTranspose,
        dict(filters=2, kernel_size=3, strides=2, output_padding=1, **options("kernel", "bias")),
        id="Conv1DTranspose",
    ),
    pytest.param(
        Conv2DTranspose,
        dict(filters=2, kernel_size=3, dilation_rate=(2, 1), **options("kernel", "bias")),
        id="Conv2DTranspose",
    ),
    pytest.param(
        Conv3DTranspose,
        dict(
            filters=2,
            kernel_size=2,
            strides=(2, 1, 2),
            output_padding=(1, 0, 0),
            **options("kernel", "bias"),
        ),
        id="Conv3DTranspose",
    ),
]


@pytest.mark.parametrize(("cls", "kwargs"), FULL)
def test_every_argument_survives_get_config_and_from_config(rng, cls, kwargs):
    layer = cls(**COMMON, **kwargs)
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = cls.from_config(config)
    assert clone.get_config() == config
    # And the clone computes the same numbers with the same weights.
    rank = layer.rank
    x = rng.normal(size=(2, 4, *(7,) * rank)).astype("float64")
    layer.build(x.shape)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))
    assert layer(x).dtype == np.float64


KERAS2_KEYS = {"name", "trainable", "activation", "use_bias", "activity_regularizer"}
LAYOUT = {"kernel_size", "strides", "padding", "data_format", "dilation_rate"}


def _options_keys(*weights):
    return {f"{w}_{kind}" for w in weights for kind in ("initializer", "regularizer", "constraint")}


@pytest.mark.parametrize(
    ("layer", "keys"),
    [
        (Conv2D(2, 3), {"filters"} | _options_keys("kernel", "bias")),
        (
            SeparableConv2D(2, 3),
            {"filters", "depth_multiplier"} | _options_keys("depthwise", "pointwise", "bias"),
        ),
        (DepthwiseConv2D(3), {"depth_multiplier"} | _options_keys("depthwise", "bias")),
        (Conv2DTranspose(2, 3), {"filters", "output_padding"} | _options_keys("kernel", "bias")),
    ],
    ids=["Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose"],
)
def test_config_keys_are_the_keras_2_ones(layer, keys):
    assert set(layer.get_config()) == KERAS2_KEYS | LAYOUT | keys


def test_groups_is_written_only_when_used():
    assert "groups" not in Conv1D(2, 3).get_config()
    assert Conv1D(4, 3, groups=2).get_config()["groups"] == 2


# ---- configs other Keras versions write ---------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [SeparableConv1D, SeparableConv2D, DepthwiseConv1D, DepthwiseConv2D, Conv1DTranspose]
)
def test_tf_keras_groups_key_loads_when_1_and_is_refused_otherwise(cls):
    args = {} if "Depthwise" in cls.__name__ else {"filters": 2}
    with keras_semantics("2.21.0"):
        layer = cls.from_config({"kernel_size": 3, "groups": 1, **args})
        assert "groups" not in layer.get_config()
        with pytest.raises(NotSupportedError, match="groups") as info:
            cls.from_config({"kernel_size": 3, "groups": 2, **args})
    assert "Received: groups=2" in str(info.value)


def test_tf_keras_separable_kernel_options_are_kept_unused(rng):
    config = {
        "filters": 2,
        "kernel_size": 2,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "kernel_regularizer": None,
        "kernel_constraint": None,
        "groups": 1,
    }
    with keras_semantics("2.21.0"):
        layer = SeparableConv2D.from_config(config)
    assert layer.get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert "kernel_regularizer" not in layer.get_config()
    assert SeparableConv2D.from_config(layer.get_config()).get_config() == layer.get_config()
    assert [w.name for w in layer.weights] == []
    layer(rng.normal(size=(1, 4, 4, 3)).astype("float32"))
    assert [w.name for w in layer.weights] == ["depthwise_kernel", "pointwise_kernel", "bias"]


@pytest.mark.parametrize(
    ("alias", "cls"),
    [
        ("Convolution1D", Conv1D),
        ("Convolution2D", Conv2D),
        ("Convolution3D", Conv3D),
        ("SeparableConvolution1D", SeparableConv1D),
        ("SeparableConvolution2D", SeparableConv2D),
        ("Convolution1DTranspose", Conv1DTranspose),
        ("Convolution2DTranspose", Conv2DTranspose),
        ("Deconvolution2D", Conv2DTranspose),
        ("Deconv2D", Conv2DTranspose),
        ("Convolution3DTranspose", Conv3DTranspose),
        ("Deconvolution3D", Conv3DTranspose),
        ("Deconv3D", Conv3DTranspose),
    ],
)
def test_keras2_aliases_load_as_the_layer(alias, cls):
    assert LAYER_ALIASES[alias] == cls.__name__
    rank = 1 if "1D" in alias else 3 if "3D" in alias else 2
    document = {
        "class_name": "Sequential",
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "config": {
            "name": "s",
            "layers": [
                {
                    "class_name": alias,
                    "config": {
                        "name": "c",
                        "filters": 2,
                        "kernel_size": [2] * rank,
                        "batch_input_shape": [None, *([4] * rank), 3],
                    },
                }
            ],
        },
    }
    model = model_from_json(json.dumps(document))
    assert type(model.layers[0]) is cls


# ---- semantics that follow the Keras version ----------------------------------------------------


def test_conv1d_default_data_format_is_channels_last_in_keras2_only():
    K.set_image_data_format("channels_first")
    assert Conv1D(2, 3).data_format == "channels_last"
    assert Conv2D(2, 3).data_format == "channels_first"
    assert SeparableConv1D(2, 3).data_format == "channels_first"
    with keras_semantics("3.15.1"):
        assert Conv1D(2, 3).data_format == "channels_first"


def test_conv1d_causal_channels_first_is_refused_by_keras22_only():
    with pytest.raises(ConfigError, match="causal") as info:
        Conv1D(2, 3, padding="causal", data_format="channels_first")
    assert "Received: data_format='channels_first'" in str(info.value)
    for version in ("2.21.0", "3.15.1"):
        with keras_semantics(version):
            Conv1D(2, 3, padding="causal", data_format="channels_first")


def test_depthwise_kernel_is_named_by_version(rng):
    x = rng.normal(size=(1, 5, 5, 2)).astype("float32")
    layer = DepthwiseConv2D(3)
    layer(x)
    assert [w.name for w in layer.weights] == ["depthwise_kernel", "bias"]
    with keras_semantics("3.15.1"):
        layer = DepthwiseConv1D(3, use_bias=False)
    layer(x[:, 0])
    assert [w.name for w in layer.weights] == ["kernel"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: DepthwiseConv2D(3, strides=2, dilation_rate=2),
        lambda: SeparableConv1D(2, 3, strides=2, dilation_rate=2),
    ],
    ids=["DepthwiseConv2D", "SeparableConv1D"],
)
def test_strides_with_dilation_refused_by_keras2_allowed_by_keras3_for_depthwise(make):
    for version in ("2.2.4", "2.21.0"):
        with keras_semantics(version), pytest.raises(ConfigError, match="dilation_rate"):
            make()
    with keras_semantics("3.15.1"):
        make()


def test_separable_conv1d_causal_follows_the_version():
    with keras_semantics("2.21.0"):
        assert SeparableConv1D(2, 3, padding="causal").padding == "causal"
    with keras_semantics("3.15.1"), pytest.raises(ConfigError, match="padding") as info:
        SeparableConv1D(2, 3, padding="causal")
    assert "Received: padding='causal'" in str(info.value)


def test_conv3d_transpose_dilation_is_refused_where_keras2_ignores_it():
    with keras_semantics("2.21.0"), pytest.raises(NotSupportedError, match="ignores") as info:
        Conv3DTranspose(2, 2, dilation_rate=2)
    assert "Received: dilation_rate=2" in str(info.value)
    with keras_semantics("2.21.0"):
        Conv2DTranspose(2, 2, dilation_rate=2)  # honoured by tf.keras
    with keras_semantics("3.15.1"):
        assert Conv3DTranspose(2, 2, dilation_rate=2).dilation_rate == (2, 2, 2)


def test_keras22_conv_refuses_a_mask():
    with pytest.raises(MaskingNotSupportedError, match="conv"):
        Sequential([Masking(input_shape=(5, 3)), Conv1D(2, 2, name="conv")])
    with keras_semantics("2.21.0"):
        model = Sequential([Masking(input_shape=(5, 3)), Conv1D(2, 2)])
    assert model.outputs[0].mask is None


# ---- positional arguments follow the Keras signatures -------------------------------------------

POSITIONAL = [
    pytest.param(
        lambda: Conv1D(2, 3, 1, "causal", "channels_last", 2, "relu", False),
        {
            "filters": 2,
            "padding": "causal",
            "dilation_rate": [2],
            "activation": "relu",
            "use_bias": False,
        },
        id="Conv1D",
    ),
    pytest.param(
        lambda: SeparableConv2D(4, 3, 1, "same", None, 1, 2, "relu"),
        {"filters": 4, "depth_multiplier": 2, "activation": "relu"},
        id="SeparableConv2D",
    ),
    pytest.param(
        lambda: DepthwiseConv2D(3, 2, "same", 2, "channels_first", 1, "tanh", False),
        {
            "strides": [2, 2],
            "depth_multiplier": 2,
            "data_format": "channels_first",
            "activation": "tanh",
            "use_bias": False,
        },
        id="DepthwiseConv2D",
    ),
    pytest.param(
        lambda: Conv2DTranspose(4, 3, 2, "same", 1, "channels_last", 1, "relu"),
        {"strides": [2, 2], "output_padding": [1, 1], "activation": "relu"},
        id="Conv2DTranspose",
    ),
]


@pytest.mark.parametrize(("make", "expected"), POSITIONAL)
def test_positional_arguments_follow_the_documented_order(make, expected):
    config = make().get_config()
    assert {key: config[key] for key in expected} == expected


def test_symbolic_call_with_unknown_length():
    out = Conv1D(4, 3, strides=2, padding="same")(Input((None, 2)))
    assert out.shape == (None, None, 4)
    out = Conv1DTranspose(4, 3, strides=2, padding="same")(Input((None, 2)))
    assert out.shape == (None, None, 4)
