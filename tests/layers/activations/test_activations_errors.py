"""Bad arguments and bad inputs of the activation layers raise typed errors, with
Keras's wording or "Expected ... Received: arg=value"."""

import re

import numpy as np
import pytest

from layerserve.errors import (
    ConfigError,
    NotSupportedError,
    ShapeError,
    UnknownArgumentError,
    UnknownObjectError,
)
from layerserve.layers import (
    ELU,
    Activation,
    Dense,
    Input,
    LeakyReLU,
    PReLU,
    ReLU,
    Softmax,
    ThresholdedReLU,
)
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics

K2, TFK, K3 = "2.2.4", "2.15.0", "3.15.1"


@pytest.mark.parametrize(
    ("version", "build", "error", "message"),
    [
        (K3, lambda: ReLU(max_value=-1), ConfigError, "max_value of a ReLU layer cannot be a "
         "negative value. Received: max_value=-1"),
        (K2, lambda: ReLU(negative_slope=-0.1), ConfigError, "Received: negative_slope=-0.1"),
        (TFK, lambda: ReLU(threshold=-0.5), ConfigError, "threshold of a ReLU layer cannot be "
         "a negative value. Received: threshold=-0.5"),
        (K3, lambda: ReLU(threshold=-0.5), ConfigError, "Received: threshold=-0.5"),
        (K3, lambda: ReLU(negative_slope=None), ConfigError, "Expected `negative_slope` of "
         "ReLU to be a number. Received: negative_slope=None"),
        (K2, lambda: ReLU(max_value="6"), ConfigError, "to be a number or None. "
         "Received: max_value='6'"),
        (K2, lambda: ReLU(max_value=True), ConfigError, "Received: max_value=True"),
        (K2, lambda: ReLU(threshold=float("nan")), ConfigError, "Received: threshold=nan"),
        ("2.2.1", lambda: ReLU(6, negative_slope=0.1), UnknownArgumentError,
         "ReLU of Keras 2.2.0-2.2.2 takes `max_value` only. Received: negative_slope=0.1"),
        (K3, lambda: LeakyReLU(0.1, alpha=0.2), ConfigError, "Pass either `negative_slope` "
         "or its Keras 2 name `alpha` to LeakyReLU, not both. Received: negative_slope=0.1, "
         "alpha=0.2"),
        (K3, lambda: LeakyReLU(-0.1), ConfigError, "negative_slope of a LeakyReLU layer "
         "cannot be a negative value. Received: negative_slope=-0.1"),
        (TFK, lambda: LeakyReLU(alpha=None), ConfigError, "Received: negative_slope=None"),
        (K3, lambda: ELU(alpha=None), ConfigError, "Expected `alpha` of ELU to be a number. "
         "Received: alpha=None"),
        (TFK, lambda: ThresholdedReLU(-1.0), ConfigError, "theta of a ThresholdedReLU layer "
         "cannot be a negative value. Received: theta=-1.0"),
        (K3, lambda: ThresholdedReLU(0.5), UnknownObjectError, "Keras 3 has no "
         "ThresholdedReLU layer"),
        (K2, lambda: PReLU(shared_axes="1"), ConfigError, "Expected `shared_axes` to be an "
         "integer or a list of integers. Received: shared_axes='1'"),
        (K2, lambda: PReLU(shared_axes=[1.5]), ConfigError, "Received: shared_axes=[1.5]"),
        (K2, lambda: Softmax(axis="last"), ConfigError, "Expected `axis` of Softmax to be an "
         "integer or a non-empty list of integers. Received: axis='last'"),
        (K3, lambda: Softmax(axis=[]), ConfigError, "Received: axis=[]"),
        (K3, lambda: Softmax(axis=[True]), ConfigError, "Received: axis=[True]"),
        (TFK, lambda: Softmax(robust_masking="yes"), ConfigError, "Expected `robust_masking` "
         "to be a boolean. Received: robust_masking='yes'"),
        (K3, lambda: Softmax(robust_masking=True), UnknownArgumentError, "`robust_masking` "
         "is a tf.keras argument of Softmax"),
        (K2, lambda: Softmax(robust_masking=True), UnknownArgumentError, "Received: "
         "robust_masking=True"),
        (K2, lambda: ReLU(maxvalue=1), UnknownArgumentError, "Keyword argument not "
         "understood by ReLU: maxvalue"),
        (K2, lambda: Activation("celu"), UnknownObjectError, "'celu' does not exist in Keras "
         "2.2.4 (it exists in Keras 3 from 3.7.0)"),
        (K3, lambda: Activation("threshold"), ConfigError, "needs its `threshold` and "
         "`default_value` arguments"),
        (K3, lambda: Activation("nope"), UnknownObjectError, "Unknown activation function: "
         "'nope'. Expected one of: celu, elu"),
    ],
)  # fmt: skip
def test_bad_arguments(version, build, error, message):
    with keras_semantics(version), pytest.raises(error, match=re.escape(message)):
        build()


