"""The parity table of the padding, cropping and upsampling converters: one row per
argument combination that changes the graph, at opset 13 and the newest, batch sizes
0, 1, 7 and 64; then unknown spatial sizes, and a property over random arguments."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.export import to_onnx
from layerserve.export.parity import session
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

CF = "channels_first"


def seq(layer, shape, dtype="float32", version="2.2.4"):
    with keras_semantics(version):
        return Model(i := Input(shape, dtype=dtype), layer()(i))


MODELS = {
    # Pad: pads in the actual layout, zero pads included.
    "zero-padding1d": lambda: seq(lambda: ZeroPadding1D((2, 0)), (5, 3)),
    "zero-padding1d-cf": lambda: seq(
        lambda: ZeroPadding1D((1, 3), data_format=CF), (3, 5), version="3.15.1"
    ),
    "zero-padding2d": lambda: seq(lambda: ZeroPadding2D(((1, 2), (0, 3))), (4, 5, 2)),
    "zero-padding2d-cf": lambda: seq(
        lambda: ZeroPadding2D(((0, 1), (2, 2)), data_format=CF), (2, 4, 5)
    ),
    "zero-padding2d-none": lambda: seq(lambda: ZeroPadding2D(0), (3, 3, 1)),
    "zero-padding3d": lambda: seq(lambda: ZeroPadding3D(((1, 0), (0, 2), 1)), (2, 3, 2, 2)),
    "zero-padding3d-cf": lambda: seq(
        lambda: ZeroPadding3D((1, 0, 2), data_format=CF), (2, 2, 3, 2)
    ),
    "zero-padding2d-int64": lambda: seq(lambda: ZeroPadding2D(1), (2, 3, 1), dtype="int64"),
    # Slice: an end of 0 is INT64_MAX, others count from the end.
    "cropping1d-start-only": lambda: seq(lambda: Cropping1D((2, 0)), (6, 3)),
    "cropping1d-end-only": lambda: seq(lambda: Cropping1D((0, 2)), (6, 3)),
    "cropping2d": lambda: seq(lambda: Cropping2D(((1, 2), (0, 3))), (6, 7, 2)),
    "cropping2d-cf": lambda: seq(lambda: Cropping2D(((2, 0), 1), data_format=CF), (2, 5, 6)),
    "cropping2d-default-none": lambda: seq(Cropping2D, (3, 4, 2)),
    "cropping3d": lambda: seq(lambda: Cropping3D(((1, 0), (0, 1), (1, 1))), (3, 4, 5, 2)),
    "cropping3d-cf": lambda: seq(lambda: Cropping3D((1, 0, 1), data_format=CF), (2, 4, 3, 5)),
    # Resize nearest (float32) or Unsqueeze/Expand/Reshape (other dtypes).
    "up-sampling1d": lambda: seq(lambda: UpSampling1D(3), (4, 3)),
    "up-sampling2d": lambda: seq(lambda: UpSampling2D((2, 3)), (3, 4, 2)),
    "up-sampling2d-cf": lambda: seq(lambda: UpSampling2D((1, 2), data_format=CF), (2, 3, 4)),
    "up-sampling3d": lambda: seq(lambda: UpSampling3D((2, 1, 3)), (2, 3, 2, 2)),
    "up-sampling3d-cf": lambda: seq(lambda: UpSampling3D(2, data_format=CF), (2, 2, 3, 2)),
    "up-sampling2d-float64": lambda: seq(lambda: UpSampling2D((2, 3)), (3, 4, 2), "float64"),
    "up-sampling3d-cf-int32": lambda: seq(
        lambda: UpSampling3D((1, 2, 3), data_format=CF), (2, 2, 3, 2), "int32"
    ),
    # Resize linear: asymmetric for Keras 2.2.3-2.3 files, half_pixel from tf.keras 2.4.
    "bilinear-keras2.2": lambda: seq(
        lambda: UpSampling2D((2, 3), interpolation="bilinear"), (3, 4, 2)
    ),
    "bilinear-keras2.2-cf": lambda: seq(
        lambda: UpSampling2D((3, 1), data_format=CF, interpolation="bilinear"), (2, 3, 4)
    ),
    "bilinear-tf-keras": lambda: seq(
        lambda: UpSampling2D((2, 3), interpolation="bilinear"), (3, 4, 2), version="2.21.0"
    ),
    "bilinear-keras3-cf": lambda: seq(
        lambda: UpSampling2D((4, 2), data_format=CF, interpolation="bilinear"),
        (2, 3, 4),
        version="3.15.1",
    ),
    "bilinear-keras3-float64": lambda: seq(
        lambda: UpSampling2D(2, interpolation="bilinear"), (3, 4, 2), "float64", "3.15.1"
    ),
    "bilinear-tf-keras-int32": lambda: seq(
        lambda: UpSampling2D(2, interpolation="bilinear"), (3, 4, 2), "int32", "2.21.0"
    ),
}


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    (inferred,) = inferred_output_shapes(onnx_model).values()
    assert inferred == ["batch", *model.output_shape[1:]]
    assert_matches_reference(model, onnx_model)


def test_graphs_use_one_node_per_layer_for_float32():
    for key, op in (
        ("zero-padding2d", "Pad"),
        ("cropping3d", "Slice"),
        ("up-sampling2d", "Resize"),
    ):
        assert [n.op_type for n in to_onnx(MODELS[key]()).graph.node] == [op], key
    resize = to_onnx(MODELS["bilinear-keras2.2"]()).graph.node[0]
    attributes = {a.name: a.s.decode() for a in resize.attribute if a.type == a.STRING}
    assert attributes["mode"] == "linear"
    assert attributes["coordinate_transformation_mode"] == "asymmetric"


VARIABLE = {
    # model, then the unknown sizes fed
    "cropping1d": (lambda: seq(lambda: Cropping1D((1, 2)), (None, 3)), [(4,), (9,)]),
    "zero-padding2d": (lambda: seq(lambda: ZeroPadding2D(((1, 0), 2)), (None, None, 2)), [(2, 3)]),
    "cropping2d-cf": (
        lambda: seq(lambda: Cropping2D(((0, 1), (2, 0)), data_format=CF), (2, None, None)),
        [(3, 4), (6, 5)],
    ),
    "up-sampling1d": (lambda: seq(lambda: UpSampling1D(2), (None, 3)), [(1,), (6,)]),
    "up-sampling1d-float64": (lambda: seq(lambda: UpSampling1D(3), (None, 2), "float64"), [(5,)]),
    "bilinear-keras3": (
        lambda: seq(
            lambda: UpSampling2D((2, 3), interpolation="bilinear"), (None, None, 2), version="3.0.0"
        ),
        [(1, 1), (3, 5)],
    ),
    "up-sampling3d-cf-int32": (
        lambda: seq(lambda: UpSampling3D(2, data_format=CF), (1, None, 2, None), "int32"),
        [(2, 3)],
    ),
}


@pytest.mark.parametrize(("build", "sizes"), VARIABLE.values(), ids=VARIABLE.keys())
def test_unknown_spatial_sizes(build, sizes, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    runner = session(onnx_model)
    rng = np.random.default_rng(0)
    dtype = np.dtype(model.inputs[0].dtype)
    for known in sizes:
        for batch in (0, 3):
            fed = iter(known)
            shape = [batch] + [d if d is not None else next(fed) for d in model.input_shape[1:]]
            x = (rng.normal(size=shape) * 10).astype(dtype)
            (got,) = runner.run(None, {model.input_names[0]: x})
            expected = model.predict(x)
            assert got.dtype == expected.dtype
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    rank=st.integers(1, 3),
    sizes=st.lists(st.integers(3, 5), min_size=3, max_size=3),
    pads=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=3, max_size=3),
    factors=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    first=st.booleans(),
    bilinear=st.booleans(),
)
def test_random_arguments_property(rank, sizes, pads, factors, first, bilinear):
    data_format = CF if first and rank > 1 else "channels_last"
    kwargs = {} if rank == 1 else {"data_format": data_format}
    spatial = tuple(sizes[:rank])
    shape = (2, *spatial) if data_format == CF else (*spatial, 2)
    pairs = pads[0] if rank == 1 else tuple(pads[:rank])
    crops = pads[0] if rank == 1 else tuple(pads[:rank])
    up = {1: UpSampling1D, 2: UpSampling2D, 3: UpSampling3D}[rank]
    up_kwargs = {"interpolation": "bilinear"} if rank == 2 and bilinear else {}
    layers = [
        {1: ZeroPadding1D, 2: ZeroPadding2D, 3: ZeroPadding3D}[rank](pairs, **kwargs),
        {1: Cropping1D, 2: Cropping2D, 3: Cropping3D}[rank](crops, **kwargs),
        up(tuple(factors[:rank]) if rank > 1 else factors[0], **kwargs, **up_kwargs),
    ]
    model = Sequential([Input(shape), *layers])
    assert_matches_reference(model, to_onnx(model), batch_sizes=(0, 2))
