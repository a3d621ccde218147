"""The parity table: one row per argument combination that changes the ONNX graph, at
the lowest and newest opsets and batch sizes 0, 1, 7 and 64: onnxruntime equals the
NumPy reference, the graph is clean, and the inferred output shapes are the model's."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import assert_graph_quality, assert_matches_reference, inferred_output_shapes

from layerserve.export import to_onnx
from layerserve.export.api import output_names
from layerserve.layers import (
    BatchNormalization,
    Dense,
    GroupNormalization,
    Input,
    LayerNormalization,
    Masking,
    RMSNormalization,
    UnitNormalization,
)
from layerserve.models import Model, Sequential
from layerserve.serialization import keras_semantics


def randomized(model, seed=0):
    """Every weight drawn (variances and standard deviations positive)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights(
            [
                rng.uniform(0.2, 2.0, v.shape)
                if any(k in v.name for k in ("variance", "stddev"))
                else rng.normal(0.0, 0.7, v.shape)
                for v in layer.weights
            ]
        )
    return model


def one(layer_factory, shape, version="2.2.4", dtype=None):
    def build():
        with keras_semantics(version):
            return randomized(Sequential([Input(shape, dtype=dtype), layer_factory()]))

    return build


def masked_chain():
    with keras_semantics("3.15.1"):
        return randomized(
            Sequential(
                [
                    Masking(input_shape=(6, 4)),
                    LayerNormalization(),
                    BatchNormalization(),
                    GroupNormalization(2),
                    UnitNormalization(),
                ]
            )
        )


MODELS = {
    "bn-rank2": one(lambda: BatchNormalization(), (5,)),
    "bn-channels-first-no-center": one(
        lambda: BatchNormalization(axis=1, center=False, epsilon=0.1), (3, 4, 5), "3.15.1"
    ),
    "bn-channels-last-no-scale": one(lambda: BatchNormalization(scale=False), (4, 5, 3)),
    "bn-no-center-no-scale": one(lambda: BatchNormalization(center=False, scale=False), (4,)),
    "bn-multi-axis": one(lambda: BatchNormalization(axis=[1, 3]), (3, 4, 2), "2.15.0"),
    "bn-virtual-batch": one(lambda: BatchNormalization(virtual_batch_size=3), (4, 2), "2.15.0"),
    "bn-renorm": one(lambda: BatchNormalization(renorm=True), (3, 2), "3.15.1"),
    "bn-float64": one(lambda: BatchNormalization(dtype="float64"), (3,), dtype="float64"),
    "ln-last-axis-op": one(lambda: LayerNormalization(), (5, 6), "3.15.1"),
    "ln-trailing-axes-op": one(lambda: LayerNormalization(axis=[-2, -1]), (3, 4, 5)),
    "ln-op-no-scale-no-center": one(
        lambda: LayerNormalization(scale=False, center=False, epsilon=1e-5), (6,)
    ),
    "ln-non-trailing": one(lambda: LayerNormalization(axis=[1, 3], center=False), (3, 4, 5)),
    "ln-channels-first": one(lambda: LayerNormalization(axis=1, scale=False), (3, 4, 5)),
    "ln-unsorted-keras3": one(lambda: LayerNormalization(axis=[3, 1]), (3, 4, 2), "3.15.1"),
    "ln-unsorted-tf-keras": one(lambda: LayerNormalization(axis=[3, 1]), (3, 4, 2), "2.15.0"),
    "ln-rms-scaling": one(
        lambda: LayerNormalization(rms_scaling=True, scale=False), (4, 5), "3.15.1"
    ),
    "ln-float64": one(lambda: LayerNormalization(dtype="float64"), (5,), dtype="float64"),
    "gn-channels-last": one(lambda: GroupNormalization(3), (4, 3, 6)),
    "gn-channels-first-no-center": one(
        lambda: GroupNormalization(2, axis=1, center=False), (4, 3, 5)
    ),
    "gn-instance-no-scale": one(lambda: GroupNormalization(-1, scale=False), (5, 3)),
    "gn-rank2": one(lambda: GroupNormalization(2, epsilon=0.1), (6,)),
    "gn-middle-axis": one(lambda: GroupNormalization(2, axis=2), (3, 4, 2)),
    "un-keras3": one(lambda: UnitNormalization(), (5,), "3.15.1"),
    "un-tf-keras-multi-axis": one(lambda: UnitNormalization(axis=[1, 2]), (3, 4), "2.15.0"),
    "rms-default": one(lambda: RMSNormalization(), (6,), "3.15.1"),
    "rms-trailing-axes": one(lambda: RMSNormalization(axis=[-1, -2]), (3, 4, 5), "3.15.1"),
    "rms-axis-one-quirk": one(lambda: RMSNormalization(axis=1), (4, 4), "3.15.1"),
    "masked-chain": masked_chain,
}


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    shapes = inferred_output_shapes(onnx_model)
    for name, output in zip(output_names(model), model.outputs, strict=True):
        assert shapes[name] == ["batch", *output.shape[1:]], name
    assert_matches_reference(model, onnx_model)


