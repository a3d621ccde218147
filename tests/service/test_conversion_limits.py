"""Converting an untrusted upload is bounded: JSON configs have their own size cap, read
from the zip's central directory before anything inflates (and held while inflating),
and the conversion runs in a child process with an address-space limit and a wall-clock
limit. A file that exhausts either, or kills its converter, is refused with a 4xx that
names the setting; nothing is stored and the server serves on."""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
from conversion_files import (
    declare_size,
    entries_of,
    keras_lambda,
    keras_masked_lstm,
    keras_mlp,
    save_keras,
    zip_bytes,
)
from live_server import running_server
from model_uploads import hand_onnx, hand_reference, infer, listing, staging_entries, upload
from onnx import TensorProto, helper, numpy_helper

from layerserve import examples
from layerserve.layers import LSTM, Activation, Dense
from layerserve.models import Sequential
from layerserve.saving import save_model
from layerserve.service.conversion import ConversionLimits, convert_file
from layerserve.service.conversion_process import ProcessLimits, convert_in_child
from layerserve.service.errors import InvalidInput, ModelRejected, ParityFailed
from layerserve.service.settings import Settings

MIB = 1024 * 1024
DEFAULT_CONFIG_CAP = Settings().max_config_bytes
MEMORY = 1536 * MIB  # far above a small model's conversion (~0.4 GiB of address space)
BOMB_FEATURES = 1 << 29  # parity samples of this width: 4 GiB of float64 per row
SLOW_STEPS = 50_000  # the NumPy LSTM's Python loop: seconds of conversion, little memory


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("limits_repository")


@pytest.fixture(scope="module")
def url(repo):
    settings = Settings(
        model_repository=repo, max_upload_bytes=64 * MIB, conversion_memory_bytes=MEMORY
    )
    with running_server(settings, wait_ready=False) as base:
        yield base


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("limit_files")
    save_keras(keras_masked_lstm(), folder / "lstm.keras")
    save_keras(keras_masked_lstm(), folder / "lstm.h5")
    hand_onnx(folder / "hand.onnx")
    save_model(Sequential([Activation("relu", input_shape=(BOMB_FEATURES,))]), folder / "wide.zip")
    save_model(Sequential([LSTM(2, input_shape=(SLOW_STEPS, 2))]), folder / "slow.zip")
    zeros = Dense(1024, input_shape=(1792,), kernel_initializer="zeros")
    save_model(Sequential([zeros]), folder / "zeros.zip")
    save_keras(keras_lambda(), folder / "lambda.keras")
    save_keras(keras_mlp(), folder / "mlp.keras")
    save_model(examples.mlp(), folder / "mlp.zip")
    return folder


# ---- a zip written by hand: entries whose deflate stream is given ------------------------
def _entry(name: str, deflated: bytes, size: int, crc: int) -> tuple[str, bytes, int, int]:
    return name, deflated, size, crc


def _deflated(data: bytes) -> tuple[bytes, int, int]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(), len(data), zlib.crc32(data)


def _whitespace_bomb(size: int) -> tuple[bytes, int, int]:
    """``size`` spaces (a multiple of 1 MiB) as a raw deflate stream of ~1 KiB per MiB:
    one fully flushed segment repeated (each starts afresh, so all are equal)."""
    chunk = b" " * MIB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(chunk, crc)
    return segment * (size // MIB) + compressor.flush(), size, crc


def _zip(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    local, central = bytearray(), bytearray()
    for name, deflated, size, crc in entries:
        encoded = name.encode()
        offset = len(local)
        fields = (20, 0, zlib.DEFLATED, 0, 0x21, crc, len(deflated), size, len(encoded), 0)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + encoded + deflated
        central += (
            struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, offset) + encoded
        )
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(local), 0
    )
    return bytes(local + central + end)


def _keras_with_config(keras_file: Path, config: tuple[bytes, int, int]) -> bytes:
    """The .keras archive with its config.json replaced."""
    entries = [
        _entry("config.json", *config) if name == "config.json" else _entry(name, *_deflated(data))
        for name, data in entries_of(keras_file)
    ]
    return _zip(entries)


def _upload_bytes(url: str, name: str, data: bytes, filename: str) -> httpx.Response:
    files = {"file": (filename, data, "application/octet-stream")}
    return httpx.post(f"{url}/v1/models/{name}", files=files, timeout=120)


def _stored(root: Path) -> dict[str, str]:
    """The repository's files but the (empty) staging folder an upload creates."""
    return {path: digest for path, digest in listing(root).items() if path != ".staging"}


def _serves(url: str, repo: Path, files: Path, name: str) -> None:
    """The server still converts, publishes and answers inference."""
    response = upload(url, name, files / "hand.onnx")
    assert response.status_code == 201, response.text
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    answer, outputs = infer(url, name, {"x": x}, version=response.json()["version"])
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(outputs["y"], hand_reference(x), rtol=1e-6)


