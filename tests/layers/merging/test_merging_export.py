"""The parity table of the merging layers: one row per argument combination that changes
the graph. onnxruntime must equal the NumPy reference (values atol 1e-5, masks exactly)
at batch sizes 0, 1, 7 and 64, at opset 13 and the newest; the inferred output shapes
are ``["batch", ...]``."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.errors import NotSupportedError
from layerserve.export import to_onnx
from layerserve.export.api import MASK_SUFFIX, output_names
from layerserve.layers import (
    Add,
    Average,
    Concatenate,
    Dense,
    Dot,
    Input,
    Masking,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
)
from layerserve.models import Model
from layerserve.serialization import keras_semantics

K2, K33, K3 = "2.2.4", "3.3.3", "3.15.1"


def merged(version, shapes, *merges, masked=(), dtypes=None):
    """A model of ``Input(shape)`` per shape (``Masking()`` on those in ``masked``) and
    one output per ``merge(tensors)``, built with the semantics of ``version``."""
    with keras_semantics(version):
        dtypes = dtypes or ["float32"] * len(shapes)
        inputs = [Input(s, dtype=d) for s, d in zip(shapes, dtypes, strict=True)]
        tensors = [Masking()(x) if i in masked else x for i, x in enumerate(inputs)]
        return Model(inputs, [merge(tensors) for merge in merges])


def pick(cls, *indices, **kwargs):
    """``cls(**kwargs)`` called on the tensors at ``indices``."""
    return lambda tensors: cls(**kwargs)([tensors[i] for i in indices])


ELEMENTWISE = (Add, Subtract, Multiply, Average, Maximum, Minimum)


def all_elementwise(*indices):
    return [
        pick(cls, *indices[:2]) if cls is Subtract else pick(cls, *indices) for cls in ELEMENTWISE
    ]


MODELS = {
    "elementwise-same-shape": lambda: merged(K2, [(4, 3)] * 3, *all_elementwise(0, 1, 2)),
    "elementwise-lower-ranks": lambda: merged(
        K2, [(4, 3), (3,), (4, 1)], *all_elementwise(1, 0, 2)
    ),
    "elementwise-rank4-and-rank2": lambda: merged(K3, [(2, 3, 4), (4,)], *all_elementwise(1, 0)),
    "elementwise-float64-inputs": lambda: merged(
        K3, [(3,), (3,)], pick(Add, 0, 1), pick(Average, 0, 1), dtypes=["float64", "float32"]
    ),
    "integer-inputs": lambda: merged(
        K3,
        [(3,), (3,)],
        pick(Average, 0, 1),
        pick(Add, 0, 1),
        pick(Dot, 0, 1, axes=1),
        pick(Dot, 0, 1, axes=1, normalize=True),
        dtypes=["int32", "int32"],
    ),
    "concatenate-axes": lambda: merged(
        K2,
        [(3, 4), (2, 4), (3, 2)],
        pick(Concatenate, 0, 1, axis=1),
        pick(Concatenate, 0, 2, 0, axis=-1),
        pick(Concatenate, 1, 0, axis=-2),
        pick(Concatenate, 2, 0, axis=2),
    ),
    "concatenate-rank4": lambda: merged(
        K3, [(2, 3, 4), (2, 1, 4)], pick(Concatenate, 0, 1, axis=2), pick(Concatenate, 0, 0, axis=1)
    ),
    "dot-rank2-and-3": lambda: merged(
        K3,
        [(6,), (6,), (3, 5), (4, 3), (3,)],
        pick(Dot, 0, 1, axes=1),
        pick(Dot, 2, 3, axes=(1, 2)),
        pick(Dot, 3, 3, axes=-1),
        pick(Dot, 3, 2, axes=(2, 1)),
        pick(Dot, 4, 3, axes=(1, 2)),
        pick(Dot, 2, 4, axes=(1, 1)),
    ),
    "dot-normalize-keras3": lambda: merged(
        K3,
        [(6,), (6,), (3, 5), (4, 3)],
        pick(Dot, 0, 1, axes=1, normalize=True),
        pick(Dot, 2, 3, axes=(-2, -1), normalize=True),
    ),
    "dot-normalize-keras2": lambda: merged(
        K2, [(3, 5), (4, 5)], pick(Dot, 0, 1, axes=2, normalize=True)
    ),
    "dot-rank4": lambda: merged(
        K3,
        [(2, 3, 5), (3, 5), (5, 4, 3)],
        pick(Dot, 0, 1, axes=(3, 2)),
        pick(Dot, 0, 2, axes=(2, 3), normalize=True),
    ),
    # Masks: Keras 2 ANDs, Keras 3.0-3.3 drop, Keras 3.4+ OR and substitute values.
    **{
        f"masked-elementwise-{version}": (
            lambda version=version: merged(
                version,
                [(5, 3), (5, 3), (5, 3), (5, 1)],
                *all_elementwise(0, 1, 2),
                pick(Maximum, 0, 2, 1),
                pick(Multiply, 0, 1),
                pick(Minimum, 3, 0),
                pick(Multiply, 2, 3),
                masked=(0, 1, 3),
            )
        )
        for version in (K2, K33, K3)
    },
    **{
        f"masked-concatenate-{version}": (
            lambda version=version: merged(
                version,
                [(5, 3), (5, 2), (4, 3), (5, 1), (3, 1)],
                pick(Concatenate, 0, 1),
                pick(Concatenate, 0, 2, axis=1),
                pick(Concatenate, 2, 0, 2, axis=-2),
                pick(Concatenate, 0, 3),
                pick(Concatenate, 3, 4, axis=1),
                pick(Dot, 0, 2, axes=(2, 2)),
                masked=(0, 1, 2, 4),
            )
        )
        for version in (K2, K33, K3)
    },
    "masked-keras3-only-shapes": lambda: merged(
        K3,
        [(5, 3), (1, 3), (4, 3)],
        pick(Multiply, 0, 1),
        pick(Maximum, 1, 0, 0),
        pick(Concatenate, 2, 0, axis=1),
        masked=(0, 1),
    ),
}


def expected_shape(shape):
    return ["batch", *shape[1:]]


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    inferred = inferred_output_shapes(onnx_model)
    for name, tensor in zip(output_names(model), model.outputs, strict=True):
        assert inferred[name] == expected_shape(tensor.shape), name
        if tensor.mask is not None:
            assert inferred[name + MASK_SUFFIX] == expected_shape(tensor.mask.shape), name
        else:
            assert name + MASK_SUFFIX not in inferred
    assert_matches_reference(model, onnx_model)


def test_masked_rows_cover_every_rule():
    """The masked rows are not vacuous: the three versions give three mask behaviours."""

    def masks(version):
        return [t.mask for t in MODELS[f"masked-elementwise-{version}"]().outputs]

    assert all(m is None for m in masks(K33))
    assert all(m is not None for m in masks(K2))
    # Keras 3: a mask only where every input has one (Subtract, Maximum(0, 2, 1) not...).
    assert [m is not None for m in masks(K3)] == [
        False,
        True,
        False,
        False,
        False,
        False,
        False,
        True,
        True,
        False,
    ]


def test_keras3_concatenate_with_an_unmasked_input_is_all_true():
    model = MODELS[f"masked-concatenate-{K3}"]()
    x = [np.zeros((2, *t.shape[1:]), "float32") for t in model.inputs]
    _, masks = model.run(x)
    assert not masks[0].any()  # every step of every masked input is zero: masked
    assert masks[3].all()  # the unmasked (N, 5, 1) input's piece makes every step True


def op_types(model):
    """The op types of the nodes of the model's last layer (not of its Masking layers)."""
    prefix = model.layers[-1].name
    return [n.op_type for n in to_onnx(model).graph.node if n.name.startswith(prefix)]


