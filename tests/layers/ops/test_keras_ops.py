"""Keras 3 operations recorded in functional configs: NumPy against hand formulas, ONNX
against NumPy at both opsets and batch sizes 0, 1, 7 and 64, configs round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.errors import ConfigError, ShapeError
from layerserve.export import to_onnx
from layerserve.layers import Input
from layerserve.layers.ops.elementwise import (
    EqualOp,
    GreaterEqualOp,
    GreaterOp,
    LessEqualOp,
    LessOp,
    LogicalAndOp,
    LogicalNotOp,
    LogicalOrOp,
    LogicalXorOp,
    NotEqualOp,
)
from layerserve.layers.ops.reductions import AllOp, AnyOp
from layerserve.layers.ops.shaping import (
    CastOp,
    ConcatenateOp,
    ConvertToTensorOp,
    ExpandDimsOp,
    OnesLikeOp,
    SqueezeOp,
    ZerosLikeOp,
)
from layerserve.models import Model, model_from_json

T = {"tensor": 0}
U = {"tensor": 1}


def unary(op, shape=(5, 3), dtype="float32"):
    x = Input(shape, dtype=dtype, name="x")
    return Model(x, op(x), name="unary")


def binary(op, shape=(5, 3)):
    a, b = Input(shape, name="a"), Input(shape, name="b")
    return Model([a, b], op([a, b]), name="binary")


def masks_of(x):
    return NotEqualOp(arguments=[T, 0.0])(x)


# (model, hand formula over the sample inputs)
CASES = {
    # any/all of numbers: non-zero is true (0.5 and -1 included)
    "any_of_numbers": (
        lambda: unary(lambda x: AnyOp(axis=-1)(x)),
        lambda x: np.any(x != 0, axis=-1),
    ),
    "all_of_numbers": (
        lambda: unary(lambda x: AllOp(axis=1, keepdims=True)(x)),
        lambda x: np.all(x != 0, axis=1, keepdims=True),
    ),
    "not_equal_constant": (
        lambda: unary(lambda x: NotEqualOp(arguments=[T, 0.5])(x)),
        lambda x: x != 0.5,
    ),
    "equal_int_constant": (
        lambda: unary(lambda x: EqualOp(arguments=[T, 3])(x), (6,), "int32"),
        lambda x: x == 3,
    ),
    "int_against_fraction": (
        lambda: unary(lambda x: LessOp(arguments=[T, 2.5])(x), (6,), "int32"),
        lambda x: x < 2.5,
    ),
    "constant_first": (
        lambda: unary(lambda x: GreaterOp(arguments=[0.0, T])(x)),
        lambda x: 0.0 > x,
    ),
    "greater_tensors": (lambda: binary(GreaterOp()), lambda a, b: a > b),
    "greater_equal": (lambda: binary(GreaterEqualOp()), lambda a, b: a >= b),
    "less_equal": (lambda: binary(LessEqualOp()), lambda a, b: a <= b),
    "logical_and_or_xor_not": (
        lambda: binary(
            lambda ab: LogicalNotOp()(
                LogicalXorOp()(
                    [
                        LogicalAndOp()([masks_of(ab[0]), masks_of(ab[1])]),
                        LogicalOrOp()([masks_of(ab[0]), GreaterOp(arguments=[T, 0.0])(ab[1])]),
                    ]
                )
            )
        ),
        lambda a, b: ~(((a != 0) & (b != 0)) ^ ((a != 0) | (b > 0))),
    ),
    "any_last_axis": (
        lambda: unary(lambda x: AnyOp(axis=-1)(masks_of(x))),
        lambda x: np.any(x != 0, axis=-1),
    ),
    "all_axes_keepdims": (
        lambda: unary(
            lambda x: AllOp(axis=[1, 2], keepdims=True)(GreaterOp(arguments=[T, -1.0])(x))
        ),
        lambda x: np.all(x > -1, axis=(1, 2), keepdims=True),
    ),
    "expand_then_squeeze": (
        lambda: unary(lambda x: SqueezeOp(axis=1)(ExpandDimsOp(axis=1)(masks_of(x)))),
        lambda x: x != 0,
    ),
    "concatenate_like_keras_merge_masks": (
        lambda: binary(
            lambda ab: AnyOp(axis=-1)(
                ConcatenateOp(axis=-1, arguments=[[T, U]])(
                    [
                        LogicalOrOp()(
                            [
                                ExpandDimsOp(axis=-1)(AnyOp(axis=-1)(masks_of(ab[0]))),
                                ZerosLikeOp(dtype="bool")(ab[0]),
                            ]
                        ),
                        OnesLikeOp(dtype="bool")(ab[1]),
                    ]
                )
            )
        ),
        lambda a, b: np.ones(a.shape[:2], dtype=bool),
    ),
    "cast": (
        lambda: unary(lambda x: CastOp(dtype="float32")(masks_of(x))),
        lambda x: (x != 0).astype("float32"),
    ),
    "convert_to_tensor_identity": (
        lambda: unary(
            lambda x: ConvertToTensorOp(dtype=None, sparse=None, ragged=None)(
                GreaterOp(arguments=[T, 0.0])(x)
            )
        ),
        lambda x: x > 0,
    ),
    "convert_to_tensor_mask_unchanged": (
        lambda: unary(lambda x: ConvertToTensorOp(sparse=False, ragged=False)(masks_of(x))),
        lambda x: x != 0,
    ),
    "convert_to_tensor_dtype": (
        lambda: unary(lambda x: ConvertToTensorOp(dtype="int32")(x)),
        lambda x: x.astype("int32"),
    ),
}


def sample(model, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        shape = (batch, *tensor.shape[1:])
        if tensor.dtype.startswith("int"):
            arrays.append(rng.integers(0, 5, shape).astype(tensor.dtype))
        else:
            values = rng.choice([-2.0, -1.0, 0.0, 0.5, 1.0], size=shape)
            arrays.append(values.astype(tensor.dtype))
    return arrays


@pytest.mark.parametrize("case", list(CASES))
def test_reference_equals_hand_formula(case):
    build, formula = CASES[case]
    model = build()
    arrays = sample(model)
    got = model.predict(arrays if len(arrays) > 1 else arrays[0])
    expected = formula(*arrays)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert model.output_shape == (None, *expected.shape[1:])


@pytest.mark.parametrize("case", list(CASES))
def test_export_matches_reference(case, opset):
    model = CASES[case][0]()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    assert list(inferred_output_shapes(onnx_model).values())[0] == [
        "batch",
        *model.output_shape[1:],
    ]
    assert_matches_reference(model, onnx_model)


@pytest.mark.parametrize("case", list(CASES))
def test_config_round_trip(case):
    model = CASES[case][0]()
    again = model_from_json(model.to_json())
    arrays = sample(again, seed=1)
    feed = arrays if len(arrays) > 1 else arrays[0]
    np.testing.assert_array_equal(again.predict(feed), model.predict(feed))


def test_errors():
    x = Input((5, 3))
    with pytest.raises(ShapeError, match="expected axes in"):
        AnyOp(axis=3)(x)
    with pytest.raises(ConfigError, match="keepdims"):
        AnyOp(axis=1, keepdims="yes")
    with pytest.raises(ConfigError, match="expects 2 tensor"):
        NotEqualOp(arguments=[T, U])(x)
    with pytest.raises(ShapeError, match="expected size 1 on axis 1"):
        SqueezeOp(axis=1)(x)
    with pytest.raises(ShapeError, match="broadcast"):
        GreaterOp()([Input((5, 3)), Input((4, 3))])


@pytest.mark.parametrize("key", ["sparse", "ragged"])
def test_convert_to_tensor_refuses_sparse_and_ragged(key):
    with pytest.raises(ConfigError, match=f"expected `{key}` to be null or false"):
        ConvertToTensorOp(**{key: True})


@pytest.mark.parametrize("batch", [0, 1, 7, 64])
def test_convert_to_tensor_batches(batch):
    model = unary(lambda x: ConvertToTensorOp(dtype="int32")(x))
    (x,) = sample(model, batch=batch)
    np.testing.assert_array_equal(model.predict(x), x.astype("int32"))
    assert_matches_reference(model, to_onnx(model), batch_sizes=(batch,))


def _recorded_coupling(model: Model) -> list[str]:
    import json

    onnx_model = to_onnx(model)
    metadata = {p.key: p.value for p in onnx_model.metadata_props}
    return json.loads(metadata["batch_coupled_layers"])


@pytest.mark.parametrize(
    ("make", "coupled"),
    [
        # any(x == 0) over the rows: a row's answer depends on its batch, whichever
        # values random probing happens to draw
        (lambda x: AnyOp(axis=0, keepdims=True, name="rows")(EqualOp(arguments=[T, 0.0])(x)), True),
        (lambda x: AllOp(axis=None, name="rows")(x), True),
        (lambda x: ConcatenateOp(axis=0, arguments=[[T, U]], name="rows")([x, x]), True),
        (lambda x: ExpandDimsOp(axis=0, name="rows")(x), True),
        (lambda x: AnyOp(axis=-1, name="rows")(x), False),
        (lambda x: ConcatenateOp(axis=-1, arguments=[[T, U]], name="rows")([x, x]), False),
    ],
)
def test_operations_along_the_batch_axis_are_recorded_as_coupling_rows(make, coupled):
    """The service reads the record and never merges requests for such a model."""
    model = unary(make)
    assert _recorded_coupling(model) == (["rows"] if coupled else [])


def test_concatenating_tensors_of_two_dtypes_is_refused():
    """Keras promotes int32 with float32 to float32 (NumPy: float64, and 2**24 + 1 kept):
    refused by the reference and the export alike, never computed by other rules."""
    from layerserve.errors import DTypeError

    a, b = Input((2,), dtype="int32", name="a"), Input((2,), name="b")
    model = Model([a, b], ConcatenateOp(axis=-1, arguments=[[T, U]], name="joined")([a, b]))
    with pytest.raises(DTypeError, match=r"'joined'.*dtypes=\['int32', 'float32'\]"):
        model.predict([np.ones((1, 2), "int32"), np.ones((1, 2), "float32")])
    with pytest.raises(DTypeError, match="expected tensors of one dtype"):
        to_onnx(model)
