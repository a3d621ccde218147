"""Bad arguments and bad input shapes raise typed errors whose messages say what was
expected and what was received."""

import numpy as np
import pytest

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, UnknownArgumentError
from layerserve.layers import (
    BatchNormalization,
    GroupNormalization,
    Input,
    LayerNormalization,
    RMSNormalization,
    UnitNormalization,
)
from layerserve.models import Sequential, model_from_json

AXIS = r"expected `axis` to be an int or a non-empty list of ints\. Received: axis="

BAD_ARGUMENTS = [
    (lambda: BatchNormalization(axis="channels"), ConfigError, AXIS + "'channels'"),
    (lambda: BatchNormalization(axis=[]), ConfigError, AXIS + r"\[\]"),
    (lambda: BatchNormalization(axis=True), ConfigError, AXIS + "True"),
    (lambda: BatchNormalization(axis=[1, 1]), ConfigError, r"distinct axes\. Received: axis="),
    (lambda: BatchNormalization(momentum="fast"), ConfigError, r"`momentum` to be a finite"),
    (lambda: BatchNormalization(epsilon=-1e-3), ConfigError, r"number >= 0.0\. Received: eps"),
    (lambda: BatchNormalization(epsilon=float("nan")), ConfigError, r"Received: epsilon=nan"),
    (lambda: BatchNormalization(center="yes"), ConfigError, r"`center` to be a boolean"),
    (lambda: BatchNormalization(scale=1), ConfigError, r"`scale` to be a boolean\. Received"),
    (lambda: BatchNormalization(renorm=None), ConfigError, r"`renorm` to be a boolean"),
    (
        lambda: BatchNormalization(renorm_clipping={"rmax": 1, "r": 2}),
        ConfigError,
        r"keys among \['rmax', 'rmin', 'dmax'\]\. Received: renorm_clipping=",
    ),
    (
        lambda: BatchNormalization(renorm=True, renorm_clipping={"rmax": 1.0, "rmin": 2.0}),
        ConfigError,
        r"`rmax` should be greater than `rmin`",
    ),
    (
        lambda: BatchNormalization(renorm_clipping={"dmax": -1.0}),
        ConfigError,
        r"`dmax` should be non-negative",
    ),
    (lambda: BatchNormalization(renorm_momentum=None), ConfigError, r"`renorm_momentum`"),
    (lambda: BatchNormalization(fused="auto"), ConfigError, r"`fused` to be a boolean"),
    (
        lambda: BatchNormalization(fused=True, renorm=True),
        ConfigError,
        r"`fused=True` is not supported with `renorm`\. Received: fused=True, renorm=True",
    ),
    (
        lambda: BatchNormalization(fused=True, virtual_batch_size=2),
        ConfigError,
        r"not supported with `virtual_batch_size`",
    ),
    (
        lambda: BatchNormalization(virtual_batch_size=0),
        ConfigError,
        r"`virtual_batch_size` to be a positive integer\. Received: virtual_batch_size=0",
    ),
    (
        lambda: BatchNormalization(adjustment=lambda shape: (1.0, 0.0)),
        NotSupportedError,
        r"does not support `adjustment`.*Received: adjustment=<function",
    ),
    (lambda: BatchNormalization(synchronized="no"), ConfigError, r"`synchronized`"),
    (lambda: BatchNormalization(mode=1), UnknownArgumentError, r"`mode=1` and `mode=2`"),
    (lambda: LayerNormalization(axis=1.5), ConfigError, AXIS + "1.5"),
    (lambda: LayerNormalization(epsilon="small"), ConfigError, r"Received: epsilon='small'"),
    (lambda: LayerNormalization(rms_scaling=1), ConfigError, r"`rms_scaling` to be a boolean"),
    (
        lambda: GroupNormalization(groups=0),
        ConfigError,
        r"`groups` to be a positive integer \(or -1 for instance normalization\)\. "
        r"Received: groups=0",
    ),
    (lambda: GroupNormalization(groups=-2), ConfigError, r"Received: groups=-2"),
    (lambda: GroupNormalization(groups=True), ConfigError, r"Received: groups=True"),
    (lambda: GroupNormalization(groups=2.0), ConfigError, r"Received: groups=2.0"),
    (
        lambda: GroupNormalization(axis=[1]),
        ConfigError,
        r"expected `axis` to be an int\. Received: axis=\[1\]",
    ),
    (lambda: UnitNormalization(axis=None), ConfigError, AXIS + "None"),
    (lambda: RMSNormalization(epsilon=-1), ConfigError, r"Received: epsilon=-1"),
    (lambda: RMSNormalization(axis=(1, 1)), ConfigError, r"distinct axes"),
]


@pytest.mark.parametrize(("make", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


BAD_SHAPES = [
    (lambda: BatchNormalization(axis=3), (2, 3, 4), r"axis 3 is out of bounds for an input"),
    (lambda: BatchNormalization(axis=[1, -2]), (2, 3, 4), r"names the same axis twice"),
    (lambda: LayerNormalization(axis=-4), (2, 3, 4), r"Received: axis=-4"),
    (lambda: UnitNormalization(axis=[1, 5]), (2, 3, 4), r"axis 5 is out of bounds"),
    (
        lambda: GroupNormalization(groups=4),
        (2, 3),
        r"the number of groups \(4\) cannot be more than the number of channels \(3\)",
    ),
    (
        lambda: GroupNormalization(groups=2),
        (2, 4, 3),
        r"the number of channels \(3\) must be a multiple of the number of groups \(2\)",
    ),
    (lambda: GroupNormalization(axis=2), (2, 4), r"axis 2 is out of bounds"),
]


@pytest.mark.parametrize(("make", "shape", "message"), BAD_SHAPES)
def test_bad_input_shapes(make, shape, message):
    layer = make()
    with pytest.raises(ShapeError, match=message):
        layer(np.zeros(shape, "float32"))
    with pytest.raises(ShapeError, match=message):  # and symbolically, when a model is built
        Sequential([Input(shape[1:]), make()])


def test_undefined_normalized_axis_is_refused():
    for layer in (BatchNormalization(), LayerNormalization(), GroupNormalization(1)):
        with pytest.raises(ShapeError, match=r"must have a defined size"):
            Sequential([layer], name="m").build((None, 3, None))


def test_virtual_batch_cannot_normalize_the_batch_axis():
    with pytest.raises(ConfigError, match=r"cannot include the batch axis 0"):
        BatchNormalization(axis=0, virtual_batch_size=2)(np.zeros((4, 3), "float32"))


def test_a_refused_config_value_names_the_layer_in_a_file():
    document = (
        '{"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": '
        '"GroupNormalization", "config": {"name": "gn", "groups": 0, "axis": -1, '
        '"batch_input_shape": [null, 4]}}]}, "keras_version": "2.15.0"}'
    )
    with pytest.raises(ConfigError, match=r"Received: groups=0"):
        model_from_json(document)
