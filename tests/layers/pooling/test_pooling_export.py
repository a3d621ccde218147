"""The pooling parity table: every argument combination that changes the graph, at the
lowest and newest opsets and batch sizes 0, 1, 7 and 64 (onnxruntime against the NumPy
reference), plus unknown lengths, empty sequences and the refusals."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_checks import (
    OPSETS,
    assert_graph_quality,
    assert_matches_reference,
    inferred_output_shapes,
)

import layerserve.layers as L
from layerserve.errors import NotSupportedError
from layerserve.export import to_onnx
from layerserve.export.parity import session
from layerserve.models import Sequential
from layerserve.serialization import keras_semantics

# Dense(exponential) is meant to overflow at masked steps (see exp_of_masked).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
CF = {"data_format": "channels_first"}
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 6, 4)}


def seq(input_shape, *layers, version="3.15.1"):
    with keras_semantics(version):
        return Sequential([L.InputLayer(input_shape=input_shape), *(f() for f in layers)])


def windowed(mode, rank, data_format, padding):
    cls = getattr(L, f"{mode}Pooling{rank}D")
    shape = (*SPATIAL[rank], 3) if data_format == "channels_last" else (3, *SPATIAL[rank])
    pool, strides = (3, 2, 2)[:rank], (2, 1, 2)[:rank]
    return lambda: seq(shape, lambda: cls(pool, strides, padding, data_format))


def global_pool(mode, rank, data_format, keepdims):
    cls = getattr(L, f"Global{mode}Pooling{rank}D")
    shape = (*SPATIAL[rank], 3) if data_format == "channels_last" else (3, *SPATIAL[rank])
    return lambda: seq(shape, lambda: cls(data_format=data_format, keepdims=keepdims))


def masked(version, keepdims=False, data_format="channels_last", steps=6):
    return lambda: seq(
        (steps, steps),
        L.Masking,
        lambda: L.GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims),
        version=version,
    )


def exp_of_masked(version):
    """+inf at the masked steps (Dense(exponential) of the zeros Masking leaves there):
    Keras 2's multiply turns it into NaN, Keras 3's where does not."""

    def build():
        model = seq(
            (5, 3),
            L.Masking,
            lambda: L.Dense(2, activation="exponential"),
            L.GlobalAveragePooling1D,
            version=version,
        )
        dense = next(layer for layer in model.layers if isinstance(layer, L.Dense))
        dense.set_weights([np.full((3, 2), -30.0, "float32"), np.full(2, 90.0, "float32")])
        return model

    return build


MODELS = {
    **{
        f"{mode.lower()}{rank}d-{fmt[9:]}-{padding}": windowed(mode, rank, fmt, padding)
        for mode in ("Max", "Average")
        for rank in (1, 2, 3)
        for fmt, padding in (
            ("channels_last", "valid"),
            ("channels_last", "same"),
            ("channels_first", "same"),
        )
    },
    "max1d-default": lambda: seq((7, 2), L.MaxPooling1D),
    "average2d-pool-above-input-same": lambda: seq(
        (2, 3, 2), lambda: L.AveragePooling2D(4, strides=1, padding="same")
    ),
    # Unknown lengths: explicit pads where they do not depend on the length, else
    # onnxruntime's SAME_UPPER (exact for strides <= pool_size).
    "max1d-variable-same": lambda: seq((None, 3), lambda: L.MaxPooling1D(3, 2, "same")),
    "average1d-variable-same": lambda: seq((None, 3), lambda: L.AveragePooling1D(4, 1, "same")),
    "average1d-variable-same-pool1": lambda: seq(
        (None, 3), lambda: L.AveragePooling1D(1, 3, "same")
    ),
    "average1d-variable-valid-cf": lambda: seq((3, None), lambda: L.AveragePooling1D(2, **CF)),
    "max2d-variable-same-cf": lambda: seq(
        (2, None, None), lambda: L.MaxPooling2D((3, 2), (1, 2), "same", **CF)
    ),
    "average3d-partly-variable-same": lambda: seq(
        (None, 5, 4, 2), lambda: L.AveragePooling3D((2, 2, 3), (2, 3, 1), "same")
    ),
    **{
        f"global-{mode.lower()}{rank}d-{fmt[9:]}-keepdims{keepdims}": global_pool(
            mode, rank, fmt, keepdims
        )
        for mode in ("Max", "Average")
        for rank in (1, 2, 3)
        for fmt, keepdims in (("channels_last", False), ("channels_first", True))
    },
    "global-average1d-variable": lambda: seq((None, 3), L.GlobalAveragePooling1D),
    "global-average2d-variable-keepdims-cf": lambda: seq(
        (3, None, None), lambda: L.GlobalAveragePooling2D(keepdims=True, **CF)
    ),
    "global-max1d-variable-cf": lambda: seq((3, None), lambda: L.GlobalMaxPooling1D(**CF)),
    "masked-keras2.2": masked("2.2.4"),
    "masked-tf-keras-keepdims": masked("2.15.0", keepdims=True),
    "masked-tf-keras-cf": masked("2.15.0", data_format="channels_first"),
    "masked-keras3": masked("3.15.1"),
    "masked-keras3-cf-keepdims": masked("3.15.1", keepdims=True, data_format="channels_first"),
    "masked-keras3-variable": lambda: seq(
        (None, 4), L.Masking, L.GlobalAveragePooling1D, version="3.15.1"
    ),
    "masked-infinite-steps-keras2": exp_of_masked("2.15.0"),
    "masked-infinite-steps-keras3": exp_of_masked("3.15.1"),
}


def expected_output_dims(model, onnx_model):
    name = onnx_model.graph.output[0].name
    shape = model.output_shape
    return ["batch", *(f"{name}_dim{i}" if d is None else d for i, d in enumerate(shape) if i)]


@pytest.mark.parametrize("build", MODELS.values(), ids=MODELS.keys())
def test_export_matches_reference(build, opset):
    model = build()
    onnx_model = to_onnx(model, opset=opset)
    assert_graph_quality(onnx_model)
    inferred = inferred_output_shapes(onnx_model)
    assert list(inferred.values()) == [expected_output_dims(model, onnx_model)]
    assert_matches_reference(model, onnx_model)


def run_onnx(onnx_model, x):
    runner = session(onnx_model)
    return runner.run(None, {runner.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("version", ["2.15.0", "3.15.1"])
def test_infinite_masked_steps_leak_only_in_keras2(version):
    model = exp_of_masked(version)()
    x = np.full((2, 5, 3), 1.0, "float32")
    x[0, 2] = 0  # a masked step: Dense(exponential) gives +inf there
    expected = model.predict(x)
    assert np.isnan(expected[0]).all() == (version < "3")
    assert np.isfinite(expected[1]).all()
    np.testing.assert_allclose(run_onnx(to_onnx(model), x), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [L.GlobalAveragePooling1D, L.GlobalMaxPooling1D],
    ids=["average", "max"],
)
def test_empty_sequence_through_a_global_pool(make, opset):
    """A length-0 sequence: the mean is 0/0 = NaN (onnxruntime's ReduceMean would say 0),
    the max -inf, as TensorFlow gives (tf.keras files; Keras 3 refuses the max, below)."""
    model = seq((None, 3), make, version="2.13.1")
    x = np.zeros((2, 0, 3), "float32")
    got = run_onnx(to_onnx(model, opset=opset), x)
    np.testing.assert_array_equal(got, model.predict(x))
    assert got.shape == (2, 3) and not np.isfinite(got).any()


@pytest.mark.parametrize("make", [L.MaxPooling1D, L.AveragePooling1D], ids=["max", "average"])
def test_empty_sequence_through_a_windowed_pool_is_never_a_wrong_number(make):
    """onnxruntime refuses an empty sequence in MaxPool/AveragePool; if it ever answers,
    the answer must be the reference's empty output."""
    model = seq((None, 3), lambda: make(3, 2, "same"))
    x = np.zeros((2, 0, 3), "float32")
    expected = model.predict(x)
    assert expected.shape == (2, 0, 3)
    try:
        got = run_onnx(to_onnx(model), x)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error type
        assert "Pool" in str(exc)
    else:
        assert got.shape == expected.shape


@settings(max_examples=40, deadline=None)
@given(
    pool=st.integers(1, 6),
    stride=st.integers(1, 5),
    mode=st.sampled_from(["Max", "Average"]),
    channels_first=st.booleans(),
    lengths=st.lists(st.integers(1, 14), min_size=1, max_size=4),
)
def test_variable_length_same_pooling_property(pool, stride, mode, channels_first, lengths):
    """One graph for every length: exact where SAME's pads can be written without the
    length, refused where they cannot (stride above a pool larger than 1)."""
    fmt = CF if channels_first else {}
    shape = (2, None) if channels_first else (None, 2)
    layer = getattr(L, f"{mode}Pooling1D")
    model = seq(shape, lambda: layer(pool, stride, "same", **fmt))
    if stride > pool > 1:
        with pytest.raises(NotSupportedError, match="stride larger than the pool"):
            to_onnx(model)
        return
    onnx_models = [to_onnx(model, opset=opset) for opset in OPSETS]
    rng = np.random.default_rng(pool * 10 + stride)
    for length in lengths:
        x = rng.normal(size=(3, 2, length) if channels_first else (3, length, 2))
        x = x.astype("float32")
        for onnx_model in onnx_models:
            got = run_onnx(onnx_model, x)
            np.testing.assert_allclose(
                got, model.predict(x), rtol=1e-5, atol=1e-6, err_msg=str(x.shape)
            )


def test_known_lengths_export_any_stride():
    """With the length known the pads are explicit: a stride above the pool is exact."""
    model = seq((7, 2), lambda: L.AveragePooling1D(2, strides=3, padding="same"))
    assert_matches_reference(model, to_onnx(model), batch_sizes=(0, 3))


def test_refusal_names_the_layer_and_the_arguments():
    model = seq((None, None, 2), lambda: L.MaxPooling2D((3, 2), strides=(2, 3), padding="same"))
    message = r"MaxPooling2D .*pool_size=\(3, 2\), strides=\(2, 3\), spatial_shape=\(None, None\)"
    with pytest.raises(NotSupportedError, match=message):
        to_onnx(model)


def test_float64_average_pooling_is_refused_and_max_pooling_exported():
    """onnxruntime runs AveragePool on float32 only; MaxPool also on float64."""
    average = Sequential([L.Input((6, 6, 3), dtype="float64"), L.AveragePooling2D(dtype="float64")])
    with pytest.raises(NotSupportedError, match="ONNX AveragePool on float32 only") as info:
        to_onnx(average)
    assert average.layers[-1].name in str(info.value)
    maximum = Sequential([L.Input((6, 6, 3), dtype="float64"), L.MaxPooling2D(dtype="float64")])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3))
    runner = session(to_onnx(maximum))
    (got,) = runner.run(None, {runner.get_inputs()[0].name: x})
    np.testing.assert_array_equal(got, maximum.predict(x))