def _conversion_children() -> list[int]:
    """Live children of the forkserver this (test and server) process started: the
    converters."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split() if stat else []
        if fields and fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    forkservers = {
        pid
        for pid, parent in parents.items()
        if parent == os.getpid() and b"multiprocessing.forkserver" in _cmdline(pid)
    }
    return [pid for pid, parent in parents.items() if parent in forkservers]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ---- config caps -------------------------------------------------------------------
def test_a_2_mb_keras_whose_config_inflates_to_2_gib_is_refused_before_inflating(url, repo, files):
    bomb = _keras_with_config(files / "lstm.keras", _whitespace_bomb(2048 * MIB))
    assert len(bomb) < 3 * MIB
    before = _stored(repo)
    response = _upload_bytes(url, "config_bomb", bomb, "bomb.keras")
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "entry 'config.json'" in message
    assert f"at most {DEFAULT_CONFIG_CAP} bytes" in message
    assert "max_config_bytes" in message and "LAYERSERVE_MAX_CONFIG_BYTES" in message
    assert f"Received: {2048 * MIB} bytes" in message
    assert _stored(repo) == before and staging_entries(repo) == []


def test_a_config_entry_whose_header_lies_is_stopped_while_inflating(url, repo, files):
    """The central directory declares 1000 bytes; the entry inflates to 32 MiB."""
    entries = entries_of(files / "lstm.keras")
    entries = [(n, b" " * (32 * MIB) if n == "config.json" else d) for n, d in entries]
    lying = declare_size(zip_bytes(entries), "config.json", 1000)
    before = _stored(repo)
    response = _upload_bytes(url, "config_liar", lying, "liar.keras")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == (
        "Expected entry 'config.json' to expand to the 1000 bytes its header declares. "
        "Received: an entry that expands to more."
    )
    assert _stored(repo) == before


@pytest.mark.parametrize("length", ["fixed", "variable"])
def test_an_h5_model_config_past_the_cap_is_refused(url, repo, files, tmp_path, length):
    """A fixed-length string's size is read from the file; a variable-length one's is
    measured (HDF5 attributes are not compressed: at most the file's size)."""
    path = tmp_path / "padded.h5"
    # A fixed-length attribute past 64 KiB needs the newer file format's dense storage.
    with h5py.File(files / "lstm.h5") as source, h5py.File(path, "w", libver="latest") as padded:
        for key in source:
            source.copy(source[key], padded, name=key)
        for key, value in source.attrs.items():
            padded.attrs[key] = value
        text = padded.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else str(text)
        config = text + " " * (DEFAULT_CONFIG_CAP + 1 - len(text))
        del padded.attrs["model_config"]
        if length == "fixed":
            padded.attrs["model_config"] = np.bytes_(config.encode())
        else:
            padded.attrs.create("model_config", config, dtype=h5py.string_dtype())
    before = _stored(repo)
    response = upload(url, "config_h5", path)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == (
        f"Expected the model config attribute 'model_config' of 'padded.h5' to be at most "
        f"{DEFAULT_CONFIG_CAP} bytes (setting max_config_bytes, LAYERSERVE_MAX_CONFIG_BYTES; "
        "the config of a large real model is about 1 MB). Received: "
        f"{DEFAULT_CONFIG_CAP + 1} bytes."
    )
    assert _stored(repo) == before


def test_an_entry_whose_output_ends_on_a_read_boundary_is_read_whole(url, files):
    """zlib may have consumed all of an entry's input and still hold output when a read
    filled its buffer: a zero-initialised 1792x1024 kernel was refused as corrupt."""
    response = upload(url, "zeros", files / "zeros.zip")
    assert response.status_code == 201, response.text
    assert response.json()["parity"]["max_abs_error"] == 0.0


# ---- the converter's process -------------------------------------------------------------
@pytest.mark.parametrize(
    ("file", "error", "limits", "opset"),
    [
        ("lambda.keras", ModelRejected, ConversionLimits(max_unpacked_bytes=64 * MIB), None),
        ("mlp.keras", InvalidInput, ConversionLimits(max_unpacked_bytes=64 * MIB), 5),
        (
            "mlp.zip",
            ParityFailed,
            ConversionLimits(max_unpacked_bytes=64 * MIB, parity_atol=0),
            None,
        ),
    ],
)
def test_errors_raised_in_the_converter_keep_their_type_and_message(
    files, tmp_path, file, error, limits, opset
):
    """The same file converted here and in a child: the same exception, type and text."""
    path = files / file
    with pytest.raises(error) as here:
        convert_file(path, file, limits, opset=opset)
    with pytest.raises(error) as there:
        convert_in_child(path, file, limits, ProcessLimits(MEMORY, 60), tmp_path, opset=opset)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)


def test_a_refusal_from_the_converter_reaches_the_client_whole(url, repo, files):
    with pytest.raises(ModelRejected) as here:
        convert_file(files / "lambda.keras", "lambda.keras", ConversionLimits(4 << 30))
    before = _stored(repo)
    response = upload(url, "lambda", files / "lambda.keras")
    assert response.status_code == 400, response.text
    assert response.json() == {"error": str(here.value)}
    assert _stored(repo) == before


