"""The parity table of the activation converters and of every activation name: one row
per name and per argument combination that changes the graph, at opset 13 and the
newest, batch sizes 0, 1, 7 and 64; then the turning points and large inputs, NaN and
infinities, float64, masks, and activation layers used as another layer's activation."""

import copy
import warnings

import numpy as np
import pytest
from onnx_checks import (
    OPSETS,
    assert_graph_quality,
    assert_matches_reference,
    inferred_output_shapes,
)

from layerserve import activations
from layerserve.export import to_onnx
from layerserve.export.parity import session
from layerserve.layers import (
    ELU,
    Activation,
    Dense,
    Input,
    LeakyReLU,
    Masking,
    PReLU,
    ReLU,
    Softmax,
    ThresholdedReLU,
)
from layerserve.models import Model
from layerserve.serialization import keras_semantics

# Every name any Keras resolves and layerserve can compute (threshold cannot be used by
# name), including the aliases and the internal Keras 3 hard sigmoid.
NAMES = [n for n in activations.available_names() if n != "threshold"] + ["hard_sigmoid_v3"]
GRID = np.array(
    [-40, -20, -6, -3.5, -3, -2.5, -1.0001, -1, -0.9999, -0.5001, -0.5, -0.4999, -0.1]
    + [-1e-6, 0, 1e-6, 0.1, 0.4999, 0.5, 0.5001, 0.9999, 1, 1.0001, 2.5, 3, 3.5, 6, 7, 20, 40],
    dtype=np.float32,
)


def single(layer, shape=(3, 6), dtype="float32", version="2.2.4"):
    with keras_semantics(version), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sparsemax's note
        return Model(x := Input(shape, dtype=dtype), layer()(x))