def op_types(onnx_model):
    return [node.op_type for node in onnx_model.graph.node]


def test_graph_forms(opset):
    """BN folds to Mul + Add; LN uses the ONNX op where it can (opset 17+); the
    decompositions never transpose and never use LpNormalization or GroupNormalization."""
    assert op_types(to_onnx(MODELS["bn-channels-first-no-center"](), opset=opset)) == [
        "Mul",
        "Add",
    ]
    ln = op_types(to_onnx(MODELS["ln-trailing-axes-op"](), opset=opset))
    assert ln == (["LayerNormalization"] if opset >= 17 else ln)
    assert "LayerNormalization" not in op_types(to_onnx(MODELS["ln-non-trailing"](), opset=opset))
    for name in ("gn-channels-last", "gn-channels-first-no-center", "un-keras3"):
        ops = op_types(to_onnx(MODELS[name](), opset=opset))
        assert not {"Transpose", "GroupNormalization", "LpNormalization"} & set(ops), ops


def test_layer_normalization_op_states_the_keras_epsilon():
    onnx_model = to_onnx(MODELS["ln-last-axis-op"](), opset=17)
    (node,) = onnx_model.graph.node
    attributes = {a.name: a for a in node.attribute}
    assert attributes["epsilon"].f == pytest.approx(1e-3) and attributes["axis"].i == 2


def test_tf_keras_group_normalization_mask_weights_in_the_graph(opset):
    """tf.keras's (N, T) mask broadcast onto (N, T, C) only fits some batch sizes (here
    1 and T): those are compared; Keras fails on the others, and so does the graph."""
    with keras_semantics("2.15.0"):
        model = randomized(Sequential([Masking(input_shape=(4, 4)), GroupNormalization(2)]))
    onnx_model = to_onnx(model, opset=opset)
    assert "Expand" in op_types(onnx_model)
    assert_matches_reference(model, onnx_model, batch_sizes=(1, 4))


def test_keras3_layer_ignores_the_mask_in_the_graph(opset):
    with keras_semantics("3.15.1"):
        model = randomized(Sequential([Masking(input_shape=(4, 4)), GroupNormalization(2)]))
    assert "Expand" not in op_types(to_onnx(model, opset=opset))


def test_shared_normalization_in_a_functional_model():
    x = Input((3, 4))
    norm = LayerNormalization(axis=[1, 2], name="shared_norm")
    y = Dense(4)(norm(x))
    model = randomized(Model(x, [norm(y), y]))
    assert_matches_reference(model, to_onnx(model), batch_sizes=(0, 3))


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    data=st.data(),
    layer=st.sampled_from(["ln", "un", "rms", "gn"]),
)
def test_any_axes_export_property(sizes, data, layer):
    rank = len(sizes) + 1
    axes = data.draw(st.lists(st.integers(1, rank - 1), min_size=1, unique=True))
    with keras_semantics("3.15.1"):
        if layer == "ln":
            made = LayerNormalization(axis=axes)
        elif layer == "un":
            made = UnitNormalization(axis=axes)
        elif layer == "rms":
            made = RMSNormalization(axis=sorted(axes)[-1])
            sizes = [sizes[-1]] * len(sizes)  # the scale then broadcasts from the right
        else:
            made = GroupNormalization(1, axis=axes[0])
        model = randomized(Sequential([Input(tuple(sizes)), made]))
    assert_matches_reference(model, to_onnx(model), batch_sizes=(0, 2))