@pytest.mark.parametrize("route", ["/v1/models/wide", "/v1/export"])
def test_a_memory_bomb_only_the_address_space_limit_stops_is_a_413(url, repo, files, route):
    """A 0.5 KB model whose declared input width makes the parity check's sample rows
    4 GiB each: no size cap sees it, the child's RLIMIT_AS does."""
    before = _stored(repo)
    with (files / "wide.zip").open("rb") as handle:
        response = httpx.post(url + route, files={"file": ("wide.zip", handle.read())}, timeout=120)
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert message.startswith(
        f"Expected converting 'wide.zip' to fit in {MEMORY} bytes of memory (setting "
        "conversion_memory_bytes, LAYERSERVE_CONVERSION_MEMORY_BYTES). Received: a "
        "conversion that needed more (MemoryError: "
    )
    assert "nothing was stored" in message
    assert _stored(repo) == before and staging_entries(repo) == []
    _serves(url, repo, files, "after_bomb")


def test_a_converter_killed_by_a_signal_is_reported_as_a_crash(url, repo, files):
    before = _stored(repo)
    answer: dict[str, httpx.Response] = {}
    sender = threading.Thread(
        target=lambda: answer.setdefault("r", upload(url, "crashing", files / "slow.zip"))
    )
    sender.start()
    deadline = time.monotonic() + 60
    while not (children := _conversion_children()):
        assert time.monotonic() < deadline and sender.is_alive(), "no converter started"
        time.sleep(0.01)
    (child,) = children
    os.kill(child, signal.SIGSEGV)  # what a parser's crash does to its process
    sender.join(timeout=60)
    response = answer["r"]
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(
        "The upload 'slow.zip' crashed the converter: the process reading it was killed "
        "by signal SIGSEGV; nothing was stored."
    )
    assert _stored(repo) == before and staging_entries(repo) == []
    _serves(url, repo, files, "after_crash")


def test_a_conversion_past_the_timeout_is_killed_and_refused(tmp_path, files):
    settings = Settings(model_repository=tmp_path, conversion_timeout_seconds=0.2)
    with running_server(settings, wait_ready=False) as base:
        before = _stored(tmp_path)
        response = upload(base, "slow", files / "slow.zip")
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(
            "Expected converting 'slow.zip' to take at most 0.2 s (setting "
            "conversion_timeout_seconds, LAYERSERVE_CONVERSION_TIMEOUT_SECONDS). Received: "
            "a conversion still running then, so it was stopped; nothing was stored."
        )
        assert _conversion_children() == []  # killed and reaped before the answer
        assert _stored(tmp_path) == before and staging_entries(tmp_path) == []
        assert httpx.get(base + "/v2/health/live", timeout=10).status_code == 200


def _constant_of_shape_onnx(side: int) -> bytes:
    """y = x + sum(zeros(side, side)): a file of a few hundred bytes whose run makes a
    side x side float32 tensor. The shape depends on x (plus 0 x sum(x)), so onnxruntime
    cannot fold it when it loads the graph: the memory is taken when it runs."""
    shape = numpy_helper.from_array(np.array([side, side], np.int64), "shape")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x"], ["x_total"], keepdims=0),
            helper.make_node("Mul", ["x_total", "zero"], ["nothing"]),
            helper.make_node("Cast", ["nothing"], ["offset"], to=TensorProto.INT64),
            helper.make_node("Add", ["shape", "offset"], ["run_shape"]),
            helper.make_node("ConstantOfShape", ["run_shape"], ["zeros"]),
            helper.make_node("ReduceSum", ["zeros"], ["total"], keepdims=0),
            helper.make_node("Add", ["x", "total"], ["y"]),
        ],
        "constant_of_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [shape, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_an_onnx_file_whose_run_needs_more_memory_than_the_limit_is_a_413(url, repo, files):
    """The server loads and warms up an uploaded graph as it will serve it inside the
    converter's limits first: 20,000 x 20,000 floats (1.6 GB) made by the run of a
    500-byte file would otherwise be made in every worker, and kept."""
    before = _stored(repo)
    data = _constant_of_shape_onnx(20_000)
    assert len(data) < 500
    response = _upload_bytes(url, "constant_of_shape", data, "model.onnx")
    assert response.status_code == 413, response.text
    assert response.json()["error"].startswith(
        f"Expected converting 'model.onnx' to fit in {MEMORY} bytes of memory (setting "
        "conversion_memory_bytes, LAYERSERVE_CONVERSION_MEMORY_BYTES)."
    )
    assert _stored(repo) == before and staging_entries(repo) == []
    small = _upload_bytes(url, "constant_of_shape", _constant_of_shape_onnx(64), "model.onnx")
    assert small.status_code == 201, small.text  # the same graph, within the limit
    x = np.ones((2, 4), np.float32)
    answer, outputs = infer(url, "constant_of_shape", {"x": x}, version="1")
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(outputs["y"], x)  # zeros sum to 0