def by_name(name, dtype="float32"):
    """Outside a version block every name resolves (hard_sigmoid_v3 is Keras 3's)."""
    x = Input((3, 6), dtype=dtype)
    if name == "linear":  # alone it would leave the input as the output
        return Model(x, Activation("linear")(Dense(6)(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sparsemax's note
        return Model(x, Activation(name)(x))


def masked_softmax(version, **kwargs):
    with keras_semantics(version):
        x, mask = Input((3, 4)), Input((3, 4), dtype="bool")
        return Model([x, mask], Softmax(**kwargs)(x, mask=mask))


LAYERS = {
    "relu": lambda: single(ReLU),
    "relu-max": lambda: single(lambda: ReLU(max_value=1.5)),
    "relu-slope": lambda: single(lambda: ReLU(negative_slope=0.3)),
    "relu-threshold-k2": lambda: single(lambda: ReLU(threshold=0.5), version="2.15.0"),
    "relu-threshold-k3": lambda: single(lambda: ReLU(threshold=0.5), version="3.15.1"),
    "relu-all": lambda: single(lambda: ReLU(1.2, 0.3, 0.5)),
    "relu-max6-slope": lambda: single(lambda: ReLU(max_value=6, negative_slope=0.3)),
    "relu-max-threshold": lambda: single(lambda: ReLU(max_value=1.0, threshold=0.2)),
    "relu-negative-threshold": lambda: single(lambda: ReLU(1.0, 0.2, -0.5)),
    "leaky-relu": lambda: single(lambda: LeakyReLU(0.1)),
    "leaky-relu-default-k3": lambda: single(LeakyReLU, version="3.15.1"),
    "prelu": lambda: single(PReLU),
    "prelu-shared": lambda: single(lambda: PReLU(shared_axes=[1])),
    "prelu-python-index": lambda: single(lambda: PReLU(shared_axes=0), shape=(3, 4, 5)),
    "elu": lambda: single(ELU),
    "elu-alpha": lambda: single(lambda: ELU(0.4)),
    "thresholded-relu": lambda: single(lambda: ThresholdedReLU(0.4)),
    "softmax": lambda: single(Softmax),
    "softmax-axis": lambda: single(lambda: Softmax(axis=1)),
    "softmax-axes": lambda: single(lambda: Softmax(axis=[1, 2]), shape=(3, 4, 5), version="3.15.1"),
    "softmax-axes-k2": lambda: single(lambda: Softmax(axis=[1, 2]), shape=(3, 4, 5)),
    "softmax-axes-batch": lambda: single(lambda: Softmax(axis=[0, 2]), version="3.15.1"),
    "softmax-rank2-axis0-k2": lambda: single(lambda: Softmax(axis=0), shape=(5,)),
    "softmax-rank1-k3": lambda: single(Softmax, shape=(), version="3.15.1"),
    "activation-softmax-rank1-k3": lambda: single(
        lambda: Activation("log_softmax"), shape=(), version="3.15.1"
    ),
    "softmax-mask-k2": lambda: masked_softmax("2.2.4"),
    "softmax-mask-tf-keras": lambda: masked_softmax("2.15.0"),
    "softmax-mask-robust": lambda: masked_softmax("2.15.0", robust_masking=True),
    "softmax-mask-keras-3.5": lambda: masked_softmax("3.5.0"),
    "softmax-mask-keras-3.11": lambda: masked_softmax("3.11.0"),
    "softmax-mask-keras-3.13": lambda: masked_softmax("3.13.0"),
    "softmax-mask-keras-3.15": lambda: masked_softmax("3.15.1"),
    "masks-pass-through": lambda: single(
        lambda: _chain(Masking(), ReLU(), LeakyReLU(), PReLU(), ELU(), ThresholdedReLU()),
        shape=(5, 3),
    ),
    "layer-as-activation": lambda: single(
        lambda: _chain(Dense(4, activation=LeakyReLU(0.2)), Dense(3, activation=Softmax())),
        version="2.15.0",
    ),
}
ROWS = {**{f"name-{n}": (lambda n=n: by_name(n)) for n in NAMES}, **LAYERS}


def _chain(*layers):
    class Chain:
        def __call__(self, x):
            for layer in layers:
                x = layer(x)
            return x

    return Chain()


def _without_forwarded_masks(onnx_model):
    """The exporter forwards a mask that is a model input to the mask output with an
    Identity (its choice, not the converter's); the shared quality check sees the graph
    without it."""
    onnx_model = copy.deepcopy(onnx_model)
    graph = onnx_model.graph
    inputs = {i.name for i in graph.input}
    forwarded = {
        n.output[0]: n.input[0]
        for n in graph.node
        if n.op_type == "Identity" and n.input[0] in inputs and n.output[0].endswith("_mask")
    }
    kept = [n for n in graph.node if n.op_type != "Identity" or n.output[0] not in forwarded]
    del graph.node[:]
    graph.node.extend(kept)
    for output in graph.output:
        output.name = forwarded.get(output.name, output.name)
    return onnx_model


def _randomise(model, rng):
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in weights])


@pytest.mark.parametrize("build", ROWS.values(), ids=ROWS.keys())
def test_export_matches_reference(build, opset, rng):
    model = build()
    _randomise(model, rng)
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(_without_forwarded_masks(onnx_model))
    shapes = inferred_output_shapes(onnx_model)
    assert shapes[model.output_names[0]] == ["batch", *model.output_shape[1:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # exp overflow in the reference
        assert_matches_reference(model, onnx_model)


def _outputs_model(names, shape, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = Input(shape, dtype=dtype)
        return Model(x, [Activation(n, name=f"act_{n}")(x) for n in names if n != "linear"])


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_name_at_the_turning_points_and_large_inputs(opset, dtype):
    """ORT against the reference where the functions turn and at +-20, +-40, where
    overflow, cancellation or a misplaced comparison would show."""
    model = _outputs_model(NAMES, (GRID.size,), dtype)
    x = np.stack([GRID, -GRID, GRID[::-1]]).astype(dtype)
    runner = session(to_onnx(model, opset=opset))
    with np.errstate(over="ignore"):
        expected = model.predict(x)
    got = runner.run(None, {runner.get_inputs()[0].name: x})
    for name, want, value in zip(model.output_names, expected, got, strict=True):
        assert value.dtype == want.dtype, name
        np.testing.assert_allclose(value, want, rtol=2e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("opset", OPSETS)
def test_nan_and_infinities_follow_each_keras(opset):
    models = {
        "2.15.0": single(lambda: ReLU(negative_slope=0.1, threshold=0.5), shape=(4,)),
        "3.15.1": single(lambda: ReLU(threshold=0.5), shape=(4,), version="3.15.1"),
        "thresholded": single(lambda: ThresholdedReLU(0.5), shape=(4,)),
        "softmax-axes": single(lambda: Softmax(axis=[1, 2]), shape=(2, 2), version="3.15.1"),
    }
    values = np.array([[np.nan, -np.inf, np.inf, 0.7]], dtype=np.float32)
    for key, model in models.items():
        x = values.reshape((1, *model.input_shape[1:]))
        runner = session(to_onnx(model, opset=opset))
        with np.errstate(invalid="ignore"):
            expected = model.predict(x)
        got = runner.run(None, {runner.get_inputs()[0].name: x})[0]
        np.testing.assert_array_equal(got, expected, err_msg=key)


def test_fully_masked_rows_in_onnx_are_zeros_or_uniform_by_version():
    x = np.array([[[1.0, 2.0, 3.0, 4.0]] * 3], dtype=np.float32)
    mask = np.zeros((1, 3, 4), bool)
    mask[0, 1, :2] = True
    rows = {"3.15.1": 0.0, "3.11.0": 0.0, "3.5.0": 0.25, "2.15.0": 0.25}
    for version, fully_masked in rows.items():
        model = masked_softmax(version)
        runner = session(to_onnx(model))
        names = [i.name for i in runner.get_inputs()]
        out = runner.run(None, dict(zip(names, [x, mask], strict=True)))[0]
        np.testing.assert_allclose(out[0, 0], fully_masked, err_msg=version)
        np.testing.assert_allclose(out[0, 1], [0.26894143, 0.7310586, 0, 0], rtol=1e-6)


@pytest.mark.parametrize(
    ("build", "ops"),
    [
        (lambda: single(lambda: LeakyReLU(0.3)), ["LeakyRelu"]),
        (lambda: single(lambda: ReLU(max_value=2.0)), ["Clip"]),
        (lambda: single(ELU), ["Elu"]),
        (lambda: single(PReLU), ["PRelu"]),
        (lambda: single(lambda: Softmax(axis=1)), ["Softmax"]),
        (lambda: by_name("selu"), ["Selu"]),
        (lambda: by_name("soft_shrink"), ["Shrink"]),
    ],
)
def test_single_op_forms_state_their_attributes(build, ops):
    onnx_model = to_onnx(build(), opset=13)
    assert [n.op_type for n in onnx_model.graph.node] == ops
    attributes = {a.name: a for n in onnx_model.graph.node for a in n.attribute}
    if ops == ["LeakyRelu"]:
        assert attributes["alpha"].f == pytest.approx(0.3)  # ONNX's default is 0.01


@pytest.mark.parametrize(
    ("name", "opset", "op"),
    [("hard_silu", 14, "HardSwish"), ("mish", 18, "Mish"), ("gelu", 20, "Gelu")],
)
def test_newer_opsets_use_the_fused_op(name, opset, op):
    assert op not in [n.op_type for n in to_onnx(by_name(name), opset=opset - 1).graph.node]
    assert op in [n.op_type for n in to_onnx(by_name(name), opset=opset).graph.node]


@pytest.mark.filterwarnings("ignore:sparsemax is computed:UserWarning")
def test_only_element_wise_activations_may_change_layout():
    from layerserve.export.activations import EMITTERS, is_elementwise

    # converters that move channels read EMITTERS: an axis activation must not be there
    for name in ("softmax", "log_softmax", "sparsemax", "glu"):
        assert not is_elementwise(activations.get(name)), name
    assert "sparsemax" not in EMITTERS and "glu" not in EMITTERS
    for name in ("relu", "gelu", "hard_sigmoid", "soft_shrink", "mish"):
        assert is_elementwise(activations.get(name)), name
    assert not is_elementwise(LeakyReLU(0.1))
