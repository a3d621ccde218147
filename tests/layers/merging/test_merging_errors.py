"""Bad arguments and bad inputs of the merging layers raise typed errors in Keras's
words."""

import re

import numpy as np
import pytest

from layerserve.errors import ConfigError, NotSupportedError, ShapeError, UnknownArgumentError
from layerserve.layers import (
    Add,
    Average,
    Concatenate,
    Dot,
    Input,
    Masking,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
)
from layerserve.serialization import keras_semantics

ELEMENTWISE = (Add, Subtract, Multiply, Average, Maximum, Minimum)


def inputs(*shapes):
    return [Input(shape) for shape in shapes]


@pytest.mark.parametrize("cls", [*ELEMENTWISE, Concatenate])
def test_a_single_tensor_is_not_a_list(cls):
    with pytest.raises(ShapeError, match="should be called on a list of inputs"):
        cls()(Input((3,)))
    with pytest.raises(ShapeError, match="should be called on a list of inputs"):
        cls()(np.ones((2, 3), "float32"))


@pytest.mark.parametrize("cls", (Add, Multiply, Average, Maximum, Minimum))
def test_one_input_needs_keras_2_9(cls):
    with pytest.raises(ShapeError, match=re.escape("at least 2 inputs. Received 1 inputs")):
        cls()(inputs((3,)))
    with keras_semantics("2.9.0"):
        single = cls()(inputs((3,)))
    assert single.shape == (None, 3)


def test_concatenate_one_input_needs_tf_keras():
    with pytest.raises(ShapeError, match="A `Concatenate` layer should be called on a list of"):
        Concatenate()(inputs((3,)))
    with keras_semantics("3.15.1"):
        assert Concatenate()(inputs((3,))).shape == (None, 3)


@pytest.mark.parametrize(("cls", "what"), [(Subtract, "Subtract"), (Dot, "Dot")])
@pytest.mark.parametrize("count", [1, 3])
def test_exactly_two_inputs(cls, what, count):
    kwargs = {"axes": 1} if cls is Dot else {}
    with (
        keras_semantics("3.15.1"),
        pytest.raises(ShapeError, match=f"A `{what}` layer should be called on exactly 2 inputs"),
    ):
        cls(**kwargs)(inputs(*[(3,)] * count))


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_incompatible_shapes(cls):
    with pytest.raises(
        ShapeError,
        match=re.escape("Inputs have incompatible shapes. Received shapes (3,) and (4,)"),
    ):
        cls()(inputs((3,), (4,)))
    with pytest.raises(ShapeError, match="incompatible shapes"):
        cls()(inputs((5, 3), (2,)))  # (N, 2) becomes (N, 1, 2): 2 does not meet 3


def test_different_batch_sizes():
    with pytest.raises(ShapeError, match="Cannot merge tensors with different batch sizes"):
        Add()([np.ones((2, 3), "float32"), np.ones((3, 3), "float32")])


def test_eager_calls_check_shapes_after_the_first():
    layer = Maximum()
    layer([np.ones((2, 3), "float32")] * 2)
    with pytest.raises(ShapeError, match="incompatible shapes"):
        layer([np.ones((2, 3), "float32"), np.ones((2, 4), "float32")])


def test_concatenate_shape_errors():
    message = "A `Concatenate` layer requires inputs with matching shapes except for the"
    with pytest.raises(ShapeError, match=message):
        Concatenate(axis=1)(inputs((3, 4), (2, 5)))
    with pytest.raises(ShapeError, match=message):
        Concatenate()(inputs((3, 4), (4,)))
    with pytest.raises(ShapeError, match="out of bounds for inputs of rank 3"):
        Concatenate(axis=3)(inputs((3, 4), (3, 4)))
    with pytest.raises(ShapeError, match="out of bounds"):
        Concatenate(axis=-4)(inputs((3, 4), (3, 4)))


