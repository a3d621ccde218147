"""to_onnx: names, batch axis, metadata, determinism, opsets, files and error messages."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx_checks import assert_matches_reference

from layerserve import examples
from layerserve.errors import ConfigError, ExportError, NotSupportedError
from layerserve.export import MIN_OPSET, max_runtime_opset, to_onnx
from layerserve.layers import Dense, Dropout, Input, Layer, Masking
from layerserve.models import Model, Sequential, model_from_json
from layerserve.serialization import safe_mode_scope


def test_inputs_and_outputs_keep_the_model_names_with_a_symbolic_batch():
    a, b = Input((3,), name="left"), Input((2, 4), name="right")
    model = Model([a, b], [Dense(2, name="scores")(a), Dense(5, name="per_step")(b)])
    graph = to_onnx(model).graph

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in graph.input] == [
        ("left", ["batch", 3]),
        ("right", ["batch", 2, 4]),
    ]
    assert [(o.name, dims(o)) for o in graph.output] == [
        ("scores", ["batch", 2]),
        ("per_step", ["batch", 2, 5]),
    ]


def test_mask_outputs_are_named_after_their_output_and_listed_in_metadata():
    model = Sequential([Masking(input_shape=(4, 2), name="mask_in"), Dense(3, name="out")])
    onnx_model = to_onnx(model)
    outputs = {o.name: o.type.tensor_type.elem_type for o in onnx_model.graph.output}
    assert outputs == {"out": onnx.TensorProto.FLOAT, "out_mask": onnx.TensorProto.BOOL}
    metadata = {p.key: p.value for p in onnx_model.metadata_props}
    assert json.loads(metadata["mask_outputs"]) == {"out": "out_mask"}


def test_metadata_records_version_config_and_keras_version():
    model = examples.mlp()
    metadata = {p.key: p.value for p in to_onnx(model).metadata_props}
    from layerserve import __version__

    assert metadata["layerserve_version"] == __version__
    assert metadata["keras_version"] == "2.2.4"
    rebuilt = model_from_json(metadata["model_config"])
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("name", sorted(examples.EXAMPLES))
def test_the_same_model_always_exports_to_identical_bytes(tmp_path, name):
    model = examples.EXAMPLES[name]()
    first = to_onnx(model, tmp_path / "a.onnx").SerializeToString()
    second = to_onnx(model, tmp_path / "b.onnx").SerializeToString()
    with safe_mode_scope(False):  # the Lambda examples rebuild from their bytecode
        rebuilt = type(model).from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    assert first == second
    # A rebuilt Lambda's re-marshalled bytecode may differ in the stored config, so the
    # graph (names, nodes, weights) is what must match for a model rebuilt from its config.
    original = onnx.load_from_string(first).graph.SerializeToString()
    assert to_onnx(rebuilt).graph.SerializeToString() == original
    assert (tmp_path / "a.onnx").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("opset", range(MIN_OPSET, max_runtime_opset() + 1))
def test_every_opset_from_13_to_the_runtime_maximum_works(opset):
    model = Sequential([Masking(input_shape=(3, 2)), Dense(4, activation="gelu"), Dropout(0.5)])
    onnx_model = to_onnx(model, opset=opset)
    assert onnx_model.opset_import[0].version == opset
    assert_matches_reference(model, onnx_model, batch_sizes=(0, 3))


def test_default_is_opset_21_at_ir_version_10_whatever_onnxruntime_is_installed():
    """The newest opset and IR version that onnxruntime 1.18, the lowest pyproject.toml
    allows, loads; not the newest the installed onnxruntime runs."""
    onnx_model = to_onnx(examples.mlp())
    assert (onnx_model.opset_import[0].version, onnx_model.ir_version) == (21, 10)


# ONNX's versioning table: the IR version that arrived with each of these opsets.
@pytest.mark.parametrize(("opset", "ir_version"), [(13, 7), (17, 8), (19, 9), (21, 10)])
def test_each_opset_is_written_with_the_lowest_ir_version_that_carries_it(opset, ir_version):
    assert to_onnx(examples.mlp(), opset=opset).ir_version == ir_version


@pytest.mark.parametrize("opset", [12, max_runtime_opset() + 1, "13", True])
def test_unsupported_opsets_are_refused_with_the_range(opset):
    with pytest.raises(ConfigError, match=f"between {MIN_OPSET} and {max_runtime_opset()}"):
        to_onnx(examples.mlp(), opset=opset)


class Doubler(Layer):
    def call(self, inputs, training=False, mask=None):
        return inputs * 2


def custom_activation_with_sort(x):
    return np.sort(x, axis=-1)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: Sequential([Doubler(input_shape=(3,), name="twice")]),
            r"Layer 'twice' \(Doubler\) has no ONNX converter. Supported layers: .*Dense",
        ),
        (
            lambda: Model(i := Input((3,)), Dropout(0.5, name="mc")(i, training=True)),
            r"Layer 'mc' is called with training=True",
        ),
        (
            lambda: Sequential(
                [Dense(2, activation=custom_activation_with_sort, input_shape=(3,), name="sorted")]
            ),
            r"Layer 'sorted', argument activation='custom_activation_with_sort'",
        ),
    ],
    ids=["unknown-layer", "training-dropout", "untraceable-activation"],
)
def test_unconvertible_models_name_the_layer(build, match):
    with pytest.raises(NotSupportedError, match=match):
        to_onnx(build())


def test_unbuilt_model_is_refused():
    with pytest.raises(ConfigError, match="has not been built"):
        to_onnx(Sequential([Dense(2)]))


def test_a_graph_that_fails_onnx_check_is_refused_with_a_typed_error(monkeypatch, tmp_path):
    """A converter's mistake (here, TimeDistributed reporting its input's index dtype
    for an Embedding's floats, as it once did) surfaces as an ExportError naming the
    model, and no file is written."""
    from layerserve.layers import LSTM, Embedding, TimeDistributed

    monkeypatch.setattr(TimeDistributed, "output_dtype", Layer.output_dtype)
    ids = Input((3, 5), dtype="int32")
    words = TimeDistributed(Embedding(10, 4))(ids)
    model = Model(ids, LSTM(2)(TimeDistributed(LSTM(3))(words)), name="documents")
    with pytest.raises(ExportError, match="'documents' fails onnx's own check.*MatMul"):
        to_onnx(model, tmp_path / "documents.onnx")
    assert not (tmp_path / "documents.onnx").exists()


def _masked_steps_model(output: str, other: str, other_is_input: bool) -> Model:
    """A masked output ``output`` (Masking keeps its mask), and ``other`` named as an
    input or as a second output."""
    steps = Input((4, 3), name=other if other_is_input else "steps")
    masked = Masking(name=output)(steps)
    outputs = [masked] if other_is_input else [masked, Dense(2, name=other)(steps)]
    return Model(steps, outputs)


@pytest.mark.parametrize(
    ("output", "other", "other_is_input", "says"),
    [
        (
            "tags",
            "tags_mask",
            False,
            "output 'tags_mask' would be the graph's value 'tags_mask', which is already "
            "the mask of output 'tags'",
        ),
        (
            "seq",
            "seq_mask",
            True,
            "the mask of output 'seq' would be the graph's value 'seq_mask', which is "
            "already input 'seq_mask'",
        ),
    ],
)
def test_a_mask_output_whose_name_is_taken_is_refused_naming_both(
    output, other, other_is_input, says
):
    model = _masked_steps_model(output, other, other_is_input)
    with pytest.raises(NotSupportedError) as info:
        to_onnx(model)
    assert says in str(info.value) and "rename one of those layers" in str(info.value)


def test_an_output_named_like_an_unmasked_outputs_mask_is_exported():
    """Only an output with a Keras mask claims ``<name>_mask``."""
    steps = Input((3,), name="steps")
    model = Model(steps, [Dense(2, name="dense")(steps), Dense(1, name="dense_mask")(steps)])
    onnx_model = to_onnx(model)
    assert [o.name for o in onnx_model.graph.output] == ["dense", "dense_mask"]
    from layerserve.export.parity import session

    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    runner = session(onnx_model)
    for got, want in zip(runner.run(None, {"steps": x}), model.predict(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