def test_negative_thresholds_are_multi_backend_keras_only():
    ReLU(threshold=-0.5)
    ThresholdedReLU(-1.0)
    with keras_semantics("2.15.0"), pytest.raises(ConfigError):
        ReLU(threshold=-0.5)


@pytest.mark.parametrize(
    ("version", "layer", "shape", "message"),
    [
        (K2, lambda: PReLU(shared_axes=4), (3, 4, 5), "PReLU cannot share axis 4 of an input "
         "of rank 4. Received: input_shape=(None, 3, 4, 5)"),
        (K2, lambda: PReLU(), (None, 4), "PReLU needs every non-shared axis of its input to "
         "have a known size"),
        (K2, lambda: Softmax(axis=3), (3, 4), "Softmax axis 3 does not fit an input of rank 3"),
        (K3, lambda: Softmax(axis=[1, -2]), (3, 4), "Softmax axis (1, -2) does not fit"),
        (K2, lambda: Softmax(), (), "Cannot apply softmax to a tensor that is 1D"),
        (TFK, lambda: Softmax(), (), "Cannot apply softmax to a tensor that is 1D"),
        (K3, lambda: Activation("glu"), (3, 5), "glu splits the last axis into two halves, so "
         "its size must be even. Received: input_shape=(None, 3, 5)"),
    ],
)  # fmt: skip
def test_bad_input_shapes(version, layer, shape, message):
    with keras_semantics(version), pytest.raises(ShapeError, match=re.escape(message)):
        Model(x := Input(shape), layer()(x))


def test_prelu_checks_the_sizes_it_was_built_for():
    layer = PReLU(shared_axes=1)
    layer(np.zeros((2, 3, 4), np.float32))
    layer(np.zeros((2, 5, 4), np.float32))  # the shared axis may differ
    with pytest.raises(ShapeError, match="expected axis 2 of input shape to have value 4"):
        layer(np.zeros((2, 3, 5), np.float32))


def test_softmax_mask_must_broadcast_to_the_inputs():
    with keras_semantics(K3):
        layer = Softmax()
    x = np.zeros((2, 3, 4), np.float32)
    for mask in (np.ones((2, 3), bool), np.ones((1, 2, 3, 4), bool)):
        with pytest.raises(ShapeError, match=r"Received: inputs.shape=\(2, 3, 4\), mask.shape="):
            layer(x, mask=mask)


def test_keras3_softmax_accepts_rank_1_but_not_scalars():
    with keras_semantics(K3):
        model = Model(x := Input(()), Softmax()(x))
        np.testing.assert_allclose(model.predict(np.log([1.0, 3.0])), [0.25, 0.75])
        with pytest.raises(ShapeError, match="Cannot apply softmax to a scalar"):
            Activation("softmax")(np.float32(1.0))


def test_glu_in_other_layers_computes_but_is_not_exported():
    from layerserve.export import to_onnx

    with keras_semantics(K3):
        model = Sequential([Dense(4, activation="glu", input_shape=(3,))])
    assert model.predict(np.ones((2, 3), np.float32)).shape == (2, 2)  # as Keras computes
    with pytest.raises(NotSupportedError, match="glu halves the last axis"):
        to_onnx(model)


def test_sparsemax_of_unknown_keras_versions_is_refused():
    with keras_semantics("3.16.0"), pytest.raises(NotSupportedError, match="#23425"):
        Activation("sparsemax")
    with keras_semantics(K3), pytest.warns(UserWarning, match="Keras 3.8-3.15.1"):
        Activation("sparsemax")


def test_prelu_as_another_layers_activation_is_refused():
    prelu = {"class_name": "PReLU", "config": {"shared_axes": None}}
    with keras_semantics(TFK), pytest.raises(NotSupportedError, match="PReLU layer used as"):
        Dense(3, activation=prelu)