def test_graph_forms():
    assert op_types(merged(K2, [(3,), (3,)], pick(Add, 0, 1))) == ["Add"]
    three = op_types(merged(K2, [(3,), (3,), (3,)], pick(Average, 0, 1, 2)))
    assert three == ["Add", "Add", "Div"]
    assert "Unsqueeze" in op_types(merged(K2, [(4, 3), (3,)], pick(Maximum, 0, 1)))
    assert op_types(merged(K3, [(4, 3), (3, 5)], pick(Dot, 0, 1, axes=(2, 1)))) == ["MatMul"]
    rank4 = op_types(merged(K3, [(2, 3, 5), (3, 5)], pick(Dot, 0, 1, axes=(3, 2))))
    assert rank4.count("MatMul") == 1 and "Einsum" not in rank4 and "Reshape" not in rank4
    normalized = op_types(merged(K3, [(6,), (6,)], pick(Dot, 0, 1, axes=1, normalize=True)))
    assert normalized.count("ReduceSumSquare") == 2 and "Where" not in normalized
    masked_max = op_types(merged(K3, [(4, 3), (4, 3)], pick(Maximum, 0, 1), masked=(0, 1)))
    assert masked_max.count("Where") == 2 and "Or" in masked_max
    assert "Where" not in op_types(merged(K2, [(4, 3), (4, 3)], pick(Maximum, 0, 1), masked=(0, 1)))


def test_export_refusals():
    with pytest.raises(NotSupportedError, match="batch axis"):
        to_onnx(merged(K3, [(3,), (3,)], pick(Concatenate, 0, 1, axis=0)))
    with pytest.raises(NotSupportedError, match="different ranks"):
        to_onnx(merged(K3, [(4, 3), (3,)], pick(Add, 0, 1), masked=(0, 1)))
    with pytest.raises(NotSupportedError, match="integer and float"):
        to_onnx(merged(K3, [(3,), (3,)], pick(Add, 0, 1), dtypes=["int32", "float32"]))


@settings(max_examples=10, deadline=None)
@given(
    x_rest=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    y_rest=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    positions=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    normalize=st.booleans(),
)
def test_dot_axes_export_property(x_rest, y_rest, positions, normalize):
    px, py = positions[0] % (len(x_rest) + 1), positions[1] % (len(y_rest) + 1)
    x_shape = (*x_rest[:px], 3, *x_rest[px:])
    y_shape = (*y_rest[:py], 3, *y_rest[py:])
    model = merged(
        K3, [x_shape, y_shape], pick(Dot, 0, 1, axes=(px + 1, py + 1), normalize=normalize)
    )
    onnx_model = to_onnx(model)
    assert inferred_output_shapes(onnx_model)[model.output_names[0]] == expected_shape(
        model.output_shape
    )
    assert_matches_reference(model, onnx_model, batch_sizes=(0, 3))


def test_merge_behind_dense_layers_keeps_dense_masks():
    """A mask passed through Dense layers on both sides reaches the merge."""
    with keras_semantics(K3):
        a, b = Input((4, 2)), Input((4, 2))
        left, right = Dense(3)(Masking()(a)), Dense(3)(Masking()(b))
        model = Model([a, b], Multiply()([left, right]))
    onnx_model = to_onnx(model)
    onnx.checker.check_model(onnx_model)
    assert_matches_reference(model, onnx_model)
