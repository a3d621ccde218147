"""Bad arguments and bad input shapes of the padding, cropping and upsampling layers
raise typed errors with Keras's wording (or "Expected ... Received: arg=value")."""

import re

import numpy as np
import pytest

from layerserve.errors import (
    ConfigError,
    NotSupportedError,
    ShapeError,
    UnknownArgumentError,
)
from layerserve.layers import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Input,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ZeroPadding1D(-1), "Expected `padding` values >= 0. Received: padding=-1"),
        (
            lambda: ZeroPadding1D(((1, 2),)),
            "Expected each entry of `padding` to be an int or a pair of ints >= 0. "
            "Received: padding=((1, 2),)",
        ),
        (
            lambda: ZeroPadding2D((1, 2, 3)),
            "Expected `padding` to be an int, a tuple of 2 ints or a tuple of 2 tuples of 2 "
            "ints, all >= 0",
        ),
        (lambda: ZeroPadding2D(((1, -2), 0)), "Received: padding=((1, -2), 0)"),
        (lambda: ZeroPadding2D(1.5), "Received: padding=1.5"),
        (lambda: ZeroPadding3D(True), "Received: padding=True"),
        (lambda: ZeroPadding3D((1, 2)), "a tuple of 3 ints or a tuple of 3 tuples"),
        (lambda: ZeroPadding3D("same"), "Received: padding='same'"),
        (lambda: ZeroPadding2D({"top": 1}), "Received: padding={'top': 1}"),
        (lambda: Cropping1D((1, 2, 3)), "Received: cropping=(1, 2, 3)"),
        (lambda: Cropping2D(-1), "Expected `cropping` values >= 0. Received: cropping=-1"),
        (lambda: Cropping3D(((1, 1), (1, 1))), "a tuple of 3 ints or a tuple of 3 tuples"),
        (
            lambda: UpSampling1D(0),
            "Expected `size` to be a positive int or a tuple of 1 positive ints. Received: size=0",
        ),
        (lambda: UpSampling1D(2.0), "Received: size=2.0"),
        (lambda: UpSampling2D((2, 0)), "Received: size=(2, 0)"),
        (lambda: UpSampling3D((2, 2)), "tuple of 3 positive ints. Received: size=(2, 2)"),
        (
            lambda: ZeroPadding2D(data_format="NHWC"),
            "The `data_format` argument must be one of 'channels_first', 'channels_last'. "
            "Received: data_format='NHWC'",
        ),
        (lambda: Cropping3D(dim_ordering="xy"), "Received: data_format='xy'"),
        (
            lambda: UpSampling2D(interpolation="cubic"),
            "Expected `interpolation` to be one of ('nearest', 'bilinear'). "
            "Received: interpolation='cubic'",
        ),
        (
            lambda: UpSampling2D(dim_ordering="th", data_format="channels_first"),
            "the layer received both the legacy keyword argument `dim_ordering` and the "
            "Keras 2 keyword argument `data_format`. Stick to the latter!",
        ),
        (
            lambda: UpSampling1D(size=3, length=4),
            "received both the legacy keyword argument `length` and the Keras 2 keyword "
            "argument `size`. Stick to the latter! Received: length=4, size=3",
        ),
    ],
)
def test_bad_arguments_raise_config_errors(build, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build()


@pytest.mark.parametrize(
    "interpolation", ["bicubic", "area", "gaussian", "lanczos3", "lanczos5", "mitchellcubic"]
)
@pytest.mark.parametrize("version", ["2.21.0", "3.15.1"])
def test_interpolations_without_an_exact_onnx_form_are_refused(version, interpolation):
    with keras_semantics(version), pytest.raises(NotSupportedError) as raised:
        UpSampling2D(interpolation=interpolation.upper(), name="up")
    assert str(raised.value).startswith(
        f"Layer 'up' (UpSampling2D) uses interpolation={interpolation!r}, which has no "
        "exact ONNX form"
    )
    assert str(raised.value).endswith(f"Received: interpolation={interpolation.upper()!r}")


def test_bilinear_did_not_exist_before_keras_223():
    with keras_semantics("2.2.2"), pytest.raises(ConfigError, match="Keras 2.2.0-2.2.2"):
        UpSampling2D(interpolation="bilinear")
    with keras_semantics("2.2.2"):
        assert UpSampling2D().interpolation == "nearest"


@pytest.mark.parametrize(
    ("cls", "kwargs", "unknown"),
    [
        (Cropping1D, {"data_format": "channels_last"}, "data_format"),
        (UpSampling1D, {"data_format": "channels_last"}, "data_format"),
        (ZeroPadding1D, {"dim_ordering": "tf"}, "dim_ordering"),
        (UpSampling3D, {"interpolation": "nearest"}, "interpolation"),
    ],
)
def test_arguments_keras_does_not_take_are_unknown(cls, kwargs, unknown):
    with pytest.raises(UnknownArgumentError, match=f"not understood by {cls.__name__}: {unknown}"):
        cls(**kwargs)


def test_cropping1d_leaving_no_step_raises_keras_message():
    expected = (
        "`cropping` parameter of `Cropping1D` layer must be smaller than the input length. "
        "Received: input_shape=(None, 5, 2), cropping=(2, 3)"
    )
    with pytest.raises(ShapeError, match=re.escape(expected)):
        Sequential([Cropping1D((2, 3), input_shape=(5, 2))])
    # Unknown length: the check happens on the concrete input.
    model = Model(i := Input((None, 2)), Cropping1D((2, 3))(i))
    with pytest.raises(ShapeError, match=re.escape("input_shape=(1, 4, 2), cropping=(2, 3)")):
        model.predict(np.zeros((1, 4, 2), "float32"))


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (Cropping2D(((1, 1), (2, 2))), (None, 3, 4, 1)),
        (Cropping2D(((2, 1), 0), data_format="channels_first"), (None, 5, 3, 8)),
        (Cropping3D(((0, 0), (0, 0), (3, 0))), (None, 4, 4, 3, 2)),
        (Cropping3D(1, data_format="channels_first"), (None, 1, 3, 3, 2)),
    ],
)
def test_cropping_leaving_no_entry_raises_keras_message(layer, shape):
    expected = (
        "Values in `cropping` argument should be smaller than the corresponding spatial "
        f"dimension of the input. Received: input_shape={shape}, cropping={layer.cropping}"
    )
    with pytest.raises(ShapeError, match=re.escape(expected)):
        layer.compute_output_shape(shape)
    with pytest.raises(ShapeError, match=re.escape(expected.split(" Received")[0])):
        layer(np.zeros((1, *shape[1:]), "float32"))


@pytest.mark.parametrize(
    ("layer", "shape", "ndim"),
    [
        (ZeroPadding1D(), (2, 3), 3),
        (ZeroPadding2D(), (2, 3, 4), 4),
        (Cropping3D(), (2, 3, 4, 5), 5),
        (UpSampling1D(), (2, 3, 4, 5), 3),
        (UpSampling2D(), (2, 3), 4),
    ],
)
def test_wrong_input_rank_raises(layer, shape, ndim):
    found = len(shape)
    with pytest.raises(ShapeError, match=f"expected ndim={ndim}, found ndim={found}"):
        layer(np.zeros(shape, "float32"))