@pytest.mark.parametrize("axis", [1.0, "1", None, True, [1]])
def test_concatenate_axis_must_be_an_integer(axis):
    with pytest.raises(ConfigError, match=re.escape(f"Received: axis={axis!r}")):
        Concatenate(axis=axis)


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ("1", "Invalid type for argument `axes`: it should be a list or an int"),
        (1.5, "Invalid type for argument `axes`"),
        (None, "Invalid type for argument `axes`"),
        ((1, 2, 3), "it should contain two elements"),
        ([1], "it should contain two elements"),
        ((1, "2"), "list elements should be integers"),
        ((1.0, 2), "list elements should be integers"),
        (True, "Invalid type for argument `axes`"),
    ],
)
def test_dot_axes_arguments(axes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Dot(axes=axes)


@pytest.mark.parametrize("normalize", [1, "yes", None])
def test_dot_normalize_must_be_a_boolean(normalize):
    with pytest.raises(ConfigError, match="Expected `normalize` to be a boolean"):
        Dot(axes=1, normalize=normalize)


@pytest.mark.parametrize(
    ("axes", "shapes", "message"),
    [
        (0, ((3,), (3,)), "Cannot perform batch_dot over axis 0"),
        (-2, ((3,), (3,)), "Cannot perform batch_dot over axis 0"),
        ((1, 0), ((3,), (3,)), "Cannot perform batch_dot over axis 0"),
        (1, ((3,), (4,)), "Incompatible input shapes: axis values 3 (at axis 1) != 4"),
        ((1, 2), ((3, 5), (3, 5)), "Incompatible input shapes: axis values 3 (at axis 1) != 5"),
        (1, ((3,), (None,)), "axis values 3 (at axis 1) != None"),
        (3, ((3, 4), (3, 4)), "out of bounds"),
        (1, ((), (3,)), "Cannot do batch_dot on inputs with rank < 2"),
    ],
)
def test_dot_shape_errors(axes, shapes, message):
    with keras_semantics("3.15.1"), pytest.raises(ShapeError, match=re.escape(message)):
        Dot(axes=axes)(inputs(*shapes))


def test_dot_of_rank_4_in_keras_before_2_2_5_is_refused():
    """Keras 2.2.4's K.batch_dot contracted rank > 3 inputs differently."""
    with pytest.raises(NotSupportedError, match="Dot on inputs of rank > 3"):
        Dot(axes=(3, 1))(inputs((2, 3, 4), (4, 5)))
    with keras_semantics("2.2.5"):
        assert Dot(axes=(3, 1))(inputs((2, 3, 4), (4, 5))).shape == (None, 2, 3, 5)
    with keras_semantics("2.2.4"):  # rank 3 and below computed then as now
        assert Dot(axes=(2, 1))(inputs((3, 4), (4, 5))).shape == (None, 3, 5)


def test_keras2_cannot_stack_masks_of_different_shapes():
    """tf.keras and Keras 2.2 fail to build these models; so does layerserve."""
    with keras_semantics("2.2.4"):
        a, b = inputs((4, 3), (1, 3))
        with pytest.raises(ShapeError, match="The masks of a merge layer have incompatible"):
            Add()([Masking()(a), Masking()(b)])
        a, b = inputs((4, 3), (3,))
        with pytest.raises(ShapeError, match="The masks of a merge layer have different ranks"):
            Add()([Masking()(a), Masking()(b)])
        a, b = inputs((4, 3), (2, 3))
        with pytest.raises(ShapeError, match="The masks of a Concatenate layer"):
            Concatenate(axis=1)([Masking()(a), b])


def test_mask_structure_errors():
    layer = Add()
    x = [np.ones((2, 3, 2), "float32")] * 2
    with pytest.raises(ShapeError, match="`mask` should be a list"):
        layer.compute_mask(x, np.ones((2, 3), bool))
    with pytest.raises(ShapeError, match="should have the same length"):
        layer.compute_mask(x, [np.ones((2, 3), bool)])


def test_unknown_arguments():
    with pytest.raises(UnknownArgumentError, match="mode"):
        Add(mode="sum")
    with pytest.raises(UnknownArgumentError, match="cropping"):
        Concatenate(axis=1, cropping=None)
