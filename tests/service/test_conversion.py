"""Accepted uploads: every format becomes a checked ONNX graph whose outputs equal an
independent reference (Keras's own predict, or NumPy written out by hand)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conversion_files import (
    keras_masked_lstm,
    keras_mlp,
    matmul_add_onnx,
    save_keras,
    single_node_onnx,
)
from onnx import helper

from layerserve.export import to_onnx
from layerserve.layers import Dense
from layerserve.models import Sequential
from layerserve.service.conversion import ConversionLimits, convert_file, detect_format

pytestmark = pytest.mark.parallel_safe

RNG = np.random.default_rng(11)
LIMITS = ConversionLimits(max_unpacked_bytes=8 * 1024 * 1024)


@dataclass
class Upload:
    path: Path
    filename: str
    source_format: str
    suffix: str
    feeds: list[np.ndarray]  # in the graph's input order
    expected: list[np.ndarray]  # in the graph's output order


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(0, 1, shape).astype("float32")


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def keras_file(suffix: str) -> Callable[[Path], Upload]:
    def build(tmp: Path) -> Upload:
        model, x = keras_mlp(), _x(4, 5)
        path = save_keras(model, tmp / f"mlp{suffix}")
        fmt = "keras" if suffix == ".keras" else "h5"
        return Upload(path, path.name, fmt, suffix, [x], [model.predict(x, verbose=0)])

    return build


def keras_lstm(tmp: Path) -> Upload:
    model, x = keras_masked_lstm(), _x(3, 6, 3)
    x[0, 4:] = 0  # masked tail
    x[1, 1] = 0  # a masked step in the middle
    path = save_keras(model, tmp / "lstm.keras")
    mask = np.any(x != 0, axis=-1)
    return Upload(path, path.name, "keras", ".keras", [x], [model.predict(x, verbose=0), mask])


def _layerserve_mlp() -> tuple[Sequential, Callable[[np.ndarray], np.ndarray]]:
    model = Sequential([Dense(4, activation="relu", input_shape=(5,)), Dense(3)])
    model.set_weights([RNG.normal(0, 0.5, w.shape) for w in model.get_weights()])
    w1, b1, w2, b2 = model.get_weights()
    return model, lambda x: _relu(x @ w1 + b1) @ w2 + b2


def layerserve_native(tmp: Path) -> Upload:
    model, by_hand = _layerserve_mlp()
    model.save(tmp / "model.zip")
    x = _x(3, 5)
    return Upload(tmp / "model.zip", "model.zip", "layerserve", ".zip", [x], [by_hand(x)])


def exported_onnx(tmp: Path) -> Upload:
    model, by_hand = _layerserve_mlp()
    to_onnx(model, tmp / "mlp.onnx")
    x = _x(2, 5)
    return Upload(tmp / "mlp.onnx", "mlp.onnx", "onnx", ".onnx", [x], [by_hand(x)])


def hand_made_onnx(tmp: Path) -> Upload:
    weights, bias, x = _x(3, 2), _x(2), _x(4, 3)
    onnx.save_model(matmul_add_onnx(weights, bias), tmp / "hand.onnx")
    return Upload(tmp / "hand.onnx", "hand.onnx", "onnx", ".onnx", [x], [x @ weights + bias])


def contrib_op_onnx(tmp: Path) -> Upload:
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", alpha=2.0)
    model = single_node_onnx(
        node,
        {"a": [2, 3], "b": [3, 4]},
        [2, 4],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    onnx.save_model(model, tmp / "contrib.onnx")
    a, b = _x(2, 3), _x(3, 4)
    return Upload(tmp / "contrib.onnx", "contrib.onnx", "onnx", ".onnx", [a, b], [2 * a @ b])


def local_function_onnx(tmp: Path) -> Upload:
    """A custom domain the model defines itself, as a function of standard operators."""
    twice = helper.make_function(
        "example.ops",
        "AddTwice",
        ["v"],
        ["w"],
        [helper.make_node("Add", ["v", "v"], ["w"])],
        [helper.make_opsetid("", 17)],
    )
    node = helper.make_node("AddTwice", ["x"], ["y"], domain="example.ops")
    model = single_node_onnx(
        node,
        {"x": [2, 3]},
        [2, 3],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.ops", 1)],
        functions=[twice],
    )
    onnx.save_model(model, tmp / "function.onnx")
    x = _x(2, 3)
    return Upload(tmp / "function.onnx", "function.onnx", "onnx", ".onnx", [x], [2 * x])


def keras22_theano_conv(tmp: Path) -> Upload:
    """A Conv2D file Keras 2.2.4 wrote on Theano (tests/saving/keras22): its kernel is
    stored flipped; the outputs are those Keras computed."""
    written = Path(__file__).parents[1] / "saving" / "keras22" / "theano" / "conv2d-valid"
    path = tmp / "conv.h5"
    path.write_bytes(written.with_suffix(".h5").read_bytes())
    data = np.load(written.with_suffix(".npz"))
    return Upload(path, path.name, "h5", ".h5", [data["x0"]], [data["y0"]])


ACCEPTED = {
    "keras22-theano-conv2d-.h5": keras22_theano_conv,
    "keras3-.keras": keras_file(".keras"),
    "keras3-legacy-.h5": keras_file(".h5"),
    "keras3-masked-lstm": keras_lstm,
    "layerserve-archive": layerserve_native,
    "onnx-from-exporter": exported_onnx,
    "onnx-by-hand": hand_made_onnx,
    "onnx-com.microsoft-op": contrib_op_onnx,
    "onnx-local-function": local_function_onnx,
}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder conversions use, empty at the start."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_each_accepted_upload_becomes_a_graph_that_computes_the_reference(
    case: str, tmp_path: Path, scratch: Path
) -> None:
    upload = ACCEPTED[case](tmp_path)
    before = sorted(tmp_path.iterdir())

    converted = convert_file(upload.path, upload.filename, LIMITS)

    assert (converted.source_format, converted.original_suffix) == (
        upload.source_format,
        upload.suffix,
    )
    onnx.checker.check_model(converted.onnx_model)
    session = ort.InferenceSession(
        converted.onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds = {i.name: a for i, a in zip(session.get_inputs(), upload.feeds, strict=True)}
    outputs = session.run(None, feeds)
    assert len(outputs) == len(upload.expected)
    for got, expected in zip(outputs, upload.expected, strict=True):
        assert got.shape == expected.shape
        if expected.dtype == bool:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert list(scratch.iterdir()) == []
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_parity_is_reported_for_keras_family_uploads_only(case: str, tmp_path: Path) -> None:
    upload = ACCEPTED[case](tmp_path)
    converted = convert_file(upload.path, upload.filename, LIMITS)
    if upload.source_format == "onnx":
        assert converted.parity is None
        return
    assert set(converted.parity) == {"max_abs_error", "masks_equal", "batch_sizes"}
    assert 0 <= converted.parity["max_abs_error"] <= 1e-4
    assert converted.parity["masks_equal"] is True
    assert converted.parity["batch_sizes"] == [1, 7]


# The bytes decide; a misleading or missing name changes nothing.
DETECTION = [
    ("keras3-.keras", "model.h5", "keras"),
    ("keras3-.keras", None, "keras"),
    ("keras3-legacy-.h5", "model.onnx", "h5"),
    ("layerserve-archive", "model.keras", "layerserve"),
    ("onnx-from-exporter", "model.bin", "onnx"),
    ("onnx-by-hand", None, "onnx"),
]


@pytest.mark.parametrize(("case", "filename", "expected"), DETECTION)
def test_format_comes_from_the_bytes_not_the_name(
    case: str, filename: str | None, expected: str, tmp_path: Path
) -> None:
    upload = ACCEPTED[case](tmp_path)
    assert detect_format(upload.path, filename) == expected
    assert convert_file(upload.path, filename, LIMITS).source_format == expected


@pytest.mark.parametrize("opset", [13, 17])
def test_keras_uploads_export_at_the_requested_opset(opset: int, tmp_path: Path) -> None:
    upload = keras_file(".keras")(tmp_path)
    converted = convert_file(upload.path, upload.filename, LIMITS, opset=opset)
    versions = {o.domain: o.version for o in converted.onnx_model.opset_import}
    assert versions[""] == opset


def test_parity_tolerance_scales_with_the_outputs(tmp_path: Path) -> None:
    """Outputs in the tens of thousands differ between onnxruntime's and NumPy's float32
    sums by a few units in the last place, far above an absolute 1e-4; the tolerance
    scaled by the outputs' size accepts them."""
    model = Sequential([Dense(8, input_shape=(256,))])
    model.set_weights([RNG.uniform(500, 1500, (256, 8)), RNG.uniform(0, 1, 8)])
    model.save(tmp_path / "large.zip")
    converted = convert_file(tmp_path / "large.zip", "large.zip", LIMITS)
    assert 1e-4 < converted.parity["max_abs_error"] < 1.0
