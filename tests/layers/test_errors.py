"""Bad arguments and bad inputs: the exception type and a message that says what was wrong."""

import numpy as np
import pytest

from layerserve.errors import (
    ConfigError,
    DTypeError,
    ShapeError,
    UnknownArgumentError,
    UnknownObjectError,
    WeightsError,
)
from layerserve.layers import (
    LSTM,
    Activation,
    ActivityRegularization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Lambda,
    Masking,
    Permute,
    RepeatVector,
    Reshape,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from layerserve.models import Model, Sequential

# (constructor call, exception type, message fragment)
BAD_CONSTRUCTORS = [
    pytest.param(lambda: Reshape((-2, 3)), ConfigError, "target_shape", id="reshape-minus-two"),
    pytest.param(
        lambda: Reshape((-1, -1)), ConfigError, "at most one -1", id="reshape-two-unknown"
    ),
    pytest.param(lambda: Reshape((0, 2)), ConfigError, "target_shape", id="reshape-zero"),
    pytest.param(lambda: Reshape(3), ConfigError, "target_shape", id="reshape-int"),
    pytest.param(lambda: Permute((2, 2)), ConfigError, "permutation", id="permute-duplicate"),
    pytest.param(lambda: Permute((0, 1)), ConfigError, "permutation", id="permute-batch-axis"),
    pytest.param(lambda: Permute((1, 3)), ConfigError, "permutation", id="permute-gap"),
    pytest.param(lambda: Dropout(1.0), ConfigError, "rate", id="dropout-one"),
    pytest.param(lambda: Dropout(-0.1), ConfigError, "rate", id="dropout-negative"),
    pytest.param(lambda: Dropout("a"), ConfigError, "rate", id="dropout-string"),
    pytest.param(
        lambda: Dropout(0.5, noise_shape="ab"), ConfigError, "noise_shape", id="dropout-noise-shape"
    ),
    pytest.param(lambda: Dropout(0.5, seed="s"), ConfigError, "seed", id="dropout-seed"),
    pytest.param(lambda: SpatialDropout1D(1.5), ConfigError, "rate", id="spatial1d-rate"),
    pytest.param(lambda: SpatialDropout2D(-0.5), ConfigError, "rate", id="spatial2d-rate"),
    pytest.param(lambda: SpatialDropout3D(None), ConfigError, "rate", id="spatial3d-rate"),
    pytest.param(
        lambda: SpatialDropout2D(0.5, data_format="nchw"),
        ConfigError,
        "data_format",
        id="spatial2d-format",
    ),
    pytest.param(lambda: RepeatVector(0), ConfigError, "`n`", id="repeat-zero"),
    pytest.param(lambda: RepeatVector(2.5), ConfigError, "`n`", id="repeat-float"),
    pytest.param(lambda: Dense(0), ConfigError, "units", id="dense-zero"),
    pytest.param(lambda: Dense(-1), ConfigError, "units", id="dense-negative"),
    pytest.param(lambda: Dense("a"), ConfigError, "units", id="dense-string"),
    pytest.param(
        lambda: Dense(2, activation="nope"),
        UnknownObjectError,
        "Unknown activation",
        id="dense-activation",
    ),
    pytest.param(
        lambda: Activation("nope"), UnknownObjectError, "Unknown activation", id="activation-name"
    ),
    pytest.param(
        lambda: Dense(2, kernel_initializer="nope"),
        UnknownObjectError,
        "Unknown initializer",
        id="dense-initializer",
    ),
    pytest.param(
        lambda: Dense(2, kernel_regularizer="nope"),
        UnknownObjectError,
        "Unknown regularizer",
        id="dense-regularizer",
    ),
    pytest.param(lambda: Dense(2, foo=1), UnknownArgumentError, "foo", id="dense-unknown-kw"),
    pytest.param(lambda: Flatten(bar=True), UnknownArgumentError, "bar", id="flatten-unknown-kw"),
    pytest.param(lambda: Flatten(data_format="x"), ConfigError, "data_format", id="flatten-format"),
    pytest.param(lambda: Conv2D(0, 3), ConfigError, "filters", id="conv-filters-zero"),
    pytest.param(lambda: LSTM(0), ConfigError, "units", id="lstm-units"),
    pytest.param(
        lambda: LSTM(2, implementation=3), ConfigError, "implementation", id="lstm-implementation"
    ),
    pytest.param(
        lambda: LSTM(2, implementation="x"),
        ConfigError,
        "implementation",
        id="lstm-implementation-string",
    ),
    pytest.param(lambda: LSTM(2, dropout="a"), ConfigError, "dropout", id="lstm-dropout"),
    pytest.param(
        lambda: LSTM(2, recurrent_dropout=[0.1]),
        ConfigError,
        "recurrent_dropout",
        id="lstm-recurrent-dropout",
    ),
    pytest.param(
        lambda: LSTM(2, recurrent_activation="nope"),
        UnknownObjectError,
        "Unknown activation",
        id="lstm-recurrent-activation",
    ),
    pytest.param(lambda: Masking(mask_value="x"), ConfigError, "mask_value", id="masking-value"),
    pytest.param(lambda: ActivityRegularization(l1=-1.0), ConfigError, "l1", id="actreg-l1"),
    pytest.param(lambda: Lambda(3), ConfigError, "function", id="lambda-function"),
    pytest.param(
        lambda: Lambda(lambda v: v, output_shape=3),
        ConfigError,
        "output_shape",
        id="lambda-output-shape",
    ),
    pytest.param(
        lambda: InputLayer(input_shape=(2,), batch_input_shape=(None, 2)),
        ConfigError,
        "input_shape OR batch_input_shape",
        id="inputlayer-both",
    ),
    pytest.param(lambda: InputLayer(), ConfigError, "input_shape", id="inputlayer-neither"),
    pytest.param(lambda: Input(shape="ab"), ConfigError, "input_shape", id="input-shape-text"),
]


@pytest.mark.parametrize(("make", "error", "fragment"), BAD_CONSTRUCTORS)
def test_bad_constructor_arguments(make, error, fragment):
    with pytest.raises(error, match=fragment) as info:
        make()
    message = str(info.value)
    assert "Received" in message or "Expected" in message or "should" in message
    # Every argument error is also the builtin a Keras user would catch.
    assert isinstance(info.value, TypeError if error is UnknownArgumentError else ValueError)


def _dense16():
    layer = Dense(4, name="dense_sixteen")
    layer(np.ones((2, 16), dtype="float32"))
    return layer


def _small_model():
    return Sequential([Dense(2, input_shape=(3,), name="first"), Dense(1, name="second")])


# (call, exception type, fragments the message must contain)
BAD_INPUTS = [
    pytest.param(
        lambda: _dense16()(np.ones((2, 8))),
        ShapeError,
        ["dense_sixteen", "16", "(2, 8)"],
        id="dense-eager-features",
    ),
    pytest.param(
        lambda: _dense16()(Input((8,))),
        ShapeError,
        ["dense_sixteen", "16", "(None, 8)"],
        id="dense-symbolic-features",
    ),
    pytest.param(
        lambda: Dense(2)(np.ones(3)), ShapeError, ["min_ndim=2", "(3,)"], id="dense-rank-1"
    ),
    pytest.param(
        lambda: Conv2D(2, 3, name="conv")(np.ones((2, 5, 5))),
        ShapeError,
        ["conv", "ndim=4", "ndim=3"],
        id="conv-rank",
    ),
    pytest.param(
        lambda: Conv2D(2, 3, name="conv")(Input((5, 5, 2, 1))),
        ShapeError,
        ["conv", "ndim=4", "ndim=5"],
        id="conv-rank-symbolic",
    ),
    pytest.param(
        lambda: LSTM(2, name="rnn")(np.ones((2, 5))),
        ShapeError,
        ["rnn", "ndim=3", "ndim=2"],
        id="lstm-rank",
    ),
    pytest.param(
        lambda: LSTM(2, name="rnn")(Input((3, 4, 5))),
        ShapeError,
        ["rnn", "ndim=3", "ndim=4"],
        id="lstm-rank-symbolic",
    ),
    pytest.param(
        lambda: RepeatVector(2, name="rep")(np.ones((2, 3, 4))),
        ShapeError,
        ["rep", "ndim=2", "ndim=3"],
        id="repeat-rank",
    ),
    pytest.param(
        lambda: Permute((2, 1), name="perm")(np.ones((2, 3, 4, 5))),
        ShapeError,
        ["perm", "ndim=3"],
        id="permute-rank",
    ),
    pytest.param(
        lambda: _small_model().predict(np.ones((2, 4))),
        ShapeError,
        ["(None, 3)", "(2, 4)"],
        id="model-features",
    ),
    pytest.param(
        lambda: _small_model()(np.ones((2, 3, 1))),
        ShapeError,
        ["(None, 3)", "(2, 3, 1)"],
        id="model-rank",
    ),
    pytest.param(
        lambda: _small_model().predict(np.array([["a", "b", "c"]])),
        DTypeError,
        ["dtype", "float32"],
        id="model-string-dtype",
    ),
    pytest.param(
        lambda: _small_model().predict(np.array([[None, 1, 2]], dtype=object)),
        DTypeError,
        ["dtype"],
        id="model-object-dtype",
    ),
    # complex values cast to float32 would keep their real parts alone
    pytest.param(
        lambda: _small_model().predict(np.full((2, 3), 1 + 2j)),
        DTypeError,
        ["float32", "complex128"],
        id="model-complex-dtype",
    ),
    pytest.param(
        lambda: Dense(2)(np.full((2, 3), 1 + 2j, np.complex64)),
        DTypeError,
        ["dense", "float32", "complex64"],
        id="layer-complex-dtype",
    ),
    pytest.param(
        lambda: Model([Input((2,)), Input((3,))], Dense(1)(Input((2,)))),
        ValueError,
        ["disconnected"],
        id="model-disconnected",
    ),
    pytest.param(
        lambda: _small_model().set_weights([np.ones((3, 2))]),
        WeightsError,
        ["length 1", "expecting 4"],
        id="set-weights-count",
    ),
    pytest.param(
        lambda: _small_model().set_weights(
            [np.ones((2, 3)), np.ones(2), np.ones((2, 1)), np.ones(1)]
        ),
        WeightsError,
        ["(3, 2)", "(2, 3)"],
        id="set-weights-shape",
    ),
    pytest.param(
        lambda: _dense16().set_weights([np.ones((16, 4)), np.ones(5)]),
        WeightsError,
        ["(4,)", "(5,)"],
        id="layer-set-weights-shape",
    ),
    pytest.param(
        lambda: Dense(2, weights=[np.ones((4, 2)), np.ones(2)])(np.ones((1, 3))),
        WeightsError,
        ["(3, 2)", "(4, 2)"],
        id="initial-weights-shape",
    ),
]


@pytest.mark.parametrize(("call", "error", "fragments"), BAD_INPUTS)
def test_bad_inputs(call, error, fragments):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)


def test_model_call_error_leaves_weights_usable():
    """A rejected input changes nothing: the same model still computes afterwards."""
    model = _small_model()
    x = np.ones((2, 3), dtype="float32")
    before = model.predict(x)
    with pytest.raises(ShapeError):
        model.predict(np.ones((2, 5)))
    np.testing.assert_array_equal(model.predict(x), before)
